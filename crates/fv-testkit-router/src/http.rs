//! [`http_get`] / [`http_post`]: one request through hyper's client, for tests and benches.

use crate::RECV_TIMEOUT;
use anyhow::{Context, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper::header;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// `GET path` on `addr` over a fresh connection: status and body (which must be UTF-8), all
/// within [`RECV_TIMEOUT`].
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    tokio::time::timeout(RECV_TIMEOUT, get(addr, path))
        .await
        .map_err(|_| anyhow!("GET {path} on {addr}: no response within {RECV_TIMEOUT:?}"))?
}

/// `POST path` with a JSON `body` and optional extra headers (e.g. `Authorization`): status
/// and body, within [`RECV_TIMEOUT`].
pub async fn http_post(
    addr: SocketAddr,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, String)> {
    let mut request = Request::post(path)
        .header(header::HOST, addr.to_string())
        .header(header::CONNECTION, "close")
        .header(header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body.to_owned())))?;
    tokio::time::timeout(RECV_TIMEOUT, send(addr, path, request))
        .await
        .map_err(|_| anyhow!("POST {path} on {addr}: no response within {RECV_TIMEOUT:?}"))?
}

async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let request = Request::get(path)
        .header(header::HOST, addr.to_string())
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())?;
    send(addr, path, request).await
}

async fn send<B>(addr: SocketAddr, path: &str, request: Request<B>) -> anyhow::Result<(u16, String)>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let exchange = async move {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    // The connection is driven beside the exchange and ends once the exchange is over.
    let (result, _) = tokio::join!(exchange, conn);
    let (status, body) = result.with_context(|| format!("request to {path} on {addr}"))?;
    let body = String::from_utf8(body.to_vec()).context("non-UTF-8 HTTP body")?;
    Ok((status, body))
}
