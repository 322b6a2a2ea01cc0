//! Continuation state and the initial image (protocol-facts §9, §10).

use base64::Engine;
use fv_testkit::generators::Behaviour;
use fv_testkit::{TestServer, test_config};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn snapshot_without_state_is_internal_error_and_the_session_goes_on() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    let mut c = server.connect().await?;
    c.init().await?;
    c.send_json(&json!({"type": "snapshot_state"})).await?;
    let err = c.expect("error").await?;
    assert_eq!(err["code"], "internal_error");
    assert_eq!(err["retryable"], false);
    assert_eq!(
        err["message"],
        "no continuation state available for session"
    );
    c.segment("still open").await?;
    Ok(())
}

#[tokio::test]
async fn hydrated_state_is_returned_verbatim_and_reaches_the_generator() -> anyhow::Result<()> {
    let config = test_config();
    let (server, observed) =
        TestServer::with_test_generators(config, 2, Duration::ZERO, Behaviour::Normal).await?;
    let mut c = server.connect().await?;
    let state = json!({"kind": "ltx2.v1", "payload": {"schema_version": 1, "segment_index": 4, "nested": {"a": [1, 2]}}});
    c.init_with(json!({"continuation_state": state})).await?;
    c.send_json(&json!({"type": "snapshot_state"})).await?;
    let snap = c.expect("continuation_state_snapshot").await?;
    assert_eq!(snap["state"], state);
    // The first segment gets the hydrated state; afterwards the generator's own state wins.
    c.segment("continue").await?;
    let requests = observed.requests();
    let seen = requests[0]
        .state
        .as_ref()
        .expect("state passed to the generator");
    assert_eq!(seen.kind, "ltx2.v1");
    assert_eq!(seen.payload["segment_index"], 4);
    c.send_json(&json!({"type": "snapshot_state"})).await?;
    let snap = c.expect("continuation_state_snapshot").await?;
    assert_eq!(snap["state"]["kind"], "ltx2.v1");
    assert_eq!(snap["state"]["payload"]["segment_index"], 0);
    assert_eq!(snap["state"]["payload"]["source_prompt"], "continue");
    c.segment("second").await?;
    let requests = observed.requests();
    assert_eq!(
        requests[1].state.as_ref().expect("state").payload["source_prompt"],
        "continue"
    );
    Ok(())
}

#[tokio::test]
async fn malformed_continuation_state_is_rejected_naming_the_field() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    let mut c = server.connect().await?;
    c.send_json(
        &json!({"type": "session_init_v2", "continuation_state": {"kind": 3, "payload": []}}),
    )
    .await?;
    let err = c.expect("error").await?;
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("continuation_state"),
        "{err}"
    );
    assert_eq!(c.expect_close().await?.0, 1003);
    Ok(())
}

#[tokio::test]
async fn initial_image_is_persisted_for_the_session_and_removed_after() -> anyhow::Result<()> {
    let config = test_config();
    let (server, observed) =
        TestServer::with_test_generators(config, 2, Duration::ZERO, Behaviour::Normal).await?;
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(b"rest of a png");
    let data = base64::engine::general_purpose::STANDARD.encode(&png);
    let mut c = server.connect().await?;
    c.init_with(
        json!({"initial_image": {"mime": "image/png", "name": "../../etc/cat.png", "data": data}}),
    )
    .await?;
    c.segment("one").await?;
    c.segment("two").await?;
    let requests = observed.requests();
    let path = requests[0]
        .image_path
        .clone()
        .expect("image path passed to the generator");
    assert_eq!(
        requests[1].image_path.as_ref(),
        Some(&path),
        "same image for every segment"
    );
    assert!(
        path.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("fastvideo-init-") && n.ends_with(".png"))
    );
    assert_eq!(std::fs::read(&path)?, png);
    assert_eq!(
        *observed.image_existed.lock().expect("lock"),
        vec![true, true]
    );
    c.close(1000, "bye").await?;
    let _ = c.recv().await;
    // Removal happens when the session task ends; give it a moment.
    for _ in 0..100 {
        if !path.exists() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("{} still exists after the session ended", path.display())
}

/// The stream's resume token, from `ltx2_stream_start`.
fn token_of(seen: &[serde_json::Value]) -> String {
    seen.iter()
        .find(|m| m["type"] == "ltx2_stream_start")
        .and_then(|m| m["resume_token"].as_str())
        .expect("ltx2_stream_start carries a resume token")
        .to_owned()
}

#[tokio::test]
async fn a_new_connection_resumes_a_stream_with_its_next_segment() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.generation_segment_cap = 3;
    let (server, observed) =
        TestServer::with_test_generators(config, 1, Duration::ZERO, Behaviour::Normal).await?;
    let mut c = server.connect().await?;
    let token = token_of(&c.init().await?);
    assert_eq!(token.len(), 32);
    let first = c.segment("first").await?;
    let pts = first.find("media_segment_complete").expect("media done")["duration_ms"].clone();
    // The client goes away without a word (a network drop).
    c.abort();

    let mut again = server.connect().await?;
    let seen = again.init_with(json!({"resume_token": token})).await?;
    assert_eq!(token_of(&seen), token, "the stream keeps its token");
    let second = again.segment("second").await?;
    let start = second.find("ltx2_segment_start").expect("start");
    assert_eq!(
        start["segment_idx"], 1,
        "the next segment, not the first again"
    );
    assert_eq!(
        second.find("media_segment_complete").expect("media")["pts_base_ms"],
        pts,
        "stream time goes on"
    );
    // The generator continues from the first segment's state.
    let requests = observed.requests();
    assert_eq!(requests[1].segment_idx, 1);
    assert_eq!(
        requests[1].state.as_ref().expect("state").payload["source_prompt"],
        "first"
    );
    // Earlier segments count against the cap: one more, then the stream is complete.
    again.segment("third").await?;
    let end = again.expect("ltx2_stream_complete").await?;
    assert_eq!(end["reason"], "segment_cap");
    // A finished stream cannot be resumed.
    let mut late = server.connect().await?;
    late.send_json(&json!({"type": "session_init_v2", "resume_token": token}))
        .await?;
    let err = late.expect("error").await?;
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown or expired"),
        "{err}"
    );
    assert_eq!(late.expect_close().await?.0, 1003);
    Ok(())
}

#[tokio::test]
async fn a_stream_resumes_on_another_server_sharing_the_store() -> anyhow::Result<()> {
    let config = test_config();
    let stores = std::sync::Arc::new(config.store.build().await?);
    let deps = |config: &fv_server::config::ServeConfig| -> anyhow::Result<fv_server::ServerDeps> {
        let mut deps = fv_server::mock_deps(config, Duration::ZERO)?;
        deps.stores = Some(stores.clone());
        Ok(deps)
    };
    let a = TestServer::start_with(config.clone(), deps(&config)?).await?;
    let b = TestServer::start_with(config.clone(), deps(&config)?).await?;
    let mut c = a.connect().await?;
    let token = token_of(&c.init().await?);
    c.segment("on a").await?;
    a.shutdown().await?;
    let mut c = b.connect().await?;
    c.init_with(json!({"resume_token": token})).await?;
    let t = c.segment("on b").await?;
    assert_eq!(
        t.find("ltx2_segment_start").expect("start")["segment_idx"],
        1
    );
    Ok(())
}

#[tokio::test]
async fn bad_resume_tokens_are_refused_by_name() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    for token in [
        json!("not-a-token"),
        json!(42),
        json!("0123456789abcdef0123456789abcdef"),
    ] {
        let mut c = server.connect().await?;
        c.send_json(&json!({"type": "session_init_v2", "resume_token": token}))
            .await?;
        let err = c.expect("error").await?;
        assert_eq!(err["code"], "invalid_message");
        assert!(
            err["message"]
                .as_str()
                .unwrap_or_default()
                .contains("resume_token"),
            "{err}"
        );
        assert_eq!(c.expect_close().await?.0, 1003);
    }
    Ok(())
}

/// A generator whose state carries 3 frames of 64 KiB each in `video.frames_b64`, and which
/// records the state each request brought.
struct BigState {
    seen: std::sync::Arc<std::sync::Mutex<Vec<Option<fv_core::ContinuationState>>>>,
}

fn big_frames(segment: u32) -> Vec<serde_json::Value> {
    (0..3u8)
        .map(|i| {
            let bytes = vec![i.wrapping_add(segment as u8); 64 * 1024];
            json!(base64::engine::general_purpose::STANDARD.encode(bytes))
        })
        .collect()
}

impl fv_core::Generator for BigState {
    fn generate(
        &mut self,
        request: &fv_core::GenerationRequest,
        sink: &mut dyn fv_core::GenerationSink,
        cancel: &fv_core::CancelToken,
    ) -> Result<fv_core::GenerationResult, fv_core::GenerateError> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(request.state.clone());
        }
        let mut result = fv_core::MockGenerator::default().generate(request, sink, cancel)?;
        let payload = json!({
            "schema_version": 1,
            "segment_index": request.segment_idx,
            "video": {"frames_b64": big_frames(request.segment_idx)},
        });
        result.state = Some(fv_core::ContinuationState {
            kind: "ltx2.v1".into(),
            payload: payload.as_object().cloned().unwrap_or_default(),
        });
        Ok(result)
    }
}

/// `snapshot_state` answers with the stored form: the frames moved to the blob store and
/// referenced, so the frame stays small; a new session (here on the same server, in
/// production on any replica sharing the blob store) hydrates the references back, and its
/// generator gets the frames themselves.
#[tokio::test]
async fn snapshots_reference_large_fields_in_the_blob_store_and_hydrate_back() -> anyhow::Result<()>
{
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut config = test_config();
    config.store.inline_max_bytes = 64 * 1024;
    let generator = BigState { seen: seen.clone() };
    let deps = fv_server::deps_with_generators(&config, vec![Box::new(generator)])?;
    let server = TestServer::start_with(config, deps).await?;
    let mut a = server.connect().await?;
    a.init().await?;
    a.segment("first").await?;
    a.send_json(&json!({"type": "snapshot_state"})).await?;
    let snap = a.expect("continuation_state_snapshot").await?;
    let video = &snap["state"]["payload"]["video"];
    assert!(video.get("frames_b64").is_none(), "{video}");
    assert_eq!(video["frame_count"], 3, "{video}");
    assert!(video["blob_id"].is_string(), "{video}");
    assert!(
        snap.to_string().len() < 4096,
        "{} bytes",
        snap.to_string().len()
    );
    drop(a);

    let mut b = server.connect().await?;
    b.init_with(json!({"continuation_state": snap["state"].clone()}))
        .await?;
    b.segment("second").await?;
    let states = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    assert_eq!(states.len(), 2);
    let hydrated = states[1].as_ref().expect("the new session's state");
    assert_eq!(
        hydrated.payload["video"]["frames_b64"],
        json!(big_frames(0)),
        "the generator gets the frames, not the references"
    );
    Ok(())
}
