//! The IO shell around [`SessionMachine`]: it waits on the socket, the pool, the running
//! segment, the session's timers and the server's drain signals, turns what happens into
//! [`Input`]s, and carries out the machine's [`Action`]s (outbox, pool, store, segment task).
//! It makes no decisions of its own.

use super::machine::{Action, Input, SegmentOrder, SessionMachine};
use super::{ClientInput, Event, Protocol};
use crate::app::AppState;
use crate::error::{EndReason, Failure};
use crate::metrics as m;
use crate::outbox::Outbox;
use crate::segment::{SegmentDone, SegmentJob, SegmentOutcome};
use crate::ws::{Incoming, Socket, SocketStream, next_incoming};
use futures_util::StreamExt;
use fv_core::ContinuationState;
use fv_encoder::StreamEncoder;
use fv_pool::{Lease, PoolError, QueuePosition};
use fv_session::{PersistedImage, Session, SessionLog};
use serde_json::json;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

mod persist;

/// How long a new segment waits for the worker to finish a run that was cancelled (a failed
/// segment's generator stops at its next step).
const RUN_FREE_WAIT: Duration = Duration::from_secs(30);

/// The wait for a worker, as its own task so the runtime stays `Sync` (dropping it aborts the
/// wait; the pool's `acquire` is cancel-safe).
type Acquiring = JoinHandle<Result<Lease, PoolError>>;

/// What woke the session's loop.
enum Woke {
    HardStop,
    Drain,
    Segment(Box<Result<SegmentOutcome, tokio::task::JoinError>>),
    Position(QueuePosition),
    Granted(Result<Result<Lease, PoolError>, tokio::task::JoinError>),
    Job(Result<Input, tokio::task::JoinError>),
    Expired(fv_session::Expiry),
    Gone,
    Incoming(Incoming),
}

/// Awaits the future if there is one; never resolves otherwise (a disabled `select!` arm).
async fn when_some<F: Future + Unpin>(future: &mut Option<F>) -> F::Output {
    match future.as_mut() {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The next queue position, if a wait is in progress.
async fn when_some_recv<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Serves one WebSocket connection in `protocol` until the session ends, then closes it.
pub(crate) async fn run(
    state: Arc<AppState>,
    protocol: Arc<dyn Protocol>,
    socket: Socket,
    peer: SocketAddr,
) {
    let (sink, stream) = socket.split();
    let (out, writer) = Outbox::spawn(sink, state.options.send_timeout, protocol.clone());
    let admitted = state
        .per_ip
        .admit(peer.ip())
        .and_then(|ip_slot| Ok((ip_slot, state.sessions.admit()?)));
    let (end, stream) = match admitted {
        Err(failure) => {
            tracing::warn!(%peer, error = %failure, "session rejected");
            out.error(&failure, None).await;
            (failure.wire().ends, stream)
        }
        Ok((_ip_slot, session)) => {
            let span = tracing::info_span!("session", session_id = %session.id(), %peer);
            metrics::gauge!(m::SESSIONS_ACTIVE).increment(1.0);
            let runtime = Runtime::new(state, protocol.clone(), session, out.clone(), stream);
            let (end, stream) = runtime.serve().instrument(span).await;
            metrics::gauge!(m::SESSIONS_ACTIVE).decrement(1.0);
            metrics::counter!(m::SESSIONS_TOTAL, "reason" => end.as_str()).increment(1);
            (Some(end), stream)
        }
    };
    let close = end.and_then(|e| protocol.close(&e));
    if let Some((code, reason)) = &close {
        out.close(*code, reason).await;
    }
    drop(out);
    let sink = writer.await.ok();
    if close.is_some() {
        let desynced = matches!(end, Some(EndReason::MessageTooBig { .. }));
        crate::ws::linger(stream, sink, desynced).await;
    }
}

struct Runtime {
    state: Arc<AppState>,
    protocol: Arc<dyn Protocol>,
    machine: SessionMachine,
    out: Outbox,
    stream: SocketStream,
    log: SessionLog,
    image: Option<PersistedImage>,
    lease: Option<Lease>,
    acquiring: Option<Acquiring>,
    positions: Option<mpsc::UnboundedReceiver<QueuePosition>>,
    running: Option<JoinHandle<SegmentOutcome>>,
    encoder: Option<StreamEncoder>,
    end: Option<EndReason>,
    /// The state the next segment continues from (kept here, so a store failure cannot break
    /// continuity within the session; the store holds it for resumes on other connections).
    last_state: Option<ContinuationState>,
    /// What `snapshot_state` answers: `last_state` as the store holds it (large fields as blob
    /// references, so the frame stays small and any server sharing the blob store can hydrate
    /// it), or `last_state` itself when the store does not hold it.
    snapshot: Option<ContinuationState>,
    /// Key of this stream's resume records.
    resume_token: Option<String>,
    /// Prompt calls and timers; each resolves to the input it produces.
    jobs: JoinSet<Input>,
}

impl Runtime {
    fn new(
        state: Arc<AppState>,
        protocol: Arc<dyn Protocol>,
        session: Session,
        out: Outbox,
        stream: SocketStream,
    ) -> Self {
        let log = state.logger.open(session.id());
        let machine = SessionMachine::new(state.config.clone(), session, protocol.mode());
        Self {
            state,
            protocol,
            machine,
            out,
            stream,
            log,
            image: None,
            lease: None,
            acquiring: None,
            positions: None,
            running: None,
            encoder: None,
            end: None,
            last_state: None,
            snapshot: None,
            resume_token: None,
            jobs: JoinSet::new(),
        }
    }

    /// Runs the session to its end; returns why it ended and the socket's reading half.
    async fn serve(mut self) -> (EndReason, SocketStream) {
        let expired = self.machine.session().expired();
        tokio::pin!(expired);
        let (draining, hard_stop) = (self.state.draining.clone(), self.state.hard_stop.clone());
        let mut drain_seen = false;
        self.feed(Input::Opened).await;
        while !self.machine.ended() {
            let Self {
                running,
                positions,
                acquiring,
                out,
                stream,
                jobs,
                ..
            } = &mut self;
            let woke = tokio::select! {
                biased;
                _ = hard_stop.cancelled() => Woke::HardStop,
                _ = draining.cancelled(), if !drain_seen => {
                    drain_seen = true;
                    Woke::Drain
                }
                outcome = when_some(running) => Woke::Segment(Box::new(outcome)),
                Some(pos) = when_some_recv(positions) => Woke::Position(pos),
                granted = when_some(acquiring) => Woke::Granted(granted),
                Some(joined) = jobs.join_next(), if !jobs.is_empty() => Woke::Job(joined),
                expiry = &mut expired => Woke::Expired(expiry),
                _ = out.closed() => Woke::Gone,
                incoming = next_incoming(stream) => Woke::Incoming(incoming),
            };
            let input = match woke {
                Woke::HardStop => Input::HardStop,
                Woke::Drain => Input::Drain,
                Woke::Segment(outcome) => {
                    self.running = None;
                    self.segment_outcome(*outcome)
                }
                Woke::Position(pos) => {
                    metrics::gauge!(m::QUEUE_DEPTH).set(pos.queue_depth as f64);
                    Input::Queue(pos)
                }
                Woke::Granted(granted) => {
                    self.acquiring = None;
                    let granted = granted.unwrap_or_else(|e| {
                        tracing::error!(error = %e, "waiting for a worker failed");
                        Err(PoolError::Closed)
                    });
                    self.granted(granted).await
                }
                Woke::Job(Ok(input)) => input,
                Woke::Job(Err(e)) => {
                    // Prompt calls and timers do not panic; if one did, its answer is lost and
                    // the machine keeps waiting for it only until the session ends.
                    tracing::error!(error = %e, "session job failed");
                    continue;
                }
                Woke::Expired(expiry) => Input::Expired(expiry),
                Woke::Gone => Input::ClientGone,
                Woke::Incoming(incoming) => Input::Client(self.parse(incoming)),
            };
            self.feed(input).await;
        }
        let end = self.end.unwrap_or(EndReason::Internal);
        self.finish(end).await;
        (end, self.stream)
    }

    fn parse(&self, incoming: Incoming) -> ClientInput {
        match incoming {
            Incoming::Text(text) => self.protocol.parse(&text),
            Incoming::Binary => ClientInput::Binary,
            Incoming::TooBig => ClientInput::TooBig,
            Incoming::BadUtf8 => ClientInput::BadUtf8,
            Incoming::Gone => ClientInput::Closed,
        }
    }

    /// The wait for a worker ended: first deliver queue positions that raced the grant, so
    /// they reach the client in order before `gpu_assigned`.
    async fn granted(&mut self, granted: Result<Lease, PoolError>) -> Input {
        if let Some(mut positions) = self.positions.take() {
            while let Ok(pos) = positions.try_recv() {
                self.feed(Input::Queue(pos)).await;
            }
        }
        match granted {
            Ok(lease) => {
                let worker = lease.worker_id();
                self.lease = Some(lease);
                self.log.event("gpu_assigned", json!({ "gpu_id": worker }));
                Input::Acquired(Ok(worker))
            }
            Err(e) => Input::Acquired(Err(e)),
        }
    }

    fn segment_outcome(
        &mut self,
        outcome: Result<SegmentOutcome, tokio::task::JoinError>,
    ) -> Input {
        match outcome {
            Ok(outcome) => {
                self.encoder = outcome.encoder;
                self.record(&outcome.result);
                Input::SegmentDone(outcome.result)
            }
            Err(e) => {
                Input::SegmentDone(Err(Failure::Internal(format!("segment task failed: {e}"))))
            }
        }
    }

    /// Metrics and the session log for a finished segment.
    fn record(&self, result: &Result<SegmentDone, Failure>) {
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
            }
            Err(Failure::ClientGone) => {
                metrics::counter!(m::SEGMENTS_TOTAL, "result" => "cancelled").increment(1);
            }
            Err(_) => {
                metrics::counter!(m::SEGMENTS_TOTAL, "result" => "failed").increment(1);
            }
        }
    }

    /// Hands `input` to the machine and carries out its actions; inputs they produce are
    /// handled in turn.
    async fn feed(&mut self, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            for action in self.machine.handle(input) {
                if let Some(next) = self.execute(action).await {
                    inputs.push_back(next);
                }
            }
        }
    }

    async fn execute(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::Send(event) => {
                // A client that is gone is noticed by the select loop (`out.closed`).
                self.out.send(self.enrich(event)).await;
                None
            }
            Action::Prompt(job) => {
                let deps = self.state.prompts.clone();
                self.jobs.spawn(async move {
                    Input::PromptDone(super::calls::run_prompt(deps, job).await)
                });
                None
            }
            Action::CheckSafety { prompts, then } => {
                let blocked = super::calls::check(&self.state.prompts.safety, &prompts).await;
                Some(Input::SafetyChecked { blocked, then })
            }
            Action::StartTimer { timer, after } => {
                self.jobs.spawn(async move {
                    tokio::time::sleep(after).await;
                    Input::Timer(timer)
                });
                None
            }
            Action::Log { event, payload } => {
                self.log.event(event, payload);
                None
            }
            Action::ForgetState => {
                self.last_state = None;
                self.snapshot = None;
                None
            }
            Action::KeepState(state) => {
                self.snapshot.clone_from(&state);
                self.last_state = state;
                None
            }
            Action::Error(failure) => {
                self.out.error(&failure, Some(&self.log)).await;
                None
            }
            Action::ApplyInit(init) => Some(Input::InitApplied(self.apply_init(*init).await)),
            Action::Acquire => {
                let (tx, rx) = mpsc::unbounded_channel();
                let pool = self.state.deps.pool.clone();
                let id = self.machine.session().id().to_owned();
                self.positions = Some(rx);
                self.acquiring = Some(tokio::spawn(async move { pool.acquire(&id, tx).await }));
                None
            }
            Action::StartSegment(order) => self
                .start_segment(*order)
                .await
                .err()
                .map(Input::SegmentStartFailed),
            Action::CancelSegment => {
                // Dropping the task drops its RunHandle: the generator stops at its next step
                // and the worker is free for the next session.
                if let Some(task) = self.running.take() {
                    task.abort();
                }
                None
            }
            Action::LoadSnapshot => Some(Input::SnapshotLoaded(Ok(self.snapshot.clone()))),
            Action::Checkpoint(checkpoint) => {
                self.checkpoint(checkpoint).await;
                None
            }
            Action::End(reason) => {
                self.end = Some(reason);
                None
            }
        }
    }

    /// Fills in what only the runtime knows (the pool's worker counts of `queue_status`).
    fn enrich(&self, event: Event) -> Event {
        match event {
            Event::QueueStatus {
                position,
                queue_depth,
                ..
            } => {
                let pool = self.state.deps.pool.status();
                Event::QueueStatus {
                    position,
                    queue_depth,
                    total_workers: u32::try_from(pool.total_workers).unwrap_or(u32::MAX),
                    available_workers: u32::try_from(pool.available_workers).unwrap_or(u32::MAX),
                }
            }
            other => other,
        }
    }

    async fn start_segment(&mut self, order: SegmentOrder) -> Result<(), Failure> {
        let SegmentOrder { mut request, plan } = order;
        let lease = self
            .lease
            .as_mut()
            .ok_or_else(|| Failure::Internal("segment ordered without a worker".into()))?;
        request.state = self.last_state.clone();
        let run = lease
            .run_when_idle(request, RUN_FREE_WAIT)
            .await
            .map_err(Failure::Run)?;
        let encoder = match self.encoder.take() {
            Some(e) => e,
            None => StreamEncoder::new(crate::segment::encoder_config(&self.state.config))?,
        };
        let span = tracing::info_span!("segment", segment_idx = plan.segment_idx);
        let job = SegmentJob {
            plan,
            run,
            encoder,
            out: self.out.clone(),
            audio: self.state.config.streaming.audio,
        };
        self.running = Some(tokio::spawn(crate::segment::run(job).instrument(span)));
        Ok(())
    }

    /// Releases what the session holds: its segment, its worker, its stored state and blobs.
    async fn finish(&mut self, end: EndReason) {
        if let Some(task) = self.running.take() {
            task.abort();
        }
        self.lease = None;
        if let Some(wait) = self.acquiring.take() {
            wait.abort();
        }
        let segments = self.machine.session().segment_idx();
        self.log.session_end(end.as_str(), segments);
        // A finished stream has nothing to resume; any other end keeps the records (until their
        // TTL) so the client can come back, to this replica or another sharing the store.
        if end == EndReason::SegmentCap {
            self.drop_stream_records().await;
        }
        tracing::info!(reason = end.as_str(), segments, "session ended");
    }
}
