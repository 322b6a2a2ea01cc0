//! A minimal HTTP/1.1 `GET` for health and status probes.
//!
//! Probes need a status code and, for `/status`, a small JSON body from a replica on a private
//! network. A full HTTP client would add a dependency tree for that; this sends one request with
//! `Connection: close` and reads the answer to EOF, bounded in size and time.

use crate::config::ReplicaUrl;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response (head and body) a probe reads; a replica's `/status` is a few KiB.
pub const MAX_PROBE_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// What a probe got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// Request sent to last byte read.
    pub latency: Duration,
}

/// Why a probe failed (for logs and `/status`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProbeError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("I/O error: {0}")]
    Io(String),
    #[error("malformed HTTP response: {0}")]
    Malformed(&'static str),
    #[error("response over {MAX_PROBE_RESPONSE_BYTES} bytes")]
    TooLarge,
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
    let started = Instant::now();
    let mut stream = TcpStream::connect((url.host(), url.port()))
        .await
        .map_err(|e| ProbeError::Connect(e.to_string()))?;
    // One small request: without this Nagle can hold it back behind nothing.
    let _ = stream.set_nodelay(true);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: fv-router\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.authority()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| ProbeError::Io(e.to_string()))?;
    let mut raw = Vec::new();
    let mut limited = (&mut stream).take(MAX_PROBE_RESPONSE_BYTES as u64 + 1);
    limited
        .read_to_end(&mut raw)
        .await
        .map_err(|e| ProbeError::Io(e.to_string()))?;
    if raw.len() > MAX_PROBE_RESPONSE_BYTES {
        return Err(ProbeError::TooLarge);
    }
    let latency = started.elapsed();
    let (status, body) = parse_response(&raw)?;
    Ok(Response {
        status,
        body,
        latency,
    })
}

/// Splits a whole `Connection: close` response into status and (de-chunked) body.
pub(crate) fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), ProbeError> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(ProbeError::Malformed("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..head_end])
        .map_err(|_| ProbeError::Malformed("non-UTF-8 head"))?;
    let body = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(ProbeError::Malformed("not an HTTP/1.x status line"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or(ProbeError::Malformed("bad status code"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = length {
        body.get(..n)
            .ok_or(ProbeError::Malformed("body shorter than content-length"))?
            .to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, ProbeError> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(ProbeError::Malformed("bad chunk header"))?;
        let size_text = std::str::from_utf8(&body[..line_end])
            .map_err(|_| ProbeError::Malformed("bad chunk header"))?;
        // Chunk extensions (`;name=value`) are allowed and ignored.
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ProbeError::Malformed("bad chunk size"))?;
        let rest = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest
            .get(..size)
            .ok_or(ProbeError::Malformed("short chunk"))?;
        out.extend_from_slice(chunk);
        body = rest
            .get(size + 2..)
            .ok_or(ProbeError::Malformed("missing chunk end"))?;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhiXX";
        assert_eq!(parse_response(plain).unwrap(), (200, b"hi".to_vec()));
        let chunked =
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (503, b"abcde".to_vec()));
        let to_eof = b"HTTP/1.0 302 Found\r\n\r\nbody";
        assert_eq!(parse_response(to_eof).unwrap(), (302, b"body".to_vec()));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert!(
                parse_response(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
