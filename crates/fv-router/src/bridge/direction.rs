//! One direction of a session while it is still on the async runtime.

use super::MAX_REPLAY_BYTES;
use crate::relay::{self, End};
use crate::ws::{self, Walker};
use bytes::{Buf, BytesMut};
use futures_util::FutureExt;
use fv_protocol::ServerMessage;
use metrics::Counter;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A replica's first frame is checked for `error{session_rejected}` only up to this size.
const MAX_REJECTION_BYTES: u64 = 4096;

/// One direction while the session is on the async runtime (client bytes that arrive while a
/// replica is being tried): bytes from `src` walked frame by frame and written to the other
/// side's writer, which is passed to [`Direction::pump`] because it changes with each replica
/// attempt. [`Direction::into_core`] hands the state to the relay threads.
pub(super) struct Direction<R> {
    pub(super) src: R,
    pub(super) buf: BytesMut,
    pub(super) walker: Walker,
    /// Bytes at the start of `buf` already walked but not yet written.
    pub(super) pending: usize,
    pub(super) violation: Option<ws::Violation>,
    /// Client bytes written to the replica so far, for a retry; `None` once over the limit.
    pub(super) record: Option<BytesMut>,
    pub(super) bytes: Counter,
    pub(super) messages: Counter,
    pub(super) counted: u64,
    /// [`End::Closed`] was returned for this direction's close frame.
    pub(super) close_reported: bool,
}

impl<R: AsyncRead + Unpin> Direction<R> {
    pub(super) fn new(
        src: R,
        buf: BytesMut,
        walker: Walker,
        bytes: Counter,
        messages: Counter,
    ) -> Self {
        Self {
            src,
            buf,
            walker,
            pending: 0,
            violation: None,
            record: None,
            bytes,
            messages,
            counted: 0,
            close_reported: false,
        }
    }

    /// The source and the state the relay threads take over.
    pub(super) fn into_core(self) -> (R, relay::Core) {
        let core = relay::Core {
            buf: self.buf.to_vec(),
            pending: self.pending,
            violation: self.violation,
            walker: self.walker,
            bytes: self.bytes,
            messages: self.messages,
            counted: self.counted,
            close_reported: self.close_reported,
        };
        (self.src, core)
    }

    /// Relays until the source ends, a write fails or a rule is broken. Cancel-safe: state is
    /// only updated after each completed read or write, so a pump can be resumed.
    pub(super) async fn pump<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        dst: &mut W,
        send: Duration,
    ) -> End {
        loop {
            if self.pending == 0 && self.violation.is_none() {
                let (n, v) = self.walker.walk(&self.buf);
                self.pending = n;
                self.violation = v;
                if self.walker.messages > self.counted {
                    self.messages.increment(self.walker.messages - self.counted);
                    self.counted = self.walker.messages;
                }
            }
            while self.pending > 0 {
                let chunk = &self.buf[..self.pending];
                // The socket nearly always takes the bytes at once; only a write that has to
                // wait gets a timer.
                let written = match dst.write(chunk).now_or_never() {
                    Some(r) => r,
                    None => match tokio::time::timeout(send, dst.write(chunk)).await {
                        Ok(r) => r,
                        Err(_) => return End::SendFailed(format!("send timed out after {send:?}")),
                    },
                };
                let n = match written {
                    Ok(0) => return End::SendFailed("peer accepts no more bytes".into()),
                    Ok(n) => n,
                    Err(e) => return End::SendFailed(e.to_string()),
                };
                if let Some(rec) = &mut self.record {
                    if rec.len() + n > MAX_REPLAY_BYTES {
                        self.record = None;
                    } else {
                        rec.extend_from_slice(&self.buf[..n]);
                    }
                }
                self.buf.advance(n);
                self.pending -= n;
                self.bytes.increment(n as u64);
            }
            if let Some((code, reason)) = self.violation.take() {
                return End::Refused(code, reason);
            }
            if self.walker.closed.is_some() && !self.close_reported && self.walker.at_boundary() {
                self.close_reported = true;
                return End::Closed;
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(ws::READ_CHUNK);
            }
            match self.src.read_buf(&mut self.buf).await {
                Ok(0) => return End::Eof,
                Ok(_) => {}
                Err(e) => return End::Gone(e.to_string()),
            }
        }
    }

    /// Waits until the source has a whole first frame buffered (or enough of it to know it is
    /// not a small text frame), without consuming it. `Err` when the source ended first.
    pub(super) async fn first_frame(&mut self) -> Result<Option<ws::Header>, End> {
        loop {
            match ws::parse_header(&self.buf) {
                Err(e) => return Err(End::Refused(ws::CLOSE_PROTOCOL, e.to_owned())),
                Ok(Some(h)) => {
                    let small_text = h.opcode == ws::OP_TEXT && h.len <= MAX_REJECTION_BYTES;
                    let whole = self.buf.len() as u64 >= h.header_len as u64 + h.len;
                    if !small_text || whole {
                        return Ok(Some(h));
                    }
                }
                Ok(None) => {}
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(ws::READ_CHUNK);
            }
            match self.src.read_buf(&mut self.buf).await {
                Ok(0) => return Err(End::Eof),
                Ok(_) => {}
                Err(e) => return Err(End::Gone(e.to_string())),
            }
        }
    }
}

/// `error{code: session_rejected}` as a replica's whole first frame: it was full after all.
pub(super) fn is_session_rejected(h: &ws::Header, buf: &[u8]) -> bool {
    if h.opcode != ws::OP_TEXT || !h.fin || h.mask.is_some() || h.len > MAX_REJECTION_BYTES {
        return false;
    }
    let Some(payload) = buf.get(h.header_len..h.header_len + h.len as usize) else {
        return false;
    };
    matches!(
        std::str::from_utf8(payload).map(ServerMessage::from_json),
        Ok(Ok(ServerMessage::Error(e))) if e.code == fv_protocol::ErrorCode::SessionRejected
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_rejected_is_recognized() {
        let check = |msg: &ServerMessage| {
            let f = ws::frame(ws::OP_TEXT, msg.to_json().as_bytes(), None);
            let h = ws::parse_header(&f).ok().flatten();
            h.is_some_and(|h| is_session_rejected(&h, &f))
        };
        let rejected = ServerMessage::error(
            fv_protocol::ErrorCode::SessionRejected,
            "max sessions reached (1)",
            false,
        );
        assert!(check(&rejected));
        assert!(!check(&ServerMessage::error(
            fv_protocol::ErrorCode::GpuUnavailable,
            "x",
            true
        )));
        assert!(!check(&ServerMessage::gpu_assigned(0, 300)));
    }
}
