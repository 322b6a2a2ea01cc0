//! Bounded, TTL-limited in-memory stores.
//!
//! Both keep their entries in one [`fv_lru::LruTtlMap`] (the map the router's sticky table
//! uses too). An entry is used only when it is put, so eviction is oldest-put first and the TTL
//! runs from the last put; expired entries are invisible at once and purged lazily, on the
//! next call that touches the store. The clock is tokio's (`tokio::time::Instant`, handed to the
//! map as a std `Instant`), so tests can pause and advance it. All work happens under a
//! `std::sync::Mutex` held for O(log n) map operations only; blob bytes are shared as `Arc` so
//! `get` copies them outside the lock.

use crate::{BlobStore, SessionStore, StoreError};
use async_trait::async_trait;
use fv_core::ContinuationState;
use fv_lru::LruTtlMap;
use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Default [`MemoryStoreConfig::capacity`]: 1024 sessions.
pub const DEFAULT_SESSION_CAPACITY: usize = 1024;
/// Default [`MemoryStoreConfig::ttl`]: 1 hour.
pub const DEFAULT_STATE_TTL: Duration = Duration::from_secs(3600);
/// Default [`MemoryBlobConfig::max_total_bytes`]: 256 MiB.
pub const DEFAULT_MAX_TOTAL_BYTES: usize = 256 * 1024 * 1024;
/// Default [`MemoryBlobConfig::max_blob_bytes`]: 64 MiB.
pub const DEFAULT_MAX_BLOB_BYTES: usize = 64 * 1024 * 1024;
/// Default [`MemoryBlobConfig::max_blobs`]: 65,536 blobs.
pub const DEFAULT_MAX_BLOBS: usize = 65_536;
/// Default [`MemoryBlobConfig::ttl`]: 1 hour.
pub const DEFAULT_BLOB_TTL: Duration = Duration::from_secs(3600);

// A panic under these locks cannot leave the maps half-updated in a harmful way (bookkeeping
// is a few inserts/removes), so a poisoned lock is reused rather than propagated.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// tokio's clock (virtual under a paused test runtime) as the std `Instant` the map takes.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A map for a validated config (`capacity` is at least 1 there; 1 is the floor regardless).
fn lru_map<V>(capacity: usize, ttl: Duration) -> LruTtlMap<String, V> {
    LruTtlMap::new(
        NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
        ttl,
    )
}

fn check_ttl(ttl: Duration) -> Result<(), StoreError> {
    if ttl.is_zero() {
        return Err(StoreError::InvalidConfig {
            field: "ttl",
            reason: "must be greater than 0".to_string(),
        });
    }
    Ok(())
}

/// Limits of a [`MemorySessionStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStoreConfig {
    /// Most sessions kept; putting a new session into a full store evicts the least recently
    /// put one. At least 1. Default [`DEFAULT_SESSION_CAPACITY`].
    pub capacity: usize,
    /// Lifetime of a state, measured from its last put. Greater than 0. Default
    /// [`DEFAULT_STATE_TTL`].
    pub ttl: Duration,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        Self {
            capacity: DEFAULT_SESSION_CAPACITY,
            ttl: DEFAULT_STATE_TTL,
        }
    }
}

impl MemoryStoreConfig {
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.capacity == 0 {
            return Err(StoreError::InvalidConfig {
                field: "capacity",
                reason: "must be at least 1".to_string(),
            });
        }
        check_ttl(self.ttl)
    }
}

/// In-memory [`SessionStore`]: bounded by [`MemoryStoreConfig::capacity`], entries expire
/// [`MemoryStoreConfig::ttl`] after their last put. `Default` uses the default config.
#[derive(Debug)]
pub struct MemorySessionStore {
    config: MemoryStoreConfig,
    states: Mutex<LruTtlMap<String, ContinuationState>>,
}

impl Default for MemorySessionStore {
    fn default() -> Self {
        Self::with_valid(MemoryStoreConfig::default())
    }
}

impl MemorySessionStore {
    /// Validates `config` and creates an empty store.
    pub fn new(config: MemoryStoreConfig) -> Result<Self, StoreError> {
        config.validate()?;
        Ok(Self::with_valid(config))
    }

    fn with_valid(config: MemoryStoreConfig) -> Self {
        Self {
            states: Mutex::new(lru_map(config.capacity, config.ttl)),
            config,
        }
    }

    pub fn config(&self) -> &MemoryStoreConfig {
        &self.config
    }

    /// Live (unexpired) sessions held.
    pub fn len(&self) -> usize {
        let mut states = lock(&self.states);
        states.purge_expired(now());
        states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn put_state(
        &self,
        session_id: &str,
        state: ContinuationState,
    ) -> Result<(), StoreError> {
        // Expired states and, when full, the oldest-put one make room inside `insert`.
        lock(&self.states).insert(session_id.to_string(), state, now());
        Ok(())
    }

    async fn get_state(&self, session_id: &str) -> Result<Option<ContinuationState>, StoreError> {
        Ok(lock(&self.states).get(session_id, now()).cloned())
    }

    async fn drop_session(&self, session_id: &str) -> Result<(), StoreError> {
        lock(&self.states).remove(session_id);
        Ok(())
    }
}

/// Limits of a [`MemoryBlobStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBlobConfig {
    /// Sum of all blob sizes; a put that would exceed it evicts the oldest blobs first.
    /// Default [`DEFAULT_MAX_TOTAL_BYTES`].
    pub max_total_bytes: usize,
    /// Largest single blob; a bigger one fails with [`StoreError::TooLarge`]. At least 1 and
    /// at most `max_total_bytes`. Default [`DEFAULT_MAX_BLOB_BYTES`].
    pub max_blob_bytes: usize,
    /// Most blobs held regardless of size (bounds bookkeeping for tiny blobs); the oldest is
    /// evicted first. At least 1. Default [`DEFAULT_MAX_BLOBS`].
    pub max_blobs: usize,
    /// Lifetime of a blob from its put. Greater than 0. Default [`DEFAULT_BLOB_TTL`].
    pub ttl: Duration,
}

impl Default for MemoryBlobConfig {
    fn default() -> Self {
        Self {
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            max_blob_bytes: DEFAULT_MAX_BLOB_BYTES,
            max_blobs: DEFAULT_MAX_BLOBS,
            ttl: DEFAULT_BLOB_TTL,
        }
    }
}

impl MemoryBlobConfig {
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.max_blob_bytes == 0 {
            return Err(StoreError::InvalidConfig {
                field: "max_blob_bytes",
                reason: "must be at least 1".to_string(),
            });
        }
        if self.max_blob_bytes > self.max_total_bytes {
            return Err(StoreError::InvalidConfig {
                field: "max_blob_bytes",
                reason: format!(
                    "({}) must not exceed max_total_bytes ({})",
                    self.max_blob_bytes, self.max_total_bytes
                ),
            });
        }
        if self.max_blobs == 0 {
            return Err(StoreError::InvalidConfig {
                field: "max_blobs",
                reason: "must be at least 1".to_string(),
            });
        }
        check_ttl(self.ttl)
    }
}

/// Metadata of a stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub session_id: String,
    pub mime: String,
    pub len: usize,
}

#[derive(Debug)]
struct Blob {
    session_id: String,
    mime: String,
    data: Arc<Vec<u8>>,
}

#[derive(Debug)]
struct Blobs {
    /// Bounded by `max_blobs`; the byte budget is enforced on top, in `put`.
    blobs: LruTtlMap<String, Blob>,
    by_session: HashMap<String, HashSet<String>>,
    total_bytes: usize,
}

impl Blobs {
    fn forget(&mut self, blob_id: &str, blob: &Blob) {
        self.total_bytes -= blob.data.len();
        if let Some(ids) = self.by_session.get_mut(&blob.session_id) {
            ids.remove(blob_id);
            if ids.is_empty() {
                self.by_session.remove(&blob.session_id);
            }
        }
    }

    fn remove(&mut self, blob_id: &str) -> Option<Blob> {
        let blob = self.blobs.remove(blob_id)?;
        self.forget(blob_id, &blob);
        Some(blob)
    }

    fn evict_oldest(&mut self) -> bool {
        match self.blobs.pop_lru() {
            Some((id, blob)) => {
                self.forget(&id, &blob);
                true
            }
            None => false,
        }
    }

    fn purge_expired(&mut self, now: Instant) {
        for (id, blob) in self.blobs.purge_expired(now) {
            self.forget(&id, &blob);
        }
    }
}

/// In-memory [`BlobStore`], bounded by total bytes, blob size and blob count; blobs expire
/// [`MemoryBlobConfig::ttl`] after their put. `Default` uses the default config.
#[derive(Debug)]
pub struct MemoryBlobStore {
    config: MemoryBlobConfig,
    inner: Mutex<Blobs>,
}

impl Default for MemoryBlobStore {
    fn default() -> Self {
        Self::with_valid(MemoryBlobConfig::default())
    }
}

impl MemoryBlobStore {
    /// Validates `config` and creates an empty store.
    pub fn new(config: MemoryBlobConfig) -> Result<Self, StoreError> {
        config.validate()?;
        Ok(Self::with_valid(config))
    }

    fn with_valid(config: MemoryBlobConfig) -> Self {
        Self {
            inner: Mutex::new(Blobs {
                blobs: lru_map(config.max_blobs, config.ttl),
                by_session: HashMap::new(),
                total_bytes: 0,
            }),
            config,
        }
    }

    pub fn config(&self) -> &MemoryBlobConfig {
        &self.config
    }

    /// The lock, with expired blobs purged, and the time it was read at.
    fn live(&self) -> (MutexGuard<'_, Blobs>, Instant) {
        let mut inner = lock(&self.inner);
        let now = now();
        inner.purge_expired(now);
        (inner, now)
    }

    /// Live blobs held.
    pub fn len(&self) -> usize {
        self.live().0.blobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sum of the sizes of live blobs.
    pub fn total_bytes(&self) -> usize {
        self.live().0.total_bytes
    }

    /// Owner, mime and size of a live blob.
    pub fn blob_info(&self, blob_id: &str) -> Option<BlobInfo> {
        let (inner, now) = self.live();
        inner.blobs.get(blob_id, now).map(|blob| BlobInfo {
            session_id: blob.session_id.clone(),
            mime: blob.mime.clone(),
            len: blob.data.len(),
        })
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn put(&self, session_id: &str, data: Vec<u8>, mime: &str) -> Result<String, StoreError> {
        let size = data.len();
        if size > self.config.max_blob_bytes {
            return Err(StoreError::TooLarge {
                size,
                max: self.config.max_blob_bytes,
            });
        }
        let blob_id = uuid::Uuid::new_v4().simple().to_string();
        let (mut inner, now) = self.live();
        // size <= max_blob_bytes <= max_total_bytes, so evicting everything always makes room.
        while inner.total_bytes + size > self.config.max_total_bytes && inner.evict_oldest() {}
        let blob = Blob {
            session_id: session_id.to_string(),
            mime: mime.to_string(),
            data: Arc::new(data),
        };
        // The map itself keeps the count at `max_blobs`, evicting the oldest.
        let inserted = inner.blobs.insert(blob_id.clone(), blob, now);
        for (id, old) in inserted.evicted {
            inner.forget(&id, &old);
        }
        inner.total_bytes += size;
        inner
            .by_session
            .entry(session_id.to_string())
            .or_default()
            .insert(blob_id.clone());
        Ok(blob_id)
    }

    async fn get(&self, blob_id: &str) -> Result<Vec<u8>, StoreError> {
        let data = {
            let (inner, now) = self.live();
            inner
                .blobs
                .get(blob_id, now)
                .map(|blob| Arc::clone(&blob.data))
        };
        // The copy happens after the lock is released.
        match data {
            Some(data) => Ok(data.as_ref().clone()),
            None => Err(StoreError::NotFound {
                blob_id: blob_id.to_string(),
            }),
        }
    }

    async fn drop_blob(&self, blob_id: &str) -> Result<(), StoreError> {
        lock(&self.inner).remove(blob_id);
        Ok(())
    }

    async fn drop_session(&self, session_id: &str) -> Result<(), StoreError> {
        let mut inner = lock(&self.inner);
        if let Some(ids) = inner.by_session.remove(session_id) {
            for id in ids {
                inner.remove(&id);
            }
        }
        Ok(())
    }
}
