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
//! The "what to generate next" policy is the client's queue of `segment_prompt_source`
//! requests here; the server-driven `/ws` protocol plugs a director (seed prompts, loop,
//! auto-extension) in at [`SessionMachine::pump`], the one place a segment is started.

use super::event::{ClientInput, ClientMsg, Event, InitRequest, SegmentAsk};
use crate::config::ServeConfig;
use crate::error::{EndReason, Failure};
use crate::segment::{SegmentDone, SegmentPlan};
use fv_core::{ContinuationState, GenerationRequest};
use fv_pool::{PoolError, QueuePosition};
use fv_protocol::StreamCompleteReason;
use fv_session::{Expiry, Session, SessionState};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Prompts a client may queue ahead of the running segment.
pub const MAX_PENDING_SEGMENTS: usize = 32;
/// Longest prompt (and negative prompt) accepted, in bytes.
pub const MAX_PROMPT_BYTES: usize = 16 * 1024;
/// Largest `num_inference_steps` a client may ask for.
pub const MAX_STEPS: u32 = 1000;
/// Largest `guidance_scale` a client may ask for.
pub const MAX_GUIDANCE: f64 = 100.0;

/// Everything that can happen to a session.
#[derive(Debug)]
pub(crate) enum Input {
    /// A client frame, as the protocol adapter parsed it.
    Client(ClientInput),
    /// The init was applied (image persisted, state hydrated, resume record read).
    InitApplied(Result<Applied, Failure>),
    /// A queue position while waiting for a worker.
    Queue(QueuePosition),
    /// The wait for a worker ended: its id, or why none came.
    Acquired(Result<u32, PoolError>),
    /// The segment ordered by [`Action::StartSegment`] could not start.
    SegmentStartFailed(Failure),
    /// The running segment ended.
    SegmentDone(Result<SegmentDone, Failure>),
    /// Answer to [`Action::LoadSnapshot`].
    SnapshotLoaded(Result<Option<ContinuationState>, Failure>),
    /// The session manager expired the session.
    Expired(Expiry),
    /// The server started draining: finish what runs, start nothing new.
    Drain,
    /// The drain grace period is over: end now.
    HardStop,
    /// The client's socket is gone (send timeout or broken connection).
    ClientGone,
}

/// What the runtime must do for the session, in order.
#[derive(Debug)]
pub(crate) enum Action {
    /// Send an event to the client.
    Send(Event),
    /// Send an error frame for the failure (its mapping is in `error.rs`).
    Error(Failure),
    /// Validate and persist the init's image, store its continuation state; answer with
    /// [`Input::InitApplied`].
    ApplyInit(Box<InitRequest>),
    /// Wait for a worker; answer with [`Input::Queue`]s and one [`Input::Acquired`].
    Acquire,
    /// Start a segment on the session's worker (the runtime adds the stored continuation
    /// state); answer with [`Input::SegmentDone`] or [`Input::SegmentStartFailed`].
    StartSegment(Box<SegmentOrder>),
    /// Stop the running segment (the generator stops at its next step).
    CancelSegment,
    /// Read the stored continuation state; answer with [`Input::SnapshotLoaded`].
    LoadSnapshot,
    /// Persist what a resume needs after a delivered segment (best effort: a store failure
    /// is logged and counted, never the session's end).
    Checkpoint(Checkpoint),
    /// The session is over: close the socket as the reason says, release everything.
    End(EndReason),
}

/// What applying an init produced.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Where the initial image was written, if one was sent.
    pub image_path: Option<PathBuf>,
    /// The stream's resume token (new, or the one presented).
    pub resume_token: String,
    /// Set when the init continued an earlier stream.
    pub resumed: Option<Resumed>,
}

/// Where a resumed stream left off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Resumed {
    /// Segments the stream had delivered.
    pub segments: u32,
    /// Its stream time at that point.
    pub stream_time_ms: f64,
}

/// What to persist after a segment so another connection can resume the stream.
#[derive(Debug)]
pub(crate) struct Checkpoint {
    /// The generator's state for the next segment (`None`: it keeps none).
    pub state: Option<ContinuationState>,
    /// Segments delivered so far.
    pub segments: u32,
    /// Stream time after them.
    pub stream_time_ms: f64,
}

/// One segment to run.
#[derive(Debug)]
pub(crate) struct SegmentOrder {
    pub request: GenerationRequest,
    pub plan: SegmentPlan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
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

/// A validated segment request waiting for its turn.
#[derive(Debug)]
struct Pending {
    prompt: String,
    negative_prompt: Option<String>,
    seed: i64,
    steps: u32,
    guidance: f64,
    received: Instant,
}

/// One session's decisions. See the module docs.
#[derive(Debug)]
pub(crate) struct SessionMachine {
    config: Arc<ServeConfig>,
    session: Session,
    phase: Phase,
    pending: VecDeque<Pending>,
    running: bool,
    draining: bool,
    /// A `queue_status` went out while waiting for a worker.
    queue_reported: bool,
    preset: Option<String>,
    image_path: Option<PathBuf>,
    resume_token: Option<String>,
    /// Stream time at which the next segment starts (sum of finished segments' durations).
    stream_time_ms: f64,
    actions: Vec<Action>,
}

impl SessionMachine {
    pub(crate) fn new(config: Arc<ServeConfig>, session: Session) -> Self {
        Self {
            config,
            session,
            phase: Phase::AwaitInit,
            pending: VecDeque::new(),
            running: false,
            draining: false,
            queue_reported: false,
            preset: None,
            image_path: None,
            resume_token: None,
            stream_time_ms: 0.0,
            actions: Vec::new(),
        }
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
            Input::Client(input) => self.on_client(input),
            Input::InitApplied(result) => self.init_applied(result),
            Input::Queue(pos) => {
                if self.phase == Phase::Acquiring {
                    self.queue_reported = true;
                    self.send(Event::QueueStatus {
                        position: saturating_u32(pos.position),
                        queue_depth: saturating_u32(pos.queue_depth),
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
                        self.stream_complete(StreamCompleteReason::StopRequested);
                        self.end(EndReason::Shutdown);
                    }
                    // The running segment finishes; `pump` ends the session after it.
                    Phase::Active => self.pump(),
                    Phase::Ended => {}
                }
            }
            Input::HardStop => {
                self.stream_complete(StreamCompleteReason::StopRequested);
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
            ClientInput::Binary if first => self.fail(Failure::BinaryInit),
            ClientInput::Binary => self.fail(Failure::BinaryMessage),
            ClientInput::Invalid(e) if first => self.fail(Failure::BadInit(e)),
            ClientInput::Invalid(e) => self.fail(Failure::BadMessage(e)),
            ClientInput::Message { msg, wire_name } => match (first, msg) {
                (true, ClientMsg::Init(init)) => self.start_init(init),
                (true, _) => self.fail(Failure::ExpectedInit(wire_name)),
                (false, msg) => self.on_message(msg),
            },
        }
    }

    fn start_init(&mut self, mut init: Box<InitRequest>) {
        self.phase = Phase::Applying;
        // Decoding and storing a large image takes a while: no timer may fire meanwhile.
        self.session.set_busy(true);
        self.preset = init.settings.preset.clone();
        self.session
            .apply_settings(std::mem::take(&mut init.settings));
        self.actions.push(Action::ApplyInit(init));
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
        self.session.set_busy(false);
        if !self.queue_reported {
            // Granted at once: the client still learns it never waited.
            self.send(Event::QueueStatus {
                position: 0,
                queue_depth: 0,
            });
        }
        self.enter(SessionState::GpuBinding);
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
        match msg {
            // A second init is valid and ignored, as upstream does.
            ClientMsg::Init(_) => tracing::debug!("ignoring repeated session_init_v2"),
            ClientMsg::Segment(ask) => {
                let checked = if self.pending.len() >= MAX_PENDING_SEGMENTS {
                    Err(Failure::TooManyPending(MAX_PENDING_SEGMENTS))
                } else {
                    self.validate(ask)
                };
                match checked {
                    Ok(pending) => {
                        self.pending.push_back(pending);
                        self.pump();
                    }
                    Err(failure) => self.fail(failure),
                }
            }
            ClientMsg::Toggle(toggle) => self.session.apply_toggle(toggle),
            ClientMsg::Snapshot => self.actions.push(Action::LoadSnapshot),
        }
    }

    /// Checks a segment request when it arrives, so a bad one is answered at once instead of
    /// when its turn comes, and fills in the configured defaults.
    fn validate(&self, ask: SegmentAsk) -> Result<Pending, Failure> {
        let defaults = &self.config.default_request;
        let sampling = &defaults.sampling;
        for (field, text) in [
            ("prompt", Some(&ask.prompt)),
            ("negative_prompt", ask.negative_prompt.as_ref()),
        ] {
            if let Some(text) = text.filter(|t| t.len() > MAX_PROMPT_BYTES) {
                return Err(Failure::OutOfRange(format!(
                    "segment_prompt_source.{field}: {} bytes is longer than the {MAX_PROMPT_BYTES} byte limit",
                    text.len()
                )));
            }
        }
        let steps = match ask.num_inference_steps {
            None => sampling.num_inference_steps,
            Some(n) if (1..=i64::from(MAX_STEPS)).contains(&n) => n as u32,
            Some(n) => {
                return Err(Failure::OutOfRange(format!(
                    "segment_prompt_source.num_inference_steps: {n} is out of range (1..={MAX_STEPS})"
                )));
            }
        };
        let guidance = match ask.guidance_scale {
            None => sampling.guidance_scale,
            Some(g) if g.is_finite() && (0.0..=MAX_GUIDANCE).contains(&g) => g,
            Some(g) => {
                return Err(Failure::OutOfRange(format!(
                    "segment_prompt_source.guidance_scale: {g} is out of range (0..={MAX_GUIDANCE})"
                )));
            }
        };
        let negative_prompt = ask
            .negative_prompt
            .filter(|s| !s.is_empty())
            .or_else(|| defaults.negative_prompt.clone());
        Ok(Pending {
            prompt: ask.prompt,
            negative_prompt,
            seed: ask.seed.unwrap_or(sampling.seed),
            steps,
            guidance,
            received: Instant::now(),
        })
    }

    /// Starts the next segment if one may start, or ends the stream when none ever will.
    /// The one place where "what runs next" is decided.
    fn pump(&mut self) {
        if self.phase != Phase::Active || self.running {
            return;
        }
        if self.session.cap_reached() {
            self.stream_complete(StreamCompleteReason::SegmentCap);
            return self.end(EndReason::SegmentCap);
        }
        if self.draining {
            self.stream_complete(StreamCompleteReason::StopRequested);
            return self.end(EndReason::Shutdown);
        }
        let Some(next) = self.pending.pop_front() else {
            return;
        };
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
            segment_idx,
            prompt: next.prompt,
            total_steps: next.steps,
            fps: sampling.fps,
            pts_base_ms: self.stream_time_ms,
            received: next.received,
        };
        self.running = true;
        // No idle timer while a segment runs.
        self.session.set_busy(true);
        self.actions
            .push(Action::StartSegment(Box::new(SegmentOrder {
                request,
                plan,
            })));
    }

    fn segment_over(&mut self) {
        self.running = false;
        self.session.set_busy(false);
    }

    fn segment_done(&mut self, result: Result<SegmentDone, Failure>) {
        if !self.running {
            return;
        }
        self.segment_over();
        match result {
            Ok(done) => {
                self.stream_time_ms += done.duration_ms;
                match self.session.complete_segment() {
                    Ok(segments) => self.actions.push(Action::Checkpoint(Checkpoint {
                        state: done.state,
                        segments,
                        stream_time_ms: self.stream_time_ms,
                    })),
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
                self.stream_complete(StreamCompleteReason::StopRequested);
                self.end(EndReason::IdleTimeout);
            }
            // Shutdown, eviction, and anything the manager learns to say later.
            _ => {
                self.stream_complete(StreamCompleteReason::StopRequested);
                self.end(EndReason::Shutdown);
            }
        }
    }

    /// Answers a failure with its error frame; ends the session when the mapping says so.
    fn fail(&mut self, failure: Failure) {
        let ends = failure.wire().ends;
        self.actions.push(Action::Error(failure));
        if let Some(end) = ends {
            self.end(end);
        }
    }

    fn end(&mut self, reason: EndReason) {
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

    fn send(&mut self, event: Event) {
        self.actions.push(Action::Send(event));
    }

    fn stream_complete(&mut self, reason: StreamCompleteReason) {
        self.send(Event::StreamComplete(reason));
    }

    /// Moves the session to `to`. The machine only asks for edges in the table; a refused one
    /// is a bug in this file, never swallowed: it fails tests and is logged and counted.
    fn enter(&mut self, to: SessionState) {
        if let Err(e) = self.session.transition(to) {
            self.bug(&e);
        }
    }

    fn bug(&self, error: &dyn std::error::Error) {
        metrics::counter!(crate::metrics::SESSION_BUGS_TOTAL).increment(1);
        tracing::error!(session_id = %self.session.id(), %error, "session core bug");
        debug_assert!(false, "session core bug: {error}");
    }
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
