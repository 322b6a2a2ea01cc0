//! One routed session: read the client's first message, pick a replica, connect (failing over
//! while the client has seen nothing), then relay both ways until both sides are done.
//!
//! Frames are relayed as they are on the wire ([`crate::ws`]): text stays text, binary stays
//! binary, payloads and close codes and reasons pass unchanged in both directions, pings and
//! pongs go end to end. Everything up to the replica's first frame runs on the async runtime;
//! the relay itself then runs on threads ([`crate::relay`]). The router only writes frames
//! itself before a replica is chosen
//! (pong, timeout, refusal), when a replica disappears mid-session (`error{worker_failed}` and
//! close 1011), when a peer breaks a limit, and at the end of the shutdown grace period
//! (close 1001); it writes them only between frames.

use crate::app::App;
use crate::error::RouterError;
use crate::relay::{self, Dir, End, Event};
use crate::ws::{self, FrameReader, Read, Walker};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use fv_protocol::{ServerMessage, close};
use hyper_util::rt::TokioIo;
use metrics::Counter;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};
use tracing::Instrument;

type ClientRead = OwnedReadHalf;
type ClientWrite = OwnedWriteHalf;

/// Client bytes kept for a retry on another replica, at most this many; past it the session
/// can no longer move and a refusal from the replica is passed through instead.
pub const MAX_REPLAY_BYTES: usize = 1024 * 1024;
/// How long the router waits for the peer's side of a close (its close frame or end of
/// stream) after the session ended; the connection is dropped after that.
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Largest HTTP head read from a replica's handshake answer.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// A replica's first frame is checked for `error{session_rejected}` only up to this size.
const MAX_REJECTION_BYTES: u64 = 4096;

/// What the client's upgrade request carries on to the replica.
#[derive(Debug, Clone, Default)]
pub(crate) struct Forward {
    /// `?query` of the client's request (a `token=` for the replica's auth, for one).
    query: Option<String>,
    headers: Vec<(&'static str, HeaderValue)>,
}

impl Forward {
    fn new(headers: &HeaderMap, uri: &Uri, peer: Option<SocketAddr>) -> Self {
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
pub(crate) async fn upgrade(State(app): State<Arc<App>>, mut req: Request) -> Response {
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
    let forward = Forward::new(req.headers(), req.uri(), peer);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_app = app.clone();
    app.tracker.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => match split_upgraded(upgraded) {
                Some((r, w, prefix)) => session(task_app, r, w, prefix, peer, forward).await,
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

async fn session(
    app: Arc<App>,
    r: ClientRead,
    w: ClientWrite,
    prefix: Bytes,
    peer: Option<SocketAddr>,
    forward: Forward,
) {
    let id = app.session_ids.fetch_add(1, Ordering::Relaxed);
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    let span = tracing::info_span!(
        "bridge",
        session = id,
        peer,
        client_id = tracing::field::Empty,
        replica = tracing::field::Empty
    );
    run(&app, r, w, prefix, &forward).instrument(span).await;
}

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

async fn write_timed<W: AsyncWrite + Unpin + ?Sized>(
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
async fn await_close<R: AsyncRead + Unpin + ?Sized>(r: &mut R, buf: &mut BytesMut) {
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
async fn first_message(
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
    let mut started: Option<u8> = None;
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

/// One direction while the session is on the async runtime (client bytes that arrive while a
/// replica is being tried): bytes from `src` walked frame by frame and written to the other
/// side's writer, which is passed to [`Direction::pump`] because it changes with each replica
/// attempt. [`Direction::into_core`] hands the state to the relay threads.
struct Direction<R> {
    src: R,
    buf: BytesMut,
    walker: Walker,
    /// Bytes at the start of `buf` already walked but not yet written.
    pending: usize,
    violation: Option<ws::Violation>,
    /// Client bytes written to the replica so far, for a retry; `None` once over the limit.
    record: Option<BytesMut>,
    bytes: Counter,
    messages: Counter,
    counted: u64,
    /// [`End::Closed`] was returned for this direction's close frame.
    close_reported: bool,
}

impl<R: AsyncRead + Unpin> Direction<R> {
    fn new(src: R, buf: BytesMut, walker: Walker, bytes: Counter, messages: Counter) -> Self {
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
    fn into_core(self) -> (R, relay::Core) {
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
    async fn pump<W: AsyncWrite + Unpin + ?Sized>(&mut self, dst: &mut W, send: Duration) -> End {
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
    async fn first_frame(&mut self) -> Result<Option<ws::Header>, End> {
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
fn is_session_rejected(h: &ws::Header, buf: &[u8]) -> bool {
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

/// How the wait for a replica's first frame ended.
enum Attempt {
    /// The replica refused the session for lack of room; try another.
    Rejected,
    /// The replica failed before saying anything; try another.
    Failed(String),
    /// Committed to this replica, with what already happened to the session meanwhile.
    Committed(Vec<Event>),
}

async fn run(app: &Arc<App>, r: ClientRead, mut cw: ClientWrite, prefix: Bytes, forward: &Forward) {
    let max = app.config.max_message_bytes;
    let send = app.config.send_timeout();
    let mut client = FrameReader::new(r, &prefix, true, max);
    let Some((first, key)) = first_message(app, &mut client, &mut cw).await else {
        return;
    };
    if let Some(k) = &key {
        tracing::Span::current().record("client_id", k.as_str());
    }
    // Right after startup nothing has been probed yet; wait for the first round instead of
    // refusing (upstream refused until then).
    let probe_wait = app.config.health_check.timeout() + Duration::from_secs(1);
    app.registry.first_round(probe_wait).await;

    let FrameReader { io, buf, .. } = client;
    // Counters are set per replica attempt below.
    let mut up = Direction::new(
        io,
        buf,
        Walker::new(true, max),
        Counter::noop(),
        Counter::noop(),
    );
    // Everything the replica must see, from the first message on.
    up.record = Some(first);
    let mut excluded: Vec<usize> = Vec::new();
    let mut last_error: Option<RouterError> = None;
    let attempts = app.config.connect_attempts as usize;
    let committed = loop {
        if excluded.len() >= attempts {
            break None;
        }
        let Some(slot) = app.registry.acquire(key.as_deref(), &excluded) else {
            break None;
        };
        let idx = slot.index();
        let Some(replica) = slot.replica() else {
            break None;
        };
        let label = replica.label.clone();
        let metrics = replica.metrics.clone();
        tracing::Span::current().record("replica", label.as_str());
        excluded.push(idx);
        let (rr, mut rw, rest) = match connect(app, idx, forward).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(replica = %label, error = %e, "connect failed");
                match &e {
                    RouterError::Connect { reason, .. } => {
                        app.registry.record_connect_failure(idx, reason);
                    }
                    RouterError::UpgradeRefused { status: 503, .. } => app.registry.mark_full(idx),
                    _ => {}
                }
                app.registry.metrics.failover(&label, "connect");
                let go_on = e.try_next_replica();
                last_error = Some(e);
                if go_on {
                    continue;
                }
                break None;
            }
        };
        // Replay what the client sent so far, walked like any relayed bytes.
        let Some(record) = up.record.clone() else {
            break None;
        };
        up.walker = Walker::new(true, max);
        up.pending = 0;
        up.violation = None;
        up.bytes = metrics.bytes_to_replica.clone();
        up.messages = metrics.messages_to_replica.clone();
        up.counted = 0;
        let _ = up.walker.walk(&record);
        up.messages.increment(up.walker.messages);
        up.counted = up.walker.messages;
        let mut down = Direction::new(
            rr,
            rest,
            Walker::new(false, max),
            metrics.bytes_to_client.clone(),
            metrics.messages_to_client.clone(),
        );
        let attempt = match write_timed(&mut rw, &record, send).await {
            Err(e) => Attempt::Failed(format!("sending the first message: {e}")),
            Ok(()) => {
                up.bytes.increment(record.len() as u64);
                let can_retry = excluded.len() < attempts && app.registry.has_candidate(&excluded);
                wait_first(app, &mut up, &mut down, &mut rw, can_retry).await
            }
        };
        match attempt {
            Attempt::Rejected => {
                tracing::info!(replica = %label, "replica is full; trying another");
                app.registry.mark_full(idx);
                app.registry.metrics.failover(&label, "session_rejected");
            }
            Attempt::Failed(reason) => {
                tracing::warn!(replica = %label, %reason, "replica failed before its first message");
                app.registry.record_connect_failure(idx, &reason);
                app.registry.metrics.failover(&label, "connect");
                last_error = Some(RouterError::Connect {
                    replica: label,
                    reason,
                });
            }
            Attempt::Committed(early) => break Some((slot, down, rw, early)),
        }
        if up.record.is_none() {
            // Client bytes were forwarded past the replay limit: another replica would see
            // only part of what the client sent.
            break None;
        }
    };
    let Some((mut slot, down, rw, early)) = committed else {
        let err = match last_error {
            Some(e) => RouterError::BridgeFailed(Box::new(e)),
            None => RouterError::NoHealthyReplica,
        };
        let reason = if matches!(err, RouterError::NoHealthyReplica) {
            "no_healthy_replica"
        } else {
            "bridge_failed"
        };
        tracing::warn!(error = %err, "session refused");
        app.registry.metrics.rejected(reason);
        fail_client(&mut cw, &err, send).await;
        await_close(&mut up.src, &mut up.buf).await;
        return;
    };
    slot.commit(key.as_deref());
    up.record = None;
    tracing::debug!("bridged");
    let (client_r, up_core) = up.into_core();
    let (replica_r, down_core) = down.into_core();
    let streams = client_r
        .reunite(cw)
        .and_then(|c| Ok((c, replica_r.reunite(rw)?)))
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|(c, r)| Ok((c.into_std()?, r.into_std()?)));
    let (client, replica) = match streams {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot hand the session to the relay");
            return;
        }
    };
    let started = relay::start(relay::Session {
        client,
        replica,
        up: up_core,
        down: down_core,
        early,
        send_timeout: send,
        close_wait: CLOSE_WAIT,
    });
    let (events, mut done) = match started {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the relay threads");
            return;
        }
    };
    tokio::select! {
        _ = &mut done => {}
        () = app.hard_stop.cancelled() => {
            let _ = events.send(Event::Shutdown);
            let _ = done.await;
        }
    }
    drop(slot);
}

/// Relays client frames to a freshly connected replica until the replica's first frame
/// arrives, which decides whether the session stays.
async fn wait_first(
    app: &App,
    up: &mut Direction<ClientRead>,
    down: &mut Direction<OwnedReadHalf>,
    rw: &mut OwnedWriteHalf,
    can_retry: bool,
) -> Attempt {
    let send = app.config.send_timeout();
    let first = tokio::select! {
        () = app.hard_stop.cancelled() => return Attempt::Committed(vec![Event::Shutdown]),
        e = up.pump(rw, send) => {
            return match e {
                End::SendFailed(reason) => Attempt::Failed(reason),
                // The client's close went to the replica; the relay carries the answer.
                End::Closed => Attempt::Committed(vec![Event::Closed(Dir::Up)]),
                other => Attempt::Committed(vec![Event::Ended(Dir::Up, other)]),
            };
        }
        f = down.first_frame() => f,
    };
    match first {
        Ok(Some(h)) if can_retry && up.record.is_some() && is_session_rejected(&h, &down.buf) => {
            Attempt::Rejected
        }
        Ok(_) => Attempt::Committed(Vec::new()),
        Err(End::Eof) => Attempt::Failed("connection closed before the first message".into()),
        Err(End::Gone(reason)) => Attempt::Failed(reason),
        Err(other) => Attempt::Committed(vec![Event::Ended(Dir::Down, other)]),
    }
}

/// TCP connect and WebSocket handshake to replica `idx` for `/v1/stream`. Returns the halves
/// and whatever the replica sent right after its `101`.
async fn connect(
    app: &App,
    idx: usize,
    forward: &Forward,
) -> Result<(OwnedReadHalf, OwnedWriteHalf, BytesMut), RouterError> {
    let Some(replica) = app.registry.replicas.get(idx) else {
        return Err(RouterError::NoHealthyReplica);
    };
    let label = replica.label.clone();
    let fail = |reason: String| RouterError::Connect {
        replica: label.clone(),
        reason,
    };
    let limit = app.config.connect_timeout();
    let attempt = async {
        let mut tcp = TcpStream::connect((replica.url.host(), replica.url.port()))
            .await
            .map_err(|e| fail(format!("TCP connect: {e}")))?;
        // Control frames are small and latency-bound.
        let _ = tcp.set_nodelay(true);
        let key = generate_key();
        let mut request = format!(
            "GET /v1/stream{}{} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n",
            if forward.query.is_some() { "?" } else { "" },
            forward.query.as_deref().unwrap_or_default(),
            replica.url.authority()
        );
        for (name, value) in &forward.headers {
            // HeaderValue never holds CR or LF, so it cannot break the request apart.
            if let Ok(v) = value.to_str() {
                request.push_str(&format!("{name}: {v}\r\n"));
            }
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|e| fail(format!("sending the upgrade: {e}")))?;
        let (head, rest) = ws::read_head(&mut tcp, MAX_HEAD_BYTES)
            .await
            .map_err(|e| fail(format!("reading the upgrade answer: {e}")))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| fail("malformed upgrade answer".into()))?;
        if status != 101 {
            return Err(RouterError::UpgradeRefused {
                replica: label.clone(),
                status,
            });
        }
        if ws::head_header(&head, "sec-websocket-accept")
            != Some(derive_accept_key(key.as_bytes()).as_str())
        {
            return Err(fail(
                "wrong Sec-WebSocket-Accept in the upgrade answer".into(),
            ));
        }
        if ws::head_header(&head, "sec-websocket-extensions").is_some() {
            return Err(fail(
                "the replica enabled an extension the router did not offer".into(),
            ));
        }
        let (r, w) = tcp.into_split();
        Ok((r, w, rest))
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(r) => r,
        Err(_) => Err(fail(format!("timed out after {limit:?}"))),
    }
}

/// Sends the client the wire form of `err` (`error{...}` then a close frame).
async fn fail_client<W: AsyncWrite + Unpin + ?Sized>(
    cw: &mut W,
    err: &RouterError,
    send: Duration,
) {
    let wire = err.to_wire();
    let msg = ServerMessage::error(wire.code, wire.message, wire.retryable);
    let mut frames = ws::frame(ws::OP_TEXT, msg.to_json().as_bytes(), None);
    frames.extend(ws::close_frame(
        Some((wire.close_code, wire.close_reason)),
        None,
    ));
    let _ = write_timed(cw, &frames, send).await;
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
