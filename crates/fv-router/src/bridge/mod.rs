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

mod direction;
mod first;
mod upgrade;

pub(crate) use upgrade::{upgrade, upgrade_product};

use crate::app::App;
use crate::client::{self, UpgradeError};
use crate::error::RouterError;
use crate::relay::{self, Dir, End, Event};
use crate::ws::{self, FrameReader, Walker};
use bytes::{Bytes, BytesMut};
use direction::{Direction, is_session_rejected};
use first::{await_close, first_message, write_timed};
use fv_protocol::ServerMessage;
use metrics::Counter;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tracing::Instrument;
use upgrade::Forward;

type ClientRead = OwnedReadHalf;
type ClientWrite = OwnedWriteHalf;

/// Client bytes kept for a retry on another replica, at most this many; past it the session
/// can no longer move and a refusal from the replica is passed through instead.
pub const MAX_REPLAY_BYTES: usize = 1024 * 1024;
/// How long the router waits for the peer's side of a close (its close frame or end of
/// stream) after the session ended; the connection is dropped after that.
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);

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

/// TCP connect and WebSocket handshake to replica `idx` for the client's path, through the router's
/// HTTP client ([`crate::client::upgrade`]). Returns the halves and whatever the replica sent
/// right after its `101`.
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
    let target = match &forward.query {
        Some(q) => format!("{}?{q}", forward.path),
        None => forward.path.to_owned(),
    };
    let attempt = client::upgrade(&replica.url, &target, &forward.headers);
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok((tcp, rest))) => {
            let (r, w) = tcp.into_split();
            Ok((r, w, BytesMut::from(rest)))
        }
        Ok(Err(UpgradeError::Refused(status))) => Err(RouterError::UpgradeRefused {
            replica: label.clone(),
            status,
        }),
        Ok(Err(UpgradeError::Failed(reason))) => Err(fail(reason)),
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
