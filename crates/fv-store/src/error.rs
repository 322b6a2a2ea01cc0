/// Errors from stores.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The blob does not exist (never stored, dropped, expired or evicted).
    #[error("blob {blob_id} not found")]
    NotFound { blob_id: String },
    /// A single blob is larger than the store accepts.
    #[error("blob of {size} bytes exceeds the {max} byte limit")]
    TooLarge { size: usize, max: usize },
    /// A store configuration value is out of range.
    #[error("invalid store config: {field} {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    /// The backend failed (IO, network); for non-memory implementations.
    #[error("store backend error: {0}")]
    Backend(String),
}
