//! MemoryBlobStore: limits, eviction order, ownership, TTL (paused tokio clock), NotFound.

use fv_store::{
    BlobInfo, BlobStore, DEFAULT_BLOB_TTL, DEFAULT_MAX_BLOB_BYTES, DEFAULT_MAX_BLOBS,
    DEFAULT_MAX_TOTAL_BYTES, MemoryBlobConfig, MemoryBlobStore, StoreError,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::advance;

const TTL: Duration = Duration::from_secs(60);

fn store(max_total_bytes: usize, max_blob_bytes: usize, max_blobs: usize) -> MemoryBlobStore {
    MemoryBlobStore::new(MemoryBlobConfig {
        max_total_bytes,
        max_blob_bytes,
        max_blobs,
        ttl: TTL,
    })
    .expect("valid config")
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        blob_id: id.to_string(),
    }
}

#[test]
fn defaults_and_validation() {
    let d = MemoryBlobConfig::default();
    assert_eq!(d.max_total_bytes, DEFAULT_MAX_TOTAL_BYTES);
    assert_eq!(d.max_total_bytes, 256 * 1024 * 1024);
    assert_eq!(d.max_blob_bytes, DEFAULT_MAX_BLOB_BYTES);
    assert_eq!(d.max_blob_bytes, 64 * 1024 * 1024);
    assert_eq!(d.max_blobs, DEFAULT_MAX_BLOBS);
    assert_eq!(d.ttl, DEFAULT_BLOB_TTL);
    assert!(d.validate().is_ok());
    assert_eq!(MemoryBlobStore::default().config(), &d);

    let cases = [
        (
            MemoryBlobConfig {
                max_blob_bytes: 0,
                ..d
            },
            "invalid store config: max_blob_bytes must be at least 1",
        ),
        (
            MemoryBlobConfig {
                max_total_bytes: 10,
                max_blob_bytes: 11,
                ..d
            },
            "invalid store config: max_blob_bytes (11) must not exceed max_total_bytes (10)",
        ),
        (
            MemoryBlobConfig { max_blobs: 0, ..d },
            "invalid store config: max_blobs must be at least 1",
        ),
        (
            MemoryBlobConfig {
                ttl: Duration::ZERO,
                ..d
            },
            "invalid store config: ttl must be greater than 0",
        ),
    ];
    for (config, message) in cases {
        let err = MemoryBlobStore::new(config).expect_err("invalid");
        assert_eq!(err.to_string(), message);
    }
}

#[tokio::test(start_paused = true)]
async fn put_get_and_not_found() {
    let s: Arc<dyn BlobStore> = Arc::new(store(100, 50, 10));
    let id = s
        .put("s1", vec![1, 2, 3], "application/octet-stream")
        .await
        .expect("put");
    assert_eq!(id.len(), 32);
    assert_eq!(s.get(&id).await.expect("get"), vec![1, 2, 3]);

    let err = s.get("nope").await.expect_err("unknown id");
    assert_eq!(err, not_found("nope"));
    assert_eq!(err.to_string(), "blob nope not found");

    s.drop_blob(&id).await.expect("drop");
    assert_eq!(s.get(&id).await.expect_err("dropped"), not_found(&id));
    s.drop_blob(&id)
        .await
        .expect("dropping a missing blob is a no-op");
}

#[tokio::test(start_paused = true)]
async fn blob_ids_are_unique_and_info_is_kept() {
    let s = store(1000, 10, 100);
    let mut ids = HashSet::new();
    for _ in 0..50 {
        assert!(ids.insert(s.put("s", vec![0], "x/y").await.expect("put")));
    }
    let id = s.put("owner", vec![9; 4], "image/png").await.expect("put");
    assert_eq!(
        s.blob_info(&id),
        Some(BlobInfo {
            session_id: "owner".into(),
            mime: "image/png".into(),
            len: 4
        })
    );
    assert_eq!(s.blob_info("nope"), None);
}

#[tokio::test(start_paused = true)]
async fn blob_above_the_per_blob_limit_is_too_large() {
    let s = store(100, 10, 10);
    let ok = s
        .put("s", vec![0; 10], "m")
        .await
        .expect("exactly at the limit");
    let err = s
        .put("s", vec![0; 11], "m")
        .await
        .expect_err("over the limit");
    assert_eq!(err, StoreError::TooLarge { size: 11, max: 10 });
    assert_eq!(
        err.to_string(),
        "blob of 11 bytes exceeds the 10 byte limit"
    );
    assert_eq!(s.len(), 1, "a refused blob evicts nothing");
    assert!(s.get(&ok).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn total_bytes_limit_evicts_oldest_first() {
    let s = store(100, 40, 100);
    let a = s.put("s1", vec![1; 40], "m").await.expect("a");
    let b = s.put("s2", vec![2; 40], "m").await.expect("b");
    assert_eq!(s.total_bytes(), 80);
    let c = s.put("s1", vec![3; 30], "m").await.expect("c");
    // 80 + 30 > 100: evict the oldest (a) only.
    assert_eq!(s.get(&a).await.expect_err("evicted"), not_found(&a));
    assert!(s.get(&b).await.is_ok());
    assert!(s.get(&c).await.is_ok());
    assert_eq!(s.total_bytes(), 70);

    // A blob needing more room evicts as many old ones as it takes, oldest first.
    let d = s.put("s3", vec![4; 40], "m").await.expect("d");
    assert!(s.get(&b).await.is_err());
    assert!(s.get(&c).await.is_ok(), "30 + 40 fits once b is gone");
    assert!(s.get(&d).await.is_ok());
    assert_eq!(s.total_bytes(), 70);
}

#[tokio::test(start_paused = true)]
async fn blob_count_limit_evicts_oldest_first() {
    let s = store(1000, 10, 3);
    let ids: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..4u8 {
            v.push(s.put("s", vec![i], "m").await.expect("put"));
        }
        v
    };
    assert_eq!(s.len(), 3);
    assert!(s.get(&ids[0]).await.is_err());
    for id in &ids[1..] {
        assert!(s.get(id).await.is_ok());
    }
}

#[tokio::test(start_paused = true)]
async fn drop_session_drops_only_its_blobs() {
    let s = store(1000, 100, 100);
    let mine = [
        s.put("mine", vec![1; 10], "m").await.expect("put"),
        s.put("mine", vec![2; 20], "m").await.expect("put"),
    ];
    let theirs = s.put("theirs", vec![3; 5], "m").await.expect("put");
    s.drop_session("mine").await.expect("drop session");
    for id in &mine {
        assert_eq!(
            s.get(id).await.expect_err("dropped with session"),
            not_found(id)
        );
    }
    assert_eq!(s.get(&theirs).await.expect("kept"), vec![3; 5]);
    assert_eq!(s.total_bytes(), 5);
    s.drop_session("mine")
        .await
        .expect("second drop is a no-op");
    s.drop_session("unknown")
        .await
        .expect("unknown session is a no-op");
    // The session can store blobs again afterwards.
    let again = s.put("mine", vec![4], "m").await.expect("put");
    s.drop_session("mine").await.expect("drop");
    assert!(s.get(&again).await.is_err());
    assert_eq!(s.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn blobs_expire_ttl_after_put() {
    let s = store(1000, 100, 100);
    let old = s.put("s", vec![1; 10], "m").await.expect("put");
    advance(TTL / 2).await;
    let young = s.put("s", vec![2; 10], "m").await.expect("put");
    advance(TTL / 2 - Duration::from_millis(1)).await;
    assert!(s.get(&old).await.is_ok(), "just before the TTL");
    advance(Duration::from_millis(1)).await;
    assert_eq!(s.get(&old).await.expect_err("expired"), not_found(&old));
    assert!(s.get(&young).await.is_ok());
    assert_eq!(
        s.total_bytes(),
        10,
        "expired blob purged from the byte count"
    );
    advance(TTL).await;
    assert!(s.is_empty());
    // Expired blobs also leave the session index: dropping the session is still fine.
    s.drop_session("s").await.expect("drop");
}
