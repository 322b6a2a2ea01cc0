//! Limits and lifecycle: segment cap, timeouts, max sessions, the worker queue, cancellation on
//! disconnect, worker failures (protocol-facts §§5-8; fixes §18.1, §18.3-5).

use fv_testkit::generators::{Behaviour, test_generators};
use fv_testkit::{Received, TestServer, test_config};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test]
async fn segment_cap_ends_with_segment_cap_and_close_1000() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.generation_segment_cap = 2;
    let server = TestServer::start(config).await?;
    let mut c = server.connect().await?;
    c.init().await?;
    // Ask for more than the cap: the extra request is not served.
    for p in ["a", "b", "c"] {
        c.send_json(&json!({"type": "segment_prompt_source", "prompt": p}))
            .await?;
    }
    c.collect_segment().await?;
    c.collect_segment().await?;
    let end = c.expect("ltx2_stream_complete").await?;
    assert_eq!(end["reason"], "segment_cap");
    assert_eq!(c.expect_close().await?, (1000, "segment_cap".to_string()));
    Ok(())
}

#[tokio::test]
async fn idle_timeout_sends_session_timeout_then_closes_1000() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.session_timeout_seconds = 1;
    let server = TestServer::start(config).await?;
    let mut c = server.connect().await?;
    let seen = c.init().await?;
    assert_eq!(seen[1]["session_timeout"], 1);
    c.segment("one").await?;
    let timeout = c.expect("session_timeout").await?;
    assert_eq!(timeout["timeout_seconds"], 1);
    let end = c.expect("ltx2_stream_complete").await?;
    assert_eq!(end["reason"], "stop_requested");
    assert_eq!(
        c.expect_close().await?,
        (1000, "session_timeout".to_string())
    );
    Ok(())
}

#[tokio::test]
async fn the_idle_timer_does_not_run_while_a_segment_generates() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.session_timeout_seconds = 1;
    config.default_request.sampling.num_inference_steps = 15;
    let (server, _) =
        TestServer::with_test_generators(config, 1, Duration::from_millis(100), Behaviour::Normal)
            .await?;
    let mut c = server.connect().await?;
    c.init().await?;
    // 15 steps x 100 ms is longer than the 1 s idle timeout; the segment must still complete.
    let t = c.segment("long").await?;
    assert_eq!(
        t.messages
            .iter()
            .filter(|m| m["type"] == "step_complete")
            .count(),
        15
    );
    Ok(())
}

#[tokio::test]
async fn init_timeout_frees_the_slot_of_a_silent_socket() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.max_sessions = 1;
    config.streaming.init_timeout_seconds = 1;
    let server = TestServer::start(config).await?;
    let mut silent = server.connect().await?;
    // While the silent socket holds the only slot, a second one is rejected.
    let mut second = server.connect().await?;
    let err = second.expect("error").await?;
    assert_eq!(err["code"], "session_rejected");
    assert_eq!(err["retryable"], false);
    assert_eq!(
        second.expect_close().await?,
        (1013, "session_rejected".to_string())
    );
    // The silent one is timed out with a message and a close frame.
    let t = silent.expect("session_timeout").await?;
    assert_eq!(t["timeout_seconds"], 1);
    assert_eq!(
        silent.expect_close().await?,
        (1000, "session_timeout".to_string())
    );
    // ... and the slot is free again.
    let mut third = poll_until_admitted(&server).await?;
    third.segment("ok").await?;
    Ok(())
}

/// Sessions are removed asynchronously after a close; retry admission briefly.
async fn poll_until_admitted(server: &TestServer) -> anyhow::Result<fv_testkit::Client> {
    for _ in 0..100 {
        let mut c = server.connect().await?;
        c.send_json(&json!({"type": "session_init_v2"})).await?;
        let first = c.recv_json().await?;
        if first["type"] == "queue_status" {
            c.expect("gpu_assigned").await?;
            c.expect("ltx2_stream_start").await?;
            return Ok(c);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("never admitted")
}

#[tokio::test]
async fn many_sessions_run_at_once_up_to_max_sessions() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.max_sessions = 4;
    config.streaming.pool.num_workers = Some(4);
    let server = TestServer::start(config).await?;
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut c = server.connect().await?;
        c.init().await?;
        clients.push(c);
    }
    let mut fifth = server.connect().await?;
    assert_eq!(fifth.expect("error").await?["code"], "session_rejected");
    let results =
        futures_util::future::join_all(clients.iter_mut().map(|c| c.segment("together"))).await;
    for r in results {
        r?;
    }
    Ok(())
}

#[tokio::test]
async fn sessions_wait_in_a_fifo_queue_with_real_positions() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.pool.num_workers = Some(1);
    let server = TestServer::start(config).await?;
    let mut first = server.connect().await?;
    first.init().await?;
    let mut second = server.connect().await?;
    second
        .send_json(&json!({"type": "session_init_v2"}))
        .await?;
    let q = second.expect("queue_status").await?;
    assert_eq!(
        (q["position"].as_u64(), q["queue_depth"].as_u64()),
        (Some(1), Some(1))
    );
    let mut third = server.connect().await?;
    third.send_json(&json!({"type": "session_init_v2"})).await?;
    let q = third.expect("queue_status").await?;
    assert_eq!(
        (q["position"].as_u64(), q["queue_depth"].as_u64()),
        (Some(2), Some(2))
    );
    // The second sees the depth grow behind it.
    let q = second.expect("queue_status").await?;
    assert_eq!(
        (q["position"].as_u64(), q["queue_depth"].as_u64()),
        (Some(1), Some(2))
    );
    // The first leaves: the second gets the worker, the third moves up.
    first.close(1000, "done").await?;
    loop {
        let m = second.recv_json().await?;
        if m["type"] == "gpu_assigned" {
            break;
        }
        assert_eq!(m["type"], "queue_status");
    }
    second.expect("ltx2_stream_start").await?;
    let q = third.expect("queue_status").await?;
    assert_eq!(
        (q["position"].as_u64(), q["queue_depth"].as_u64()),
        (Some(1), Some(1))
    );
    second.segment("served").await?;
    Ok(())
}

#[tokio::test]
async fn acquire_timeout_and_full_queue_are_gpu_unavailable_1013() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.pool.num_workers = Some(1);
    config.streaming.acquire_timeout_seconds = 1;
    config.streaming.max_queue = 1;
    let server = TestServer::start(config).await?;
    let mut holder = server.connect().await?;
    holder.init().await?;
    let mut waiter = server.connect().await?;
    waiter
        .send_json(&json!({"type": "session_init_v2"}))
        .await?;
    assert_eq!(waiter.expect("queue_status").await?["position"], 1);
    // The queue holds one: the next is refused at once.
    let mut refused = server.connect().await?;
    refused
        .send_json(&json!({"type": "session_init_v2"}))
        .await?;
    let err = refused.recv_until("error").await?;
    assert_eq!(err["code"], "gpu_unavailable");
    assert_eq!(err["retryable"], true);
    assert_eq!(
        refused.expect_close().await?,
        (1013, "gpu_unavailable".to_string())
    );
    // The waiter times out after acquire_timeout_seconds.
    let err = waiter.recv_until("error").await?;
    assert_eq!(err["code"], "gpu_unavailable");
    assert_eq!(err["retryable"], true);
    assert_eq!(waiter.expect_close().await?.0, 1013);
    Ok(())
}

#[tokio::test]
async fn disconnect_mid_segment_cancels_generation_and_frees_the_worker() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.pool.num_workers = Some(1);
    config.default_request.sampling.num_inference_steps = 200;
    let (server, observed) =
        TestServer::with_test_generators(config, 1, Duration::from_millis(20), Behaviour::Normal)
            .await?;
    let mut leaver = server.connect().await?;
    leaver.init().await?;
    leaver
        .send_json(&json!({"type": "segment_prompt_source", "prompt": "long"}))
        .await?;
    // Wait until it is generating, then drop the connection without a close frame.
    leaver.expect("ltx2_segment_start").await?;
    leaver.expect("step_complete").await?;
    leaver.abort();
    // The next session gets the only worker and is served.
    let mut next = server.connect().await?;
    next.init().await?;
    let steps_when_assigned = observed.steps.load(Ordering::SeqCst);
    assert!(
        steps_when_assigned < 200,
        "the abandoned segment ran all {steps_when_assigned} steps"
    );
    assert_eq!(observed.cancelled.load(Ordering::SeqCst), 1);
    Ok(())
}

#[tokio::test]
async fn worker_failures_are_retryable_and_do_not_count_as_segments() -> anyhow::Result<()> {
    let config = test_config();
    let (server, _) =
        TestServer::with_test_generators(config, 2, Duration::ZERO, Behaviour::FailOnPromptFail)
            .await?;
    let mut c = server.connect().await?;
    c.init().await?;
    c.send_json(&json!({"type": "segment_prompt_source", "prompt": "please fail"}))
        .await?;
    c.expect("ltx2_segment_start").await?;
    let err = c.expect("error").await?;
    assert_eq!(err["code"], "worker_failed");
    assert_eq!(err["retryable"], true);
    // The socket stays open and the failed segment did not consume an index.
    let t = c.segment("fine").await?;
    assert_eq!(
        t.find("ltx2_segment_start").expect("start")["segment_idx"],
        0
    );
    Ok(())
}

#[tokio::test]
async fn a_generator_without_frames_is_worker_failed() -> anyhow::Result<()> {
    let config = test_config();
    let (server, _) =
        TestServer::with_test_generators(config, 2, Duration::ZERO, Behaviour::NoFrames).await?;
    let mut c = server.connect().await?;
    c.init().await?;
    c.send_json(&json!({"type": "segment_prompt_source", "prompt": "x"}))
        .await?;
    let mut saw_media = false;
    let err = loop {
        match c.recv().await? {
            Received::Json(m) if m["type"] == "error" => break m,
            Received::Json(m) => saw_media |= m["type"] == "media_init",
            Received::Binary(_) => saw_media = true,
            other => anyhow::bail!("unexpected {other:?}"),
        }
    };
    assert!(!saw_media);
    assert_eq!(err["code"], "worker_failed");
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no frames")
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_segment_can_be_retried_at_once() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.pool.num_workers = Some(1);
    config.default_request.sampling.num_inference_steps = 20;
    let (server, _) = TestServer::with_test_generators(
        config,
        1,
        Duration::from_millis(30),
        Behaviour::BadFrameOnPromptBadframe,
    )
    .await?;
    let mut c = server.connect().await?;
    c.init().await?;
    c.send_json(&json!({"type": "segment_prompt_source", "prompt": "badframe"}))
        .await?;
    // The retry is queued right behind the failing segment, while its generator still runs.
    c.send_json(&json!({"type": "segment_prompt_source", "prompt": "retry"}))
        .await?;
    let err = c.recv_until("error").await?;
    assert_eq!(err["code"], "worker_failed", "{err}");
    assert_eq!(err["retryable"], true);
    let t = c.collect_segment().await?;
    let start = t.find("ltx2_segment_start").expect("start");
    assert_eq!(start["prompt"], "retry");
    assert_eq!(start["segment_idx"], 0);
    Ok(())
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_frees_its_worker() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.pool.num_workers = Some(1);
    config.streaming.generation_segment_cap = 1000;
    config.default_request.sampling.width = 512;
    config.default_request.sampling.height = 512;
    config.default_request.sampling.num_frames = 24;
    let (gens, _) = test_generators(1, Duration::ZERO, Behaviour::Noise);
    let deps = fv_server::deps_with_generators(&config, gens)?;
    let options = fv_server::ServerOptions {
        send_timeout: Duration::from_secs(1),
        ..fv_server::ServerOptions::default()
    };
    let server = TestServer::start_with_options(config, deps, options).await?;
    let mut stalled = server.connect().await?;
    stalled.init().await?;
    // Incompressible segments, far more than socket buffers and the outbox hold; never read.
    for i in 0..fv_server::MAX_PENDING_SEGMENTS {
        stalled
            .send_json(&json!({"type": "segment_prompt_source", "prompt": format!("p{i}")}))
            .await?;
    }
    // The only worker is released once the writer gives up on the stalled client (with no
    // send timeout this waits for the idle timeout and fails on the receive guard).
    let mut next = server.connect().await?;
    next.init().await?;
    next.segment("served").await?;
    drop(stalled);
    Ok(())
}

#[tokio::test]
async fn overlong_prompts_are_refused_naming_the_field() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    let mut c = server.connect().await?;
    c.init().await?;
    let long = "x".repeat(fv_server::MAX_PROMPT_BYTES + 1);
    c.send_json(&json!({"type": "segment_prompt_source", "prompt": long}))
        .await?;
    let err = c.expect("error").await?;
    assert_eq!(err["code"], "invalid_message");
    assert_eq!(err["retryable"], true);
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("segment_prompt_source.prompt")
    );
    c.send_json(&json!({"type": "segment_prompt_source", "prompt": "ok", "negative_prompt": "y".repeat(fv_server::MAX_PROMPT_BYTES + 1)}))
        .await?;
    let err = c.expect("error").await?;
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("negative_prompt")
    );
    // The limit itself is accepted.
    c.segment(&"z".repeat(fv_server::MAX_PROMPT_BYTES)).await?;
    Ok(())
}

#[tokio::test]
async fn pending_prompts_are_capped() -> anyhow::Result<()> {
    let mut config = test_config();
    config.default_request.sampling.num_inference_steps = 50;
    let (server, _) =
        TestServer::with_test_generators(config, 2, Duration::from_millis(20), Behaviour::Normal)
            .await?;
    let mut c = server.connect().await?;
    c.init().await?;
    // One runs, MAX_PENDING_SEGMENTS wait, the next is refused.
    for i in 0..fv_server::MAX_PENDING_SEGMENTS + 2 {
        c.send_json(&json!({"type": "segment_prompt_source", "prompt": format!("p{i}")}))
            .await?;
    }
    let err = c.recv_until("error").await?;
    assert_eq!(err["code"], "invalid_message");
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("pending")
    );
    Ok(())
}

#[tokio::test]
async fn sessions_per_address_are_limited() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.max_sessions_per_ip = 1;
    let server = TestServer::start(config).await?;
    let mut first = server.connect().await?;
    first.init().await?;
    let mut second = server.connect().await?;
    let err = second.expect("error").await?;
    assert_eq!(err["code"], "session_rejected");
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.1"),
        "{err}"
    );
    assert_eq!(
        second.expect_close().await?,
        (1013, "session_rejected".to_string())
    );
    first.segment("unaffected").await?;
    Ok(())
}

#[tokio::test]
async fn token_and_origin_are_checked_at_the_upgrade() -> anyhow::Result<()> {
    use fv_testkit::Client;
    let mut config = test_config();
    config.streaming.auth_token = Some("s3cret".into());
    config.streaming.allowed_origins = vec!["http://app.example".into()];
    let server = TestServer::start(config).await?;
    let url = server.ws_url();
    assert_eq!(
        Client::connect_with_headers(&url, &[]).await?.err(),
        Some(401)
    );
    let wrong = [("authorization", "Bearer nope")];
    assert_eq!(
        Client::connect_with_headers(&url, &wrong).await?.err(),
        Some(401)
    );
    let token = [("authorization", "Bearer s3cret")];
    let mut c = Client::connect_with_headers(&url, &token)
        .await?
        .map_err(|s| anyhow::anyhow!("refused with {s}"))?;
    c.init().await?;
    let by_query = format!("{url}?token=s3cret");
    let bad_origin = [("origin", "http://evil.example")];
    assert_eq!(
        Client::connect_with_headers(&by_query, &bad_origin)
            .await?
            .err(),
        Some(403)
    );
    let good_origin = [("origin", "http://app.example")];
    let mut c = Client::connect_with_headers(&by_query, &good_origin)
        .await?
        .map_err(|s| anyhow::anyhow!("refused with {s}"))?;
    c.init().await?;
    Ok(())
}
