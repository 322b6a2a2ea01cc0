//! Health, readiness, status, metrics, the player page, and graceful shutdown.

use fv_testkit::{TestServer, test_config};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn health_endpoints_have_the_upstream_shapes() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    let (code, body) = server.get("/health").await?;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body)?;
    assert_eq!(
        v,
        json!({"status": "ok", "sessions": 0, "stream_mode": "av_fmp4"})
    );
    let (code, body) = server.get("/healthz").await?;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body)?;
    // The mock's name (streaming.service_name), which Dreamverse tooling tells apart from
    // the real backend's `ltx2-streaming-backend`.
    assert_eq!(v["service"], "ltx2-streaming-mock-server");
    assert!(v["ts"].as_str().is_some_and(|t| t.ends_with("+00:00")));
    let (code, body) = server.get("/readyz").await?;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body)?;
    assert_eq!(v["status"], "ready");
    assert_eq!(v["total_gpus"], 2);
    assert_eq!(v["ready_gpu_workers"], 2);
    Ok(())
}

#[tokio::test]
async fn status_and_health_count_live_sessions() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    let mut c = server.connect().await?;
    c.init().await?;
    let (_, body) = server.get("/status").await?;
    let v: Value = serde_json::from_str(&body)?;
    assert_eq!(v["total_gpus"], 2);
    assert_eq!(v["available_gpus"], 1);
    assert_eq!(v["active_sessions"], 1);
    assert_eq!(v["sessions"][0]["state"], "active");
    assert_eq!(v["gpu_status"].as_object().map(|m| m.len()), Some(2));
    let (_, body) = server.get("/health").await?;
    let v: Value = serde_json::from_str(&body)?;
    assert_eq!(v["sessions"], 1);
    Ok(())
}

#[tokio::test]
async fn readyz_is_503_while_workers_warm_up() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.warmup.enabled = true;
    config.default_request.sampling.num_inference_steps = 20;
    let server = TestServer::start_mock(config, Duration::from_secs(2)).await?;
    let (code, body) = server.get("/readyz").await?;
    assert_eq!(code, 503, "{body}");
    let v: Value = serde_json::from_str(&body)?;
    assert_eq!(v["status"], "warming");
    for _ in 0..200 {
        let (code, _) = server.get("/readyz").await?;
        if code == 200 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("never became ready")
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_count_segments() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    let mut c = server.connect().await?;
    c.init().await?;
    c.segment("m").await?;
    c.send_text("nope").await?;
    c.expect("error").await?;
    let (code, body) = server.get("/metrics").await?;
    assert_eq!(code, 200);
    for name in [
        "fv_segments_total",
        "fv_generation_seconds_bucket",
        "fv_encode_seconds_bucket",
        "fv_segment_e2e_seconds_bucket",
        "fv_media_bytes_total",
        "fv_errors_total{code=\"invalid_message\"}",
        "fv_sessions_active",
    ] {
        assert!(body.contains(name), "{name} missing from:\n{body}");
    }
    Ok(())
}

#[tokio::test]
async fn the_player_page_is_served_at_root() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    let (code, body) = server.get("/").await?;
    assert_eq!(code, 200);
    assert!(body.contains("/v1/stream"));
    assert!(body.contains("MediaSource"));
    Ok(())
}

#[tokio::test]
async fn shutdown_lets_the_segment_finish_then_closes_1001() -> anyhow::Result<()> {
    use fv_testkit::generators::Behaviour;
    // The generator hands over its first frames, then waits at a gate the test opens: the
    // drain below is observed while the segment is certainly still in flight.
    let (mut server, observed) =
        TestServer::with_test_generators(test_config(), 1, Duration::ZERO, Behaviour::GatedFrames)
            .await?;
    let mut c = server.connect().await?;
    c.init().await?;
    c.send_json(&json!({"type": "segment_prompt_source", "prompt": "in flight"}))
        .await?;
    c.expect("ltx2_segment_start").await?;
    // A step_complete may come first.
    c.recv_until("media_init").await?;
    let addr = server.addr;
    server.begin_shutdown();
    // While draining, readiness is 503 and new sessions are refused. The drain starts on the
    // server's own task; nothing can end it before the gate opens.
    let mut readyz = (0, String::new());
    for _ in 0..500 {
        readyz = fv_testkit::http_get(addr, "/readyz").await?;
        if readyz.1.contains("draining") {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(readyz.0, 503, "{}", readyz.1);
    assert!(readyz.1.contains("draining"), "{}", readyz.1);
    let url = format!("ws://{addr}/v1/stream");
    assert!(matches!(
        fv_testkit::Client::connect_with_headers(&url, &[]).await?,
        Err(503)
    ));
    // The in-flight segment completes, then the server closes with 1001.
    observed.open_gate();
    let t = c.collect_segment().await?;
    assert!(t.find("media_segment_complete").is_some());
    let end = c.expect("ltx2_stream_complete").await?;
    assert_eq!(end["reason"], "stop_requested");
    assert_eq!(
        c.expect_close().await?,
        (1001, "server_shutdown".to_string())
    );
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn session_events_are_logged_as_jsonl() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = test_config();
    config.streaming.session_log_dir = Some(dir.path().display().to_string());
    let server = TestServer::start(config).await?;
    let mut c = server.connect().await?;
    c.init().await?;
    c.segment("logged prompt").await?;
    c.send_text("garbage").await?;
    c.expect("error").await?;
    c.close(1000, "bye").await?;
    let _ = c.recv().await;
    let mut events = Vec::new();
    for _ in 0..100 {
        let files: Vec<_> = std::fs::read_dir(dir.path())?.collect::<Result<_, _>>()?;
        if let Some(f) = files.first() {
            let text = std::fs::read_to_string(f.path())?;
            events = text
                .lines()
                .map(serde_json::from_str::<Value>)
                .collect::<Result<Vec<_>, _>>()?;
            if events.iter().any(|e| e["event"] == "session_end") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let names: Vec<_> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or(""))
        .collect();
    for expected in [
        "session_start",
        "session_init",
        "gpu_assigned",
        "segment",
        "error",
        "session_end",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let segment = events
        .iter()
        .find(|e| e["event"] == "segment")
        .expect("segment");
    assert_eq!(segment["payload"]["prompt"], "logged prompt");
    assert!(segment["payload"]["generate_ms"].as_f64().is_some());
    assert!(segment["payload"]["encode_ms"].as_f64().is_some());
    let end = events
        .iter()
        .find(|e| e["event"] == "session_end")
        .expect("end");
    assert_eq!(end["payload"]["reason"], "client_closed");
    assert_eq!(end["payload"]["segments"], 1);
    assert!(
        events
            .iter()
            .all(|e| e["session_id"].is_string() && e["ts"].is_string())
    );
    Ok(())
}

#[tokio::test]
async fn a_warmup_that_outlives_its_timeout_is_reported() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.warmup.enabled = true;
    config.streaming.warmup.timeout_seconds = 1;
    config.default_request.sampling.num_inference_steps = 50;
    // Each warm-up takes 30 s: far past the 1 s limit.
    let server = TestServer::start_mock(config, Duration::from_secs(30)).await?;
    for _ in 0..100 {
        let (code, body) = server.get("/readyz").await?;
        assert_eq!(code, 503);
        if serde_json::from_str::<Value>(&body)?["status"] == "warmup_failed" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("readyz never reported warmup_failed")
}
