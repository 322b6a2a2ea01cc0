//! The client against real sockets on port 0 that answer with canned bytes, so every framing
//! a replica might use (content-length, chunked, read to EOF, garbage) is exercised.

#![allow(clippy::unwrap_used)]

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves one connection: reads the request head, hands it to `answer`, writes what it returns
/// and closes. Returns the replica url and a handle with the request head.
async fn serve_once(
    answer: impl FnOnce(&str) -> Vec<u8> + Send + 'static,
) -> (ReplicaUrl, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = ReplicaUrl::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let _ = s.write_all(&answer(&head)).await;
        let _ = s.shutdown().await;
        // Hold the socket until the client is done with it.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        head
    });
    (url, task)
}

fn canned(bytes: &'static [u8]) -> impl FnOnce(&str) -> Vec<u8> + Send + 'static {
    move |_| bytes.to_vec()
}

const LIMIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn get_reads_plain_chunked_and_to_eof_bodies() {
    let (url, head) = serve_once(canned(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi",
    ))
    .await;
    let r = get(&url, "/health", LIMIT).await.unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"hi"[..]));
    let head = head.await.unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /health http/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("host: {}", url.authority())),
        "{head}"
    );
    assert!(head.contains("connection: close"), "{head}");

    let (url, _) = serve_once(canned(
        b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
    ))
    .await;
    let r = get(&url, "/status", LIMIT).await.unwrap();
    assert_eq!((r.status, &r.body[..]), (503, &b"abcde"[..]));

    let (url, _) = serve_once(canned(b"HTTP/1.0 302 Found\r\n\r\nbody")).await;
    let r = get(&url, "/", LIMIT).await.unwrap();
    assert_eq!((r.status, &r.body[..]), (302, &b"body"[..]));
}

#[tokio::test]
async fn get_refuses_garbage_short_bodies_and_oversized_bodies() {
    for bad in [
        &b"SSH-2.0-OpenSSH_9.6\r\n\r\n"[..],
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let (url, _) = serve_once(move |_| bad.to_vec()).await;
        let e = get(&url, "/health", LIMIT).await.unwrap_err();
        assert!(
            matches!(e, ProbeError::Http(_)),
            "{:?}: {e:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let (url, _) = serve_once(|_| {
        let n = MAX_PROBE_RESPONSE_BYTES + 1;
        let mut r = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n").into_bytes();
        r.resize(r.len() + n, b'x');
        r
    })
    .await;
    assert_eq!(
        get(&url, "/status", LIMIT).await.unwrap_err(),
        ProbeError::TooLarge
    );
    // A head past the limit is refused too.
    let (url, _) = serve_once(|_| {
        let mut r = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
        r.resize(r.len() + 2 * MAX_HEAD_BYTES, b'a');
        r.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
        r
    })
    .await;
    assert!(matches!(
        get(&url, "/status", LIMIT).await.unwrap_err(),
        ProbeError::Http(_)
    ));
}

#[tokio::test]
async fn get_times_out_on_silence_and_reports_refused_connects() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = ReplicaUrl::parse(&format!("http://{}", silent.local_addr().unwrap())).unwrap();
    let limit = Duration::from_millis(100);
    assert_eq!(
        get(&url, "/health", limit).await.unwrap_err(),
        ProbeError::Timeout(limit)
    );
    drop(silent);
    // The port was just released; nothing listens there now.
    assert!(matches!(
        get(&url, "/health", LIMIT).await.unwrap_err(),
        ProbeError::Connect(_)
    ));
}

fn header_value<'a>(head: &'a str, name: &str) -> &'a str {
    head.split("\r\n")
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap()
}

fn switching(head: &str, extra: &str) -> Vec<u8> {
    let accept = derive_accept_key(header_value(head, "sec-websocket-key").as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn upgrade_hands_back_the_stream_and_the_bytes_past_the_101() {
    let (url, head) = serve_once(|head| {
        let mut r = switching(head, "");
        // The replica's first frame, in the same write as its answer.
        r.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
        r
    })
    .await;
    let extra = [("Origin", HeaderValue::from_static("http://app.example"))];
    let (mut tcp, rest) = upgrade(&url, "/v1/stream?token=t", &extra).await.unwrap();
    let mut got = rest.to_vec();
    // hyper may or may not have read the frame already; what it did not read is on the socket.
    while got.len() < 4 {
        let mut b = [0u8; 16];
        let n = tcp.read(&mut b).await.unwrap();
        assert!(n > 0, "the stream ended early");
        got.extend_from_slice(&b[..n]);
    }
    assert_eq!(got, [0x81, 0x02, b'h', b'i']);
    drop(tcp);
    let head = head.await.unwrap().to_ascii_lowercase();
    assert!(
        head.starts_with("get /v1/stream?token=t http/1.1\r\n"),
        "{head}"
    );
    for want in [
        "upgrade: websocket",
        "connection: upgrade",
        "sec-websocket-version: 13",
        "origin: http://app.example",
    ] {
        assert!(head.contains(want), "{want} missing in {head}");
    }
}

#[tokio::test]
async fn upgrade_refusals_and_bad_answers() {
    let (url, _) = serve_once(canned(
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
    ))
    .await;
    assert_eq!(
        upgrade(&url, "/v1/stream", &[]).await.unwrap_err(),
        UpgradeError::Refused(503)
    );
    let (url, _) = serve_once(|_| {
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bogus\r\n\r\n".to_vec()
    })
    .await;
    assert_eq!(
        upgrade(&url, "/v1/stream", &[]).await.unwrap_err(),
        UpgradeError::Failed("wrong Sec-WebSocket-Accept in the upgrade answer".into())
    );
    let (url, _) =
        serve_once(|head| switching(head, "Sec-WebSocket-Extensions: permessage-deflate\r\n"))
            .await;
    assert!(matches!(
        upgrade(&url, "/v1/stream", &[]).await.unwrap_err(),
        UpgradeError::Failed(m) if m.contains("extension")
    ));
    let (url, _) = serve_once(canned(b"not http at all\r\n\r\n")).await;
    assert!(matches!(
        upgrade(&url, "/v1/stream", &[]).await.unwrap_err(),
        UpgradeError::Failed(_)
    ));
}
