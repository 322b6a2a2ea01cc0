//! The crate's error type.

use crate::init_image::InitImageError;
use crate::state::TransitionError;

/// Everything that can go wrong in this crate. The specific errors ([`TransitionError`],
/// [`InitImageError`]) convert into it so callers can use `?` with one type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Every session slot is taken. Maps to `session_rejected` + close 1013 on the wire.
    #[error("max sessions reached ({max})")]
    Full {
        /// The configured `max_sessions`.
        max: usize,
    },
    /// [`SessionManager::shutdown`](crate::SessionManager::shutdown) was called; no new
    /// sessions are admitted.
    #[error("server is shutting down; no new sessions")]
    ShuttingDown,
    /// A [`SessionLimits`](crate::SessionLimits) value is out of range.
    #[error("invalid session limits: {field} {reason}")]
    InvalidLimits {
        /// Name of the offending field.
        field: &'static str,
        /// What is wrong with it, including the value.
        reason: String,
    },
    /// [`Session::complete_segment`](crate::Session::complete_segment) after the last
    /// segment the cap allows.
    #[error("segment cap reached ({cap} segments)")]
    CapReached {
        /// The configured `segment_cap`.
        cap: u32,
    },
    /// [`Session::complete_segment`](crate::Session::complete_segment) while the session is
    /// not active.
    #[error("no segment can complete while the session is {state}")]
    NotActive {
        /// The session's state.
        state: crate::SessionState,
    },
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error(transparent)]
    InitImage(#[from] InitImageError),
}
