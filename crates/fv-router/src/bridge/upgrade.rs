//! The client side of a session's start: `GET /v1/stream` (or `GET /ws`, the Dreamverse
//! product protocol, forwarded the same way to the same path) is checked, answered with
//! `101`, and the upgraded connection handed to the bridge with what the replica must also
//! see.

use super::{ClientRead, ClientWrite};
use crate::app::App;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// What the client's upgrade request carries on to the replica.
#[derive(Debug, Clone, Default)]
pub(crate) struct Forward {
    /// The path the client asked for (`/v1/stream` or `/ws`); the replica gets the same.
    pub(super) path: &'static str,
    /// `?query` of the client's request (a `token=` for the replica's auth, for one).
    pub(super) query: Option<String>,
    pub(super) headers: Vec<(&'static str, HeaderValue)>,
}

impl Forward {
    fn new(path: &'static str, headers: &HeaderMap, uri: &Uri, peer: Option<SocketAddr>) -> Self {
        let mut out = Vec::new();
        for (name, key) in [
            (header::AUTHORIZATION, "Authorization"),
            (header::ORIGIN, "Origin"),
            (header::USER_AGENT, "User-Agent"),
        ] {
            if let Some(v) = headers.get(name) {
                out.push((key, v.clone()));
            }
        }
        let prior = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        let xff = match (prior, peer) {
            (Some(p), Some(peer)) => Some(format!("{p}, {}", peer.ip())),
            (None, Some(peer)) => Some(peer.ip().to_string()),
            (Some(p), None) => Some(p.to_owned()),
            (None, None) => None,
        };
        if let Some(v) = xff.and_then(|x| HeaderValue::from_str(&x).ok()) {
            out.push(("X-Forwarded-For", v));
        }
        Self {
            path,
            query: uri.query().map(str::to_owned),
            headers: out,
        }
    }
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// `GET /v1/stream`: refuse while draining, check the upgrade, answer 101 and bridge.
pub(crate) async fn upgrade(State(app): State<Arc<App>>, req: Request) -> Response {
    upgrade_to("/v1/stream", app, req).await
}

/// `GET /ws` (the Dreamverse product protocol): as `/v1/stream`, bridged to the replica's
/// `/ws`.
pub(crate) async fn upgrade_product(State(app): State<Arc<App>>, req: Request) -> Response {
    upgrade_to("/ws", app, req).await
}

async fn upgrade_to(path: &'static str, app: Arc<App>, mut req: Request) -> Response {
    if app.is_draining() {
        app.registry.metrics.rejected("draining");
        return (StatusCode::SERVICE_UNAVAILABLE, "router is draining").into_response();
    }
    if app.tracker.len() >= app.config.max_sessions {
        app.registry.metrics.rejected("session_limit");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "router is at its session limit",
        )
            .into_response();
    }
    let headers = req.headers();
    if req.method() != Method::GET
        || !has_token(headers, header::UPGRADE, "websocket")
        || !has_token(headers, header::CONNECTION, "upgrade")
    {
        return (StatusCode::BAD_REQUEST, "expected a WebSocket upgrade").into_response();
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return (
            StatusCode::UPGRADE_REQUIRED,
            [(header::SEC_WEBSOCKET_VERSION, "13")],
            "WebSocket version 13 required",
        )
            .into_response();
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return (StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key").into_response();
    };
    let accept = derive_accept_key(key.as_bytes());
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let forward = Forward::new(path, req.headers(), req.uri(), peer);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_app = app.clone();
    app.tracker.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => match split_upgraded(upgraded) {
                Some((r, w, prefix)) => super::session(task_app, r, w, prefix, peer, forward).await,
                None => tracing::error!("upgraded connection is not a TCP stream; dropped"),
            },
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::UPGRADE, HeaderValue::from_static("websocket")),
            (header::CONNECTION, HeaderValue::from_static("Upgrade")),
            (
                header::SEC_WEBSOCKET_ACCEPT,
                HeaderValue::from_str(&accept).unwrap_or(HeaderValue::from_static("")),
            ),
        ],
    )
        .into_response()
}

/// The upgraded connection as read and write halves, plus bytes hyper read past the request.
/// `Router::serve` accepts plain TCP, so it is always a `TcpStream` under hyper's wrapper.
fn split_upgraded(upgraded: hyper::upgrade::Upgraded) -> Option<(ClientRead, ClientWrite, Bytes)> {
    let parts = upgraded.downcast::<TokioIo<TcpStream>>().ok()?;
    let (r, w) = parts.io.into_inner().into_split();
    Some((r, w, parts.read_buf))
}
