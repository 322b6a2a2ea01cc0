//! Metric names of the stores, in one place. Recorded through the `metrics` facade by
//! [`crate::Instrumented`] (which [`crate::StoreConfig::build`] wraps around every store), so
//! they appear in whatever recorder the process installed (the servers' `/metrics`).
//!
//! Labels: `store` = `session` | `blob`; `backend` = `memory` | `filesystem` | `redis` (or
//! the label given to [`crate::Instrumented::new`]); `op` = `put` | `get` | `drop` |
//! `drop_session`; `result` = `ok` | `error`; `kind` = [`crate::StoreError::kind`].

/// Counter: store calls, by `store`, `backend`, `op`, `result`.
pub const OPERATIONS_TOTAL: &str = "fv_store_operations_total";
/// Counter: failed store calls, by `store`, `backend`, `op`, `kind`.
pub const ERRORS_TOTAL: &str = "fv_store_errors_total";
/// Counter: bytes moved by successful calls, by `store`, `backend`, `op` (`put` | `get`).
/// Blobs count their data; states count their JSON encoding.
pub const BYTES_TOTAL: &str = "fv_store_bytes_total";
/// Histogram: seconds per store call, by `store`, `backend`, `op`.
pub const OPERATION_SECONDS: &str = "fv_store_operation_seconds";
/// Counter: continuation payload fields moved into the blob store by
/// [`crate::ContinuationStore::save`], by `field` (`video` | `audio`).
pub const BLOBS_OFFLOADED_TOTAL: &str = "fv_store_blobs_offloaded_total";

/// Registers help text and units with the installed recorder; call once after installing it.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        OPERATIONS_TOTAL,
        "Store calls, by store, backend, op and result"
    );
    describe_counter!(
        ERRORS_TOTAL,
        "Failed store calls, by store, backend, op and error kind"
    );
    describe_counter!(
        BYTES_TOTAL,
        Unit::Bytes,
        "Bytes written (put) and read (get) by successful store calls"
    );
    describe_histogram!(OPERATION_SECONDS, Unit::Seconds, "Time per store call");
    describe_counter!(
        BLOBS_OFFLOADED_TOTAL,
        "Continuation payload fields moved out of the state into the blob store"
    );
}
