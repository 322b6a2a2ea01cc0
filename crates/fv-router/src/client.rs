//! The router's one HTTP/1.1 client, on hyper's client connection: `GET` for health probes
//! and `/status`, and the WebSocket upgrade that opens a session on a replica.
//!
//! Each request gets its own connection: a probe then measures what a new session pays
//! (connect included) and leaves no idle connections on replicas, and an upgraded connection
//! becomes the bridge's raw TCP stream (hyper hands it back with whatever it read past the
//! `101`).

use crate::config::ReplicaUrl;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::client::conn::http1;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};
use tokio_util::task::AbortOnDropHandle;

/// Largest response body a probe reads; a replica's `/status` is a few KiB.
pub const MAX_PROBE_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Largest response head (status line and headers) read from a replica; theirs are a few
/// hundred bytes. hyper's floor for this buffer is 8 KiB.
const MAX_HEAD_BYTES: usize = 16 * 1024;
const USER_AGENT: &str = "fv-router";

/// What a probe got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    pub body: Bytes,
    /// Connect to last byte read.
    pub latency: Duration,
}

/// Why a probe failed (for logs and `/status`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProbeError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("HTTP error: {0}")]
    Http(String),
    #[error("response body over {MAX_PROBE_RESPONSE_BYTES} bytes")]
    TooLarge,
}

/// Why a WebSocket upgrade to a replica failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpgradeError {
    /// TCP, HTTP or handshake failure: the reason, for logs and the client's error.
    Failed(String),
    /// The replica answered with this HTTP status instead of `101`.
    Refused(u16),
}

fn builder() -> http1::Builder {
    let mut b = http1::Builder::new();
    b.max_buf_size(MAX_HEAD_BYTES);
    b
}

async fn connect(url: &ReplicaUrl) -> std::io::Result<TcpStream> {
    let tcp = TcpStream::connect((url.host(), url.port())).await?;
    // Requests and control frames are small: Nagle would only hold them back.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// `GET path` on `url`'s host, all within `limit`.
pub(crate) async fn get(
    url: &ReplicaUrl,
    path: &str,
    limit: Duration,
) -> Result<Response, ProbeError> {
    match tokio::time::timeout(limit, get_inner(url, path)).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Timeout(limit)),
    }
}

async fn get_inner(url: &ReplicaUrl, path: &str) -> Result<Response, ProbeError> {
    let http = |e: hyper::Error| ProbeError::Http(e.to_string());
    let started = Instant::now();
    let request = Request::get(path)
        .header(header::HOST, url.authority())
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::ACCEPT, "*/*")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ProbeError::Http(format!("bad request for {path:?}: {e}")))?;
    let tcp = connect(url)
        .await
        .map_err(|e| ProbeError::Connect(e.to_string()))?;
    let (mut sender, conn) = builder().handshake(TokioIo::new(tcp)).await.map_err(http)?;
    let exchange = async move {
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_PROBE_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    ProbeError::TooLarge
                } else {
                    ProbeError::Http(e.to_string())
                }
            })?
            .to_bytes();
        // `sender` is dropped here, which lets the connection below finish.
        Ok((status, body))
    };
    // The connection is driven beside the exchange (its own errors surface there too).
    let (result, _) = tokio::join!(exchange, conn);
    let (status, body) = result?;
    Ok(Response {
        status,
        body,
        latency: started.elapsed(),
    })
}

/// Opens a WebSocket on `url` for `target` (path and query), sending `extra` headers along.
/// Returns the raw stream and the bytes the replica sent right after its `101`. The caller
/// bounds the time it takes.
pub(crate) async fn upgrade(
    url: &ReplicaUrl,
    target: &str,
    extra: &[(&'static str, HeaderValue)],
) -> Result<(TcpStream, Bytes), UpgradeError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| UpgradeError::Failed(format!("{what}: {e}"));
    let key = generate_key();
    let mut request = Request::get(target)
        .header(header::HOST, url.authority())
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, key.as_str());
    for (name, value) in extra {
        request = request.header(*name, value.clone());
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail("building the upgrade request", &e))?;
    let tcp = connect(url).await.map_err(|e| fail("TCP connect", &e))?;
    let (mut sender, conn) = builder()
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| fail("HTTP handshake", &e))?;
    // Driven on its own task until it hands the stream over to the upgrade; aborted when this
    // function returns early or is dropped by the caller's timeout.
    let _conn = AbortOnDropHandle::new(tokio::spawn(conn.with_upgrades()));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| fail("the upgrade request failed", &e))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(UpgradeError::Refused(response.status().as_u16()));
    }
    let headers = response.headers();
    let accept = headers
        .get(header::SEC_WEBSOCKET_ACCEPT)
        .map(HeaderValue::as_bytes);
    if accept != Some(derive_accept_key(key.as_bytes()).as_bytes()) {
        return Err(UpgradeError::Failed(
            "wrong Sec-WebSocket-Accept in the upgrade answer".into(),
        ));
    }
    if headers.contains_key(header::SEC_WEBSOCKET_EXTENSIONS) {
        return Err(UpgradeError::Failed(
            "the replica enabled an extension the router did not offer".into(),
        ));
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|e| fail("taking over the upgraded connection", &e))?;
    let parts = upgraded
        .downcast::<TokioIo<TcpStream>>()
        .map_err(|_| UpgradeError::Failed("the upgraded connection is not TCP".into()))?;
    Ok((parts.io.into_inner(), parts.read_buf))
}

#[cfg(test)]
mod tests;
