//! [`FsBlobStore`]: one `blobs/<id>.blob` file per blob.

use super::index::Index;
use super::record::{self, Header, MAX_MIME_BYTES, TempRecord};
use super::{FsOptions, Sweep, blocking};
use crate::ids::{check_blob_id, check_session_id, new_blob_id};
use crate::limits::{BlobLimits, ttl_ms};
use crate::{BlobInfo, BlobStore, StoreError};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

const MAGIC: &[u8; 8] = b"FVBLOB01";
const EXT: &str = "blob";

#[derive(Debug)]
struct Meta {
    owner: String,
    size: usize,
}

#[derive(Debug, Default)]
struct State {
    index: Index<Meta>,
    by_session: HashMap<String, HashSet<String>>,
    total_bytes: usize,
}

#[derive(Debug)]
struct Inner {
    limits: BlobLimits,
    options: FsOptions,
    dir: PathBuf,
    tmp: PathBuf,
    state: Mutex<State>,
}

/// Filesystem [`BlobStore`] with the same bounds as the memory one (total bytes, blob size,
/// blob count, TTL from put; oldest evicted first), surviving restarts. See the
/// [module docs](crate::fs) for the layout and guarantees.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    inner: Arc<Inner>,
}

impl State {
    fn unindex(&mut self, id: &str, meta: Meta) {
        self.total_bytes -= meta.size;
        if let Some(ids) = self.by_session.get_mut(&meta.owner) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_session.remove(&meta.owner);
            }
        }
    }

    /// Drops `id` from the index and deletes its file. Called under the lock, so a file is
    /// never deleted after a later put reused its name.
    fn forget(&mut self, dir: &Path, id: &str) -> Result<(), StoreError> {
        if let Some(meta) = self.index.remove(id) {
            self.unindex(id, meta);
        }
        record::remove(&blob_path(dir, id))
    }

    /// Evicts the least recently put blob; `false` when the store is empty.
    fn evict_oldest(&mut self, dir: &Path) -> Result<bool, StoreError> {
        let Some((id, meta)) = self.index.pop_oldest() else {
            return Ok(false);
        };
        self.unindex(&id, meta);
        record::remove(&blob_path(dir, &id))?;
        Ok(true)
    }

    fn purge_expired(&mut self, dir: &Path, now_ms: u64, ttl_ms: u64) -> Result<usize, StoreError> {
        let expired = self.index.expired(now_ms, ttl_ms);
        for id in &expired {
            self.forget(dir, id)?;
        }
        Ok(expired.len())
    }
}

fn blob_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.{EXT}"))
}

impl FsBlobStore {
    /// Opens (creating if needed) the store under `options.root`: removes unfinished temp
    /// files, then indexes `blobs/`, deleting expired and corrupt (torn) files. Blocking.
    pub fn open(limits: BlobLimits, options: FsOptions) -> Result<Self, StoreError> {
        limits.validate()?;
        let (dir, tmp) = record::open_dirs(&options.root, "blobs", "blob")?;
        let now = options.clock.now_ms();
        let ttl = ttl_ms(limits.ttl);
        let mut found = Vec::new();
        for entry in record::read_dir(&dir)? {
            let path = entry.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".blob"))
                .filter(|id| check_blob_id(id).is_ok())
            else {
                continue; // not ours
            };
            match record::open_record(&path, MAGIC) {
                // Live, and within the (possibly lowered) per-blob cap.
                Ok(Some((h, _)))
                    if now.saturating_sub(h.put_ms) < ttl
                        && h.body_len <= limits.max_blob_bytes as u64 =>
                {
                    found.push((h.put_ms, id.to_string(), h.key, h.body_len));
                }
                Ok(Some(_)) => record::remove(&path)?,
                Ok(None) => {}
                Err(e @ StoreError::Corrupt { .. }) => {
                    tracing::warn!(error = %e, "removing a corrupt blob file");
                    record::remove(&path)?;
                }
                Err(e) => return Err(e),
            }
        }
        // Rebuild the put order from the put times on disk.
        found.sort();
        let mut state = State::default();
        for (put_ms, id, owner, len) in found {
            let size = usize::try_from(len).unwrap_or(usize::MAX);
            state.total_bytes = state.total_bytes.saturating_add(size);
            state
                .by_session
                .entry(owner.clone())
                .or_default()
                .insert(id.clone());
            state.index.insert(id, put_ms, Meta { owner, size });
        }
        // A restart with smaller caps: shed the oldest until the store fits.
        while (state.total_bytes > limits.max_total_bytes || state.index.len() > limits.max_blobs)
            && state.evict_oldest(&dir)?
        {}
        Ok(Self {
            inner: Arc::new(Inner {
                limits,
                options,
                dir,
                tmp,
                state: Mutex::new(state),
            }),
        })
    }

    pub fn limits(&self) -> &BlobLimits {
        &self.inner.limits
    }

    /// Live (unexpired) blobs indexed.
    pub fn len(&self) -> usize {
        self.inner.live().index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sum of the sizes of live blobs.
    pub fn total_bytes(&self) -> usize {
        self.inner.live().total_bytes
    }

    /// Owner, mime and size of a live blob (reads its file header).
    pub fn blob_info(&self, blob_id: &str) -> Result<Option<BlobInfo>, StoreError> {
        check_blob_id(blob_id)?;
        if !self.inner.is_live(blob_id) {
            return Ok(None);
        }
        let path = blob_path(&self.inner.dir, blob_id);
        Ok(record::open_record(&path, MAGIC)?.map(|(h, _)| BlobInfo {
            session_id: h.key,
            mime: h.tag,
            len: usize::try_from(h.body_len).unwrap_or(usize::MAX),
        }))
    }

    /// Deletes the files of expired blobs now (they are already invisible); returns how many.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.sweep_blocking()).await
    }

    pub(super) fn sweep_target(&self) -> Weak<dyn Sweep> {
        let strong: Arc<dyn Sweep> = self.inner.clone();
        Arc::downgrade(&strong)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Bookkeeping under this lock is a few map updates and unlinks; a panic there cannot
        // leave state worth refusing to serve, so a poisoned lock is reused.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn live(&self) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        let now = self.options.clock.now_ms();
        if let Err(e) = state.purge_expired(&self.dir, now, ttl_ms(self.limits.ttl)) {
            tracing::warn!(error = %e, "cannot delete an expired blob file");
        }
        state
    }

    fn is_live(&self, id: &str) -> bool {
        let now = self.options.clock.now_ms();
        self.lock()
            .index
            .get(id)
            .is_some_and(|e| !e.is_expired(now, ttl_ms(self.limits.ttl)))
    }

    fn put_blocking(
        &self,
        session_id: &str,
        data: &[u8],
        mime: &str,
    ) -> Result<String, StoreError> {
        let id = new_blob_id();
        let header = Header {
            put_ms: self.options.clock.now_ms(),
            body_len: data.len() as u64,
            key: session_id.to_string(),
            tag: mime.to_string(),
        };
        // The slow part (writing, fsync) happens before the lock is taken.
        let temp = TempRecord::write(&self.tmp, MAGIC, &header, data, self.options.fsync)?;
        let size = data.len();
        {
            let mut state = self.lock();
            state.purge_expired(&self.dir, header.put_ms, ttl_ms(self.limits.ttl))?;
            // size <= max_blob_bytes <= max_total_bytes, so evicting everything makes room.
            while (state.total_bytes + size > self.limits.max_total_bytes
                || state.index.len() >= self.limits.max_blobs)
                && state.evict_oldest(&self.dir)?
            {}
            temp.persist(&blob_path(&self.dir, &id))?;
            state.total_bytes += size;
            state
                .by_session
                .entry(session_id.to_string())
                .or_default()
                .insert(id.clone());
            state.index.insert(
                id.clone(),
                header.put_ms,
                Meta {
                    owner: session_id.to_string(),
                    size,
                },
            );
        }
        if self.options.fsync {
            record::sync_dir(&self.dir)?;
        }
        Ok(id)
    }

    fn get_blocking(&self, blob_id: &str) -> Result<Vec<u8>, StoreError> {
        let not_found = || StoreError::NotFound {
            blob_id: blob_id.to_string(),
        };
        if !self.is_live(blob_id) {
            return Err(not_found());
        }
        let path = blob_path(&self.dir, blob_id);
        // Read outside the lock: a concurrent drop makes this NotFound, never a partial read.
        match record::open_record(&path, MAGIC)? {
            Some((header, file)) => record::read_body(&path, &header, file),
            None => Err(not_found()),
        }
    }
}

impl Sweep for Inner {
    fn sweep_blocking(&self) -> Result<usize, StoreError> {
        let now = self.options.clock.now_ms();
        self.lock()
            .purge_expired(&self.dir, now, ttl_ms(self.limits.ttl))
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, session_id: &str, data: Vec<u8>, mime: &str) -> Result<String, StoreError> {
        check_session_id(session_id)?;
        if mime.len() > MAX_MIME_BYTES {
            return Err(StoreError::InvalidInput {
                field: "mime".to_string(),
                reason: format!("must be at most {MAX_MIME_BYTES} bytes"),
            });
        }
        if data.len() > self.inner.limits.max_blob_bytes {
            return Err(StoreError::TooLarge {
                size: data.len(),
                max: self.inner.limits.max_blob_bytes,
            });
        }
        let inner = Arc::clone(&self.inner);
        let (session_id, mime) = (session_id.to_string(), mime.to_string());
        blocking(move || inner.put_blocking(&session_id, &data, &mime)).await
    }

    async fn get(&self, blob_id: &str) -> Result<Vec<u8>, StoreError> {
        check_blob_id(blob_id)?;
        let inner = Arc::clone(&self.inner);
        let blob_id = blob_id.to_string();
        blocking(move || inner.get_blocking(&blob_id)).await
    }

    async fn drop_blob(&self, blob_id: &str) -> Result<(), StoreError> {
        check_blob_id(blob_id)?;
        let inner = Arc::clone(&self.inner);
        let blob_id = blob_id.to_string();
        blocking(move || inner.lock().forget(&inner.dir, &blob_id)).await
    }

    async fn drop_session(&self, session_id: &str) -> Result<(), StoreError> {
        check_session_id(session_id)?;
        let inner = Arc::clone(&self.inner);
        let session_id = session_id.to_string();
        blocking(move || {
            let mut state = inner.lock();
            let ids = state.by_session.remove(&session_id).unwrap_or_default();
            for id in ids {
                state.forget(&inner.dir, &id)?;
            }
            Ok(())
        })
        .await
    }
}
