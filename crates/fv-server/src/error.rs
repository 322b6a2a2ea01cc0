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
}

/// How a [`Failure`] appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError {
    pub code: ErrorCode,
    pub retryable: bool,
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
            BadMessage(_) | BinaryMessage | OutOfRange(_) | TooManyPending(_) => {
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
        };
        WireError {
            code,
            retryable,
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
        };
        Some((code, reason.to_owned()))
    }

    /// The state the session ends in.
    pub fn terminal_state(&self) -> SessionState {
        match self {
            EndReason::InitTimeout | EndReason::IdleTimeout | EndReason::AcquireTimeout => {
                SessionState::Timeout
            }
            EndReason::Rejected(_) | EndReason::GpuUnavailable => SessionState::Rejected,
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
        let cases: [Case; 15] = [
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
