//! [`ContinuationStore`]: the one call the server makes after each segment (`save`) and before
//! a resumed one (`load`), keeping the JSON in the session store small by moving large payload
//! fields to the blob store ([`crate::payload`]).

use crate::metrics::BLOBS_OFFLOADED_TOTAL;
use crate::payload::{DEFAULT_INLINE_MAX_BYTES, blob_refs, dehydrate, hydrate};
use crate::{BlobStore, ContinuationState, SessionStore, StoreError};
use std::sync::Arc;

/// Session snapshots with their large fields in a blob store.
///
/// Blob lifetime follows upstream's rule: the blobs a snapshot refers to belong to that
/// snapshot, so replacing it ([`save`](Self::save)) or ending the session
/// ([`drop_session`](Self::drop_session)) drops them; the stores' TTLs catch whatever a failed
/// drop leaves behind.
///
/// Every method can fail with a [`StoreError`]; the server should treat a failure as "no
/// snapshot" (see [`StoreError`]'s degradation note), never as a reason to end the session.
#[derive(Clone)]
pub struct ContinuationStore {
    sessions: Arc<dyn SessionStore>,
    blobs: Arc<dyn BlobStore>,
    inline_max_bytes: usize,
}

impl std::fmt::Debug for ContinuationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContinuationStore")
            .field("inline_max_bytes", &self.inline_max_bytes)
            .finish_non_exhaustive()
    }
}

/// What [`ContinuationStore::save`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct SaveReport {
    /// Blobs stored for the new snapshot.
    pub blob_ids: Vec<String>,
    /// Decoded bytes moved out of the payload.
    pub moved_bytes: usize,
    /// Blobs of the replaced snapshot that were dropped.
    pub dropped_blobs: usize,
    /// The snapshot as stored: large fields as `{blob_id, …}` references (what
    /// [`load_raw`](ContinuationStore::load_raw) would read back).
    pub stored: ContinuationState,
}

impl ContinuationStore {
    /// Snapshots in `sessions`, large fields in `blobs`, moved when above
    /// [`DEFAULT_INLINE_MAX_BYTES`].
    pub fn new(sessions: Arc<dyn SessionStore>, blobs: Arc<dyn BlobStore>) -> Self {
        Self {
            sessions,
            blobs,
            inline_max_bytes: DEFAULT_INLINE_MAX_BYTES,
        }
    }

    /// Sets the inline limit: fields whose decoded bytes exceed it move to the blob store.
    pub fn with_inline_max_bytes(mut self, inline_max_bytes: usize) -> Self {
        self.inline_max_bytes = inline_max_bytes;
        self
    }

    pub fn inline_max_bytes(&self) -> usize {
        self.inline_max_bytes
    }

    pub fn sessions(&self) -> &Arc<dyn SessionStore> {
        &self.sessions
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// Stores `state` as the session's snapshot (large fields to the blob store), then drops
    /// the blobs of the snapshot it replaced. On error nothing of the new snapshot is left
    /// behind (best effort) and the old one stays as it was.
    pub async fn save(
        &self,
        session_id: &str,
        state: ContinuationState,
    ) -> Result<SaveReport, StoreError> {
        let previous = match self.sessions.get_state(session_id).await {
            Ok(previous) => previous,
            Err(e) => {
                // Not fatal: the old snapshot's blobs then expire by TTL instead.
                tracing::warn!(error = %e, "cannot read the snapshot being replaced");
                None
            }
        };
        let moved = dehydrate(
            &state.payload,
            self.blobs.as_ref(),
            session_id,
            self.inline_max_bytes,
        )
        .await?;
        let stored = ContinuationState {
            kind: state.kind,
            payload: moved.payload,
        };
        if let Err(e) = self.sessions.put_state(session_id, stored.clone()).await {
            self.drop_blobs(&moved.blob_ids).await;
            return Err(e);
        }
        for field in &moved.fields {
            metrics::counter!(BLOBS_OFFLOADED_TOTAL, "field" => *field).increment(1);
        }
        let stale: Vec<String> = previous
            .map(|p| blob_refs(&p.payload))
            .unwrap_or_default()
            .into_iter()
            .filter(|id| !moved.blob_ids.contains(id))
            .collect();
        let dropped_blobs = self.drop_blobs(&stale).await;
        Ok(SaveReport {
            blob_ids: moved.blob_ids,
            moved_bytes: moved.moved_bytes,
            dropped_blobs,
            stored,
        })
    }

    /// The session's snapshot with its blobs inlined again (the form a generator takes), or
    /// `None` if there is none. A referenced blob that expired is [`StoreError::NotFound`].
    pub async fn load(&self, session_id: &str) -> Result<Option<ContinuationState>, StoreError> {
        let Some(stored) = self.sessions.get_state(session_id).await? else {
            return Ok(None);
        };
        let payload = hydrate(&stored.payload, self.blobs.as_ref()).await?;
        Ok(Some(ContinuationState {
            kind: stored.kind,
            payload,
        }))
    }

    /// The snapshot as stored, with `{blob_id, …}` references: small, and usable by any
    /// server that shares the blob store (e.g. replicas on one Redis).
    pub async fn load_raw(
        &self,
        session_id: &str,
    ) -> Result<Option<ContinuationState>, StoreError> {
        self.sessions.get_state(session_id).await
    }

    /// Forgets the session: its snapshot, the blobs the snapshot refers to, and every blob the
    /// session owns. Tries all three and returns the first error.
    pub async fn drop_session(&self, session_id: &str) -> Result<(), StoreError> {
        let mut first_error = None;
        match self.sessions.get_state(session_id).await {
            Ok(Some(state)) => {
                self.drop_blobs(&blob_refs(&state.payload)).await;
            }
            Ok(None) => {}
            Err(e) => first_error = Some(e),
        }
        if let Err(e) = self.blobs.drop_session(session_id).await {
            first_error.get_or_insert(e);
        }
        if let Err(e) = self.sessions.drop_session(session_id).await {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Drops blobs, logging failures; returns how many drops succeeded.
    async fn drop_blobs(&self, ids: &[String]) -> usize {
        let mut dropped = 0;
        for id in ids {
            match self.blobs.drop_blob(id).await {
                Ok(()) => dropped += 1,
                Err(e) => tracing::warn!(blob_id = %id, error = %e, "cannot drop a blob"),
            }
        }
        dropped
    }
}
