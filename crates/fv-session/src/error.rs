//! The crate's error type.

use crate::init_image::InitImageError;
use crate::state::TransitionError;

/// Everything that can go wrong in this crate. The specific errors ([`TransitionError`],
/// [`InitImageError`]) convert into it so callers can use `?` with one type.
#[derive(Debug, thiserror::Error)]
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
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error(transparent)]
    InitImage(#[from] InitImageError),
}
