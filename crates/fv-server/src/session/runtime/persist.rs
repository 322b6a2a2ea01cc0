//! What the runtime keeps outside the process: the initial image on disk, the stream's state
//! and resume record in the stores (checkpointed after every segment, read back to resume),
//! and what `snapshot_state` answers. A store failure is logged and the session goes on.

use super::Runtime;
use crate::error::Failure;
use crate::session::InitRequest;
use crate::session::machine::{Applied, Checkpoint, Resumed};
use fv_core::ContinuationState;
use serde_json::json;

/// `kind` of the record that says where a stream left off (under [`resume_record_key`]).
const RESUME_RECORD_KIND: &str = "fv.resume.v1";

/// Where the resume record of the stream with `token` lives in the session store (its state
/// lives under the token itself).
fn resume_record_key(token: &str) -> String {
    format!("{token}-resume")
}

impl Runtime {
    pub(super) async fn apply_init(&mut self, init: InitRequest) -> Result<Applied, Failure> {
        let max_image = self.state.config.streaming.max_init_image_bytes;
        if let Some(value) = init.initial_image {
            // Base64 decoding of up to the image limit and the file write are blocking work.
            let persisted = tokio::task::spawn_blocking(move || {
                fv_session::decode_initial_image(&value, max_image)?
                    .map(|image| image.persist(None))
                    .transpose()
            })
            .await
            .map_err(|e| Failure::Internal(format!("image task failed: {e}")))?
            .map_err(|e| match e {
                // A disk problem is ours, not the client's.
                fv_session::InitImageError::Persist(io) => {
                    Failure::Internal(format!("cannot store the initial image: {io}"))
                }
                other => Failure::BadImage(other),
            })?;
            if let Some(persisted) = persisted {
                tracing::info!(path = %persisted.path().display(), "initial image stored");
                self.image = Some(persisted);
            }
        }
        let (resume_token, resumed) = match init.resume_token {
            Some(token) => {
                let resumed = self.resume(&token).await?;
                (token, Some(resumed))
            }
            None => (uuid::Uuid::new_v4().simple().to_string(), None),
        };
        self.resume_token = Some(resume_token.clone());
        let has_state = init.continuation_state.is_some();
        if let Some(state) = init.continuation_state {
            // Blob references (a snapshot made where the blob store is shared) are filled in.
            let blobs = self.state.stores.blobs.as_ref();
            let payload = fv_store::payload::hydrate(&state.payload, blobs)
                .await
                .map_err(|e| {
                    Failure::BadState(format!(
                        "session_init_v2.continuation_state cannot be used: {e}"
                    ))
                })?;
            self.last_state = Some(ContinuationState {
                kind: state.kind.clone(),
                payload,
            });
            // Answered verbatim, references and all, until a segment replaces it.
            self.snapshot = Some(state);
        }
        let settings = self.machine.session().settings();
        self.log.session_start(settings);
        self.log.event(
            "session_init",
            json!({
                "has_image": self.image.is_some(),
                "has_continuation_state": has_state,
                "resumed": resumed.map(|r| r.segments),
            }),
        );
        Ok(Applied {
            image_path: self.image.as_ref().map(|i| i.path().to_path_buf()),
            resume_token,
            resumed,
        })
    }

    /// Reads where the stream of `token` left off, and its last state.
    async fn resume(&mut self, token: &str) -> Result<Resumed, Failure> {
        let bad = |why: &str| Failure::BadState(format!("session_init_v2.resume_token: {why}"));
        if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("not a token this server issues (32 hex digits)"));
        }
        let stores = &self.state.stores;
        let record = stores
            .sessions
            .get_state(&resume_record_key(token))
            .await
            .map_err(|e| bad(&format!("the stream's record cannot be read: {e}")))?
            .ok_or_else(|| bad("unknown or expired (no stream to continue)"))?;
        let number = |key: &str| record.payload.get(key).and_then(serde_json::Value::as_f64);
        let (Some(segments), Some(stream_time_ms)) = (number("segments"), number("stream_time_ms"))
        else {
            return Err(bad("the stream's record is damaged"));
        };
        // The state is best effort: without it the stream goes on, only less continuous.
        // Read once: the stored form is what snapshots answer, its hydrated form what the
        // generator continues from.
        let state = async {
            let Some(stored) = stores.continuation.load_raw(token).await? else {
                return Ok(None);
            };
            let payload =
                fv_store::payload::hydrate(&stored.payload, stores.continuation.blobs().as_ref())
                    .await?;
            let hydrated = ContinuationState {
                kind: stored.kind.clone(),
                payload,
            };
            Ok::<_, fv_store::StoreError>(Some((stored, hydrated)))
        };
        (self.snapshot, self.last_state) = match state.await {
            Ok(Some((stored, hydrated))) => (Some(stored), Some(hydrated)),
            Ok(None) => (None, None),
            Err(e) => {
                tracing::warn!(error = %e, "resumed without the stream's last state");
                (None, None)
            }
        };
        tracing::info!(segments, "stream resumed");
        Ok(Resumed {
            segments: segments as u32,
            stream_time_ms,
        })
    }

    /// Persists what a resume needs. A store failure is logged (and counted by the store's
    /// metrics) and the session goes on: the state for its own next segment is kept here.
    pub(super) async fn checkpoint(&mut self, checkpoint: Checkpoint) {
        self.last_state = checkpoint.state;
        self.snapshot.clone_from(&self.last_state);
        let Some(token) = self.resume_token.clone() else {
            return;
        };
        let stores = self.state.stores.clone();
        let saved = match &self.last_state {
            // The stored form (large fields as blob references) is what snapshots answer.
            Some(state) => stores
                .continuation
                .save(&token, state.clone())
                .await
                .map(|report| self.snapshot = Some(report.stored)),
            None => stores.continuation.drop_session(&token).await,
        };
        if let Err(e) = saved {
            tracing::warn!(error = %e, "continuation snapshot not saved; the session goes on");
        }
        let record = ContinuationState {
            kind: RESUME_RECORD_KIND.to_owned(),
            payload: json!({
                "segments": checkpoint.segments,
                "stream_time_ms": checkpoint.stream_time_ms,
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        };
        if let Err(e) = stores
            .sessions
            .put_state(&resume_record_key(&token), record)
            .await
        {
            tracing::warn!(error = %e, "resume record not saved; the session goes on");
        }
    }

    /// Forgets a finished stream: its state, its blobs and its resume record.
    pub(super) async fn drop_stream_records(&self) {
        let Some(token) = &self.resume_token else {
            return;
        };
        let stores = &self.state.stores;
        let dropped = stores.continuation.drop_session(token).await;
        let record = stores
            .sessions
            .drop_session(&resume_record_key(token))
            .await;
        if let Err(e) = dropped.and(record) {
            tracing::warn!(error = %e, "dropping the stream's records failed");
        }
    }
}
