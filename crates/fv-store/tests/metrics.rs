//! Instrumented records fv_store_* operations, errors by kind, bytes and timings.

use fv_store::metrics::{
    BLOBS_OFFLOADED_TOTAL, BYTES_TOTAL, ERRORS_TOTAL, OPERATION_SECONDS, OPERATIONS_TOTAL,
};
use fv_store::{
    BlobStore, ContinuationState, ContinuationStore, Instrumented, MemoryBlobStore,
    MemorySessionStore, SessionStore,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// `name{k=v,…}` → value, for counters; histograms → number of samples.
fn collect(recorder: &DebuggingRecorder) -> BTreeMap<String, u64> {
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (_, key) = key.into_parts();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            let value = match value {
                DebugValue::Counter(n) => n,
                DebugValue::Histogram(samples) => samples.len() as u64,
                DebugValue::Gauge(g) => g.into_inner() as u64,
            };
            (name, value)
        })
        .collect()
}

#[test]
fn every_call_is_counted_with_its_outcome_and_bytes() {
    let recorder = DebuggingRecorder::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    metrics::with_local_recorder(&recorder, || {
        fv_store::metrics::describe();
        rt.block_on(async {
            let sessions = Instrumented::new("memory", MemorySessionStore::default());
            let blobs = Instrumented::new("memory", MemoryBlobStore::default());
            let state = ContinuationState {
                kind: "k".into(),
                payload: json!({"a": 1}).as_object().expect("object").clone(),
            };
            // {"kind":"k","payload":{"a":1}} is 30 bytes.
            sessions.put_state("s", state).await.expect("put");
            sessions.get_state("s").await.expect("get");
            sessions.get_state("missing").await.expect("get");
            sessions.drop_session("s").await.expect("drop");
            let id = blobs.put("s", vec![0; 100], "m").await.expect("put");
            blobs.get(&id).await.expect("get");
            blobs.get("nope").await.expect_err("missing");
            blobs.drop_blob(&id).await.expect("drop");
            blobs.drop_session("s").await.expect("drop session");

            let cs = ContinuationStore::new(
                Arc::new(sessions) as Arc<dyn SessionStore>,
                Arc::new(blobs) as Arc<dyn BlobStore>,
            )
            .with_inline_max_bytes(1);
            let big = json!({"audio": {"safetensors_b64": "AAAA"}});
            cs.save(
                "s",
                ContinuationState {
                    kind: "k".into(),
                    payload: big.as_object().expect("object").clone(),
                },
            )
            .await
            .expect("save");
        });
    });
    let m = collect(&recorder);
    let get = |name: &str, labels: &str| {
        m.get(&format!("{name}{{{labels}}}"))
            .copied()
            .unwrap_or_else(|| panic!("{name}{{{labels}}} missing from {m:#?}"))
    };
    let ok = |store: &str, op: &str| {
        get(
            OPERATIONS_TOTAL,
            &format!("backend=memory,op={op},result=ok,store={store}"),
        )
    };
    assert_eq!(ok("session", "put"), 2, "put + the save");
    assert_eq!(ok("session", "get"), 3, "two gets + the save's look-up");
    assert_eq!(ok("session", "drop_session"), 1);
    assert_eq!(ok("blob", "put"), 2);
    assert_eq!(ok("blob", "get"), 1);
    assert_eq!(ok("blob", "drop"), 1);
    assert_eq!(ok("blob", "drop_session"), 1);
    assert_eq!(
        get(
            OPERATIONS_TOTAL,
            "backend=memory,op=get,result=error,store=blob"
        ),
        1
    );
    assert_eq!(
        get(
            ERRORS_TOTAL,
            "backend=memory,kind=not_found,op=get,store=blob"
        ),
        1
    );
    assert_eq!(
        get(BYTES_TOTAL, "backend=memory,op=put,store=blob"),
        103,
        "100 + 3 audio bytes"
    );
    assert_eq!(get(BYTES_TOTAL, "backend=memory,op=get,store=blob"), 100);
    assert_eq!(get(BYTES_TOTAL, "backend=memory,op=get,store=session"), 30);
    assert!(get(BYTES_TOTAL, "backend=memory,op=put,store=session") > 30);
    assert_eq!(
        get(OPERATION_SECONDS, "backend=memory,op=put,store=blob"),
        2
    );
    assert_eq!(get(BLOBS_OFFLOADED_TOTAL, "field=audio"), 1);
}
