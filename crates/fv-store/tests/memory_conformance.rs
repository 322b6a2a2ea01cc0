//! The memory stores pass the same conformance suite as the filesystem and Redis stores.

mod support;

use fv_store::{MemoryBlobConfig, MemoryBlobStore, MemorySessionStore, MemoryStoreConfig};
use support::conformance as c;

fn sessions(capacity: usize) -> MemorySessionStore {
    MemorySessionStore::new(MemoryStoreConfig {
        capacity,
        ..MemoryStoreConfig::default()
    })
    .expect("valid")
}

fn blobs(max_total_bytes: usize, max_blob_bytes: usize, max_blobs: usize) -> MemoryBlobStore {
    MemoryBlobStore::new(MemoryBlobConfig {
        max_total_bytes,
        max_blob_bytes,
        max_blobs,
        ..MemoryBlobConfig::default()
    })
    .expect("valid")
}

#[tokio::test]
async fn sessions_conform() {
    c::session_put_get_replace_drop(&sessions(8)).await;
    c::session_capacity_evicts_least_recently_put(&sessions(3)).await;
}

#[tokio::test]
async fn blobs_conform() {
    c::blob_put_get_drop(&blobs(1000, 100, 100)).await;
    c::blob_total_bytes_cap(&blobs(100, 40, 100)).await;
    c::blob_count_cap(&blobs(1000, 100, 3)).await;
    c::blob_drop_session(&blobs(1000, 100, 100)).await;
}
