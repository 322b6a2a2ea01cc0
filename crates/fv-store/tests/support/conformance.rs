//! Behaviour every backend must share (memory, filesystem, Redis). Each function states the
//! limits the store it is given must have.

use fv_store::{BlobStore, ContinuationState, SessionStore, StoreError};
use serde_json::json;

pub fn state(n: u64) -> ContinuationState {
    let payload = json!({ "schema_version": 1, "segment_index": n, "metadata": {"k": "v"} });
    ContinuationState {
        kind: "ltx2.v1".into(),
        payload: payload.as_object().expect("object literal").clone(),
    }
}

pub fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        blob_id: id.to_string(),
    }
}

async fn get(s: &dyn SessionStore, id: &str) -> Option<ContinuationState> {
    s.get_state(id).await.expect("get_state")
}

/// Any capacity ≥ 2.
pub async fn session_put_get_replace_drop(s: &dyn SessionStore) {
    assert_eq!(get(s, "a").await, None);
    s.put_state("a", state(0)).await.expect("put");
    assert_eq!(get(s, "a").await, Some(state(0)));
    s.put_state("a", state(1)).await.expect("overwrite");
    assert_eq!(get(s, "a").await, Some(state(1)));
    s.put_state("b", state(2)).await.expect("put b");
    s.drop_session("a").await.expect("drop");
    assert_eq!(get(s, "a").await, None);
    assert_eq!(get(s, "b").await, Some(state(2)), "other sessions kept");
    s.drop_session("never-existed")
        .await
        .expect("drop of unknown is a no-op");
    // Ids with path and key syntax are just ids.
    for odd in ["../../etc/passwd", "a/b", "state:x", "*", "ü"] {
        s.put_state(odd, state(7)).await.expect("odd id");
        assert_eq!(get(s, odd).await, Some(state(7)), "{odd}");
        s.drop_session(odd).await.expect("drop odd");
    }
}

/// Capacity exactly 3.
pub async fn session_capacity_evicts_least_recently_put(s: &dyn SessionStore) {
    for id in ["a", "b", "c"] {
        s.put_state(id, state(0)).await.expect("put");
    }
    s.put_state("a", state(1))
        .await
        .expect("re-put makes a newest");
    assert!(get(s, "b").await.is_some(), "reading is not use");
    s.put_state("d", state(0)).await.expect("put over capacity");
    assert_eq!(get(s, "b").await, None, "oldest put evicted");
    for id in ["a", "c", "d"] {
        assert!(get(s, id).await.is_some(), "{id} kept");
    }
    s.put_state("d", state(5))
        .await
        .expect("replace in a full store");
    assert!(get(s, "c").await.is_some(), "replacing evicts nothing");
    s.put_state("e", state(0)).await.expect("put");
    assert_eq!(get(s, "c").await, None, "next oldest evicted");
}

/// Any limits with max_blob_bytes ≥ 16.
pub async fn blob_put_get_drop(s: &dyn BlobStore) {
    let id = s
        .put("s1", vec![1, 2, 3], "application/octet-stream")
        .await
        .expect("put");
    assert_eq!(id.len(), 32);
    assert_eq!(s.get(&id).await.expect("get"), vec![1, 2, 3]);
    let empty = s.put("s1", Vec::new(), "x/y").await.expect("empty blob");
    assert_eq!(s.get(&empty).await.expect("get empty"), Vec::<u8>::new());
    let other = s.put("s1", vec![9; 16], "x/y").await.expect("put");
    assert_ne!(other, id, "ids are unique");
    s.drop_blob(&id).await.expect("drop");
    assert_eq!(s.get(&id).await.expect_err("dropped"), not_found(&id));
    s.drop_blob(&id)
        .await
        .expect("dropping a missing blob is a no-op");
    assert_eq!(s.get(&other).await.expect("kept"), vec![9; 16]);
    let unknown = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        s.get(unknown).await.expect_err("unknown"),
        not_found(unknown)
    );
}

/// max_total_bytes 100, max_blob_bytes 40, max_blobs ≥ 10.
pub async fn blob_total_bytes_cap(s: &dyn BlobStore) {
    let err = s
        .put("s", vec![0; 41], "m")
        .await
        .expect_err("over the per-blob cap");
    assert_eq!(err, StoreError::TooLarge { size: 41, max: 40 });
    assert!(!err.is_retryable());
    let a = s.put("s1", vec![1; 40], "m").await.expect("a");
    let b = s.put("s2", vec![2; 40], "m").await.expect("b");
    let c = s.put("s1", vec![3; 30], "m").await.expect("c");
    assert_eq!(s.get(&a).await.expect_err("evicted"), not_found(&a));
    assert_eq!(s.get(&b).await.expect("b kept"), vec![2; 40]);
    let d = s.put("s3", vec![4; 40], "m").await.expect("d");
    assert!(s.get(&b).await.is_err(), "b evicted next");
    assert_eq!(s.get(&c).await.expect("c kept"), vec![3; 30]);
    assert_eq!(s.get(&d).await.expect("d kept"), vec![4; 40]);
    // Dropping frees room: 30 + 40 + 30 fits exactly after dropping nothing else.
    s.drop_blob(&d).await.expect("drop d");
    let e = s.put("s3", vec![5; 40], "m").await.expect("e");
    let f = s.put("s3", vec![6; 30], "m").await.expect("f");
    for (id, v) in [(&c, vec![3; 30]), (&e, vec![5; 40]), (&f, vec![6; 30])] {
        assert_eq!(s.get(id).await.expect("kept"), v);
    }
}

/// max_blobs exactly 3, byte caps not reached by 1-byte blobs.
pub async fn blob_count_cap(s: &dyn BlobStore) {
    let mut ids = Vec::new();
    for i in 0..4u8 {
        ids.push(s.put("s", vec![i], "m").await.expect("put"));
    }
    assert!(s.get(&ids[0]).await.is_err(), "oldest evicted");
    for (i, id) in ids.iter().enumerate().skip(1) {
        assert_eq!(s.get(id).await.expect("kept"), vec![i as u8]);
    }
}

/// Any limits with room for 3 blobs of 30 bytes.
pub async fn blob_drop_session(s: &dyn BlobStore) {
    let mine = [
        s.put("mine", vec![1; 10], "m").await.expect("put"),
        s.put("mine", vec![2; 20], "m").await.expect("put"),
    ];
    let theirs = s.put("theirs", vec![3; 5], "m").await.expect("put");
    s.drop_session("mine").await.expect("drop session");
    for id in &mine {
        assert_eq!(s.get(id).await.expect_err("dropped"), not_found(id));
    }
    assert_eq!(s.get(&theirs).await.expect("kept"), vec![3; 5]);
    s.drop_session("mine")
        .await
        .expect("second drop is a no-op");
    s.drop_session("unknown")
        .await
        .expect("unknown session is a no-op");
    let again = s.put("mine", vec![4], "m").await.expect("put again");
    s.drop_session("mine").await.expect("drop");
    assert!(s.get(&again).await.is_err());
    // A dropped blob is also gone from its session's list: dropping it then the session is fine.
    let x = s.put("x", vec![1], "m").await.expect("put");
    s.drop_blob(&x).await.expect("drop blob");
    s.drop_session("x").await.expect("drop session");
}

/// Ids that no store could have made are refused before they reach a path or key
/// (filesystem and Redis; the memory store answers NotFound, which is also safe).
pub async fn blob_ids_are_checked(s: &dyn BlobStore) {
    for bad in [
        "",
        "..",
        "../../etc/passwd",
        "0123456789abcdef0123456789abcde/",
        "blobs:order",
    ] {
        let err = s.get(bad).await.expect_err(bad);
        assert_eq!(err.kind(), "invalid_id", "{bad}: {err}");
        assert_eq!(s.drop_blob(bad).await.expect_err(bad).kind(), "invalid_id");
    }
    let long = "x".repeat(fv_store::MAX_SESSION_ID_BYTES + 1);
    assert_eq!(
        s.put(&long, vec![1], "m")
            .await
            .expect_err("long session id")
            .kind(),
        "invalid_id"
    );
}
