//! WebSocket plumbing shared by every protocol adapter: the HTTP upgrade, reading frames, and
//! the end of a connection.
//!
//! The upgrade is done here rather than by axum's extractor because a session needs the raw
//! connection back at its end: after the server sends a close frame, whatever the client is
//! still sending must be read and discarded before the socket is dropped. Dropping a socket
//! with unread bytes makes the kernel send a TCP reset, which can overtake the close frame, and
//! the client then sees 1006 instead of, say, 1009 for an oversized frame.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{SplitSink, SplitStream};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

/// An accepted WebSocket connection.
pub(crate) type Socket = WebSocketStream<TokioIo<Upgraded>>;
/// Its sending half (the session's writer task).
pub(crate) type SocketSink = SplitSink<Socket, Message>;
/// Its receiving half (the session's runtime).
pub(crate) type SocketStream = SplitStream<Socket>;

/// Longest wait for the client's answer to our close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// After an oversized frame: stop draining once the client was silent this long...
const DRAIN_QUIET: Duration = Duration::from_millis(500);
/// ...or after this long in all.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Checks an upgrade request. Returns the response to send and, when it is `101 Switching
/// Protocols`, a future that yields the socket once the client has switched (`None` if it
/// never does); otherwise the response is the refusal (400, or 426 when the connection cannot
/// be upgraded).
pub(crate) fn accept(
    mut request: Request,
    max_message_bytes: usize,
) -> (Response, Option<BoxFuture<'static, Option<Socket>>>) {
    let headers = request.headers();
    if !header_has_token(headers, header::CONNECTION, "upgrade") {
        return (bad_request("missing `Connection: upgrade` header"), None);
    }
    if !header_is(headers, header::UPGRADE, "websocket") {
        return (bad_request("missing `Upgrade: websocket` header"), None);
    }
    if !header_is(headers, header::SEC_WEBSOCKET_VERSION, "13") {
        return (bad_request("`Sec-WebSocket-Version` must be 13"), None);
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return (bad_request("missing `Sec-WebSocket-Key` header"), None);
    };
    let accept_key = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        let refusal = (
            StatusCode::UPGRADE_REQUIRED,
            "this connection cannot be upgraded to a WebSocket",
        );
        return (refusal.into_response(), None);
    };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(value) = HeaderValue::from_str(&accept_key) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes));
    let socket = async move {
        match on_upgrade.await {
            Ok(upgraded) => Some(
                WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await,
            ),
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade did not complete");
                None
            }
        }
    };
    (response, Some(Box::pin(socket)))
}

fn bad_request(why: &'static str) -> Response {
    (StatusCode::BAD_REQUEST, why).into_response()
}

fn header_is(headers: &HeaderMap, name: header::HeaderName, value: &str) -> bool {
    headers
        .get(name)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

/// What the socket delivered next.
#[derive(Debug)]
pub(crate) enum Incoming {
    Text(Utf8Bytes),
    Binary,
    /// A frame over the size limit. The frame reader is out of step with the stream after it.
    TooBig,
    /// A text frame that is not valid UTF-8 (close 1007).
    BadUtf8,
    /// Close frame, EOF or a broken connection.
    Gone,
}

/// The next frame that matters (pings are answered by the transport, pongs ignored).
pub(crate) async fn next_incoming(stream: &mut SocketStream) -> Incoming {
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => return Incoming::Text(t),
            Some(Ok(Message::Binary(_))) => return Incoming::Binary,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_))) | None => return Incoming::Gone,
            Some(Err(WsError::Capacity(_))) => return Incoming::TooBig,
            Some(Err(WsError::Utf8(_))) => return Incoming::BadUtf8,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "websocket read error");
                return Incoming::Gone;
            }
        }
    }
}

/// The last thing done with a connection whose close frame we sent: read what the client
/// still sends until it answers the close (or closes TCP), so dropping the socket sends a FIN
/// rather than a reset. `desynced`: the frame reader lost its place (an oversized frame), so
/// the rest is read as raw bytes until the client goes quiet.
pub(crate) async fn linger(mut stream: SocketStream, sink: Option<SocketSink>, desynced: bool) {
    if !desynced {
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(message)) = stream.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
        return;
    }
    let Some(Ok(mut socket)) = sink.map(|sink| stream.reunite(sink)) else {
        return;
    };
    let io = socket.get_mut();
    let mut buf = vec![0u8; 64 * 1024];
    let _ = tokio::time::timeout(DRAIN_LIMIT, async {
        loop {
            match tokio::time::timeout(DRAIN_QUIET, io.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => continue,
                // EOF, an error, or silence: nothing more is coming.
                _ => break,
            }
        }
    })
    .await;
}
