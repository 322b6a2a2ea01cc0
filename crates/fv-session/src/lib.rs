//! Streaming-session building blocks: the session state machine, admission with limits and an
//! idle/init reaper, a per-session JSONL event log, and `initial_image` validation.
//!
//! The crate knows nothing about WebSockets, pools or stores: the server's connection task
//! owns a [`Session`] and a [`SessionHandle`], feeds them plain values and maps
//! [`SessionError`] to wire errors itself.

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
    rfc3339_utc_millis, sanitize_id,
};
pub use manager::{
    DEFAULT_REAP_PERIOD, Expiry, MAX_SESSIONS_LIMIT, MAX_TIMEOUT, MIN_REAP_PERIOD, SessionHandle,
    SessionInfo, SessionLimits, SessionManager,
};
pub use session::{Session, SessionSettings, Toggle, new_session_id};
pub use state::{SessionState, TransitionError};
