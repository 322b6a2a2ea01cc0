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
