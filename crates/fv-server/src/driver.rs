//! One WebSocket = one session. The driver reads client frames, owns the session state, binds a
//! worker, runs segments (see `segment.rs`) and decides how the socket ends.
//!
//! Fixes over upstream (protocol-facts §18): every rejection is an error frame followed by a
//! close frame; non-JSON and binary frames are answered, not fatal; the idle reaper sends
//! `session_timeout`; the cap ends with `segment_cap` and close 1000; a client that leaves
//! cancels its segment at the generator's next step.

use crate::app::AppState;
use crate::error::Failure;
use crate::metrics as m;
use crate::outbox::Outbox;
use crate::segment::{SegmentJob, SegmentOutcome, SegmentPlan};
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use fv_core::GenerationRequest;
use fv_encoder::StreamEncoder;
use fv_pool::{Lease, QueuePosition};
use fv_protocol::{
    ClientMessage, SegmentPromptSource, ServerMessage, SessionInitV2, StreamCompleteReason, close,
};
use fv_session::{
    Expiry, PersistedImage, Session, SessionHandle, SessionLog, SessionState, Toggle,
};
use serde_json::json;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::Instrument;

/// Prompts a client may queue ahead of the running segment.
pub const MAX_PENDING_SEGMENTS: usize = 32;
/// Longest prompt (and negative prompt) accepted, in bytes.
pub const MAX_PROMPT_BYTES: usize = 16 * 1024;
/// Largest `num_inference_steps` a client may ask for.
pub const MAX_STEPS: u32 = 1000;
/// Largest `guidance_scale` a client may ask for.
pub const MAX_GUIDANCE: f64 = 100.0;
/// How long a new segment waits for the worker to finish a run that was cancelled (a failed
/// segment's generator stops at its next step).
const RUN_FREE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A validated `segment_prompt_source` waiting for its turn.
struct PendingSegment {
    prompt: String,
    negative_prompt: Option<String>,
    seed: i64,
    steps: u32,
    guidance: f64,
    received: Instant,
}

/// Starts a run, waiting (bounded) while the worker finishes a cancelled one.
async fn run_when_free(
    lease: &mut Lease,
    request: GenerationRequest,
) -> Result<fv_pool::RunHandle, Failure> {
    let deadline = tokio::time::Instant::now() + RUN_FREE_WAIT;
    loop {
        match lease.run(request.clone()) {
            Err(fv_pool::PoolError::RunInProgress { .. })
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            other => return other.map_err(Failure::Run),
        }
    }
}

pub(crate) async fn upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Response {
    if state.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "server is draining").into_response();
    }
    if let Err(refusal) = crate::access::check(&state.config.streaming, &headers, &uri) {
        tracing::info!(%peer, %refusal, "websocket upgrade refused");
        return refusal.into_response();
    }
    let limit = state.config.streaming.max_message_bytes;
    let tracker = state.tracker.clone();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| tracker.track_future(run_session(state, socket, peer)))
}

/// What the socket delivered next.
enum Incoming {
    Text(Utf8Bytes),
    Binary,
    TooBig,
    /// A text frame that is not valid UTF-8 (close 1007).
    BadUtf8,
    Gone,
}

async fn next_incoming(stream: &mut SplitStream<WebSocket>) -> Incoming {
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => return Incoming::Text(t),
            Some(Ok(Message::Binary(_))) => return Incoming::Binary,
            // Pings are answered by the transport; pongs carry nothing for us.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | None => return Incoming::Gone,
            Some(Err(e)) => {
                use tokio_tungstenite::tungstenite::Error as WsError;
                // axum wraps the transport's error; the same tungstenite version is ours too.
                let inner = e.into_inner();
                return match inner.downcast_ref::<WsError>() {
                    Some(WsError::Capacity(_)) => Incoming::TooBig,
                    Some(WsError::Utf8(_)) => Incoming::BadUtf8,
                    _ => {
                        tracing::debug!(error = %inner, "websocket read error");
                        Incoming::Gone
                    }
                };
            }
        }
    }
}

async fn run_session(state: Arc<AppState>, socket: WebSocket, peer: SocketAddr) {
    let (sink, stream) = socket.split();
    let (out, writer) = Outbox::spawn(sink, state.options.send_timeout);
    let per_ip = state.per_ip.admit(peer.ip());
    match per_ip.and_then(|ip_slot| Ok((ip_slot, state.sessions.admit()?))) {
        Err(e) => {
            tracing::warn!(%peer, error = %e, "session rejected");
            out.fail(&e, None).await;
        }
        Ok((_ip_slot, handle)) => {
            let span = tracing::info_span!("session", session_id = %handle.id(), %peer);
            metrics::gauge!(m::SESSIONS_ACTIVE).increment(1.0);
            let driver = Driver::new(state.clone(), handle, out.clone(), stream);
            let reason = driver.run().instrument(span).await;
            // Every end the server chooses carries a close code; one not mapped elsewhere is
            // ours to explain (1011), never a bare TCP drop.
            if !out.close_sent() && !matches!(reason, "client_closed" | "client_gone") {
                out.close(close::INTERNAL, "internal_error").await;
            }
            metrics::gauge!(m::SESSIONS_ACTIVE).decrement(1.0);
            metrics::counter!(m::SESSIONS_TOTAL, "reason" => reason).increment(1);
        }
    }
    drop(out);
    let _ = writer.await;
}

struct Driver {
    state: Arc<AppState>,
    handle: SessionHandle,
    session: Session,
    log: SessionLog,
    out: Outbox,
    stream: SplitStream<WebSocket>,
    image: Option<PersistedImage>,
    pending: VecDeque<PendingSegment>,
    preset: Option<String>,
    /// Stream time at which the next segment starts (sum of finished segments' durations).
    stream_time_ms: f64,
}

/// How the session ended, for logs and the `fv_sessions_total` label.
type EndReason = &'static str;

impl Driver {
    fn new(
        state: Arc<AppState>,
        handle: SessionHandle,
        out: Outbox,
        stream: SplitStream<WebSocket>,
    ) -> Self {
        let session = Session::new(handle.id().to_string());
        let log = state.logger.open(handle.id());
        Self {
            state,
            handle,
            session,
            log,
            out,
            stream,
            image: None,
            pending: VecDeque::new(),
            preset: None,
            stream_time_ms: 0.0,
        }
    }

    fn transition(&mut self, to: SessionState) {
        if let Err(e) = self.session.transition(to) {
            // A bug in this driver, not the client's fault: log loudly and keep going with the
            // state we have rather than guess.
            tracing::error!(error = %e, "illegal session transition");
        }
        self.handle.set_state(self.session.state());
    }

    async fn run(mut self) -> EndReason {
        self.log.event("session_start", json!({}));
        let reason = self.run_inner().await;
        let end_state = match reason {
            "init_timeout" | "idle_timeout" | "acquire_timeout" => SessionState::Timeout,
            "rejected" | "gpu_unavailable" => SessionState::Rejected,
            "error" => SessionState::Error,
            _ => SessionState::Complete,
        };
        self.transition(end_state);
        self.log.event(
            "session_end",
            json!({"reason": reason, "segments": self.session.segment_idx()}),
        );
        // Blobs and state belong to the session: drop them with it.
        let id = self.handle.id().to_string();
        if let Err(e) = self.state.deps.store.drop_session(&id).await {
            tracing::warn!(error = %e, "dropping session state failed");
        }
        if let Err(e) = self.state.deps.blobs.drop_session(&id).await {
            tracing::warn!(error = %e, "dropping session blobs failed");
        }
        tracing::info!(
            reason,
            segments = self.session.segment_idx(),
            "session ended"
        );
        reason
    }

    async fn run_inner(&mut self) -> EndReason {
        // 1. The first frame must be session_init_v2.
        let first = tokio::select! {
            biased;
            _ = self.state.draining.cancelled() => {
                self.shutdown_close().await;
                return "shutdown";
            }
            expiry = self.handle.expired() => return self.expire(expiry).await,
            _ = self.out.closed() => return "client_gone",
            incoming = next_incoming(&mut self.stream) => incoming,
        };
        // Decoding and storing a large image takes a while: no timer may fire meanwhile.
        self.handle.set_busy(true);
        let init = match first {
            Incoming::Text(text) => match fv_protocol::parse_client_message(&text) {
                Ok(ClientMessage::SessionInitV2(init)) => init,
                Ok(other) => {
                    self.fail(Failure::ExpectedInit(other.type_name())).await;
                    return "rejected";
                }
                Err(e) => {
                    self.fail(Failure::BadInit(e)).await;
                    return "rejected";
                }
            },
            Incoming::Binary => {
                self.fail(Failure::BinaryInit).await;
                return "rejected";
            }
            Incoming::TooBig => return self.too_big().await,
            Incoming::BadUtf8 => return self.bad_utf8().await,
            Incoming::Gone => return "client_closed",
        };
        if let Err(f) = self.apply_init(init).await {
            self.fail(f).await;
            return "rejected";
        }
        // The reaper may have fired between the frame's arrival and `set_busy`: the init then
        // came too late, and the session ends as it would have a moment earlier.
        if let Some(expiry) = self.handle.expiry() {
            return self.expire(expiry).await;
        }
        self.handle.mark_initialized();

        // 2. Wait for a worker, telling the client where it stands.
        self.transition(SessionState::Queued);
        let mut lease = match self.acquire().await {
            Ok(lease) => lease,
            Err(end) => return end,
        };
        self.transition(SessionState::GpuBinding);
        let s = &self.state.config.streaming;
        let sampling = &self.state.config.default_request.sampling;
        let assigned = ServerMessage::GpuAssigned(fv_protocol::GpuAssigned {
            gpu_id: lease.worker_id(),
            session_timeout: s.session_timeout_seconds,
        });
        let start = ServerMessage::Ltx2StreamStart(fv_protocol::StreamStart {
            preset: self.preset.clone(),
            width: sampling.width,
            height: sampling.height,
            fps: sampling.fps,
            num_frames: sampling.num_frames,
        });
        if !self.out.json(assigned).await {
            return "client_closed";
        }
        self.transition(SessionState::Active);
        if !self.out.json(start).await {
            return "client_closed";
        }
        self.log
            .event("gpu_assigned", json!({"gpu_id": lease.worker_id()}));

        // 3. Serve segments until the cap, a timeout, the client, or shutdown ends it.
        self.active(&mut lease).await
    }

    async fn apply_init(&mut self, init: SessionInitV2) -> Result<(), Failure> {
        let max_image = self.state.config.streaming.max_init_image_bytes;
        if let Some(value) = init.initial_image.clone() {
            // Base64 decoding of up to the image limit and the file write are blocking work.
            let persisted = tokio::task::spawn_blocking(move || {
                fv_session::decode_initial_image(&value, max_image)?
                    .map(|image| image.persist(None))
                    .transpose()
            })
            .await
            .map_err(|e| Failure::Internal(format!("image task failed: {e}")))?
            .map_err(|e| match e {
                // A disk problem is ours, not the client's.
                fv_session::InitImageError::Persist(io) => {
                    Failure::Internal(format!("cannot store the initial image: {io}"))
                }
                other => Failure::BadImage(other),
            })?;
            if let Some(persisted) = persisted {
                tracing::info!(path = %persisted.path().display(), "initial image stored");
                self.image = Some(persisted);
            }
        }
        if let Some(cs) = init.continuation_state.clone() {
            let state = fv_core::ContinuationState {
                kind: cs.kind,
                payload: cs.payload,
            };
            self.state
                .deps
                .store
                .put_state(self.handle.id(), state)
                .await?;
        }
        self.preset = init.preset.clone();
        self.session.apply_settings(fv_session::SessionSettings {
            client_id: init.client_id.clone(),
            preset: init.preset.clone(),
            preset_label: init.preset_label.clone(),
            curated_prompts: init.curated_prompts.clone(),
            enhancement_enabled: init.enhancement_enabled,
            auto_extension_enabled: init.auto_extension_enabled,
            loop_generation_enabled: init.loop_generation_enabled,
            single_clip_mode: init.single_clip_mode,
        });
        self.log.event(
            "session_init",
            json!({
                "client_id": init.client_id,
                "preset": init.preset,
                "has_image": self.image.is_some(),
                "has_continuation_state": init.continuation_state.is_some(),
            }),
        );
        Ok(())
    }

    /// Waits for a worker while serving client frames. `Err` carries the end reason.
    async fn acquire(&mut self) -> Result<Lease, EndReason> {
        let (tx, mut updates) = mpsc::unbounded_channel::<QueuePosition>();
        let pool = self.state.deps.pool.clone();
        let id = self.handle.id().to_string();
        let acquire = async move { pool.acquire(&id, tx).await };
        tokio::pin!(acquire);
        // Waiting for a worker is not idleness: the reaper must not expire a queued session.
        self.handle.set_busy(true);
        let mut sent_any = false;
        let result = loop {
            tokio::select! {
                biased;
                _ = self.state.draining.cancelled() => {
                    self.shutdown_close().await;
                    return Err("shutdown");
                }
                res = &mut acquire => break res,
                _ = self.out.closed() => return Err("client_gone"),
                Some(pos) = updates.recv() => {
                    sent_any = true;
                    metrics::gauge!(m::QUEUE_DEPTH).set(pos.queue_depth as f64);
                    if !self.out.json(queue_status(pos)).await {
                        return Err("client_closed");
                    }
                }
                incoming = next_incoming(&mut self.stream) => {
                    if let Some(end) = self.on_incoming(incoming).await {
                        return Err(end);
                    }
                }
            }
        };
        self.handle.set_busy(false);
        // Deliver updates that raced the grant, so positions arrive in order before gpu_assigned.
        while let Ok(pos) = updates.try_recv() {
            sent_any = true;
            if !self.out.json(queue_status(pos)).await {
                return Err("client_closed");
            }
        }
        match result {
            Ok(lease) => {
                if !sent_any {
                    // Granted at once: the client still learns it never waited.
                    let zero = QueuePosition {
                        position: 0,
                        queue_depth: 0,
                    };
                    let _ = self.out.json(queue_status(zero)).await;
                }
                Ok(lease)
            }
            Err(e) => {
                let reason = match e {
                    fv_pool::PoolError::AcquireTimeout(_) => "acquire_timeout",
                    _ => "gpu_unavailable",
                };
                self.fail(Failure::Pool(e)).await;
                Err(reason)
            }
        }
    }

    async fn active(&mut self, lease: &mut Lease) -> EndReason {
        let cap = self.state.config.streaming.generation_segment_cap;
        let mut encoder: Option<StreamEncoder> = None;
        let mut running: Option<tokio::task::JoinHandle<SegmentOutcome>> = None;
        let mut draining = self.state.is_draining();
        loop {
            if running.is_none() {
                if self.session.segment_idx() >= cap {
                    self.out
                        .json(ServerMessage::Ltx2StreamComplete(
                            fv_protocol::StreamComplete {
                                reason: StreamCompleteReason::SegmentCap,
                            },
                        ))
                        .await;
                    self.out
                        .close(close::NORMAL, close::REASON_SEGMENT_CAP)
                        .await;
                    return "segment_cap";
                }
                if draining {
                    self.shutdown_close().await;
                    return "shutdown";
                }
                if let Some(req) = self.pending.pop_front() {
                    match self.start_segment(lease, &mut encoder, req).await {
                        Ok(task) => running = Some(task),
                        Err(f) => {
                            if self.fail(f).await {
                                return "error";
                            }
                            continue;
                        }
                    }
                }
            }
            tokio::select! {
                biased;
                _ = self.state.hard_stop.cancelled() => {
                    if let Some(task) = running.take() {
                        task.abort();
                    }
                    self.shutdown_close().await;
                    return "shutdown";
                }
                _ = self.state.draining.cancelled(), if !draining => {
                    // Finish the segment in flight, start no new one.
                    draining = true;
                    self.pending.clear();
                }
                outcome = async { running.as_mut().expect("guarded by the if").await }, if running.is_some() => {
                    running = None;
                    self.handle.set_busy(false);
                    match outcome {
                        Ok(outcome) => {
                            encoder = outcome.encoder;
                            if let Some(end) = self.segment_finished(outcome.result).await {
                                return end;
                            }
                        }
                        Err(e) => {
                            let f = Failure::Internal(format!("segment task failed: {e}"));
                            if self.fail(f).await {
                                return "error";
                            }
                        }
                    }
                }
                expiry = self.handle.expired() => {
                    if let Some(task) = running.take() {
                        task.abort();
                    }
                    return self.expire(expiry).await;
                }
                _ = self.out.closed() => {
                    if let Some(task) = running.take() {
                        task.abort();
                    }
                    return "client_gone";
                }
                incoming = next_incoming(&mut self.stream) => {
                    if let Some(end) = self.on_incoming(incoming).await {
                        if let Some(task) = running.take() {
                            // Dropping the task drops its RunHandle: the generator stops at
                            // its next step and the worker is free for the next session.
                            task.abort();
                        }
                        return end;
                    }
                }
            }
        }
    }

    /// Checks a segment request when it arrives, so a bad one is answered at once instead of
    /// when its turn comes.
    fn validate_request(&self, req: SegmentPromptSource) -> Result<PendingSegment, Failure> {
        let sampling = &self.state.config.default_request.sampling;
        for (field, text) in [
            ("prompt", Some(&req.prompt)),
            ("negative_prompt", req.negative_prompt.as_ref()),
        ] {
            if let Some(text) = text.filter(|t| t.len() > MAX_PROMPT_BYTES) {
                return Err(Failure::OutOfRange(format!(
                    "segment_prompt_source.{field}: {} bytes is longer than the {MAX_PROMPT_BYTES} byte limit",
                    text.len()
                )));
            }
        }
        let steps = match req.num_inference_steps {
            None => sampling.num_inference_steps,
            Some(n) if (1..=i64::from(MAX_STEPS)).contains(&n) => n as u32,
            Some(n) => {
                return Err(Failure::OutOfRange(format!(
                    "segment_prompt_source.num_inference_steps: {n} is out of range (1..={MAX_STEPS})"
                )));
            }
        };
        let guidance = match req.guidance_scale {
            None => sampling.guidance_scale,
            Some(g) if g.is_finite() && (0.0..=MAX_GUIDANCE).contains(&g) => g,
            Some(g) => {
                return Err(Failure::OutOfRange(format!(
                    "segment_prompt_source.guidance_scale: {g} is out of range (0..={MAX_GUIDANCE})"
                )));
            }
        };
        let negative_prompt = req
            .negative_prompt
            .filter(|s| !s.is_empty())
            .or_else(|| self.state.config.default_request.negative_prompt.clone());
        Ok(PendingSegment {
            prompt: req.prompt,
            negative_prompt,
            seed: req.seed.unwrap_or(sampling.seed),
            steps,
            guidance,
            received: Instant::now(),
        })
    }

    /// Builds the request and spawns the segment task.
    async fn start_segment(
        &mut self,
        lease: &mut Lease,
        encoder: &mut Option<StreamEncoder>,
        req: PendingSegment,
    ) -> Result<tokio::task::JoinHandle<SegmentOutcome>, Failure> {
        let config = &self.state.config;
        let sampling = &config.default_request.sampling;
        let segment_idx = self.session.segment_idx();
        let state = self.state.deps.store.get_state(self.handle.id()).await?;
        let request = GenerationRequest {
            session_id: self.handle.id().to_string(),
            segment_idx,
            prompt: req.prompt.clone(),
            negative_prompt: req.negative_prompt,
            seed: req.seed,
            num_inference_steps: req.steps,
            guidance_scale: req.guidance,
            width: sampling.width,
            height: sampling.height,
            num_frames: sampling.num_frames,
            fps: sampling.fps,
            image_path: self.image.as_ref().map(|i| i.path().to_path_buf()),
            state,
        };
        let run = run_when_free(lease, request).await?;
        let stream_encoder = match encoder.take() {
            Some(e) => e,
            None => StreamEncoder::new(crate::segment::encoder_config(config))?,
        };
        self.handle.set_busy(true);
        let job = SegmentJob {
            plan: SegmentPlan {
                segment_idx,
                prompt: req.prompt,
                total_steps: req.steps,
                fps: sampling.fps,
                pts_base_ms: self.stream_time_ms,
                received: req.received,
            },
            run,
            encoder: stream_encoder,
            out: self.out.clone(),
        };
        let span = tracing::info_span!("segment", segment_idx);
        Ok(tokio::spawn(crate::segment::run(job).instrument(span)))
    }

    /// Books a finished segment. `Some(end)` when the session must end.
    async fn segment_finished(
        &mut self,
        result: Result<crate::segment::SegmentDone, Failure>,
    ) -> Option<EndReason> {
        match result {
            Ok(done) => {
                metrics::counter!(m::SEGMENTS_TOTAL, "result" => "ok").increment(1);
                metrics::histogram!(m::GENERATION_SECONDS).record(done.generation_ms / 1000.0);
                metrics::histogram!(m::ENCODE_SECONDS).record(done.encode_ms / 1000.0);
                metrics::histogram!(m::SEGMENT_E2E_SECONDS).record(done.e2e_ms / 1000.0);
                if let Some(first) = done.first_media_ms {
                    metrics::histogram!(m::FIRST_MEDIA_SECONDS).record(first / 1000.0);
                }
                // Through the session log's own record: prompts are cut to its limit there.
                self.log.segment(&fv_session::SegmentRecord {
                    segment_idx: done.segment_idx,
                    prompt: done.prompt.clone(),
                    // The session holds its worker from `gpu_assigned` on.
                    queue_ms: None,
                    generate_ms: done.generation_ms,
                    encode_ms: done.encode_ms,
                    first_media_ms: done.first_media_ms,
                    e2e_ms: done.e2e_ms,
                    frames: done.frames,
                    chunks: done.chunks,
                    bytes: done.bytes,
                });
                self.stream_time_ms += done.duration_ms;
                let stored = match done.state {
                    Some(state) => {
                        self.state
                            .deps
                            .store
                            .put_state(self.handle.id(), state)
                            .await
                    }
                    None => Ok(()),
                };
                if let Err(e) = stored {
                    self.fail(Failure::Store(e)).await;
                }
                self.session.complete_segment();
                self.handle.set_segment_idx(self.session.segment_idx());
                None
            }
            Err(Failure::ClientGone) => {
                metrics::counter!(m::SEGMENTS_TOTAL, "result" => "cancelled").increment(1);
                None
            }
            Err(f) => {
                metrics::counter!(m::SEGMENTS_TOTAL, "result" => "failed").increment(1);
                // A failed segment is reported and the session stays usable (upstream too),
                // without the state machine pretending the session is in `error`.
                if self.fail(f).await {
                    return Some("error");
                }
                None
            }
        }
    }

    /// Handles one client frame outside the init phase. `Some(end)` when the session ends.
    async fn on_incoming(&mut self, incoming: Incoming) -> Option<EndReason> {
        self.handle.touch();
        match incoming {
            Incoming::Gone => Some("client_closed"),
            Incoming::TooBig => Some(self.too_big().await),
            Incoming::BadUtf8 => Some(self.bad_utf8().await),
            Incoming::Binary => {
                self.fail(Failure::BinaryMessage).await;
                None
            }
            Incoming::Text(text) => {
                match fv_protocol::parse_client_message(&text) {
                    Err(e) => {
                        self.fail(Failure::BadMessage(e)).await;
                    }
                    Ok(msg) => self.on_message(msg).await,
                }
                None
            }
        }
    }

    async fn on_message(&mut self, msg: ClientMessage) {
        match msg {
            ClientMessage::SegmentPromptSource(req) => {
                let checked = if self.pending.len() >= MAX_PENDING_SEGMENTS {
                    Err(Failure::TooManyPending(MAX_PENDING_SEGMENTS))
                } else {
                    self.validate_request(req)
                };
                match checked {
                    Ok(pending) => self.pending.push_back(pending),
                    Err(f) => {
                        self.fail(f).await;
                    }
                }
            }
            ClientMessage::SnapshotState => {
                let reply = match self.state.deps.store.get_state(self.handle.id()).await {
                    Ok(Some(state)) => Ok(ServerMessage::ContinuationStateSnapshot(
                        fv_protocol::ContinuationStateSnapshot {
                            state: fv_protocol::ContinuationStateWire {
                                kind: state.kind,
                                payload: state.payload,
                            },
                        },
                    )),
                    Ok(None) => Err(Failure::NoState),
                    Err(e) => Err(Failure::Store(e)),
                };
                match reply {
                    Ok(msg) => {
                        self.out.json(msg).await;
                    }
                    Err(f) => {
                        self.fail(f).await;
                    }
                }
            }
            // A second init is valid and ignored, as upstream does.
            ClientMessage::SessionInitV2(_) => {
                tracing::debug!("ignoring repeated session_init_v2");
            }
            ClientMessage::SeedPromptsUpdated(u) => self
                .session
                .apply_toggle(Toggle::SeedPrompts(u.seed_prompts)),
            ClientMessage::EnhancementUpdated(t) => {
                self.session.apply_toggle(Toggle::Enhancement(t.enabled))
            }
            ClientMessage::AutoExtensionUpdated(t) => {
                self.session.apply_toggle(Toggle::AutoExtension(t.enabled))
            }
            ClientMessage::LoopGenerationUpdated(t) => {
                self.session.apply_toggle(Toggle::LoopGeneration(t.enabled))
            }
            ClientMessage::GenerationPausedUpdated(p) => self
                .session
                .apply_toggle(Toggle::GenerationPaused(p.paused)),
        }
    }

    async fn expire(&mut self, expiry: Expiry) -> EndReason {
        let (timeout, reason) = match expiry {
            Expiry::InitTimeout(d) => (d, "init_timeout"),
            Expiry::IdleTimeout(d) => (d, "idle_timeout"),
            Expiry::Shutdown | Expiry::Evicted => {
                self.shutdown_close().await;
                return "shutdown";
            }
        };
        tracing::info!(reason, ?timeout, "session expired");
        self.out
            .json(ServerMessage::SessionTimeout(fv_protocol::SessionTimeout {
                timeout_seconds: timeout.as_secs(),
            }))
            .await;
        if reason == "idle_timeout" {
            self.out
                .json(ServerMessage::Ltx2StreamComplete(
                    fv_protocol::StreamComplete {
                        reason: StreamCompleteReason::StopRequested,
                    },
                ))
                .await;
        }
        self.out
            .close(close::NORMAL, close::REASON_SESSION_TIMEOUT)
            .await;
        reason
    }

    /// Server shutdown: tell the client the stream is over, then close 1001.
    async fn shutdown_close(&mut self) {
        self.out
            .json(ServerMessage::stream_complete(
                StreamCompleteReason::StopRequested,
            ))
            .await;
        self.out
            .close(close::GOING_AWAY, close::REASON_SERVER_SHUTDOWN)
            .await;
    }

    async fn bad_utf8(&mut self) -> EndReason {
        self.out.close(1007, "invalid UTF-8 in a text frame").await;
        "invalid_utf8"
    }

    async fn too_big(&mut self) -> EndReason {
        let limit = self.state.config.streaming.max_message_bytes;
        self.out
            .close(
                close::TOO_BIG,
                &format!("frame exceeds limit of {limit} bytes"),
            )
            .await;
        "message_too_big"
    }

    /// Sends `failure` to the client; `true` when the socket is closing.
    async fn fail(&mut self, failure: Failure) -> bool {
        self.out.fail(&failure, Some(&self.log)).await
    }
}

fn queue_status(pos: QueuePosition) -> ServerMessage {
    ServerMessage::QueueStatus(fv_protocol::QueueStatus {
        position: pos.position as u32,
        queue_depth: pos.queue_depth as u32,
    })
}
