//! `/ws`, the Dreamverse product protocol, over real sockets (dreamverse-facts §§1–9): the
//! session start in both shapes, the per-segment order with 1-based indices, every segment a
//! self-contained fMP4 with audio, the cap and a restart, projects on one socket, the
//! per-address limit, the wall-clock limit, bad frames, and the HTTP endpoints the web app
//! reads.

use fv_testkit::{Client, Received, TestServer, http_post, test_config};
use serde_json::{Value, json};
use std::time::Duration;

fn ws_url(server: &TestServer) -> String {
    format!("ws://{}/ws", server.addr)
}

async fn connect(server: &TestServer) -> anyhow::Result<Client> {
    Client::connect_product(&ws_url(server)).await
}

/// The web app's init for a preset click (dreamverse-facts §3).
fn preset_init(kind: &str, prompts: &[&str]) -> Value {
    json!({"type": kind, "preset_id": "glass_whale", "preset_label": "Glass whale",
        "curated_prompts": prompts, "initial_rollout_prompt": "", "initial_image": null,
        "single_clip_mode": false, "enhancement_enabled": true,
        "auto_extension_enabled": false, "loop_generation_enabled": false})
}

/// The web app's init for a typed prompt.
fn typed_init(kind: &str, prompt: &str) -> Value {
    json!({"type": kind, "preset_id": "custom_editable", "preset_label": "Custom rollout",
        "curated_prompts": [], "initial_rollout_prompt": prompt, "initial_image": null,
        "single_clip_mode": false, "enhancement_enabled": true,
        "auto_extension_enabled": false, "loop_generation_enabled": false})
}

/// Types of JSON messages until (and with) one of type `last`.
async fn types_until(c: &mut Client, last: &str) -> anyhow::Result<Vec<Value>> {
    let mut seen = Vec::new();
    loop {
        match c.recv().await? {
            Received::Json(v) => {
                let done = v["type"] == last;
                anyhow::ensure!(v["type"] != "error", "error frame: {v}");
                seen.push(v);
                if done {
                    return Ok(seen);
                }
            }
            other => anyhow::bail!("expected JSON before {last}, got {other:?}"),
        }
    }
}

fn names(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["type"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// One segment in the product's order; returns its messages (binaries as `<binary>`) and
/// media.
struct Segment {
    order: Vec<String>,
    messages: Vec<Value>,
    media: Vec<u8>,
    binaries: usize,
}

impl Segment {
    fn find(&self, ty: &str) -> &Value {
        self.messages
            .iter()
            .find(|m| m["type"] == ty)
            .unwrap_or(&Value::Null)
    }
}

async fn segment(c: &mut Client) -> anyhow::Result<Segment> {
    let mut s = Segment {
        order: Vec::new(),
        messages: Vec::new(),
        media: Vec::new(),
        binaries: 0,
    };
    loop {
        match c.recv().await? {
            Received::Json(v) => {
                anyhow::ensure!(v["type"] != "error", "error frame: {v}");
                let ty = v["type"].as_str().unwrap_or("?").to_owned();
                s.order.push(ty.clone());
                s.messages.push(v);
                if ty == "ltx2_segment_complete" {
                    return Ok(s);
                }
            }
            Received::Binary(b) => {
                if s.order.last().map(String::as_str) != Some("<binary>") {
                    s.order.push("<binary>".into());
                }
                s.binaries += 1;
                s.media.extend(b);
            }
            other => anyhow::bail!("segment ended by {other:?}"),
        }
    }
}

fn check_segment(s: &Segment, idx: u64, prompt: &str) -> anyhow::Result<()> {
    assert_eq!(
        s.order,
        [
            "segment_prompt_source",
            "ltx2_segment_start",
            "media_init",
            "<binary>",
            "media_segment_complete",
            "step_complete",
            "ltx2_segment_complete"
        ]
    );
    assert_eq!(s.find("segment_prompt_source")["segment_idx"], idx);
    let start = s.find("ltx2_segment_start");
    assert_eq!(start["segment_idx"], idx);
    assert_eq!(start["prompt"], prompt);
    let init = s.find("media_init");
    assert_eq!(init["segment_idx"], idx);
    assert_eq!(init["mode"], "av_fmp4");
    assert!(
        init["mime"]
            .as_str()
            .is_some_and(|m| m.starts_with("video/mp4; codecs=\"avc1.") && m.contains("mp4a.40.2")),
        "{init}"
    );
    let complete = s.find("media_segment_complete");
    assert_eq!(complete["stream_id"], init["stream_id"]);
    assert_eq!(
        complete["chunks"], s.binaries as u64,
        "every binary frame counts"
    );
    let step = s.find("step_complete");
    assert!(step.get("segment_idx").is_none());
    assert!(step["latency_ms"]["worker_e2e"].is_number());
    assert!(step["latency_ms"]["total"].is_number());
    assert_eq!(s.find("ltx2_segment_complete")["segment_idx"], idx);
    // A self-contained fMP4 of both tracks, at least a second long.
    let seg = fv_encoder::inspect::parse_segment(&s.media)?;
    assert!(seg.sample_count() >= 24, "{} frames", seg.sample_count());
    assert!(seg.audio_sample_count() > 0);
    Ok(())
}

/// Mock defaults with segments of a second (24 frames at 24 fps).
fn config() -> fv_server::config::ServeConfig {
    let mut c = test_config();
    c.default_request.sampling.num_frames = 24;
    c.streaming.fragment_frames = 8;
    c
}

#[tokio::test]
async fn a_preset_session_streams_its_rollout_and_keeps_the_socket_at_the_cap() -> anyhow::Result<()>
{
    let mut config = config();
    config.streaming.generation_segment_cap = 2;
    let server = TestServer::start(config).await?;
    let mut c = connect(&server).await?;
    c.send_json(&preset_init(
        "session_init_v2",
        &["a whale", "a forest", "a sky"],
    ))
    .await?;
    let start = types_until(&mut c, "seed_prompts_updated").await?;
    assert_eq!(
        names(&start),
        [
            "queue_status",
            "gpu_assigned",
            "loop_generation_updated",
            "generation_paused_updated",
            "ltx2_stream_start",
            "seed_prompts_updated"
        ]
    );
    assert_eq!(
        start[0],
        json!({"type": "queue_status", "position": 0, "total_gpus": 2, "available_gpus": 1})
    );
    assert_eq!(start[1]["session_timeout"], 300);
    assert_eq!(
        start[4],
        json!({"type": "ltx2_stream_start", "total_segments": 3, "preset_id": "glass_whale",
            "stream_mode": "av_fmp4", "live_mode": true, "loop_generation_enabled": false,
            "loop_iteration": 1, "generation_segment_cap": 2})
    );
    assert_eq!(start[5]["reason"], "init");
    assert_eq!(start[5]["seed_prompt_count"], 3);
    let first = segment(&mut c).await?;
    check_segment(&first, 1, "a whale")?;
    assert_eq!(
        first.find("segment_prompt_source")["prompt_id"],
        Value::Null
    );
    assert_eq!(first.find("ltx2_segment_start")["source"], "curated");
    let second = segment(&mut c).await?;
    check_segment(&second, 2, "a forest")?;
    assert_ne!(
        first.find("media_init")["stream_id"],
        second.find("media_init")["stream_id"]
    );
    // The cap: the rollout completes and the socket stays open.
    c.expect("ltx2_stream_complete").await?;
    assert!(c.recv_within(Duration::from_millis(300)).await.is_err());
    // A restart: a new rollout on the same socket.
    c.send_json(&json!({"type": "restart_generation"})).await?;
    let restart = types_until(&mut c, "seed_prompts_reset_applied").await?;
    assert_eq!(
        names(&restart),
        [
            "generation_restarted",
            "ltx2_stream_start",
            "seed_prompts_reset_applied"
        ]
    );
    assert_eq!(restart[2]["reason"], "cap_restart");
    check_segment(&segment(&mut c).await?, 1, "a whale")?;
    Ok(())
}

#[tokio::test]
async fn a_typed_prompt_and_a_second_project_follow_the_reference_transcript() -> anyhow::Result<()>
{
    // The mock defaults rewrite with the offline template provider.
    let server = TestServer::start(config()).await?;
    let mut c = connect(&server).await?;
    c.send_json(&typed_init(
        "session_init_v2",
        "A glass whale swims above a neon forest",
    ))
    .await?;
    let start = types_until(&mut c, "seed_prompts_reset_applied").await?;
    assert_eq!(
        names(&start),
        [
            "queue_status",
            "gpu_assigned",
            "loop_generation_updated",
            "generation_paused_updated",
            "rewrite_seed_prompts_started",
            "generation_paused_updated",
            "seed_prompts_updated",
            "rewrite_seed_prompts_complete",
            "ltx2_stream_start",
            "seed_prompts_reset_applied"
        ]
    );
    assert_eq!(start[3]["paused"], true);
    assert_eq!(start[5]["paused"], false);
    let seeds = &start[6];
    assert_eq!(seeds["reason"], "rewrite");
    assert_eq!(seeds["fallback_used"], false);
    assert_eq!(seeds["prompts"].as_array().map(Vec::len), Some(6));
    assert_eq!(start[8]["total_segments"], 6);
    assert_eq!(start[9]["reason"], "initial_rewrite");
    assert_eq!(start[9]["loop_iteration"], 1);
    let prompts: Vec<String> = seeds["prompts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
    for (i, prompt) in prompts.iter().enumerate() {
        check_segment(&segment(&mut c).await?, i as u64 + 1, prompt)?;
    }
    c.expect("ltx2_stream_complete").await?;
    // New project on the same socket.
    c.send_json(&json!({"type": "end_project_keep_session"}))
        .await?;
    let idle = c.expect("project_idle").await?;
    assert_eq!(
        idle,
        json!({"type": "project_idle", "dropped_user_raw_queue": 0, "dropped_user_ready_queue": 0})
    );
    c.send_json(&typed_init("project_init_v1", "Aurora over a frozen lake"))
        .await?;
    let again = types_until(&mut c, "seed_prompts_reset_applied").await?;
    assert_eq!(
        names(&again),
        [
            "generation_paused_updated",
            "rewrite_seed_prompts_started",
            "generation_paused_updated",
            "seed_prompts_updated",
            "rewrite_seed_prompts_complete",
            "ltx2_stream_start",
            "seed_prompts_reset_applied"
        ]
    );
    assert_eq!(again[5]["loop_iteration"], 1);
    let s = segment(&mut c).await?;
    assert_eq!(s.find("ltx2_segment_start")["segment_idx"], 1);
    Ok(())
}

#[tokio::test]
async fn devtools_messages_are_answered() -> anyhow::Result<()> {
    let server = TestServer::start(config()).await?;
    let mut c = connect(&server).await?;
    c.send_json(&preset_init("session_init_v2", &["a", "b"]))
        .await?;
    types_until(&mut c, "seed_prompts_updated").await?;
    for (msg, answer) in [
        (
            json!({"type": "set_generation_paused", "paused": true}),
            json!({"type": "generation_paused_updated", "paused": true}),
        ),
        (
            json!({"type": "set_loop_generation", "enabled": true}),
            json!({"type": "loop_generation_updated", "enabled": true}),
        ),
        (
            json!({"type": "set_auto_extension", "enabled": false}),
            json!({"type": "auto_extension_updated", "enabled": false}),
        ),
        (
            json!({"type": "set_enhancement", "enabled": false}),
            json!({"type": "enhancement_updated", "enabled": false}),
        ),
    ] {
        c.send_json(&msg).await?;
        assert_eq!(
            c.recv_until(answer["type"].as_str().unwrap_or("")).await?,
            answer
        );
    }
    // Paused: an appended prompt is queued and ready (enhancement off) but waits.
    c.send_json(&json!({"type": "append_prompt", "prompt_id": "u1", "prompt": "a heron"}))
        .await?;
    assert_eq!(
        c.recv_until("prompt_received").await?,
        json!({"type": "prompt_received", "prompt_id": "u1", "queue_depth": 1})
    );
    let ready = c.recv_until("prompt_ready").await?;
    assert_eq!(ready["source"], "user_raw");
    c.send_json(&json!({"type": "reset_to_seed_prompts"}))
        .await?;
    // (Segment 1, started before the pause, may still be arriving.)
    let pending = c.recv_until("seed_prompts_reset_pending").await?;
    assert_eq!(pending["seed_prompt_count"], 2);
    // A pending reset applies at the boundary even while paused (and drops the queue).
    let applied = c.recv_until("seed_prompts_reset_applied").await?;
    assert_eq!(applied["reason"], "manual_reset");
    assert_eq!(applied["dropped_user_ready_queue"], 1);
    // A rewrite of the prompt window (template provider: each prompt gets the instruction).
    c.send_json(
        &json!({"type": "rewrite_seed_prompts", "rewrite_instruction": "make it night time",
        "prompt_window_prompts": ["a", "b"]}),
    )
    .await?;
    c.recv_until("rewrite_seed_prompts_started").await?;
    let updated = c.expect("seed_prompts_updated").await?;
    assert_eq!(updated["reason"], "rewrite");
    assert_eq!(updated["rewrite_instruction"], "make it night time");
    assert_eq!(updated["prompts"].as_array().map(Vec::len), Some(2));
    let done = c.expect("rewrite_seed_prompts_complete").await?;
    assert_eq!(done["fallback_used"], false);
    // Unpause: generation goes on with the rewritten prompts.
    c.send_json(&json!({"type": "set_generation_paused", "paused": false}))
        .await?;
    let next = c.recv_until("ltx2_segment_start").await?;
    assert_eq!(next["prompt"], updated["prompts"][0]);
    Ok(())
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_socket_stays() -> anyhow::Result<()> {
    let server = TestServer::start(config()).await?;
    let mut c = connect(&server).await?;
    for bad in [
        "not json",
        "[1]",
        r#"{"type": "segment_prompt_source", "prompt": "x"}"#,
    ] {
        c.send_text(bad).await?;
        let e = c.expect("error").await?;
        assert!(e["message"].is_string(), "{e}");
        assert_eq!(e["error_code"], "invalid_message");
    }
    c.send_binary(vec![1, 2, 3]).await?;
    c.expect("error").await?;
    c.send_json(&preset_init("session_init_v2", &["a"])).await?;
    types_until(&mut c, "seed_prompts_updated").await?;
    c.send_json(&json!({"type": "set_auto_extension"})).await?;
    let e = c.recv_until("error").await?;
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("set_auto_extension")),
        "{e}"
    );
    c.send_json(&json!({"type": "simple_generate"})).await?;
    c.recv_until("error").await?;
    // Still serving.
    c.send_json(&json!({"type": "set_loop_generation", "enabled": false}))
        .await?;
    c.recv_until("loop_generation_updated").await?;
    Ok(())
}

#[tokio::test]
async fn a_second_session_from_one_address_gets_ip_session_limit() -> anyhow::Result<()> {
    let mut config = config();
    config.streaming.max_sessions_per_ip = 1;
    let server = TestServer::start(config).await?;
    let mut first = connect(&server).await?;
    first
        .send_json(&preset_init("session_init_v2", &["a"]))
        .await?;
    types_until(&mut first, "seed_prompts_updated").await?;
    let mut second = connect(&server).await?;
    let e = second.expect("error").await?;
    assert_eq!(e["error_code"], "ip_session_limit");
    let (code, _) = second.expect_close().await?;
    assert_eq!(code, 1013);
    Ok(())
}

#[tokio::test]
async fn the_session_ends_at_its_wall_clock_limit() -> anyhow::Result<()> {
    let mut config = config();
    config.streaming.dreamverse.session_limit_seconds = 1;
    let server = TestServer::start(config).await?;
    let mut c = connect(&server).await?;
    c.send_json(&preset_init("session_init_v2", &["a"])).await?;
    let start = types_until(&mut c, "gpu_assigned").await?;
    assert_eq!(start[1]["session_timeout"], 1);
    let timeout = c.recv_until("session_timeout").await?;
    assert_eq!(timeout["message"], "Session expired after 1 seconds");
    assert_eq!(c.expect_close().await?, (1000, "Session timeout".into()));
    Ok(())
}

#[tokio::test]
async fn a_blocked_preset_closes_1008() -> anyhow::Result<()> {
    let mut config = config();
    config.streaming.safety.enabled = true;
    config.streaming.safety.blocked_words = vec!["forbidden".into()];
    let server = TestServer::start(config).await?;
    let mut c = connect(&server).await?;
    c.send_json(&preset_init("session_init_v2", &["fine", "forbidden"]))
        .await?;
    let e = c.expect("error").await?;
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Prompt safety filter blocked initial prompt 2.")),
        "{e}"
    );
    assert_eq!(c.expect_close().await?, (1008, "Prompt blocked".into()));
    Ok(())
}

#[tokio::test]
async fn the_http_endpoints_the_web_app_reads() -> anyhow::Result<()> {
    let mut config = config();
    config.streaming.auth_token = Some("t0k".into());
    let server = TestServer::start(config).await?;
    let json_of = |body: &str| serde_json::from_str::<Value>(body);
    let (code, body) = server.get("/healthz").await?;
    assert_eq!(code, 200);
    assert_eq!(json_of(&body)?["service"], "ltx2-streaming-mock-server");
    let (code, body) = server.get("/readyz").await?;
    assert_eq!(code, 200, "{body}");
    let (_, body) = server.get("/status").await?;
    let status = json_of(&body)?;
    assert_eq!(status["total_gpus"], 2);
    assert_eq!(status["warmup_enabled"], false);
    assert_eq!(status["warmup_failed_gpus"], 0);
    assert_eq!(status["gpu_status"]["0"]["current_model_id"], "mock");
    let (code, body) = server.get("/curated-presets").await?;
    assert_eq!(code, 200);
    let presets = json_of(&body)?;
    let list = presets["presets"].as_array().cloned().unwrap_or_default();
    assert!(list.len() >= 3, "{presets}");
    for p in &list {
        assert!(p["id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(
            p["segment_prompts"]
                .as_array()
                .is_some_and(|a| a.len() >= 2)
        );
    }
    let preset =
        json!({"id": "New One", "label": "New one", "segment_prompts": ["x", "y"]}).to_string();
    let (code, _) = http_post(server.addr, "/curated-presets/append", &preset, &[]).await?;
    assert_eq!(code, 401, "the token guards appends");
    let auth = [("authorization", "Bearer t0k")];
    let (code, body) = http_post(server.addr, "/curated-presets/append", &preset, &auth).await?;
    assert_eq!(code, 200, "{body}");
    let appended = json_of(&body)?;
    assert_eq!(appended["type"], "curated_preset_appended");
    assert_eq!(appended["preset"]["id"], "new_one");
    assert_eq!(appended["count"], list.len() + 1);
    let (code, _) = http_post(server.addr, "/curated-presets/append", &preset, &auth).await?;
    assert_eq!(code, 409);
    let (code, body) = server.get("/models").await?;
    assert_eq!(code, 200);
    assert_eq!(json_of(&body)?["data"][0]["id"], "mock");
    Ok(())
}
