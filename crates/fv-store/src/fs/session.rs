//! [`FsSessionStore`]: one `sessions/<hex(session id)>.state` file per session.

use super::index::Index;
use super::record::{self, Header, TempRecord};
use super::{FsOptions, Sweep, blocking};
use crate::ids::{check_session_id, hex};
use crate::limits::{SessionLimits, ttl_ms};
use crate::{ContinuationState, SessionStore, StoreError};
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

const MAGIC: &[u8; 8] = b"FVSTATE1";
const EXT: &str = "state";

#[derive(Debug)]
struct Inner {
    limits: SessionLimits,
    options: FsOptions,
    dir: PathBuf,
    tmp: PathBuf,
    index: Mutex<Index<()>>,
}

/// Filesystem [`SessionStore`] with the memory store's semantics (capacity with the least
/// recently put evicted first, TTL from the last put) plus a cap on the encoded state size,
/// surviving restarts. See the [module docs](crate::fs) for the layout and guarantees.
#[derive(Debug, Clone)]
pub struct FsSessionStore {
    inner: Arc<Inner>,
}

fn state_path(dir: &Path, session_id: &str) -> PathBuf {
    dir.join(format!("{}.{EXT}", hex(session_id)))
}

/// Removes `id` from the index and its file; under the index lock.
fn forget(index: &mut Index<()>, dir: &Path, id: &str) -> Result<(), StoreError> {
    index.remove(id);
    record::remove(&state_path(dir, id))
}

fn purge_expired(
    index: &mut Index<()>,
    dir: &Path,
    now_ms: u64,
    ttl_ms: u64,
) -> Result<usize, StoreError> {
    let expired = index.expired(now_ms, ttl_ms);
    for id in &expired {
        forget(index, dir, id)?;
    }
    Ok(expired.len())
}

impl FsSessionStore {
    /// Opens (creating if needed) the store under `options.root`: removes unfinished temp
    /// files, then indexes `sessions/`, deleting expired and corrupt (torn) files. Blocking.
    pub fn open(limits: SessionLimits, options: FsOptions) -> Result<Self, StoreError> {
        limits.validate()?;
        let (dir, tmp) = record::open_dirs(&options.root, "sessions", "state")?;
        let now = options.clock.now_ms();
        let ttl = ttl_ms(limits.ttl);
        let mut found = Vec::new();
        for entry in record::read_dir(&dir)? {
            let path = entry.path();
            let is_ours = path.extension().is_some_and(|e| e == EXT);
            if !is_ours {
                continue;
            }
            match record::open_record(&path, MAGIC) {
                // The name must be the one the id maps to; anything else is not ours.
                Ok(Some((h, _))) if state_path(&dir, &h.key) != path => {}
                // Live, and within the (possibly lowered) state size cap.
                Ok(Some((h, _)))
                    if now.saturating_sub(h.put_ms) < ttl
                        && h.body_len <= limits.max_state_bytes as u64 =>
                {
                    found.push((h.put_ms, h.key))
                }
                Ok(Some(_)) => record::remove(&path)?,
                Ok(None) => {}
                Err(e @ StoreError::Corrupt { .. }) => {
                    tracing::warn!(error = %e, "removing a corrupt state file");
                    record::remove(&path)?;
                }
                Err(e) => return Err(e),
            }
        }
        found.sort();
        let mut index = Index::default();
        for (put_ms, id) in found {
            index.insert(id, put_ms, ());
        }
        // A restart with a smaller capacity: shed the oldest.
        while index.len() > limits.capacity {
            let Some((id, ())) = index.pop_oldest() else {
                break;
            };
            record::remove(&state_path(&dir, &id))?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                limits,
                options,
                dir,
                tmp,
                index: Mutex::new(index),
            }),
        })
    }

    pub fn limits(&self) -> &SessionLimits {
        &self.inner.limits
    }

    /// Live (unexpired) sessions indexed.
    pub fn len(&self) -> usize {
        let now = self.inner.options.clock.now_ms();
        let ttl = ttl_ms(self.inner.limits.ttl);
        let index = self.inner.lock();
        index.len() - index.expired(now, ttl).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Deletes the files of expired states now (they are already invisible); returns how many.
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
    fn lock(&self) -> MutexGuard<'_, Index<()>> {
        // See FsBlobStore: bookkeeping only, a poisoned lock is reused.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn put_blocking(&self, session_id: &str, body: &[u8]) -> Result<(), StoreError> {
        let header = Header {
            put_ms: self.options.clock.now_ms(),
            body_len: body.len() as u64,
            key: session_id.to_string(),
            tag: String::new(),
        };
        let temp = TempRecord::write(&self.tmp, MAGIC, &header, body, self.options.fsync)?;
        {
            let mut index = self.lock();
            purge_expired(
                &mut index,
                &self.dir,
                header.put_ms,
                ttl_ms(self.limits.ttl),
            )?;
            while !index.contains(session_id) && index.len() >= self.limits.capacity {
                match index.pop_oldest() {
                    Some((id, ())) => record::remove(&state_path(&self.dir, &id))?,
                    None => break,
                }
            }
            // Rename over the old file: readers see the old state or the new one.
            temp.persist(&state_path(&self.dir, session_id))?;
            index.insert(session_id.to_string(), header.put_ms, ());
        }
        if self.options.fsync {
            record::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn get_blocking(&self, session_id: &str) -> Result<Option<ContinuationState>, StoreError> {
        let now = self.options.clock.now_ms();
        let live = self
            .lock()
            .get(session_id)
            .is_some_and(|e| !e.is_expired(now, ttl_ms(self.limits.ttl)));
        if !live {
            return Ok(None);
        }
        let path = state_path(&self.dir, session_id);
        let Some((header, file)) = record::open_record(&path, MAGIC)? else {
            return Ok(None); // dropped or evicted meanwhile
        };
        let body = record::read_body(&path, &header, file)?;
        let state = serde_json::from_slice(&body).map_err(|e| StoreError::Corrupt {
            what: path.display().to_string(),
            reason: format!("state JSON: {e}"),
        })?;
        Ok(Some(state))
    }
}

impl Sweep for Inner {
    fn sweep_blocking(&self) -> Result<usize, StoreError> {
        let now = self.options.clock.now_ms();
        purge_expired(&mut self.lock(), &self.dir, now, ttl_ms(self.limits.ttl))
    }
}

#[async_trait]
impl SessionStore for FsSessionStore {
    async fn put_state(
        &self,
        session_id: &str,
        state: ContinuationState,
    ) -> Result<(), StoreError> {
        check_session_id(session_id)?;
        let body = serde_json::to_vec(&state)
            .map_err(|e| StoreError::Backend(format!("cannot encode state: {e}")))?;
        let max = self.inner.limits.max_state_bytes;
        if body.len() > max {
            return Err(StoreError::StateTooLarge {
                size: body.len(),
                max,
            });
        }
        let inner = Arc::clone(&self.inner);
        let session_id = session_id.to_string();
        blocking(move || inner.put_blocking(&session_id, &body)).await
    }

    async fn get_state(&self, session_id: &str) -> Result<Option<ContinuationState>, StoreError> {
        check_session_id(session_id)?;
        let inner = Arc::clone(&self.inner);
        let session_id = session_id.to_string();
        blocking(move || inner.get_blocking(&session_id)).await
    }

    async fn drop_session(&self, session_id: &str) -> Result<(), StoreError> {
        check_session_id(session_id)?;
        let inner = Arc::clone(&self.inner);
        let session_id = session_id.to_string();
        blocking(move || forget(&mut inner.lock(), &inner.dir, &session_id)).await
    }
}
