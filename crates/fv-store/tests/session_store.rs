//! MemorySessionStore: round trip, capacity eviction order, TTL (paused tokio clock).

use fv_store::{
    ContinuationState, DEFAULT_SESSION_CAPACITY, DEFAULT_STATE_TTL, MemorySessionStore,
    MemoryStoreConfig, SessionStore, StoreError,
};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::advance;

const TTL: Duration = Duration::from_secs(60);

fn state(n: u64) -> ContinuationState {
    let payload = json!({ "schema_version": 1, "segment_index": n });
    ContinuationState {
        kind: "ltx2.v1".into(),
        payload: payload.as_object().expect("object literal").clone(),
    }
}

fn store(capacity: usize) -> MemorySessionStore {
    MemorySessionStore::new(MemoryStoreConfig { capacity, ttl: TTL }).expect("valid config")
}

async fn get(s: &dyn SessionStore, id: &str) -> Option<ContinuationState> {
    s.get_state(id).await.expect("memory get never fails")
}

#[test]
fn defaults_and_validation() {
    let d = MemoryStoreConfig::default();
    assert_eq!(d.capacity, DEFAULT_SESSION_CAPACITY);
    assert_eq!(d.capacity, 1024);
    assert_eq!(d.ttl, DEFAULT_STATE_TTL);
    assert_eq!(d.ttl, Duration::from_secs(3600));
    assert!(d.validate().is_ok());
    assert_eq!(MemorySessionStore::default().config(), &d);

    let err = MemorySessionStore::new(MemoryStoreConfig {
        capacity: 0,
        ttl: TTL,
    })
    .expect_err("capacity 0");
    assert_eq!(
        err,
        StoreError::InvalidConfig {
            field: "capacity",
            reason: "must be at least 1".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "invalid store config: capacity must be at least 1"
    );
    let err = MemorySessionStore::new(MemoryStoreConfig {
        capacity: 1,
        ttl: Duration::ZERO,
    })
    .expect_err("ttl 0");
    assert_eq!(
        err.to_string(),
        "invalid store config: ttl must be greater than 0"
    );
}

#[tokio::test(start_paused = true)]
async fn put_get_replace_drop() {
    let s: Arc<dyn SessionStore> = Arc::new(store(4));
    assert_eq!(get(&*s, "a").await, None);
    s.put_state("a", state(0)).await.expect("put");
    assert_eq!(get(&*s, "a").await, Some(state(0)));
    s.put_state("a", state(1)).await.expect("replace");
    assert_eq!(get(&*s, "a").await, Some(state(1)));
    s.drop_session("a").await.expect("drop");
    assert_eq!(get(&*s, "a").await, None);
    s.drop_session("never-existed")
        .await
        .expect("drop of unknown is a no-op");
}

#[tokio::test(start_paused = true)]
async fn full_store_evicts_the_least_recently_put() {
    let s = store(3);
    for id in ["a", "b", "c"] {
        s.put_state(id, state(0)).await.expect("put");
        advance(Duration::from_secs(1)).await;
    }
    // Re-putting "a" makes it the newest; "b" is now the oldest.
    s.put_state("a", state(1)).await.expect("re-put");
    // Reading does not count as use.
    assert!(get(&s, "b").await.is_some());
    s.put_state("d", state(0)).await.expect("put over capacity");
    assert_eq!(s.len(), 3);
    assert_eq!(get(&s, "b").await, None, "oldest put evicted");
    for id in ["a", "c", "d"] {
        assert!(get(&s, id).await.is_some(), "{id} kept");
    }
    s.put_state("e", state(0)).await.expect("put");
    assert_eq!(get(&s, "c").await, None, "next oldest evicted");
    // Replacing an existing key in a full store evicts nothing.
    s.put_state("e", state(2)).await.expect("replace");
    assert_eq!(s.len(), 3);
    assert!(get(&s, "a").await.is_some());
}

#[tokio::test(start_paused = true)]
async fn entries_expire_ttl_after_last_put() {
    let s = store(8);
    s.put_state("a", state(0)).await.expect("put");
    advance(TTL / 2).await;
    s.put_state("b", state(0)).await.expect("put");
    advance(TTL / 2 - Duration::from_millis(1)).await;
    assert!(get(&s, "a").await.is_some(), "just before the TTL");
    advance(Duration::from_millis(1)).await;
    assert_eq!(get(&s, "a").await, None, "expired at the TTL");
    assert!(get(&s, "b").await.is_some());
    assert_eq!(s.len(), 1, "expired entry purged");

    // A put refreshes the TTL.
    advance(TTL / 2 - Duration::from_secs(1)).await;
    s.put_state("b", state(1)).await.expect("refresh");
    advance(TTL - Duration::from_secs(1)).await;
    assert_eq!(get(&s, "b").await, Some(state(1)));
    advance(Duration::from_secs(1)).await;
    assert!(s.is_empty());
}

#[tokio::test(start_paused = true)]
async fn expired_entries_do_not_count_against_capacity() {
    let s = store(2);
    s.put_state("a", state(0)).await.expect("put");
    s.put_state("b", state(0)).await.expect("put");
    advance(TTL).await;
    s.put_state("c", state(0)).await.expect("put");
    s.put_state("d", state(0)).await.expect("put");
    assert!(
        get(&s, "c").await.is_some(),
        "only expired entries made room"
    );
    assert!(get(&s, "d").await.is_some());
}
