//! The crate's error type and its one translation to the wire.
//!
//! Session-level variants say which side failed (the router itself, a replica while
//! connecting, a replica mid-session) and whether the client may retry.

use crate::config::ConfigError;
use fv_protocol::{ErrorCode, close};

/// Why the router could not start, or why a session could not be bridged.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The configuration breaks a rule (nothing was bound).
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The listen address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// `host:port` from the config.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("router I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Router side: no replica is healthy with room for a session.
    #[error("router: no healthy replica available")]
    NoHealthyReplica,
    /// Replica side, at connect: TCP, timeout or WebSocket handshake failure (another replica
    /// may work).
    #[error("replica {replica}: {reason}")]
    Connect {
        /// The replica's label.
        replica: String,
        /// What went wrong.
        reason: String,
    },
    /// Replica side, at connect: the replica answered the upgrade with an HTTP error status.
    /// 401 and 403 are about the client's credentials or origin, so no other replica is tried.
    #[error("replica {replica} refused the WebSocket upgrade with HTTP {status}")]
    UpgradeRefused {
        /// The replica's label.
        replica: String,
        /// The HTTP status.
        status: u16,
    },
    /// Every attempt failed; holds the last attempt's error.
    #[error("router bridge failed: {0}")]
    BridgeFailed(Box<RouterError>),
    /// Replica side, mid-session: the replica's connection ended without a close frame or a
    /// write to it failed.
    #[error("router: replica connection lost ({0})")]
    ReplicaLost(String),
}

/// What the client is sent for a session-level error: an `error` frame, then a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// `error.code`.
    pub code: ErrorCode,
    /// `error.message`.
    pub message: String,
    /// `error.retryable`.
    pub retryable: bool,
    /// Close code that follows.
    pub close_code: u16,
    /// Close reason that follows.
    pub close_reason: &'static str,
}

/// Close reason for bridge failures (1011), matching the server's reason for the same code.
pub const REASON_WORKER_FAILED: &str = "worker_failed";
/// Close reason when a replica refused the client's credentials or origin (1008).
pub const REASON_REPLICA_REFUSED: &str = "replica_refused";

impl RouterError {
    /// Whether a new connection may succeed later (the `retryable` the client sees).
    pub fn retryable(&self) -> bool {
        match self {
            Self::UpgradeRefused { status, .. } => !matches!(status, 401 | 403),
            Self::BridgeFailed(inner) => inner.retryable(),
            Self::Config(_) | Self::Bind { .. } => false,
            _ => true,
        }
    }

    /// Whether the next replica should be tried (only before the client saw anything).
    pub(crate) fn try_next_replica(&self) -> bool {
        match self {
            Self::Connect { .. } => true,
            Self::UpgradeRefused { status, .. } => !matches!(status, 401 | 403),
            _ => false,
        }
    }

    /// The one mapping of session-level errors to `error{...}` + close code.
    pub fn to_wire(&self) -> WireError {
        match self {
            Self::NoHealthyReplica => WireError {
                code: ErrorCode::GpuUnavailable,
                message: self.to_string(),
                retryable: true,
                close_code: close::TRY_AGAIN_LATER,
                close_reason: close::REASON_NO_HEALTHY_REPLICA,
            },
            Self::UpgradeRefused {
                status: 401 | 403, ..
            } => WireError {
                code: ErrorCode::WorkerFailed,
                message: self.to_string(),
                retryable: false,
                close_code: close::POLICY,
                close_reason: REASON_REPLICA_REFUSED,
            },
            Self::BridgeFailed(inner) if !inner.retryable() => inner.to_wire(),
            _ => WireError {
                code: ErrorCode::WorkerFailed,
                message: self.to_string(),
                retryable: true,
                close_code: close::INTERNAL,
                close_reason: REASON_WORKER_FAILED,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_mapping() {
        let w = RouterError::NoHealthyReplica.to_wire();
        assert_eq!(
            (w.code, w.retryable, w.close_code, w.close_reason),
            (ErrorCode::GpuUnavailable, true, 1013, "no_healthy_replica")
        );
        assert_eq!(w.message, "router: no healthy replica available");
        let connect = RouterError::Connect {
            replica: "a".into(),
            reason: "connection refused".into(),
        };
        assert!(connect.try_next_replica());
        let w = RouterError::BridgeFailed(Box::new(connect)).to_wire();
        assert_eq!(
            (w.code, w.retryable, w.close_code),
            (ErrorCode::WorkerFailed, true, 1011)
        );
        assert!(w.message.starts_with("router bridge failed: replica a:"));
        let denied = RouterError::UpgradeRefused {
            replica: "a".into(),
            status: 401,
        };
        assert!(!denied.try_next_replica());
        let w = RouterError::BridgeFailed(Box::new(denied)).to_wire();
        assert_eq!((w.retryable, w.close_code), (false, 1008));
        let w = RouterError::ReplicaLost("reset".into()).to_wire();
        assert_eq!((w.code, w.close_code), (ErrorCode::WorkerFailed, 1011));
    }
}
