//! The prompt toggles of `/v1/stream` end to end (issue 11): a mock-generator server with a
//! real OpenAI-compatible HTTP server on port 0 as its LLM provider (tests/support), or the
//! offline template provider of the mock defaults; safety; `/prompt-system-config`.

mod support;

use fv_testkit::{TestServer, http_post, test_config};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{FakeLlm, Script};

async fn server_with(fake: &FakeLlm, budget_ms: u64) -> anyhow::Result<TestServer> {
    let mut config = test_config();
    config.streaming.prompt = fake.prompt_config(budget_ms);
    TestServer::start(config).await
}

#[tokio::test]
async fn enhancement_runs_the_providers_prompt() -> anyhow::Result<()> {
    let fake = FakeLlm::start(Script::reply("A vivid red fox")).await;
    let server = server_with(&fake, 5_000).await?;
    let mut c = server.connect().await?;
    c.init_with(json!({"enhancement_enabled": true})).await?;
    let t = c.segment("a red fox").await?;
    let start = t.find("ltx2_segment_start").expect("segment start");
    assert_eq!(start["prompt"], "A vivid red fox #1");
    assert_eq!(fake.user_text(0), "a red fox");
    // Without the toggle the prompt runs as sent and the provider is not asked.
    c.send_json(&json!({"type": "enhancement_updated", "enabled": false}))
        .await?;
    let t = c.segment("a blue fox").await?;
    assert_eq!(
        t.find("ltx2_segment_start").expect("start")["prompt"],
        "a blue fox"
    );
    assert_eq!(fake.requests().len(), 1);
    Ok(())
}

/// The provider answers after 0.5x, 1x and 3x the latency budget; the segment starts when
/// the answer comes, or at the budget with the raw prompt. Prints the measured delays (run
/// with `--nocapture`); asserts what runs, not how long it took.
#[tokio::test]
async fn the_latency_budget_bounds_the_wait_for_enhancement() -> anyhow::Result<()> {
    let budget = Duration::from_millis(1000);
    let fake = FakeLlm::start(Script::reply("E")).await;
    let logs = tempfile::tempdir()?;
    let mut config = test_config();
    config.streaming.prompt = fake.prompt_config(budget.as_millis() as u64);
    config.streaming.session_log_dir = Some(logs.path().display().to_string());
    let server = TestServer::start(config).await?;
    let mut report = Vec::new();
    for factor in [0.5, 1.0, 3.0] {
        fake.set(Script::slow(budget.mul_f64(factor), "Enhanced"));
        let mut c = server.connect().await?;
        c.init_with(json!({"enhancement_enabled": true})).await?;
        let sent = Instant::now();
        c.send_json(&json!({"type": "segment_prompt_source", "prompt": "raw prompt"}))
            .await?;
        let start = c.expect("ltx2_segment_start").await?;
        let delay = sent.elapsed();
        let prompt = start["prompt"].as_str().unwrap_or_default().to_owned();
        report.push(format!(
            "provider at {factor}x budget ({} ms): segment start after {} ms, prompt {prompt:?}",
            budget.mul_f64(factor).as_millis(),
            delay.as_millis()
        ));
        if factor < 1.0 {
            assert!(prompt.starts_with("Enhanced #"), "{prompt}");
        }
        if factor > 1.0 {
            assert_eq!(prompt, "raw prompt", "over budget the raw prompt runs");
        }
        c.recv_until("ltx2_segment_complete").await?;
    }
    eprintln!(
        "latency budget {} ms:\n  {}",
        budget.as_millis(),
        report.join("\n  ")
    );
    // The session log says the raw prompt ran.
    let mut skipped = 0;
    for entry in std::fs::read_dir(logs.path())? {
        let text = std::fs::read_to_string(entry?.path())?;
        skipped += text.matches("prompt_enhancement_skipped").count();
        if text.contains("prompt_enhancement_skipped") {
            assert!(text.contains("over_budget"), "{text}");
        }
    }
    assert!(skipped >= 1, "no session log says the raw prompt ran");
    Ok(())
}

#[tokio::test]
async fn auto_extension_asks_the_provider_and_runs_up_to_the_cap() -> anyhow::Result<()> {
    let fake = FakeLlm::start(Script::reply("The lighthouse beam sweeps on")).await;
    let mut config = test_config();
    config.streaming.prompt = fake.prompt_config(5_000);
    config.streaming.generation_segment_cap = 3;
    let server = TestServer::start(config).await?;
    let mut c = server.connect().await?;
    c.init_with(json!({"auto_extension_enabled": true})).await?;
    let first = c.segment("a lighthouse at dusk").await?;
    assert_eq!(
        first.find("ltx2_segment_start").expect("start")["prompt"],
        "a lighthouse at dusk"
    );
    // The client asks for nothing more: the server writes the next prompts.
    let mut prompts = Vec::new();
    for _ in 0..2 {
        let t = c.collect_segment().await?;
        prompts.push(t.find("ltx2_segment_start").expect("start")["prompt"].clone());
    }
    assert_eq!(
        prompts,
        [
            "The lighthouse beam sweeps on #1",
            "The lighthouse beam sweeps on #2"
        ]
    );
    // Each call sees the prompts run so far, oldest first.
    assert_eq!(fake.user_text(0), "a lighthouse at dusk");
    assert_eq!(
        fake.user_text(1),
        "a lighthouse at dusk\nThe lighthouse beam sweeps on #1"
    );
    let end = c.expect("ltx2_stream_complete").await?;
    assert_eq!(end["reason"], "segment_cap");
    assert_eq!(c.expect_close().await?, (1000, "segment_cap".to_string()));
    Ok(())
}

#[tokio::test]
async fn the_mock_defaults_auto_extend_offline() -> anyhow::Result<()> {
    // test_config() is the mock defaults: the template provider, no network.
    let mut config = test_config();
    config.streaming.generation_segment_cap = 3;
    let server = TestServer::start(config).await?;
    let mut c = server.connect().await?;
    c.init_with(json!({"auto_extension_enabled": true})).await?;
    c.segment("a paper boat on a river").await?;
    let mut prompts = Vec::new();
    for _ in 0..2 {
        let t = c.collect_segment().await?;
        let p = t.find("ltx2_segment_start").expect("start")["prompt"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        prompts.push(p);
    }
    assert!(
        prompts[0].starts_with("A paper boat on a river, "),
        "{prompts:?}"
    );
    assert_ne!(prompts[0], prompts[1]);
    c.expect("ltx2_stream_complete").await?;
    Ok(())
}

#[tokio::test]
async fn loop_runs_the_seed_prompts_without_requests() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.generation_segment_cap = 3;
    let server = TestServer::start(config).await?;
    let mut c = server.connect().await?;
    c.init_with(json!({"curated_prompts": ["s1", "s2"], "loop_generation_enabled": true}))
        .await?;
    let mut prompts = Vec::new();
    for _ in 0..3 {
        let t = c.collect_segment().await?;
        prompts.push(t.find("ltx2_segment_start").expect("start")["prompt"].clone());
    }
    assert_eq!(prompts, ["s1", "s2", "s1"]);
    assert_eq!(
        c.expect("ltx2_stream_complete").await?["reason"],
        "segment_cap"
    );
    Ok(())
}

#[tokio::test]
async fn pause_holds_queued_prompts_until_unpaused() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    let mut c = server.connect().await?;
    c.init().await?;
    c.send_json(&json!({"type": "generation_paused_updated", "paused": true}))
        .await?;
    c.send_json(&json!({"type": "segment_prompt_source", "prompt": "held"}))
        .await?;
    // Nothing starts while paused.
    let quiet = c.recv_within(Duration::from_millis(300)).await;
    assert!(quiet.is_err(), "something was sent while paused: {quiet:?}");
    c.send_json(&json!({"type": "generation_paused_updated", "paused": false}))
        .await?;
    let start = c.expect("ltx2_segment_start").await?;
    assert_eq!(start["prompt"], "held");
    Ok(())
}

#[tokio::test]
async fn blocked_prompts_are_refused_and_a_blocked_init_closes_1008() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.safety.enabled = true;
    config.streaming.safety.blocked_words = vec!["forbidden".into()];
    let server = TestServer::start(config).await?;
    let mut c = server.connect().await?;
    c.init().await?;
    c.send_json(&json!({"type": "segment_prompt_source", "prompt": "a forbidden thing"}))
        .await?;
    let e = c.expect("error").await?;
    assert_eq!(e["code"], "prompt_blocked");
    assert_eq!(e["retryable"], false);
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Prompt safety filter blocked prompt.")),
        "{e}"
    );
    // The session goes on.
    let t = c.segment("a fine thing").await?;
    assert_eq!(
        t.find("ltx2_segment_start").expect("start")["segment_idx"],
        0
    );

    let mut c = server.connect().await?;
    c.send_json(&json!({"type": "session_init_v2", "curated_prompts": ["ok", "forbidden fruit"]}))
        .await?;
    let e = c.expect("error").await?;
    assert_eq!(e["code"], "prompt_blocked");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Prompt safety filter blocked initial prompt 2.")),
        "{e}"
    );
    assert_eq!(
        c.expect_close().await?,
        (1008, "Prompt blocked".to_string())
    );
    Ok(())
}

#[tokio::test]
async fn prompt_system_config_reads_and_writes_behind_the_token() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.auth_token = Some("s3cret".into());
    let server = TestServer::start(config).await?;
    let (code, body) = server.get("/prompt-system-config").await?;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body)?;
    for key in [
        "next_segment_system_prompt",
        "auto_extension_system_prompt",
        "rewrite_window_system_prompt",
        "rewrite_user_system_prompt",
        "rewrite_model",
        "rewrite_temperature",
    ] {
        assert!(!v[key].is_null(), "{key} missing: {v}");
    }
    let edit = json!({"next_segment_system_prompt": "Be brief."}).to_string();
    let (code, _) = http_post(server.addr, "/prompt-system-config", &edit, &[]).await?;
    assert_eq!(code, 401);
    let auth = [("authorization", "Bearer s3cret")];
    let (code, body) = http_post(server.addr, "/prompt-system-config", &edit, &auth).await?;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body)?;
    assert_eq!(v["next_segment_system_prompt"], "Be brief.");
    let (_, body) = server.get("/prompt-system-config").await?;
    assert!(body.contains("Be brief."));
    let empty = json!({"auto_extension_system_prompt": "  "}).to_string();
    let (code, body) = http_post(server.addr, "/prompt-system-config", &empty, &auth).await?;
    assert_eq!(code, 400);
    let v: Value = serde_json::from_str(&body)?;
    assert_eq!(v["detail"], "auto_extension_system_prompt cannot be empty.");
    let (code, _) = http_post(server.addr, "/prompt-system-config", "not json", &auth).await?;
    assert_eq!(code, 400);

    // With prompts off there is no enhancer to show.
    let mut config = test_config();
    config.streaming.prompt.enabled = false;
    let off = TestServer::start(config).await?;
    let (code, body) = off.get("/prompt-system-config").await?;
    assert_eq!(code, 503);
    assert!(body.contains("Prompt enhancer not initialized."));
    Ok(())
}

#[tokio::test]
async fn prompt_metrics_are_exported() -> anyhow::Result<()> {
    let fake = FakeLlm::start(Script::reply("E")).await;
    let server = server_with(&fake, 5_000).await?;
    let mut c = server.connect().await?;
    c.init_with(json!({"enhancement_enabled": true})).await?;
    c.segment("x").await?;
    let (_, text) = server.get("/metrics").await?;
    for name in [
        "fv_segment_enhancements_total",
        "fv_prompt_provider_requests_total",
        "fv_prompt_operations_total",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    Ok(())
}
