//! The session core: one pure state machine per session, shared by every protocol.
//!
//! It takes [`Input`]s (what the client said, what the pool and the segment pipeline
//! reported, timer and shutdown signals) and returns [`Action`]s (events for the client,
//! commands for the runtime, and at most one [`Action::End`]). It owns the
//! [`fv_session::Session`] (state machine, segment cap, settings, timers) and decides
//! everything that is not IO: first-frame rules, request validation and defaults, the queue
//! of waiting prompts, the cap, how a failure is answered, when and why the session ends.
//! It never touches a socket, the pool or a store: `runtime.rs` executes its actions and feeds
//! their results back, and the transcript tests in `tests.rs` drive it with no IO at all.
//!
//! The "what to generate next" policy lives in two directors, both `impl SessionMachine`
//! blocks called from [`SessionMachine::pump`], the one place a segment is started:
//! `prompting.rs` for `/v1/stream` (the client's queue of `segment_prompt_source` requests,
//! plus enhancement, loop, auto-extension, pause and safety) and `product/` for the
//! server-driven `/ws` (seed prompts, appended prompts, rewrites, loop, auto-extension, cap,
//! projects). Calls to fv-prompt and the safety filter are actions the runtime executes
//! (with their budgets); their results come back as inputs.

use super::event::{ClientInput, ClientMsg, Event, InitRequest, SegmentMeta};
pub(crate) use super::io::{
    Action, Applied, Checkpoint, Input, Mode, Resumed, SegmentOrder, Timer,
};
use super::product::ProductState;
use super::prompting::{Blocked, Checked, Pending, V1Director};
use crate::config::ServeConfig;
use crate::error::{EndReason, Failure};
use crate::segment::{SegmentDone, SegmentPlan};
use fv_core::GenerationRequest;
use fv_protocol::StreamCompleteReason;
use fv_session::{Expiry, Session, SessionState};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

/// Prompts a client may queue ahead of the running segment.
pub const MAX_PENDING_SEGMENTS: usize = 32;
/// Longest prompt (and negative prompt) accepted, in bytes.
pub const MAX_PROMPT_BYTES: usize = 16 * 1024;
/// Largest `num_inference_steps` a client may ask for.
pub const MAX_STEPS: u32 = 1000;
/// Largest `guidance_scale` a client may ask for.
pub const MAX_GUIDANCE: f64 = 100.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for the first frame.
    AwaitInit,
    /// The init is being applied.
    Applying,
    /// Waiting for a worker.
    Acquiring,
    /// Serving segments.
    Active,
    /// Over; inputs are ignored.
    Ended,
}

/// One session's decisions. See the module docs.
#[derive(Debug)]
pub(crate) struct SessionMachine {
    pub(super) config: Arc<ServeConfig>,
    pub(super) session: Session,
    pub(super) mode: Mode,
    pub(super) phase: Phase,
    /// Client-driven: the validated requests waiting for their turn.
    pub(super) pending: VecDeque<Pending>,
    /// Client-driven: enhancement, loop, auto-extension.
    pub(super) v1: V1Director,
    /// Server-driven: the product director's state.
    pub(super) product: ProductState,
    pub(super) running: bool,
    pub(super) draining: bool,
    /// A `queue_status` went out while waiting for a worker.
    queue_reported: bool,
    preset: Option<String>,
    image_path: Option<PathBuf>,
    resume_token: Option<String>,
    /// Stream time at which the next segment starts (sum of finished segments' durations).
    stream_time_ms: f64,
    /// Id of the next prompt call.
    next_job: u64,
    pub(super) actions: Vec<Action>,
}

impl SessionMachine {
    pub(crate) fn new(config: Arc<ServeConfig>, session: Session, mode: Mode) -> Self {
        Self {
            config,
            session,
            mode,
            phase: Phase::AwaitInit,
            pending: VecDeque::new(),
            v1: V1Director::default(),
            product: ProductState::default(),
            running: false,
            draining: false,
            queue_reported: false,
            preset: None,
            image_path: None,
            resume_token: None,
            stream_time_ms: 0.0,
            next_job: 1,
            actions: Vec::new(),
        }
    }

    /// A fresh id for a prompt call.
    pub(super) fn job_id(&mut self) -> u64 {
        let id = self.next_job;
        self.next_job += 1;
        id
    }

    /// The session (id, state, settings, timers).
    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    /// Whether an [`Action::End`] was returned; later inputs are ignored.
    pub(crate) fn ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Applies one input and returns what to do, in order.
    pub(crate) fn handle(&mut self, input: Input) -> Vec<Action> {
        if self.phase != Phase::Ended {
            self.on(input);
        }
        std::mem::take(&mut self.actions)
    }

    fn on(&mut self, input: Input) {
        match input {
            Input::Opened => {
                if self.mode == Mode::Product {
                    self.product_opened();
                }
            }
            Input::Client(input) => self.on_client(input),
            Input::InitApplied(result) => self.init_applied(result),
            Input::Queue(pos) => {
                if self.phase == Phase::Acquiring {
                    self.queue_reported = true;
                    self.send(Event::QueueStatus {
                        position: saturating_u32(pos.position),
                        queue_depth: saturating_u32(pos.queue_depth),
                        total_workers: 0,
                        available_workers: 0,
                    });
                }
            }
            Input::Acquired(Ok(worker_id)) => self.bound(worker_id),
            Input::Acquired(Err(e)) => self.fail(Failure::Pool(e)),
            Input::SegmentStartFailed(failure) => {
                self.segment_over();
                self.fail(failure);
                self.pump();
            }
            Input::PromptDone(done) => match self.mode {
                Mode::ClientDriven => self.v1_prompt_done(done),
                Mode::Product => self.product_prompt_done(done),
            },
            Input::SafetyChecked { blocked, then } => self.safety_checked(blocked, then),
            Input::Timer(timer) => self.timer(timer),
            Input::SegmentDone(result) => self.segment_done(result),
            Input::SnapshotLoaded(Ok(Some(state))) => self.send(Event::Snapshot(state)),
            Input::SnapshotLoaded(Ok(None)) => self.fail(Failure::NoState),
            Input::SnapshotLoaded(Err(failure)) => self.fail(failure),
            Input::Expired(expiry) => self.expired(expiry),
            Input::Drain => {
                self.draining = true;
                self.pending.clear();
                match self.phase {
                    Phase::AwaitInit | Phase::Applying | Phase::Acquiring => {
                        if self.mode == Mode::ClientDriven {
                            self.stream_complete(StreamCompleteReason::StopRequested);
                        }
                        self.end(EndReason::Shutdown);
                    }
                    // The running segment finishes; `pump` ends the session after it.
                    Phase::Active => self.pump(),
                    Phase::Ended => {}
                }
            }
            Input::HardStop => {
                self.close_stream(StreamCompleteReason::StopRequested);
                self.end(EndReason::Shutdown);
            }
            Input::ClientGone => self.end(EndReason::ClientGone),
        }
    }

    fn on_client(&mut self, input: ClientInput) {
        let first = self.phase == Phase::AwaitInit;
        if !first {
            // Any frame, valid or not, is client activity.
            self.session.touch();
        }
        match input {
            ClientInput::Closed => self.end(EndReason::ClientClosed),
            ClientInput::TooBig => self.end(EndReason::MessageTooBig {
                limit: self.config.streaming.max_message_bytes,
            }),
            ClientInput::BadUtf8 => self.end(EndReason::InvalidUtf8),
            // The product protocol answers every bad frame and keeps waiting for the init
            // (after its wait, it starts with an empty one).
            ClientInput::Binary if first && self.mode == Mode::ClientDriven => {
                self.fail(Failure::BinaryInit)
            }
            ClientInput::Binary => self.fail(Failure::BinaryMessage),
            ClientInput::Invalid(e) if first && self.mode == Mode::ClientDriven => {
                self.fail(Failure::BadInit(e))
            }
            ClientInput::Invalid(e) => self.fail(Failure::BadMessage(e)),
            ClientInput::Message { msg, wire_name } => match (first, msg) {
                (true, ClientMsg::Init(init)) => self.start_init(init),
                (true, _) if self.mode == Mode::Product => {
                    self.fail(Failure::AwaitingInit(wire_name))
                }
                (true, _) => self.fail(Failure::ExpectedInit(wire_name)),
                (false, msg) => self.on_message(msg),
            },
        }
    }

    pub(super) fn start_init(&mut self, mut init: Box<InitRequest>) {
        self.phase = Phase::Applying;
        // Decoding and storing a large image takes a while: no timer may fire meanwhile.
        self.session.set_busy(true);
        self.preset = init.settings.preset.clone();
        if self.mode == Mode::Product {
            self.product_init(&mut init);
        }
        let seeds = init.settings.curated_prompts.clone();
        self.session
            .apply_settings(std::mem::take(&mut init.settings));
        // The init's prompts are checked before anything else happens (close 1008 when
        // one is blocked, before a worker is taken).
        if self.config.streaming.safety.enabled && !seeds.is_empty() {
            self.actions.push(Action::CheckSafety {
                prompts: seeds,
                then: Checked::Init(init),
            });
        } else {
            self.actions.push(Action::ApplyInit(init));
        }
    }

    fn init_applied(&mut self, result: Result<Applied, Failure>) {
        if self.phase != Phase::Applying {
            return;
        }
        match result {
            Ok(applied) => {
                self.image_path = applied.image_path;
                self.resume_token = Some(applied.resume_token);
                if let Some(resumed) = applied.resumed {
                    if let Err(e) = self.session.resume_from(resumed.segments) {
                        self.fail(Failure::BadState(format!(
                            "session_init_v2.resume_token: the stream cannot continue: {e}"
                        )));
                        return;
                    }
                    self.stream_time_ms = resumed.stream_time_ms;
                }
                // The reaper may have fired between the frame's arrival and `set_busy`: the
                // init then came too late, and the session ends as it would have a moment
                // earlier.
                if let Some(expiry) = self.session.expiry() {
                    return self.expired(expiry);
                }
                self.session.mark_initialized();
                // Waiting for a worker is not idleness: the session stays busy while queued.
                self.enter(SessionState::Queued);
                self.phase = Phase::Acquiring;
                self.actions.push(Action::Acquire);
            }
            Err(failure) => {
                self.fail(failure);
                // An init that cannot be applied ends the session whatever the failure was.
                self.end(EndReason::Internal);
            }
        }
    }

    fn bound(&mut self, worker_id: u32) {
        if self.phase != Phase::Acquiring {
            return;
        }
        self.idle_timer(true);
        if !self.queue_reported {
            // Granted at once: the client still learns it never waited.
            self.send(Event::QueueStatus {
                position: 0,
                queue_depth: 0,
                total_workers: 0,
                available_workers: 0,
            });
        }
        self.enter(SessionState::GpuBinding);
        if self.mode == Mode::Product {
            return self.product_bound(worker_id);
        }
        self.send(Event::GpuAssigned {
            worker_id,
            session_timeout: self.config.streaming.session_timeout_seconds,
        });
        self.enter(SessionState::Active);
        let sampling = &self.config.default_request.sampling;
        self.send(Event::StreamStart {
            preset: self.preset.clone(),
            width: sampling.width,
            height: sampling.height,
            fps: sampling.fps,
            num_frames: sampling.num_frames,
            resume_token: self.resume_token.clone(),
        });
        self.phase = Phase::Active;
        self.pump();
    }

    fn on_message(&mut self, msg: ClientMsg) {
        match self.mode {
            Mode::ClientDriven => self.v1_message(msg),
            Mode::Product => self.product_message(msg),
        }
    }

    /// Starts the next segment if one may start, or ends the stream when none ever will.
    /// The one place where "what runs next" is decided (by the session's director).
    pub(super) fn pump(&mut self) {
        if self.phase != Phase::Active {
            return;
        }
        match self.mode {
            Mode::ClientDriven => self.v1_pump(),
            Mode::Product => self.product_pump(),
        }
    }

    /// Orders `next` as the segment with wire index `wire_idx` (0-based; the session's
    /// count within a `/ws` rollout).
    pub(super) fn start_segment(
        &mut self,
        next: Pending,
        wire_idx: u32,
        meta: Option<SegmentMeta>,
    ) {
        let sampling = &self.config.default_request.sampling;
        let segment_idx = self.session.segment_idx();
        let request = GenerationRequest {
            session_id: self.session.id().to_owned(),
            segment_idx,
            prompt: next.prompt.clone(),
            negative_prompt: next.negative_prompt,
            seed: next.seed,
            num_inference_steps: next.steps,
            guidance_scale: next.guidance,
            width: sampling.width,
            height: sampling.height,
            num_frames: sampling.num_frames,
            fps: sampling.fps,
            image_path: self.image_path.clone(),
            state: None,
        };
        let plan = SegmentPlan {
            segment_idx: wire_idx,
            prompt: next.prompt,
            // The two-stage preset's refine steps are numbered on after stage 1's.
            total_steps: next.steps + self.config.generator.refine_steps(),
            fps: sampling.fps,
            pts_base_ms: self.stream_time_ms,
            received: next.received,
            meta,
        };
        self.running = true;
        // No idle timer while a segment runs.
        self.idle_timer(false);
        self.actions
            .push(Action::StartSegment(Box::new(SegmentOrder {
                request,
                plan,
            })));
    }

    fn segment_over(&mut self) {
        self.running = false;
        self.idle_timer(true);
    }

    /// Starts (`true`) or stops the session manager's idle timer. `/ws` sessions never run
    /// it: their limit is a wall clock, and a project may sit idle on its socket.
    fn idle_timer(&self, run: bool) {
        if self.mode == Mode::ClientDriven {
            self.session.set_busy(!run);
        }
    }

    fn segment_done(&mut self, result: Result<SegmentDone, Failure>) {
        if !self.running {
            return;
        }
        self.segment_over();
        if self.mode == Mode::Product {
            return self.product_segment_done(result);
        }
        match result {
            Ok(done) => {
                self.stream_time_ms += done.duration_ms;
                let complete = done.complete_event();
                match self.session.complete_segment() {
                    // Checkpointed first: a client that saw the completion can resume after it.
                    Ok(segments) => {
                        self.actions.push(Action::Checkpoint(Checkpoint {
                            state: done.state,
                            segments,
                            stream_time_ms: self.stream_time_ms,
                        }));
                        self.send(complete);
                    }
                    // `pump` never starts a segment past the cap or outside `Active`.
                    Err(e) => self.bug(&e),
                }
            }
            // The client left mid-segment; nobody is there to tell.
            Err(Failure::ClientGone) => return self.end(EndReason::ClientGone),
            // A failed segment is reported and the session stays usable (upstream too),
            // without the state machine pretending the session is in `error`.
            Err(failure) => self.fail(failure),
        }
        self.pump();
    }

    fn expired(&mut self, expiry: Expiry) {
        match expiry {
            Expiry::InitTimeout(d) => {
                self.send(Event::SessionTimeout {
                    timeout_seconds: d.as_secs(),
                });
                self.end(EndReason::InitTimeout);
            }
            Expiry::IdleTimeout(d) => {
                self.send(Event::SessionTimeout {
                    timeout_seconds: d.as_secs(),
                });
                self.close_stream(StreamCompleteReason::StopRequested);
                self.end(EndReason::IdleTimeout);
            }
            // Shutdown, eviction, and anything the manager learns to say later.
            _ => {
                self.close_stream(StreamCompleteReason::StopRequested);
                self.end(EndReason::Shutdown);
            }
        }
    }

    fn timer(&mut self, timer: Timer) {
        match timer {
            Timer::InitWait => {
                if self.phase == Phase::AwaitInit {
                    tracing::info!("no init frame in time: starting with an empty init");
                    self.start_init(Box::default());
                }
            }
            Timer::SessionLimit => {
                self.send(Event::SessionTimeout {
                    timeout_seconds: self.config.streaming.dreamverse.session_limit_seconds,
                });
                self.end(EndReason::SessionLimit);
            }
        }
    }

    fn safety_checked(&mut self, blocked: Option<Blocked>, then: Checked) {
        match then {
            Checked::Init(init) => match blocked {
                Some(b) if self.phase == Phase::Applying => {
                    self.log_blocked("init", &b);
                    self.fail(Failure::PromptBlocked {
                        what: "initial prompt",
                        index: Some(b.index),
                        reason: b.reason,
                        ends: true,
                    });
                }
                None if self.phase == Phase::Applying => self.actions.push(Action::ApplyInit(init)),
                _ => {}
            },
            other => match self.mode {
                Mode::ClientDriven => self.v1_checked(blocked, other),
                Mode::Product => self.product_checked(blocked, other),
            },
        }
    }

    pub(super) fn log_blocked(&mut self, source: &'static str, b: &Blocked) {
        metrics::counter!(crate::metrics::PROMPTS_BLOCKED_TOTAL, "source" => source).increment(1);
        self.log(
            "prompt_blocked",
            serde_json::json!({"source": source, "index": b.index, "reason": b.reason}),
        );
    }

    pub(super) fn log(&mut self, event: &'static str, payload: serde_json::Value) {
        self.actions.push(Action::Log { event, payload });
    }

    /// Answers a failure with its error frame; ends the session when the mapping says so.
    pub(super) fn fail(&mut self, failure: Failure) {
        let ends = failure.wire().ends;
        self.actions.push(Action::Error(failure));
        if let Some(end) = ends {
            self.end(end);
        }
    }

    pub(super) fn end(&mut self, reason: EndReason) {
        if self.phase == Phase::Ended {
            return;
        }
        if self.running {
            self.running = false;
            self.actions.push(Action::CancelSegment);
        }
        self.enter(reason.terminal_state());
        self.phase = Phase::Ended;
        self.actions.push(Action::End(reason));
    }

    pub(super) fn send(&mut self, event: Event) {
        self.actions.push(Action::Send(event));
    }

    pub(super) fn stream_complete(&mut self, reason: StreamCompleteReason) {
        self.send(Event::StreamComplete(reason));
    }

    /// `ltx2_stream_complete` before an abnormal end, when the client has a stream open.
    fn close_stream(&mut self, reason: StreamCompleteReason) {
        match self.mode {
            Mode::ClientDriven => self.stream_complete(reason),
            Mode::Product => self.product_close_rollout(reason),
        }
    }

    /// Moves the session to `to`. The machine only asks for edges in the table; a refused one
    /// is a bug in this file, never swallowed: it fails tests and is logged and counted.
    pub(super) fn enter(&mut self, to: SessionState) {
        if let Err(e) = self.session.transition(to) {
            self.bug(&e);
        }
    }

    pub(super) fn bug(&self, error: &dyn std::error::Error) {
        metrics::counter!(crate::metrics::SESSION_BUGS_TOTAL).increment(1);
        tracing::error!(session_id = %self.session.id(), %error, "session core bug");
        debug_assert!(false, "session core bug: {error}");
    }
}

pub(super) fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
