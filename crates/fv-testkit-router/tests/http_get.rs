//! `http_get` against a real socket on port 0 that answers with canned bytes.

use fv_testkit_router::http_get;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Answers one connection with `answer` once its request head has arrived.
async fn serve_once(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).await.unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let _ = s.write_all(answer).await;
        let _ = s.shutdown().await;
    });
    addr
}

#[tokio::test]
async fn reads_content_length_and_chunked_bodies() {
    let addr =
        serve_once(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\ndown").await;
    assert_eq!(
        http_get(addr, "/readyz").await.expect("get"),
        (503, "down".to_owned())
    );
    let addr = serve_once(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(
        http_get(addr, "/status").await.expect("get"),
        (200, "hello world".to_owned())
    );
}

#[tokio::test]
async fn malformed_answers_are_errors() {
    let addr = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n\xff\xfe").await;
    let e = http_get(addr, "/").await.expect_err("non-UTF-8 body");
    assert!(e.to_string().contains("non-UTF-8"), "{e:#}");
    let addr = serve_once(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
    assert!(http_get(addr, "/").await.is_err());
}
