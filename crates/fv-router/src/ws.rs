//! Walking RFC 6455 frames for a relay that forwards them as they are on the wire.
//!
//! The router does not decode and re-encode messages: after the client's first frame it
//! passes bytes through unchanged (client frames stay masked with the client's key, which is
//! what a replica expects from a client), and only walks the frame headers to know where
//! frames start and end. That is what keeps it byte-exact, cheap per message (one read and one
//! write, no copy into message buffers) and able to stream frames of any size through a fixed
//! buffer. Headers are parsed by tungstenite's [`FrameHeader`] and the frames the router writes
//! itself (pong before a replica is chosen, errors, closes) are built by tungstenite's
//! [`Frame`]; what is ours is the walking, the rules a relay enforces on top (no reserved
//! bits, control frames short and final, masking by role, size limits) and close parsing.

use bytes::{Bytes, BytesMut};
use std::hash::{BuildHasher, Hasher};
use std::io::Cursor;
use tokio::io::{AsyncRead, AsyncReadExt};
pub(crate) use tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame, FrameHeader};

pub(crate) const OP_CONTINUATION: OpCode = OpCode::Data(Data::Continue);
pub(crate) const OP_TEXT: OpCode = OpCode::Data(Data::Text);
#[cfg(test)]
pub(crate) const OP_BINARY: OpCode = OpCode::Data(Data::Binary);
pub(crate) const OP_CLOSE: OpCode = OpCode::Control(Control::Close);
pub(crate) const OP_PING: OpCode = OpCode::Control(Control::Ping);
pub(crate) const OP_PONG: OpCode = OpCode::Control(Control::Pong);

/// Bytes read per `read` call; reads go into spare capacity, nothing is zero-filled.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// Close code for protocol violations (RFC 6455 §7.4.1).
pub(crate) const CLOSE_PROTOCOL: u16 = 1002;

/// One frame header as the relay needs it: tungstenite's [`FrameHeader`] fields plus the
/// payload length and where the payload starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub fin: bool,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
    /// Bytes the header itself takes.
    pub header_len: usize,
}

impl Header {
    pub fn is_data(&self) -> bool {
        matches!(self.opcode, OpCode::Data(_))
    }
}

/// Parses the header at the start of `buf` with tungstenite's [`FrameHeader::parse`]:
/// `Ok(None)` when more bytes are needed, `Err` with the violation when the header is not one
/// a peer may send on a connection without extensions.
pub(crate) fn parse_header(buf: &[u8]) -> Result<Option<Header>, &'static str> {
    let mut cursor = Cursor::new(buf);
    let (h, len) = match FrameHeader::parse(&mut cursor) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Ok(None),
        // Reading from a slice cannot fail, so the only error is a reserved opcode.
        Err(_) => return Err("unknown opcode"),
    };
    if h.rsv1 || h.rsv2 || h.rsv3 {
        return Err("reserved bits set, but no extension was negotiated");
    }
    if len >> 63 != 0 {
        return Err("frame length has its top bit set");
    }
    if matches!(h.opcode, OpCode::Control(_)) && (!h.is_final || len > 125) {
        return Err("control frames must be final and at most 125 bytes");
    }
    Ok(Some(Header {
        fin: h.is_final,
        opcode: h.opcode,
        mask: h.mask,
        len,
        // At most 14: the cursor only moved over the header.
        header_len: cursor.position() as usize,
    }))
}

/// XORs `data` with `mask`, where `data` starts `offset` bytes into the payload.
pub(crate) fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[(offset + i) % 4];
    }
}

/// Serializes a tungstenite [`Frame`], masked with `mask` when the router is the sender in the
/// client role.
fn encode(mut frame: Frame, mask: Option<[u8; 4]>) -> Vec<u8> {
    frame.header_mut().mask = mask;
    let mut out = Vec::with_capacity(frame.len());
    // Writing into a Vec cannot fail.
    let _ = frame.format(&mut out);
    out
}

/// A whole frame: `opcode`, FIN set, masked with `mask` when the router is the sender in
/// the client role.
pub(crate) fn frame(opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    encode(
        Frame::from_payload(header, Bytes::copy_from_slice(payload)),
        mask,
    )
}

/// A close frame with `code` and `reason` (cut to RFC 6455's 123 bytes at a char boundary);
/// `None` is a close frame without a code.
pub(crate) fn close_frame(close: Option<(u16, &str)>, mask: Option<[u8; 4]>) -> Vec<u8> {
    let close = close.map(|(code, reason)| {
        let mut end = reason.len().min(fv_protocol::close::MAX_REASON_BYTES);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        CloseFrame {
            code: code.into(),
            reason: reason[..end].to_owned().into(),
        }
    });
    encode(Frame::close(close), mask)
}

/// Code and reason of a close payload (unmasked); `None` for an empty one.
pub(crate) fn parse_close(payload: &[u8]) -> Option<(u16, String)> {
    let code = u16::from_be_bytes([*payload.first()?, *payload.get(1)?]);
    let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
    Some((code, reason))
}

/// A fresh masking key. RFC 6455 asks for keys an attacker cannot predict: `RandomState` is
/// seeded from the OS and each instance hashes with new keys, so its output is unpredictable
/// without a random-number dependency.
pub(crate) fn new_mask() -> [u8; 4] {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    (h.finish() as u32).to_ne_bytes()
}

/// What [`FrameReader::next_frame`] read.
#[derive(Debug)]
pub(crate) enum Read {
    /// A whole frame: its header, its bytes as received, its payload unmasked.
    Frame {
        header: Header,
        raw: Bytes,
        payload: Bytes,
    },
    /// The peer closed the connection (cleanly or not) before a whole frame arrived.
    Eof,
    /// Reading failed.
    Gone(String),
    /// The peer broke the protocol or the size limit: close with this code and reason.
    Violation(u16, String),
}

/// Reads whole frames from one side, for the first messages of a session; whatever it read
/// past the last frame stays in `buf` for the relay.
#[derive(Debug)]
pub(crate) struct FrameReader<R> {
    pub io: R,
    pub buf: BytesMut,
    /// Client frames must be masked, server frames must not.
    expect_masked: bool,
    max_frame: u64,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R, prefix: &[u8], expect_masked: bool, max_frame: usize) -> Self {
        let mut buf = BytesMut::with_capacity(READ_CHUNK.max(prefix.len()));
        buf.extend_from_slice(prefix);
        Self {
            io,
            buf,
            expect_masked,
            max_frame: max_frame as u64,
        }
    }

    /// The next whole frame. Cancel-safe: bytes are only taken out of `buf` when a whole frame
    /// is returned.
    pub async fn next_frame(&mut self) -> Read {
        loop {
            match parse_header(&self.buf) {
                Err(e) => return Read::Violation(CLOSE_PROTOCOL, e.to_owned()),
                Ok(Some(h)) => {
                    if h.mask.is_some() != self.expect_masked {
                        let why = if self.expect_masked {
                            "client frames must be masked"
                        } else {
                            "server frames must not be masked"
                        };
                        return Read::Violation(CLOSE_PROTOCOL, why.to_owned());
                    }
                    if h.len > self.max_frame {
                        return Read::Violation(
                            fv_protocol::close::TOO_BIG,
                            format!("frame exceeds limit of {} bytes", self.max_frame),
                        );
                    }
                    // `len` fits: it is at most `max_frame`, a usize.
                    let total = h.header_len + h.len as usize;
                    if self.buf.len() >= total {
                        let raw = self.buf.split_to(total).freeze();
                        let mut payload = raw.slice(h.header_len..);
                        if let Some(m) = h.mask {
                            let mut p = payload.to_vec();
                            apply_mask(&mut p, m, 0);
                            payload = Bytes::from(p);
                        }
                        return Read::Frame {
                            header: h,
                            raw,
                            payload,
                        };
                    }
                    self.buf.reserve(total - self.buf.len());
                }
                Ok(None) => {}
            }
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(READ_CHUNK);
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) => return Read::Eof,
                Ok(_) => {}
                Err(e) => return Read::Gone(e.to_string()),
            }
        }
    }
}

/// Follows the frame structure of one direction of the relay: where frames start and end,
/// which close frame passed, how large the current message is.
#[derive(Debug)]
pub(crate) struct Walker {
    expect_masked: bool,
    max_message: u64,
    /// Payload bytes of the current frame not walked yet.
    remaining: u64,
    current: Option<Header>,
    /// Payload bytes of the current frame walked so far.
    offset: u64,
    /// Payload of the close frame being walked.
    close_payload: Option<Vec<u8>>,
    message_bytes: u64,
    /// The close frame that passed in this direction (`Some(None)`: one without a code).
    pub closed: Option<Option<(u16, String)>>,
    /// Whole data messages walked.
    pub messages: u64,
}

/// A frame the walker refused: close both sides with this code and reason.
pub(crate) type Violation = (u16, String);

impl Walker {
    pub fn new(expect_masked: bool, max_message: usize) -> Self {
        Self {
            expect_masked,
            max_message: max_message as u64,
            remaining: 0,
            current: None,
            offset: 0,
            close_payload: None,
            message_bytes: 0,
            closed: None,
            messages: 0,
        }
    }

    /// True between frames.
    pub fn at_boundary(&self) -> bool {
        self.remaining == 0
    }

    /// Walks `data` and returns how many of its bytes may be forwarded now: everything up to
    /// an incomplete header (kept for the next read) or up to a frame that breaks a rule
    /// (returned as the violation; that frame is never forwarded).
    pub fn walk(&mut self, data: &[u8]) -> (usize, Option<Violation>) {
        let mut pos = 0;
        loop {
            if self.remaining > 0 {
                let avail = data.len() - pos;
                let take = usize::try_from(self.remaining).map_or(avail, |r| r.min(avail));
                if let (Some(close), Some(h)) = (&mut self.close_payload, self.current) {
                    let mut chunk = data[pos..pos + take].to_vec();
                    if let Some(m) = h.mask {
                        apply_mask(&mut chunk, m, self.offset as usize);
                    }
                    close.extend_from_slice(&chunk);
                }
                pos += take;
                self.remaining -= take as u64;
                self.offset += take as u64;
                if self.remaining == 0 {
                    self.end_frame();
                }
                if pos == data.len() {
                    return (pos, None);
                }
                continue;
            }
            let Some(rest) = data.get(pos..).filter(|r| !r.is_empty()) else {
                return (pos, None);
            };
            let h = match parse_header(rest) {
                Err(e) => return (pos, Some((CLOSE_PROTOCOL, e.to_owned()))),
                Ok(None) => return (pos, None),
                Ok(Some(h)) => h,
            };
            if h.mask.is_some() != self.expect_masked {
                let why = if self.expect_masked {
                    "client frames must be masked"
                } else {
                    "server frames must not be masked"
                };
                return (pos, Some((CLOSE_PROTOCOL, why.to_owned())));
            }
            if h.is_data() {
                if h.opcode != OP_CONTINUATION {
                    self.message_bytes = 0;
                }
                self.message_bytes = self.message_bytes.saturating_add(h.len);
                if self.message_bytes > self.max_message {
                    return (
                        pos,
                        Some((
                            fv_protocol::close::TOO_BIG,
                            format!("frame exceeds limit of {} bytes", self.max_message),
                        )),
                    );
                }
                if h.fin {
                    self.messages += 1;
                }
            }
            pos += h.header_len;
            self.current = Some(h);
            self.remaining = h.len;
            self.offset = 0;
            if h.opcode == OP_CLOSE {
                self.close_payload = Some(Vec::with_capacity(h.len as usize));
            }
            if h.len == 0 {
                self.end_frame();
            }
        }
    }

    fn end_frame(&mut self) {
        if let Some(payload) = self.close_payload.take() {
            self.closed = Some(parse_close(&payload));
        }
        self.current = None;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_parser() {
        for len in [0usize, 5, 125, 126, 65_535, 65_536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for mask in [None, Some([1, 2, 3, 4])] {
                let f = frame(OP_BINARY, &payload, mask);
                let h = parse_header(&f).unwrap().unwrap();
                assert_eq!(
                    (h.fin, h.opcode, h.len, h.mask),
                    (true, OP_BINARY, len as u64, mask)
                );
                let mut body = f[h.header_len..].to_vec();
                if let Some(m) = mask {
                    apply_mask(&mut body, m, 0);
                }
                assert_eq!(body, payload);
                // Every strict prefix of the header asks for more bytes.
                for cut in 0..h.header_len {
                    assert_eq!(parse_header(&f[..cut]).unwrap(), None);
                }
            }
        }
    }

    #[test]
    fn frames_match_the_rfc_6455_examples() {
        // RFC 6455 §5.7: a single-frame unmasked and masked text message "Hello".
        assert_eq!(
            frame(OP_TEXT, b"Hello", None),
            [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        assert_eq!(
            frame(OP_TEXT, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d])),
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
        // 256 bytes binary: 16-bit length form.
        assert_eq!(
            frame(OP_BINARY, &[0; 256], None)[..4],
            [0x82, 0x7E, 0x01, 0x00]
        );
        assert_eq!(
            close_frame(Some((1000, "ok")), None),
            [0x88, 0x04, 0x03, 0xe8, b'o', b'k']
        );
        assert_eq!(close_frame(None, None), [0x88, 0x00]);
    }

    #[test]
    fn bad_headers_are_violations() {
        assert!(parse_header(&[0x80 | 0x40 | 0x1, 0]).is_err(), "RSV1");
        assert!(parse_header(&[0x83, 0]).is_err(), "opcode 3");
        assert!(parse_header(&[0x9, 0]).is_err(), "fragmented ping");
        assert!(
            parse_header(&[0x80 | 0x8, 126, 0, 126]).is_err(),
            "long close"
        );
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(parse_header(&huge).is_err());
    }

    #[test]
    fn close_frames_carry_code_and_cut_reason() {
        let f = close_frame(Some((1001, "server_shutdown")), None);
        let h = parse_header(&f).unwrap().unwrap();
        assert_eq!(
            parse_close(&f[h.header_len..]),
            Some((1001, "server_shutdown".to_owned()))
        );
        let long = "é".repeat(100);
        let f = close_frame(Some((4000, &long)), Some(new_mask()));
        let h = parse_header(&f).unwrap().unwrap();
        assert!(h.len <= 125);
        assert_eq!(parse_close(&[]), None);
    }

    #[test]
    fn walker_tracks_frames_split_anywhere() {
        let mut stream = Vec::new();
        stream.extend(frame(OP_TEXT, b"hello", Some([9, 8, 7, 6])));
        stream.extend(frame(OP_BINARY, &[7; 300], Some([1, 1, 1, 1])));
        stream.extend(close_frame(Some((4001, "bye")), Some([5, 6, 7, 8])));
        for split in 0..stream.len() {
            let mut w = Walker::new(true, 1 << 20);
            let mut buf = stream[..split].to_vec();
            let (n, v) = w.walk(&buf);
            assert!(v.is_none());
            buf.drain(..n);
            buf.extend_from_slice(&stream[split..]);
            let (n, v) = w.walk(&buf);
            assert!(v.is_none());
            assert_eq!(n, buf.len(), "split at {split}");
            assert_eq!(w.messages, 2);
            assert_eq!(w.closed, Some(Some((4001, "bye".to_owned()))));
            assert!(w.at_boundary());
        }
    }

    #[test]
    fn walker_stops_before_a_bad_frame() {
        let mut stream = frame(OP_TEXT, b"ok", Some([1, 2, 3, 4]));
        let good = stream.len();
        stream.extend(frame(OP_BINARY, &[0; 2000], Some([1, 2, 3, 4])));
        let mut w = Walker::new(true, 1000);
        let (n, v) = w.walk(&stream);
        assert_eq!(n, good);
        assert_eq!(v.unwrap().0, 1009);
        let mut w = Walker::new(true, 1000);
        let (n, v) = w.walk(&frame(OP_TEXT, b"x", None));
        assert_eq!((n, v.unwrap().0), (0, 1002), "unmasked client frame");
    }
}
