//! Before a replica is chosen: the client's first message (for its `client_id`), and the
//! small I/O helpers the router uses when it writes frames of its own.

use super::{CLOSE_WAIT, ClientRead, ClientWrite};
use crate::app::App;
use crate::ws::{self, FrameReader, Read};
use bytes::{Buf, BytesMut};
use fv_protocol::{ServerMessage, close};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The `client_id` of a `session_init_v2` first message, when it has a usable one.
fn client_key(text: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Init {
        #[serde(rename = "type")]
        ty: Option<serde_json::Value>,
        client_id: Option<serde_json::Value>,
    }
    // Other fields (an initial image, say) are skipped without being copied.
    let init: Init = serde_json::from_slice(text).ok()?;
    if init.ty.as_ref().and_then(|t| t.as_str()) != Some("session_init_v2") {
        return None;
    }
    match init.client_id {
        Some(serde_json::Value::String(id))
            if !id.is_empty() && id.len() <= crate::config::MAX_STICKY_KEY_BYTES =>
        {
            Some(id)
        }
        _ => None,
    }
}

pub(super) async fn write_timed<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    data: &[u8],
    limit: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(limit, w.write_all(data)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("send timed out after {limit:?}")),
    }
}

/// Reads (and drops) what a peer still sends until its close frame or end of stream, at most
/// [`CLOSE_WAIT`], so a close the router started completes before the socket is dropped.
pub(super) async fn await_close<R: AsyncRead + Unpin + ?Sized>(r: &mut R, buf: &mut BytesMut) {
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        loop {
            while let Ok(Some(h)) = ws::parse_header(buf) {
                let total = h.header_len as u64 + h.len;
                if (buf.len() as u64) < total {
                    break;
                }
                if h.opcode == ws::OP_CLOSE {
                    return;
                }
                buf.advance(total as usize);
            }
            if ws::parse_header(buf).is_err() {
                return;
            }
            // Bounded: a frame that does not fit is skipped by reading on.
            if buf.len() > ws::READ_CHUNK * 4 {
                buf.clear();
            }
            buf.reserve(ws::READ_CHUNK);
            match r.read_buf(buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Reads the client's first data message (answering pings meanwhile). Returns its frames as
/// received and its `client_id`, or `None` when the session ended before it.
pub(super) async fn first_message(
    app: &App,
    client: &mut FrameReader<ClientRead>,
    cw: &mut ClientWrite,
) -> Option<(BytesMut, Option<String>)> {
    let wait = app.config.first_frame_timeout();
    let send = app.config.send_timeout();
    let max = app.config.max_message_bytes;
    let deadline = tokio::time::Instant::now() + wait;
    let mut raw = BytesMut::new();
    let mut text = Vec::new();
    let mut started: Option<ws::OpCode> = None;
    let mut total = 0usize;
    let refuse =
        async |cw: &mut ClientWrite, client: &mut FrameReader<ClientRead>, code, reason: &str| {
            let _ = write_timed(cw, &ws::close_frame(Some((code, reason)), None), send).await;
            await_close(&mut client.io, &mut client.buf).await;
        };
    loop {
        let read = tokio::select! {
            () = app.draining.cancelled() => {
                refuse(cw, client, close::GOING_AWAY, close::REASON_SERVER_SHUTDOWN).await;
                return None;
            }
            r = tokio::time::timeout_at(deadline, client.next_frame()) => r,
        };
        let Ok(read) = read else {
            tracing::info!(?wait, "no first message in time");
            app.registry.metrics.rejected("first_frame_timeout");
            let msg = ServerMessage::session_timeout(wait.as_secs_f64().ceil() as u64);
            let _ = write_timed(
                cw,
                &ws::frame(ws::OP_TEXT, msg.to_json().as_bytes(), None),
                send,
            )
            .await;
            refuse(cw, client, close::NORMAL, close::REASON_SESSION_TIMEOUT).await;
            return None;
        };
        let (h, frame, payload) = match read {
            Read::Frame {
                header,
                raw,
                payload,
            } => (header, raw, payload),
            Read::Eof => return None,
            Read::Gone(error) => {
                tracing::debug!(%error, "client connection failed before its first message");
                return None;
            }
            Read::Violation(code, reason) => {
                refuse(cw, client, code, &reason).await;
                return None;
            }
        };
        match h.opcode {
            ws::OP_PING => {
                let pong = ws::frame(ws::OP_PONG, &payload, None);
                if write_timed(cw, &pong, send).await.is_err() {
                    return None;
                }
            }
            ws::OP_PONG => {}
            ws::OP_CLOSE => {
                // The client left before saying anything: answer its close the usual way.
                let echo = ws::parse_close(&payload);
                let echo = echo.as_ref().map(|(c, r)| (*c, r.as_str()));
                let _ = write_timed(cw, &ws::close_frame(echo, None), send).await;
                return None;
            }
            op => {
                let fragment = op == ws::OP_CONTINUATION;
                if fragment != started.is_some() {
                    let why = if fragment {
                        "continuation frame without a message to continue"
                    } else {
                        "new message before the previous one ended"
                    };
                    refuse(cw, client, ws::CLOSE_PROTOCOL, why).await;
                    return None;
                }
                let op = *started.get_or_insert(op);
                total += payload.len();
                if total > max {
                    let reason = format!("frame exceeds limit of {max} bytes");
                    refuse(cw, client, close::TOO_BIG, &reason).await;
                    return None;
                }
                raw.extend_from_slice(&frame);
                if op == ws::OP_TEXT {
                    text.extend_from_slice(&payload);
                }
                if h.fin {
                    let key = if op == ws::OP_TEXT {
                        client_key(&text)
                    } else {
                        None
                    };
                    return Some((raw, key));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_key_comes_from_session_init_v2_only() {
        let key = |s: &str| client_key(s.as_bytes());
        assert_eq!(
            key(r#"{"type":"session_init_v2","client_id":"abc","x":[1]}"#),
            Some("abc".into())
        );
        assert_eq!(key(r#"{"type":"session_init_v2"}"#), None);
        assert_eq!(key(r#"{"type":"session_init_v2","client_id":""}"#), None);
        assert_eq!(key(r#"{"type":"session_init_v2","client_id":5}"#), None);
        assert_eq!(key(r#"{"type":"snapshot_state","client_id":"abc"}"#), None);
        assert_eq!(key("not json"), None);
        let long = "x".repeat(crate::config::MAX_STICKY_KEY_BYTES + 1);
        assert_eq!(
            key(&format!(
                r#"{{"type":"session_init_v2","client_id":"{long}"}}"#
            )),
            None
        );
    }
}
