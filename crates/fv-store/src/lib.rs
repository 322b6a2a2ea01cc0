//! Where continuation state and large binary blobs live between segments.
//!
//! Two small async traits, [`SessionStore`] (one [`ContinuationState`] per session) and
//! [`BlobStore`] (opaque byte blobs owned by a session), each with three bounded backends
//! that expire entries by TTL and evict the oldest when full:
//!
//! | backend | session store | blob store | notes |
//! |---|---|---|---|
//! | memory | [`MemorySessionStore`] | [`MemoryBlobStore`] | one process, lost on restart |
//! | filesystem | [`FsSessionStore`] | [`FsBlobStore`] | atomic files, survives restarts ([`fs`]) |
//! | Redis (feature `redis`) | `RedisSessionStore` | `RedisBlobStore` | shared by replicas (`redis_store`) |
//!
//! On top: [`ContinuationStore`] saves a snapshot after each segment with its large payload
//! fields moved to the blob store ([`payload`]) and loads it back inlined; [`StoreConfig`] is
//! the `store:` config section and builds everything, wrapped in [`Instrumented`] for the
//! `fv_store_*` [`metrics`].
//!
//! **Degradation:** every call can fail with a typed [`StoreError`]
//! ([`StoreError::is_retryable`]); snapshots are an optimisation, so callers continue without
//! one on failure (see [`StoreError`]).

mod config;
mod continuation;
mod error;
pub mod fs;
mod ids;
mod instrument;
mod limits;
mod memory;
pub mod metrics;
pub mod payload;
#[cfg(feature = "redis")]
pub mod redis_store;

pub use config::{
    BlobsSection, ConfigProblem, FilesystemSection, RedisSection, SessionsSection, StoreConfig,
    StoreConfigError, StoreKind, Stores,
};
pub use continuation::{ContinuationStore, SaveReport};
pub use error::StoreError;
pub use fs::{FsBlobStore, FsOptions, FsSessionStore};
pub use fv_core::ContinuationState;
pub use ids::{BLOB_ID_LEN, MAX_SESSION_ID_BYTES};
pub use instrument::Instrumented;
pub use limits::{BlobLimits, DEFAULT_MAX_STATE_BYTES, MAX_ITEM_BYTES, SessionLimits};
pub use memory::{
    BlobInfo, DEFAULT_BLOB_TTL, DEFAULT_MAX_BLOB_BYTES, DEFAULT_MAX_BLOBS, DEFAULT_MAX_TOTAL_BYTES,
    DEFAULT_SESSION_CAPACITY, DEFAULT_STATE_TTL, MemoryBlobConfig, MemoryBlobStore,
    MemorySessionStore, MemoryStoreConfig,
};
#[cfg(feature = "redis")]
pub use redis_store::{RedisBlobStore, RedisConnection, RedisOptions, RedisSessionStore};

use async_trait::async_trait;

/// Keeps the latest [`ContinuationState`] of each session.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores `state` for `session_id`, replacing any previous one.
    async fn put_state(&self, session_id: &str, state: ContinuationState)
    -> Result<(), StoreError>;

    /// The stored state, or `None` if there is none (never stored, dropped, expired or
    /// evicted).
    async fn get_state(&self, session_id: &str) -> Result<Option<ContinuationState>, StoreError>;

    /// Forgets the session's state. Unknown sessions are a no-op.
    async fn drop_session(&self, session_id: &str) -> Result<(), StoreError>;
}

/// Stores opaque blobs (packed frames, audio tensors) that are too large to inline in a
/// continuation payload. Each blob belongs to a session and is dropped with it.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `data` for `session_id` and returns its new, unique blob id.
    async fn put(&self, session_id: &str, data: Vec<u8>, mime: &str) -> Result<String, StoreError>;

    /// The blob's bytes; [`StoreError::NotFound`] if it never existed, was dropped, expired
    /// or was evicted.
    async fn get(&self, blob_id: &str) -> Result<Vec<u8>, StoreError>;

    /// Deletes one blob. A missing blob is a no-op.
    async fn drop_blob(&self, blob_id: &str) -> Result<(), StoreError>;

    /// Deletes every blob `session_id` owns. Unknown sessions are a no-op.
    async fn drop_session(&self, session_id: &str) -> Result<(), StoreError>;
}
