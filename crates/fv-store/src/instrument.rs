//! [`Instrumented`]: a store wrapper that records [`crate::metrics`] for every call, so each
//! backend is measured the same way and none of them carries metrics code.

use crate::metrics::{BYTES_TOTAL, ERRORS_TOTAL, OPERATION_SECONDS, OPERATIONS_TOTAL};
use crate::{BlobStore, ContinuationState, SessionStore, StoreError};
use async_trait::async_trait;
use std::time::Instant;

/// Wraps a [`SessionStore`] or [`BlobStore`] and records `fv_store_*` metrics (see
/// [`crate::metrics`]) for each call, labelled with `backend`.
#[derive(Debug)]
pub struct Instrumented<S> {
    backend: &'static str,
    inner: S,
}

impl<S> Instrumented<S> {
    /// Wraps `inner`; `backend` becomes the `backend` label (`memory`, `filesystem`, `redis`).
    pub fn new(backend: &'static str, inner: S) -> Self {
        Self { backend, inner }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

struct Call {
    store: &'static str,
    backend: &'static str,
    op: &'static str,
    start: Instant,
}

impl Call {
    fn start(store: &'static str, backend: &'static str, op: &'static str) -> Self {
        Self {
            store,
            backend,
            op,
            start: Instant::now(),
        }
    }

    /// Records the outcome; `bytes` is what a successful call moved.
    fn finish<T>(self, result: &Result<T, StoreError>, bytes: impl FnOnce(&T) -> usize) {
        let labels = [
            ("store", self.store),
            ("backend", self.backend),
            ("op", self.op),
        ];
        metrics::histogram!(OPERATION_SECONDS, &labels).record(self.start.elapsed().as_secs_f64());
        match result {
            Ok(value) => {
                metrics::counter!(OPERATIONS_TOTAL, &labels_with(&labels, ("result", "ok")))
                    .increment(1);
                let n = bytes(value);
                if n > 0 {
                    metrics::counter!(BYTES_TOTAL, &labels).increment(n as u64);
                }
            }
            Err(e) => {
                metrics::counter!(OPERATIONS_TOTAL, &labels_with(&labels, ("result", "error")))
                    .increment(1);
                metrics::counter!(ERRORS_TOTAL, &labels_with(&labels, ("kind", e.kind())))
                    .increment(1);
            }
        }
    }
}

fn labels_with(
    labels: &[(&'static str, &'static str); 3],
    extra: (&'static str, &'static str),
) -> [(&'static str, &'static str); 4] {
    [labels[0], labels[1], labels[2], extra]
}

/// Length of the state's JSON encoding, without building the string.
fn encoded_len(state: &ContinuationState) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serializing a JSON map into a counter cannot fail; a failure would just count 0.
    let _ = serde_json::to_writer(&mut count, state);
    count.0
}

#[async_trait]
impl<S: SessionStore> SessionStore for Instrumented<S> {
    async fn put_state(
        &self,
        session_id: &str,
        state: ContinuationState,
    ) -> Result<(), StoreError> {
        let call = Call::start("session", self.backend, "put");
        let len = encoded_len(&state);
        let result = self.inner.put_state(session_id, state).await;
        call.finish(&result, |_| len);
        result
    }

    async fn get_state(&self, session_id: &str) -> Result<Option<ContinuationState>, StoreError> {
        let call = Call::start("session", self.backend, "get");
        let result = self.inner.get_state(session_id).await;
        call.finish(&result, |s| s.as_ref().map_or(0, encoded_len));
        result
    }

    async fn drop_session(&self, session_id: &str) -> Result<(), StoreError> {
        let call = Call::start("session", self.backend, "drop_session");
        let result = self.inner.drop_session(session_id).await;
        call.finish(&result, |_| 0);
        result
    }
}

#[async_trait]
impl<S: BlobStore> BlobStore for Instrumented<S> {
    async fn put(&self, session_id: &str, data: Vec<u8>, mime: &str) -> Result<String, StoreError> {
        let call = Call::start("blob", self.backend, "put");
        let len = data.len();
        let result = self.inner.put(session_id, data, mime).await;
        call.finish(&result, |_| len);
        result
    }

    async fn get(&self, blob_id: &str) -> Result<Vec<u8>, StoreError> {
        let call = Call::start("blob", self.backend, "get");
        let result = self.inner.get(blob_id).await;
        call.finish(&result, Vec::len);
        result
    }

    async fn drop_blob(&self, blob_id: &str) -> Result<(), StoreError> {
        let call = Call::start("blob", self.backend, "drop");
        let result = self.inner.drop_blob(blob_id).await;
        call.finish(&result, |_| 0);
        result
    }

    async fn drop_session(&self, session_id: &str) -> Result<(), StoreError> {
        let call = Call::start("blob", self.backend, "drop_session");
        let result = self.inner.drop_session(session_id).await;
        call.finish(&result, |_| 0);
        result
    }
}
