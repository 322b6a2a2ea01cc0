//! What goes into the session machine ([`Input`]) and what comes out ([`Action`]), with the
//! data they carry. The runtime turns IO into inputs and carries out actions.

use super::event::{ClientInput, Event, InitRequest};
use super::prompting::{Blocked, Checked, PromptDone, PromptJob};
use crate::error::{EndReason, Failure};
use crate::segment::{SegmentDone, SegmentPlan};
use fv_core::{ContinuationState, GenerationRequest};
use fv_pool::{PoolError, QueuePosition};
use fv_session::Expiry;
use std::path::PathBuf;
use std::time::Duration;

/// Which protocol family drives the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `/v1/stream`: the client asks for every segment.
    ClientDriven,
    /// `/ws`: the server picks every prompt (the Dreamverse product protocol).
    Product,
}

/// A timer the machine asked for; it comes back as [`Input::Timer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// `/ws`: the wait for the first frame is over (the session starts with an empty init).
    InitWait,
    /// `/ws`: the session's wall-clock limit is over.
    SessionLimit,
}

/// Everything that can happen to a session.
#[derive(Debug)]
pub(crate) enum Input {
    /// The connection was accepted (the first input of every session).
    Opened,
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
    /// A prompt call ordered by [`Action::Prompt`] finished (or ran out of budget).
    PromptDone(PromptDone),
    /// Answer to [`Action::CheckSafety`]: the first blocked prompt, if any, and what was held.
    SafetyChecked {
        blocked: Option<Blocked>,
        then: Checked,
    },
    /// A timer ordered by [`Action::StartTimer`] fired.
    Timer(Timer),
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
    /// Run a prompt call (enhance, auto-extend, rewrite) in the background within its
    /// budget, its output checked by the safety filter; answer with [`Input::PromptDone`].
    Prompt(PromptJob),
    /// Check prompts with the safety filter (quick: the model is loaded at startup); answer
    /// with [`Input::SafetyChecked`], handing `then` back.
    CheckSafety { prompts: Vec<String>, then: Checked },
    /// Fire [`Input::Timer`] after `after`.
    StartTimer { timer: Timer, after: Duration },
    /// A line in the session log.
    Log {
        event: &'static str,
        payload: serde_json::Value,
    },
    /// Forget the continuation state: the next segment starts fresh (a new rollout).
    ForgetState,
    /// Keep the generator's state for the session's next segment (no resume records: the
    /// product protocol has no resume).
    KeepState(Option<ContinuationState>),
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
