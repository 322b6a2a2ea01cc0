//! [`StoreError`]: the one error type of the stores, with its retry and degradation rules.

/// Errors from stores.
///
/// # Degradation
/// A store holds *snapshots*: the server can always go on without one. A caller that gets an
/// error from saving a snapshot should log it and carry on (the session keeps its hot state,
/// only a resume elsewhere is lost); a caller that gets an error from loading one should start
/// the segment without continuation state. [`StoreError::is_retryable`] says whether trying the
/// same call again later may succeed (a timeout, a lost connection) or not (bad input, a full
/// item cap, corrupt data).
///
/// The type is `Clone + PartialEq` so tests and callers can compare errors; backend causes are
/// therefore carried as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The blob does not exist (never stored, dropped, expired or evicted).
    #[error("blob {blob_id} not found")]
    NotFound { blob_id: String },
    /// A single blob is larger than the store accepts.
    #[error("blob of {size} bytes exceeds the {max} byte limit")]
    TooLarge { size: usize, max: usize },
    /// An encoded continuation state is larger than the store accepts.
    #[error("continuation state of {size} bytes exceeds the {max} byte limit")]
    StateTooLarge { size: usize, max: usize },
    /// A store configuration value is out of range.
    #[error("invalid store config: {field} {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    /// A session or blob id this store cannot accept (empty, too long, or a blob id that this
    /// store could not have made, such as `../x`).
    #[error("invalid {what} id {id:?}: {reason}")]
    InvalidId {
        /// `"session"` or `"blob"`.
        what: &'static str,
        id: String,
        reason: &'static str,
    },
    /// An argument or continuation payload field has the wrong shape (e.g.
    /// `payload.video.frames_b64[2]` is not base64, a mime type is too long).
    #[error("invalid {field}: {reason}")]
    InvalidInput { field: String, reason: String },
    /// The backend did not answer within its per-operation timeout.
    #[error("store {op} timed out after {after_ms} ms")]
    Timeout { op: &'static str, after_ms: u64 },
    /// The backend cannot be reached (connection refused, dropped, reconnecting).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A filesystem operation failed.
    #[error("store io error: {0}")]
    Io(String),
    /// Stored bytes could not be decoded (torn file, foreign data, wrong format).
    #[error("stored {what} is corrupt: {reason}")]
    Corrupt { what: String, reason: String },
    /// The backend failed in another way (e.g. a Redis server error such as OOM).
    #[error("store backend error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether the same call may succeed later without any change on the caller's side:
    /// `Timeout` and `Unavailable` are; everything else is not (or not soon).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::Unavailable(_))
    }

    /// A short, stable name of the variant, used as the `kind` label of
    /// [`crate::metrics::ERRORS_TOTAL`].
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::TooLarge { .. } | Self::StateTooLarge { .. } => "too_large",
            Self::InvalidConfig { .. } => "invalid_config",
            Self::InvalidId { .. } => "invalid_id",
            Self::InvalidInput { .. } => "invalid_input",
            Self::Timeout { .. } => "timeout",
            Self::Unavailable(_) => "unavailable",
            Self::Io(_) => "io",
            Self::Corrupt { .. } => "corrupt",
            Self::Backend(_) => "backend",
        }
    }

    pub(crate) fn io(context: &str, e: &std::io::Error) -> Self {
        Self::Io(format!("{context}: {e}"))
    }
}
