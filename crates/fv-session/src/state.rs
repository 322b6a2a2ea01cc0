//! The session lifecycle as a pure state machine.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a session is in its life. Serialized in `snake_case` (`gpu_binding`), matching the
/// names FastVideo uses for `/status`.
///
/// Allowed edges (every state may also "move" to itself; terminal states have no other exit):
///
/// | from           | to                                                       |
/// |----------------|----------------------------------------------------------|
/// | `Initializing` | `Queued`, `GpuBinding`, `Rejected`, `Error`, `Timeout`*, `Complete`* |
/// | `Queued`       | `GpuBinding`, `Error`, `Timeout`, `Rejected`, `Complete`*  |
/// | `GpuBinding`   | `Active`, `Error`, `Timeout`, `Complete`*                  |
/// | `Active`       | `Complete`, `Error`, `Timeout`                           |
/// | `Complete`, `Error`, `Timeout`, `Rejected` | — (terminal)                   |
///
/// Edges marked * are deliberate additions to the upstream table:
/// * `Initializing → Timeout`: the init timeout (no `session_init_v2` in time) is a timeout;
///   upstream attempts this edge, fails, and swallows the error, leaving the session
///   `initializing` forever.
/// * `Initializing/Queued/GpuBinding → Complete`: the client left (or the server shut down)
///   before the session became active; that is a normal end, not an error.
///
/// Other deliberate differences from upstream's usage (the table itself is unchanged):
/// * `Queued` is really used: a session waits there for a worker.
/// * `Complete` is the normal end (segment cap reached, client stop, server shutdown).
/// * A failed segment (`worker_failed`) is **not** a state change: the session stays `Active`
///   and keeps serving. `Error` is reserved for fatal session errors and is terminal, so an
///   `Error` session never generates again (upstream kept generating in `error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Socket accepted, waiting for `session_init_v2`.
    Initializing,
    /// Init accepted, waiting in the queue for a worker.
    Queued,
    /// A worker was found and is being bound to the session.
    GpuBinding,
    /// Bound and serving segments.
    Active,
    /// Ended normally (segment cap, client stop, shutdown). Terminal.
    Complete,
    /// Ended by a fatal error. Terminal.
    Error,
    /// Ended by the init timeout, the idle timeout or a queue timeout. Terminal.
    Timeout,
    /// Refused (bad first frame, queue full). Terminal.
    Rejected,
}

impl SessionState {
    /// Every state, in lifecycle order. Handy for table-driven code and tests.
    pub const ALL: [SessionState; 8] = [
        SessionState::Initializing,
        SessionState::Queued,
        SessionState::GpuBinding,
        SessionState::Active,
        SessionState::Complete,
        SessionState::Error,
        SessionState::Timeout,
        SessionState::Rejected,
    ];

    /// The `snake_case` name used on the wire and in logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            SessionState::Initializing => "initializing",
            SessionState::Queued => "queued",
            SessionState::GpuBinding => "gpu_binding",
            SessionState::Active => "active",
            SessionState::Complete => "complete",
            SessionState::Error => "error",
            SessionState::Timeout => "timeout",
            SessionState::Rejected => "rejected",
        }
    }

    /// True for states with no exit (`Complete`, `Error`, `Timeout`, `Rejected`).
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            SessionState::Complete
                | SessionState::Error
                | SessionState::Timeout
                | SessionState::Rejected
        )
    }

    /// Whether `self → to` is an allowed edge (see the table on [`SessionState`]).
    pub const fn can_transition_to(self, to: SessionState) -> bool {
        use SessionState::*;
        if self as u8 == to as u8 {
            return true;
        }
        match self {
            Initializing => matches!(
                to,
                Queued | GpuBinding | Rejected | Error | Timeout | Complete
            ),
            Queued => matches!(to, GpuBinding | Error | Timeout | Rejected | Complete),
            GpuBinding => matches!(to, Active | Error | Timeout | Complete),
            Active => matches!(to, Complete | Error | Timeout),
            Complete | Error | Timeout | Rejected => false,
        }
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An edge that is not in the table. Returned, never swallowed: the caller decides whether to
/// log it and how to end the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal session state transition: {from} -> {to}")]
pub struct TransitionError {
    /// State the session was in (unchanged by the failed call).
    pub from: SessionState,
    /// State that was requested.
    pub to: SessionState,
}
