//! The one place where domain errors become wire errors: `ErrorCode`, `retryable`, and whether
//! (and how) the socket is closed afterwards.

use fv_core::GenerateError;
use fv_encoder::EncodeError;
use fv_pool::PoolError;
use fv_protocol::{ErrorCode, ParseError, close};
use fv_session::{InitImageError, SessionError};
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
    /// `Some((code, reason))` when the socket is closed after the error frame.
    pub close: Option<(u16, &'static str)>,
}

impl Failure {
    pub fn wire(&self) -> WireError {
        use Failure::*;
        let (code, retryable, close) = match self {
            Rejected(_) | TooManyFromAddress { .. } => (
                ErrorCode::SessionRejected,
                false,
                Some((close::TRY_AGAIN_LATER, close::REASON_SESSION_REJECTED)),
            ),
            BadInit(_) | BinaryInit | BadImage(_) => (
                ErrorCode::InvalidMessage,
                false,
                Some((close::UNSUPPORTED, close::REASON_INVALID_INIT)),
            ),
            ExpectedInit(_) => (
                ErrorCode::InvalidMessage,
                false,
                Some((close::UNSUPPORTED, close::REASON_EXPECTED_SESSION_INIT_V2)),
            ),
            BadMessage(_) | BinaryMessage | OutOfRange(_) | TooManyPending(_) => {
                (ErrorCode::InvalidMessage, true, None)
            }
            Pool(_) => (
                ErrorCode::GpuUnavailable,
                true,
                Some((close::TRY_AGAIN_LATER, close::REASON_GPU_UNAVAILABLE)),
            ),
            Generate(_) | NoFrames | Encode(_) => (ErrorCode::WorkerFailed, true, None),
            // Without a working worker the session cannot go on: reconnecting gets a new one.
            Run(_) => (
                ErrorCode::WorkerFailed,
                true,
                Some((close::INTERNAL, "worker_failed")),
            ),
            ClientGone => (ErrorCode::InternalError, false, None),
            Store(_) | Internal(_) => (ErrorCode::InternalError, true, None),
            NoState => (ErrorCode::InternalError, false, None),
        };
        WireError {
            code,
            retryable,
            close,
        }
    }

    /// The wire code's name, for metrics labels and logs.
    pub fn code_name(&self) -> &'static str {
        self.wire().code.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_maps_to_the_documented_wire_error() {
        let init = Failure::BinaryInit.wire();
        assert_eq!(init.code, ErrorCode::InvalidMessage);
        assert!(!init.retryable);
        assert_eq!(init.close, Some((1003, "invalid_init")));

        let later = Failure::BinaryMessage.wire();
        assert!(later.retryable);
        assert_eq!(later.close, None);

        let expected = Failure::ExpectedInit("snapshot_state").wire();
        assert_eq!(expected.close, Some((1003, "expected_session_init_v2")));

        let pool = Failure::Pool(PoolError::QueueFull { max: 1 }).wire();
        assert_eq!(pool.code, ErrorCode::GpuUnavailable);
        assert!(pool.retryable);
        assert_eq!(pool.close.map(|c| c.0), Some(1013));

        let gen_err = Failure::NoFrames.wire();
        assert_eq!(gen_err.code, ErrorCode::WorkerFailed);
        assert!(gen_err.retryable);
        assert_eq!(gen_err.close, None);

        let none = Failure::NoState.wire();
        assert_eq!(none.code, ErrorCode::InternalError);
        assert!(!none.retryable);
    }
}
