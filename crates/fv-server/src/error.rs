//! The one place where domain errors become wire errors (`ErrorCode`, `retryable`) and where
//! every close code the server sends is chosen: [`Failure::wire`] says whether a failure ends
//! the session, and [`EndReason::close`] maps each way a session can end to its close frame.

use fv_core::GenerateError;
use fv_encoder::EncodeError;
use fv_pool::PoolError;
use fv_protocol::{ErrorCode, ParseError, close};
use fv_session::{InitImageError, SessionError, SessionState};
use fv_store::StoreError;

/// Everything that can go wrong while serving one session.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The session table is full.
    #[error("{0}")]
    Rejected(#[from] SessionError),
    /// This client address already holds its quota of sessions.
    #[error("too many sessions from {ip} (limit {limit})")]
    TooManyFromAddress { ip: std::net::IpAddr, limit: usize },
    /// The first frame is not a valid `session_init_v2`.
    #[error("{0}")]
    BadInit(ParseError),
    /// The first frame is a valid message of another type.
    #[error("first frame must be session_init_v2, got {0}")]
    ExpectedInit(&'static str),
    /// `/ws`: the first frame is a valid message of another type; the session keeps waiting
    /// for its init.
    #[error("first frame must be session_init_v2, got {0}")]
    AwaitingInit(&'static str),
    /// A binary frame where the protocol has none, as the first frame.
    #[error("first frame must be a session_init_v2 JSON text frame, got a binary frame")]
    BinaryInit,
    /// `session_init_v2.continuation_state` or `resume_token` cannot be used.
    #[error("{0}")]
    BadState(String),
    /// `session_init_v2.initial_image` failed validation.
    #[error("{0}")]
    BadImage(#[from] InitImageError),
    /// A later frame failed validation; the session goes on.
    #[error("{0}")]
    BadMessage(ParseError),
    /// A later frame was binary; the session goes on.
    #[error("binary frames are not accepted from clients; send JSON text frames")]
    BinaryMessage,
    /// A field value is well-formed but out of range; the session goes on.
    #[error("{0}")]
    OutOfRange(String),
    /// Too many prompts are waiting in this session.
    #[error("too many pending segment requests (limit {0}); wait for a segment to finish")]
    TooManyPending(usize),
    /// No worker could be had.
    #[error("{0}")]
    Pool(#[from] PoolError),
    /// The bound worker could not start a run (it died, or is stuck finishing an old one).
    #[error("{0}")]
    Run(PoolError),
    /// The client went away while the segment was being sent.
    #[error("client disconnected")]
    ClientGone,
    /// The generator failed or returned nothing.
    #[error("{0}")]
    Generate(#[from] GenerateError),
    #[error("generator returned no frames")]
    NoFrames,
    /// The encoder failed.
    #[error("{0}")]
    Encode(#[from] EncodeError),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// `snapshot_state` with nothing stored.
    #[error("no continuation state available for session")]
    NoState,
    /// A server-side bug (task panicked, channel closed unexpectedly).
    #[error("internal error: {0}")]
    Internal(String),
    /// The prompt safety filter blocked a prompt. `index` is 0-based in the list checked;
    /// `ends` is set for the prompts of `session_init_v2` (close 1008).
    #[error("Prompt safety filter blocked {what}{}. {reason}", .index.map(|i| format!(" {}", i + 1)).unwrap_or_default())]
    PromptBlocked {
        what: &'static str,
        index: Option<usize>,
        reason: String,
        ends: bool,
    },
    /// A product-protocol (`/ws`) request that is not allowed now; the session goes on.
    #[error("{0}")]
    Refused(#[from] ProductRefusal),
    /// Segments failed this many times in a row on a server-driven session.
    #[error("{0} segments failed in a row; ending the session")]
    TooManyFailures(u32),
}

/// Why the product protocol refused a request (Dreamverse's messages, dreamverse-facts §6).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProductRefusal {
    #[error("Start a new project before sending prompts.")]
    NoProject,
    #[error("Use Rewrite to create or restart the rollout.")]
    UseRewrite,
    #[error("append_prompt requires a non-empty prompt")]
    EmptyAppend,
    #[error("rewrite_seed_prompts already in progress.")]
    RewriteInProgress,
    #[error("No seed prompts available to rewrite.")]
    NoSeeds,
    #[error("rewrite_seed_prompts requires a non-empty rewrite_instruction")]
    NoInstruction,
    #[error(
        "Current project is still ending. Wait for the reset to finish before starting another project."
    )]
    ProjectStillEnding,
    #[error("session_init_v2 was already received; start a new project with project_init_v1")]
    AlreadyInitialized,
    #[error("{0} is not supported by this server")]
    Unsupported(&'static str),
    #[error("set_rewrite_temperature.temperature: {0} is out of range (0..=2)")]
    BadTemperature(f64),
}

/// How a [`Failure`] appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError {
    pub code: ErrorCode,
    pub retryable: bool,
    /// `error_code` of the `/ws` error frame (the product client knows `ip_session_limit`;
    /// otherwise the same name as `code`).
    pub product_code: &'static str,
    /// `Some` when the session ends after the error frame (its close frame is
    /// [`EndReason::close`]); `None` when the session goes on.
    pub ends: Option<EndReason>,
}

impl Failure {
    /// The error frame's code and `retryable`, and whether the session ends.
    pub fn wire(&self) -> WireError {
        use Failure::*;
        let (code, retryable, ends) = match self {
            Rejected(_) | TooManyFromAddress { .. } => (
                ErrorCode::SessionRejected,
                false,
                Some(EndReason::Rejected(Refusal::SessionLimit)),
            ),
            BadInit(_) | BinaryInit | BadImage(_) | BadState(_) => (
                ErrorCode::InvalidMessage,
                false,
                Some(EndReason::Rejected(Refusal::InvalidInit)),
            ),
            ExpectedInit(_) => (
                ErrorCode::InvalidMessage,
                false,
                Some(EndReason::Rejected(Refusal::ExpectedInit)),
            ),
            BadMessage(_) | BinaryMessage | OutOfRange(_) | TooManyPending(_) | AwaitingInit(_) => {
                (ErrorCode::InvalidMessage, true, None)
            }
            Pool(PoolError::AcquireTimeout(_)) => (
                ErrorCode::GpuUnavailable,
                true,
                Some(EndReason::AcquireTimeout),
            ),
            Pool(_) => (
                ErrorCode::GpuUnavailable,
                true,
                Some(EndReason::GpuUnavailable),
            ),
            Generate(_) | NoFrames | Encode(_) => (ErrorCode::WorkerFailed, true, None),
            // Without a working worker the session cannot go on: reconnecting gets a new one.
            Run(_) => (ErrorCode::WorkerFailed, true, Some(EndReason::WorkerLost)),
            ClientGone => (ErrorCode::InternalError, false, None),
            Store(_) | Internal(_) => (ErrorCode::InternalError, true, None),
            NoState => (ErrorCode::InternalError, false, None),
            PromptBlocked { ends, .. } => (
                ErrorCode::PromptBlocked,
                false,
                ends.then_some(EndReason::PromptBlocked),
            ),
            Refused(_) => (ErrorCode::InvalidMessage, false, None),
            TooManyFailures(_) => (ErrorCode::WorkerFailed, true, Some(EndReason::WorkerLost)),
        };
        let product_code = match self {
            TooManyFromAddress { .. } => "ip_session_limit",
            _ => code.as_str(),
        };
        WireError {
            code,
            retryable,
            product_code,
            ends,
        }
    }

    /// The wire code's name, for metrics labels and logs.
    pub fn code_name(&self) -> &'static str {
        self.wire().code.as_str()
    }
}

/// Why a session was refused before it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server (or this client address) holds its quota of sessions.
    SessionLimit,
    /// The first frame is not a valid `session_init_v2` (or carries a bad image).
    InvalidInit,
    /// The first frame is a valid message of another type.
    ExpectedInit,
}

/// How a session ended: the `fv_sessions_total{reason}` label, the terminal state and the
/// close frame all follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The client closed the socket (close frame or EOF); it needs no close frame from us.
    ClientClosed,
    /// The socket broke or the client stopped reading (send timeout).
    ClientGone,
    /// No `session_init_v2` within the init timeout.
    InitTimeout,
    /// No client frame within the idle timeout while nothing generated.
    IdleTimeout,
    /// `generation_segment_cap` segments were delivered.
    SegmentCap,
    /// The server drained (SIGTERM) or evicted the session.
    Shutdown,
    /// A client frame over `max_message_bytes`.
    MessageTooBig { limit: usize },
    /// A text frame that is not UTF-8.
    InvalidUtf8,
    /// Refused at the start.
    Rejected(Refusal),
    /// No worker became free within `acquire_timeout_seconds`.
    AcquireTimeout,
    /// The pool cannot serve (queue full, no worker in service, shut down).
    GpuUnavailable,
    /// The session's worker cannot run any more.
    WorkerLost,
    /// A bug on our side.
    Internal,
    /// The prompt safety filter blocked a prompt of `session_init_v2`.
    PromptBlocked,
    /// A `/ws` session's wall-clock limit is over.
    SessionLimit,
    /// A `/ws` client sent `leave`.
    ClientLeft,
}

impl EndReason {
    /// The close frame (code, reason) the server sends, or `None` when the client already
    /// closed or cannot be reached.
    pub fn close(&self) -> Option<(u16, String)> {
        let (code, reason) = match self {
            EndReason::ClientClosed | EndReason::ClientGone => return None,
            EndReason::InitTimeout | EndReason::IdleTimeout => {
                (close::NORMAL, close::REASON_SESSION_TIMEOUT)
            }
            EndReason::SegmentCap => (close::NORMAL, close::REASON_SEGMENT_CAP),
            EndReason::Shutdown => (close::GOING_AWAY, close::REASON_SERVER_SHUTDOWN),
            EndReason::MessageTooBig { limit } => {
                return Some((
                    close::TOO_BIG,
                    format!("frame exceeds limit of {limit} bytes"),
                ));
            }
            EndReason::InvalidUtf8 => (close::INVALID_PAYLOAD, "invalid UTF-8 in a text frame"),
            EndReason::Rejected(Refusal::SessionLimit) => {
                (close::TRY_AGAIN_LATER, close::REASON_SESSION_REJECTED)
            }
            EndReason::Rejected(Refusal::InvalidInit) => {
                (close::UNSUPPORTED, close::REASON_INVALID_INIT)
            }
            EndReason::Rejected(Refusal::ExpectedInit) => {
                (close::UNSUPPORTED, close::REASON_EXPECTED_SESSION_INIT_V2)
            }
            EndReason::AcquireTimeout | EndReason::GpuUnavailable => {
                (close::TRY_AGAIN_LATER, close::REASON_GPU_UNAVAILABLE)
            }
            EndReason::WorkerLost => (close::INTERNAL, "worker_failed"),
            EndReason::Internal => (close::INTERNAL, "internal_error"),
            EndReason::PromptBlocked => (close::POLICY, close::REASON_PROMPT_BLOCKED),
            EndReason::SessionLimit => (close::NORMAL, close::REASON_PRODUCT_SESSION_TIMEOUT),
            EndReason::ClientLeft => (close::NORMAL, close::REASON_CLIENT_LEFT),
        };
        Some((code, reason.to_owned()))
    }

    /// The close frame on `/ws`: [`close`](Self::close) with Dreamverse's wording where its
    /// server has one (1003 "Invalid initial image").
    pub fn product_close(&self) -> Option<(u16, String)> {
        match self {
            EndReason::Rejected(Refusal::InvalidInit) => Some((
                close::UNSUPPORTED,
                close::REASON_INVALID_INITIAL_IMAGE.to_owned(),
            )),
            other => other.close(),
        }
    }

    /// The state the session ends in.
    pub fn terminal_state(&self) -> SessionState {
        match self {
            EndReason::InitTimeout | EndReason::IdleTimeout | EndReason::AcquireTimeout => {
                SessionState::Timeout
            }
            EndReason::Rejected(_) | EndReason::GpuUnavailable | EndReason::PromptBlocked => {
                SessionState::Rejected
            }
            EndReason::SessionLimit => SessionState::Timeout,
            EndReason::ClientLeft => SessionState::Complete,
            EndReason::MessageTooBig { .. }
            | EndReason::InvalidUtf8
            | EndReason::WorkerLost
            | EndReason::Internal => SessionState::Error,
            EndReason::ClientClosed
            | EndReason::ClientGone
            | EndReason::SegmentCap
            | EndReason::Shutdown => SessionState::Complete,
        }
    }

    /// The `reason` label of `fv_sessions_total` and of the `session_end` log event.
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::ClientClosed => "client_closed",
            EndReason::ClientGone => "client_gone",
            EndReason::InitTimeout => "init_timeout",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::SegmentCap => "segment_cap",
            EndReason::Shutdown => "shutdown",
            EndReason::MessageTooBig { .. } => "message_too_big",
            EndReason::InvalidUtf8 => "invalid_utf8",
            EndReason::Rejected(_) => "rejected",
            EndReason::AcquireTimeout => "acquire_timeout",
            EndReason::GpuUnavailable => "gpu_unavailable",
            EndReason::WorkerLost | EndReason::Internal => "error",
            EndReason::PromptBlocked => "prompt_blocked",
            EndReason::SessionLimit => "session_limit",
            EndReason::ClientLeft => "client_left",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close_of(f: &Failure) -> Option<(u16, String)> {
        f.wire().ends.and_then(|e| e.close())
    }

    #[test]
    fn every_failure_maps_to_the_documented_wire_error() {
        let init = Failure::BinaryInit.wire();
        assert_eq!(init.code, ErrorCode::InvalidMessage);
        assert!(!init.retryable);
        assert_eq!(
            close_of(&Failure::BinaryInit),
            Some((1003, "invalid_init".into()))
        );

        let later = Failure::BinaryMessage.wire();
        assert!(later.retryable);
        assert_eq!(later.ends, None);

        assert_eq!(
            close_of(&Failure::ExpectedInit("snapshot_state")),
            Some((1003, "expected_session_init_v2".into()))
        );

        let full = Failure::Pool(PoolError::QueueFull { max: 1 });
        let pool = full.wire();
        assert_eq!(pool.code, ErrorCode::GpuUnavailable);
        assert!(pool.retryable);
        assert_eq!(pool.ends, Some(EndReason::GpuUnavailable));
        assert_eq!(close_of(&full).map(|c| c.0), Some(1013));
        let late = Failure::Pool(PoolError::AcquireTimeout(std::time::Duration::from_secs(1)));
        assert_eq!(late.wire().ends, Some(EndReason::AcquireTimeout));

        let gen_err = Failure::NoFrames.wire();
        assert_eq!(gen_err.code, ErrorCode::WorkerFailed);
        assert!(gen_err.retryable);
        assert_eq!(gen_err.ends, None);

        let lost = Failure::Run(PoolError::WorkerDead { worker_id: 0 });
        assert_eq!(close_of(&lost), Some((1011, "worker_failed".into())));

        let none = Failure::NoState.wire();
        assert_eq!(none.code, ErrorCode::InternalError);
        assert!(!none.retryable);

        let blocked = Failure::PromptBlocked {
            what: "initial prompt",
            index: Some(1),
            reason: "matched \"x\"".into(),
            ends: true,
        };
        assert_eq!(
            blocked.to_string(),
            "Prompt safety filter blocked initial prompt 2. matched \"x\""
        );
        assert_eq!(blocked.wire().code, ErrorCode::PromptBlocked);
        assert_eq!(close_of(&blocked), Some((1008, "Prompt blocked".into())));
        let later = Failure::PromptBlocked {
            what: "prompt",
            index: None,
            reason: "r".into(),
            ends: false,
        };
        assert_eq!(later.wire().ends, None);
        assert_eq!(later.to_string(), "Prompt safety filter blocked prompt. r");

        let ip = Failure::TooManyFromAddress {
            ip: "10.0.0.1".parse().expect("ip"),
            limit: 1,
        };
        assert_eq!(ip.wire().product_code, "ip_session_limit");
        assert_eq!(ip.wire().code, ErrorCode::SessionRejected);
        assert_eq!(Failure::NoFrames.wire().product_code, "worker_failed");
        let refused = Failure::Refused(ProductRefusal::NoProject).wire();
        assert_eq!(
            (refused.code, refused.ends),
            (ErrorCode::InvalidMessage, None)
        );
        assert_eq!(
            EndReason::Rejected(Refusal::InvalidInit).product_close(),
            Some((1003, "Invalid initial image".into()))
        );
        assert_eq!(
            EndReason::SegmentCap.product_close(),
            EndReason::SegmentCap.close()
        );
    }

    #[test]
    fn every_end_has_its_close_frame_and_state() {
        use EndReason::*;
        type Case = (
            EndReason,
            Option<(u16, &'static str)>,
            SessionState,
            &'static str,
        );
        let cases: [Case; 18] = [
            (
                PromptBlocked,
                Some((1008, "Prompt blocked")),
                SessionState::Rejected,
                "prompt_blocked",
            ),
            (
                SessionLimit,
                Some((1000, "Session timeout")),
                SessionState::Timeout,
                "session_limit",
            ),
            (
                ClientLeft,
                Some((1000, "client_left")),
                SessionState::Complete,
                "client_left",
            ),
            (ClientClosed, None, SessionState::Complete, "client_closed"),
            (ClientGone, None, SessionState::Complete, "client_gone"),
            (
                InitTimeout,
                Some((1000, "session_timeout")),
                SessionState::Timeout,
                "init_timeout",
            ),
            (
                IdleTimeout,
                Some((1000, "session_timeout")),
                SessionState::Timeout,
                "idle_timeout",
            ),
            (
                SegmentCap,
                Some((1000, "segment_cap")),
                SessionState::Complete,
                "segment_cap",
            ),
            (
                Shutdown,
                Some((1001, "server_shutdown")),
                SessionState::Complete,
                "shutdown",
            ),
            (
                MessageTooBig { limit: 16 },
                Some((1009, "frame exceeds limit of 16 bytes")),
                SessionState::Error,
                "message_too_big",
            ),
            (
                InvalidUtf8,
                Some((1007, "invalid UTF-8 in a text frame")),
                SessionState::Error,
                "invalid_utf8",
            ),
            (
                Rejected(Refusal::SessionLimit),
                Some((1013, "session_rejected")),
                SessionState::Rejected,
                "rejected",
            ),
            (
                Rejected(Refusal::InvalidInit),
                Some((1003, "invalid_init")),
                SessionState::Rejected,
                "rejected",
            ),
            (
                Rejected(Refusal::ExpectedInit),
                Some((1003, "expected_session_init_v2")),
                SessionState::Rejected,
                "rejected",
            ),
            (
                AcquireTimeout,
                Some((1013, "gpu_unavailable")),
                SessionState::Timeout,
                "acquire_timeout",
            ),
            (
                GpuUnavailable,
                Some((1013, "gpu_unavailable")),
                SessionState::Rejected,
                "gpu_unavailable",
            ),
            (
                WorkerLost,
                Some((1011, "worker_failed")),
                SessionState::Error,
                "error",
            ),
            (
                Internal,
                Some((1011, "internal_error")),
                SessionState::Error,
                "error",
            ),
        ];
        for (end, close, state, label) in cases {
            assert_eq!(
                end.close(),
                close.map(|(c, r)| (c, r.to_owned())),
                "{end:?}"
            );
            assert_eq!(end.terminal_state(), state, "{end:?}");
            assert_eq!(end.as_str(), label, "{end:?}");
        }
    }
}
