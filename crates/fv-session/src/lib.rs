//! Streaming-session building blocks: the session state machine, admission with limits and an
//! idle/init reaper, a per-session JSONL event log, and `initial_image` validation.
//!
//! The crate knows nothing about WebSockets, pools or stores: the server's connection task
//! owns a [`Session`], feeds it plain values and maps [`SessionError`] to wire errors itself.
//! Embed it in any server that needs "at most N sessions, each with a lifecycle, a segment cap
//! and timeouts".
//!
//! # Main types
//!
//! * [`SessionManager`]: admits sessions up to [`SessionLimits::max_sessions`], expires silent
//!   ones (init and idle timeouts, checked by [`SessionManager::spawn_reaper`] or
//!   [`SessionManager::reap`]), and gives `/status` a [`SessionManager::snapshot`]. Shared as
//!   `Arc<SessionManager>`.
//! * [`Session`]: one admitted session, owned by the connection task, and the single source of
//!   truth about it: the slot it holds (freed on drop), its [`SessionState`] (changed only by
//!   [`Session::transition`], which refuses edges outside the table with a
//!   [`TransitionError`] and publishes accepted ones to the manager in the same step), its
//!   segment count (bounded by [`SessionLimits::segment_cap`]:
//!   [`Session::complete_segment`] refuses to go past it), its settings, and its timers
//!   ([`touch`](Session::touch), [`set_busy`](Session::set_busy),
//!   [`mark_initialized`](Session::mark_initialized); the manager's verdict arrives through
//!   [`expired`](Session::expired) as an [`Expiry`]).
//! * [`SessionLogger`] / [`SessionLog`]: `session-<id>.jsonl` files with `session_start`,
//!   `segment` ([`SegmentRecord`]), `error` and `session_end` events.
//! * [`decode_initial_image`] → [`InitImage`] → [`InitImage::persist`] → [`PersistedImage`]:
//!   validates `session_init_v2.initial_image` and writes it to a temp file for the generator.
//! * [`SessionError`]: the crate's one error type; the specific errors convert into it.
//!
//! # Invariants
//!
//! * Every admitted [`Session`] holds a slot until it is **dropped**, also after it expired;
//!   the limit counts sockets that have not sent `session_init_v2` yet (the init timeout
//!   bounds them).
//! * A session runs exactly one timer: the init timeout from admission until
//!   [`mark_initialized`](Session::mark_initialized), then the idle timeout, restarted by
//!   every [`touch`](Session::touch). No timer runs while the session is busy
//!   ([`set_busy`](Session::set_busy)) or once it is in a terminal state.
//! * A session expires at most once; the first [`Expiry`] reason is kept.
//! * What `/status` shows is what the session is: there is no separate "publish" step that
//!   could be forgotten. A refused transition leaves the state unchanged and is returned,
//!   never swallowed; terminal states (`Complete`, `Error`, `Timeout`, `Rejected`) have no
//!   exit.
//! * At most [`SessionLimits::segment_cap`] segments complete per session.
//! * Every limit is validated ([`SessionLimits::validate`]); out-of-range values are an
//!   [`SessionError::InvalidLimits`] naming the field.
//! * Logging never fails a session: IO errors are reported once through `tracing`.
//! * A [`PersistedImage`]'s file is deleted when the value is dropped.
//!
//! # Example
//!
//! ```
//! use fv_session::{SessionError, SessionLimits, SessionManager, SessionState};
//!
//! let manager = SessionManager::new(SessionLimits {
//!     max_sessions: 1,
//!     segment_cap: 2,
//!     ..SessionLimits::default()
//! })?;
//! // At accept time, before reading a frame:
//! let mut session = manager.admit()?;
//! assert!(matches!(manager.admit(), Err(SessionError::Full { max: 1 })));
//!
//! // session_init_v2 accepted: the idle timeout replaces the init timeout.
//! session.mark_initialized();
//! for state in [SessionState::Queued, SessionState::GpuBinding, SessionState::Active] {
//!     session.transition(state)?;
//! }
//! session.complete_segment()?;
//! // What /status shows, without a separate publish step:
//! assert_eq!(manager.snapshot()[0].state, SessionState::Active);
//! assert_eq!(manager.snapshot()[0].segment_idx, 1);
//!
//! // The cap is the session's own rule.
//! session.complete_segment()?;
//! assert!(session.cap_reached());
//! assert!(matches!(session.complete_segment(), Err(SessionError::CapReached { cap: 2 })));
//!
//! // Edges outside the table are errors; the state stays as it was.
//! let err = session
//!     .transition(SessionState::Queued)
//!     .expect_err("active -> queued is not an edge");
//! assert_eq!(err.to_string(), "illegal session state transition: active -> queued");
//! assert_eq!(session.state(), SessionState::Active);
//!
//! drop(session); // frees the slot
//! assert_eq!(manager.active_count(), 0);
//! # Ok::<(), SessionError>(())
//! ```
//!
//! A connection task waits for the client and for the manager's verdict at the same time:
//!
//! ```no_run
//! use fv_session::{DEFAULT_REAP_PERIOD, Session, SessionLimits, SessionManager};
//! use tokio::sync::mpsc;
//!
//! async fn connection(session: Session, mut frames: mpsc::Receiver<String>) {
//!     loop {
//!         tokio::select! {
//!             reason = session.expired() => {
//!                 // Send an error frame naming `reason`, then close the socket.
//!                 eprintln!("session {} ended: {reason}", session.id());
//!                 break;
//!             }
//!             frame = frames.recv() => {
//!                 let Some(_frame) = frame else { break };
//!                 session.touch(); // any client frame restarts the idle timer
//!             }
//!         }
//!     }
//!     // `session` drops here and frees the slot.
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), fv_session::SessionError> {
//! let manager = SessionManager::new(SessionLimits::default())?;
//! let _reaper = manager.spawn_reaper(DEFAULT_REAP_PERIOD);
//! let (_tx, rx) = mpsc::channel(16);
//! tokio::spawn(connection(manager.admit()?, rx));
//! # Ok(())
//! # }
//! ```
//!
//! # Examples
//!
//! * `crates/fv-session/examples/manager.rs` (`cargo run -p fv-session --example manager`):
//!   limits and the reaper with short timeouts, admission and slot release, the init and idle
//!   timeouts, state transitions including a refused one, the JSONL logger writing to a temp
//!   directory, and decoding and persisting an initial image.

mod error;
pub mod init_image;
mod logger;
mod manager;
mod session;
mod state;

pub use error::SessionError;
pub use init_image::{
    ImageKind, InitImage, InitImageError, MAX_INIT_IMAGE_BYTES, PersistedImage,
    decode_initial_image,
};
pub use logger::{
    MAX_FILE_ID_LEN, MAX_LOGGED_PROMPT_BYTES, SegmentRecord, SessionLog, SessionLogger,
};
pub use manager::{
    DEFAULT_REAP_PERIOD, Expiry, MAX_SESSIONS_LIMIT, MAX_TIMEOUT, MIN_REAP_PERIOD, SessionInfo,
    SessionLimits, SessionManager,
};
pub use session::{Session, SessionSettings, Toggle, new_session_id};
pub use state::{SessionState, TransitionError};
