//! Large continuation fields out of the payload and back: dehydrate/hydrate round trips,
//! thresholds, the packed frame format, bad input, and ContinuationStore save/load/drop.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use fv_store::payload::{
    DEFAULT_INLINE_MAX_BYTES, PACKED_FRAMES_MIME, SAFETENSORS_MIME, blob_refs, dehydrate, hydrate,
    unpack_frames,
};
use fv_store::{
    BlobStore, ContinuationState, ContinuationStore, FsOptions, FsSessionStore, MemoryBlobStore,
    MemorySessionStore, SessionLimits, StoreError,
};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Distinct, incompressible-looking bytes.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

/// An `ltx2.v1` payload with `frames` PNG-sized frames and an audio tensor.
fn payload(frames: usize, frame_bytes: usize, audio_bytes: usize) -> Map<String, Value> {
    let frames_b64: Vec<Value> = (0..frames)
        .map(|i| Value::String(B64.encode(bytes(frame_bytes, i as u8))))
        .collect();
    let p = json!({
        "schema_version": 1,
        "segment_index": 3,
        "video_conditioning_frame_idx": 0,
        "video_conditioning_strength": 1.0,
        "audio_conditioning_num_frames": 49,
        "audio_conditioning_strength": 1.0,
        "video_position_offset_sec": 1.6666666666666667,
        "metadata": {"prompt": "waves"},
        "audio_sample_rate": 24000,
        "video": {"frames_b64": frames_b64, "note": "kept"},
        "audio": {"safetensors_b64": B64.encode(bytes(audio_bytes, 0xa5))},
    });
    p.as_object().expect("object").clone()
}

fn json_len(p: &Map<String, Value>) -> usize {
    serde_json::to_vec(p).expect("encode").len()
}

#[tokio::test]
async fn large_fields_move_out_and_come_back_byte_identical() {
    let store = MemoryBlobStore::default();
    // 9 frames of 300 KiB = 2.6 MiB of PNG bytes; 2.5 MiB of audio: both above 2 MiB.
    let original = payload(9, 300 * 1024, 5 * 512 * 1024);
    let d = dehydrate(&original, &store, "s1", DEFAULT_INLINE_MAX_BYTES)
        .await
        .expect("dehydrate");
    assert_eq!(d.fields, vec!["video", "audio"]);
    assert_eq!(d.blob_ids.len(), 2);
    assert_eq!(d.moved_bytes, 9 * 300 * 1024 + 5 * 512 * 1024);
    assert!(
        json_len(&d.payload) < 1024,
        "small JSON: {} bytes",
        json_len(&d.payload)
    );
    assert!(json_len(&original) > 6 * 1024 * 1024);
    let video = &d.payload["video"];
    assert_eq!(video["blob_id"], json!(d.blob_ids[0]));
    assert_eq!(video["frame_count"], json!(9));
    assert_eq!(video["note"], json!("kept"));
    assert!(video.get("frames_b64").is_none());
    assert_eq!(d.payload["audio"], json!({"blob_id": d.blob_ids[1]}));
    assert_eq!(d.payload["metadata"], original["metadata"]);
    assert_eq!(blob_refs(&d.payload), d.blob_ids);
    assert_eq!(original["video"].get("blob_id"), None, "input untouched");

    // The stored blobs have the documented formats.
    let info = store.blob_info(&d.blob_ids[0]).expect("video blob");
    assert_eq!(
        (info.session_id.as_str(), info.mime.as_str()),
        ("s1", PACKED_FRAMES_MIME)
    );
    let packed = store.get(&d.blob_ids[0]).await.expect("get");
    assert_eq!(&packed[..4], &9u32.to_be_bytes());
    assert_eq!(&packed[4..8], &(300u32 * 1024).to_be_bytes());
    let frames = unpack_frames(&packed).expect("unpack");
    assert_eq!(frames.len(), 9);
    assert_eq!(frames[4], bytes(300 * 1024, 4).as_slice());
    assert_eq!(
        store.blob_info(&d.blob_ids[1]).expect("audio").mime,
        SAFETENSORS_MIME
    );
    assert_eq!(
        store.get(&d.blob_ids[1]).await.expect("get"),
        bytes(5 * 512 * 1024, 0xa5)
    );

    let back = hydrate(&d.payload, &store).await.expect("hydrate");
    assert_eq!(back, original);
}

#[tokio::test]
async fn small_fields_stay_inline_and_the_threshold_is_exclusive() {
    let store = MemoryBlobStore::default();
    let small = payload(2, 1000, 1000);
    let d = dehydrate(&small, &store, "s", DEFAULT_INLINE_MAX_BYTES)
        .await
        .expect("ok");
    assert_eq!(d.payload, small);
    assert!(d.blob_ids.is_empty() && store.is_empty());

    // 2 frames of 50 bytes = 100 bytes, audio 100 bytes: at a threshold of 100 both stay.
    let edge = payload(2, 50, 100);
    let d = dehydrate(&edge, &store, "s", 100).await.expect("ok");
    assert!(
        d.blob_ids.is_empty(),
        "exactly at the threshold stays inline"
    );
    let d = dehydrate(&edge, &store, "s", 99).await.expect("ok");
    assert_eq!(d.fields, vec!["video", "audio"], "one byte over moves");
    assert_eq!(hydrate(&d.payload, &store).await.expect("hydrate"), edge);

    // Payloads without video/audio (the mock generator's) pass through.
    let mock = json!({"schema_version": 1, "segment_index": 0, "source_prompt": "p"});
    let mock = mock.as_object().expect("object").clone();
    let d = dehydrate(&mock, &store, "s", 0).await.expect("ok");
    assert_eq!(d.payload, mock);
    assert_eq!(hydrate(&mock, &store).await.expect("ok"), mock);
}

#[tokio::test]
async fn bad_fields_are_named_and_leave_no_blobs_behind() {
    let store = MemoryBlobStore::default();
    let mut p = payload(3, 10, 10);
    p["video"]["frames_b64"][1] = json!("not base64!");
    let err = dehydrate(&p, &store, "s", 0).await.expect_err("bad base64");
    assert_eq!(err.kind(), "invalid_input");
    assert!(
        err.to_string()
            .starts_with("invalid payload.video.frames_b64[1]: invalid base64"),
        "{err}"
    );

    let mut p = payload(3, 10, 10);
    p["video"]["frames_b64"] = json!("one string");
    let err = dehydrate(&p, &store, "s", 0)
        .await
        .expect_err("not an array");
    assert_eq!(
        err.to_string(),
        "invalid payload.video.frames_b64: must be an array of base64 strings"
    );

    // Audio fails after video already moved: the video blob is dropped again.
    let mut p = payload(3, 10, 10);
    p["audio"]["safetensors_b64"] = json!(42);
    let err = dehydrate(&p, &store, "s", 0)
        .await
        .expect_err("audio not a string");
    assert_eq!(
        err.to_string(),
        "invalid payload.audio.safetensors_b64: must be a base64 string"
    );
    assert!(store.is_empty(), "no blob left behind");
}

#[tokio::test]
async fn hydrate_reports_missing_and_inconsistent_blobs() {
    let store = MemoryBlobStore::default();
    let d = dehydrate(&payload(3, 10, 10), &store, "s", 0)
        .await
        .expect("ok");
    let mut wrong_count = d.payload.clone();
    wrong_count["video"]["frame_count"] = json!(4);
    let err = hydrate(&wrong_count, &store)
        .await
        .expect_err("count mismatch");
    assert_eq!(err.kind(), "corrupt");
    assert!(
        err.to_string()
            .contains("holds 3 frames, video.frame_count says 4"),
        "{err}"
    );

    // frame_count is optional.
    let mut no_count = d.payload.clone();
    no_count["video"]
        .as_object_mut()
        .expect("object")
        .remove("frame_count");
    assert_eq!(
        hydrate(&no_count, &store).await.expect("ok"),
        payload(3, 10, 10)
    );

    store.drop_blob(&d.blob_ids[1]).await.expect("drop");
    let err = hydrate(&d.payload, &store)
        .await
        .expect_err("audio blob gone");
    assert_eq!(
        err,
        StoreError::NotFound {
            blob_id: d.blob_ids[1].clone()
        }
    );

    let mut not_packed = d.payload.clone();
    let junk = store.put("s", vec![0, 0, 0, 9], "m").await.expect("put");
    not_packed["video"]["blob_id"] = json!(junk);
    assert_eq!(
        hydrate(&not_packed, &store).await.expect_err("junk").kind(),
        "corrupt"
    );
}

fn state(p: Map<String, Value>) -> ContinuationState {
    ContinuationState {
        kind: "ltx2.v1".into(),
        payload: p,
    }
}

#[tokio::test]
async fn continuation_store_saves_small_json_and_replaces_blobs() {
    let sessions = Arc::new(MemorySessionStore::default());
    let blobs = Arc::new(MemoryBlobStore::default());
    let cs = ContinuationStore::new(sessions.clone(), blobs.clone()).with_inline_max_bytes(1000);
    assert_eq!(cs.load("s").await.expect("load"), None);

    let first = state(payload(4, 500, 2000));
    let r1 = cs.save("s", first.clone()).await.expect("save");
    assert_eq!(
        (r1.blob_ids.len(), r1.moved_bytes, r1.dropped_blobs),
        (2, 4000, 0)
    );
    let raw = cs.load_raw("s").await.expect("raw").expect("stored");
    assert_eq!(blob_refs(&raw.payload), r1.blob_ids);
    assert!(json_len(&raw.payload) < 1024);
    assert_eq!(cs.load("s").await.expect("load"), Some(first));

    // The next segment's state replaces the snapshot and its blobs.
    let second = state(payload(4, 600, 10));
    let r2 = cs.save("s", second.clone()).await.expect("save");
    assert_eq!(
        (r2.blob_ids.len(), r2.dropped_blobs),
        (1, 2),
        "audio now inline"
    );
    assert_eq!(blobs.len(), 1);
    assert_eq!(cs.load("s").await.expect("load"), Some(second));

    cs.save("other", state(payload(2, 600, 10)))
        .await
        .expect("save");
    cs.drop_session("s").await.expect("drop");
    assert_eq!(cs.load("s").await.expect("load"), None);
    assert_eq!(blobs.len(), 1, "only the other session's blob left");
    assert!(cs.load("other").await.expect("load").is_some());
}

#[tokio::test]
async fn a_failed_save_keeps_the_old_snapshot_and_leaves_no_blobs() {
    let d = tempfile::tempdir().expect("tmp");
    // A real store whose state cap the next snapshot exceeds even after offloading.
    let sessions = Arc::new(
        FsSessionStore::open(
            SessionLimits {
                max_state_bytes: 1500,
                ..SessionLimits::default()
            },
            FsOptions::new(d.path()),
        )
        .expect("open"),
    );
    let blobs = Arc::new(MemoryBlobStore::default());
    let cs = ContinuationStore::new(sessions.clone(), blobs.clone()).with_inline_max_bytes(600);
    let first = state(payload(2, 400, 10));
    cs.save("s", first.clone()).await.expect("save");
    assert_eq!(blobs.len(), 1);

    let mut too_big = payload(2, 400, 10);
    too_big.insert("metadata".into(), json!({"pad": "x".repeat(2000)}));
    let err = cs
        .save("s", state(too_big))
        .await
        .expect_err("state too large");
    assert!(
        matches!(err, StoreError::StateTooLarge { max: 1500, .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(blobs.len(), 1, "the new snapshot's blob was dropped");
    assert_eq!(
        cs.load("s").await.expect("load"),
        Some(first),
        "old snapshot intact"
    );
}
