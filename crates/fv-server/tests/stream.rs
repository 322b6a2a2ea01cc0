//! Transcript tests of the happy path: message order (protocol-facts §5), fields (§4),
//! per-step progress and early media (§18.2), the codec string (§18.7), segment indices.

use fv_testkit::{TestServer, test_config};
use serde_json::json;

#[tokio::test]
async fn session_opens_with_queue_status_gpu_assigned_and_stream_start() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    let mut c = server.connect().await?;
    let seen = c
        .init_with(json!({"preset": "p1", "client_id": "c1", "some_future_key": [1, 2]}))
        .await?;
    let types: Vec<_> = seen
        .iter()
        .map(|m| m["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(types, ["queue_status", "gpu_assigned", "ltx2_stream_start"]);
    assert_eq!(
        seen[0],
        json!({"type": "queue_status", "position": 0, "queue_depth": 0})
    );
    assert_eq!(seen[1]["session_timeout"], 120);
    assert!(seen[1]["gpu_id"].is_u64());
    let mut start = seen[2].clone();
    let token = start
        .as_object_mut()
        .and_then(|m| m.remove("resume_token"))
        .expect("a resume token (fv-stream addition)");
    assert!(
        token
            .as_str()
            .is_some_and(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())),
        "{token}"
    );
    assert_eq!(
        start,
        json!({"type": "ltx2_stream_start", "preset": "p1", "width": 64, "height": 64, "fps": 24, "num_frames": 6})
    );
    Ok(())
}

#[tokio::test]
async fn null_fields_are_omitted() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    let mut c = server.connect().await?;
    let seen = c.init().await?;
    let start = seen.last().expect("stream start");
    assert!(
        start.get("preset").is_none(),
        "no preset key when none was sent: {start}"
    );
    Ok(())
}

#[tokio::test]
async fn segment_order_steps_and_media() -> anyhow::Result<()> {
    let mut config = test_config();
    config.default_request.sampling.num_inference_steps = 3;
    config.default_request.sampling.num_frames = 10;
    config.streaming.fragment_frames = 4;
    let server = TestServer::start(config).await?;
    let mut c = server.connect().await?;
    c.init().await?;
    let t = c.segment("a red fox").await?;
    // 10 frames in fragments of 4 → 3 fragments after the init.
    assert_eq!(
        t.order,
        [
            "ltx2_segment_start",
            "step_complete",
            "step_complete",
            "step_complete",
            "media_init",
            "<binary>",
            "<binary>",
            "<binary>",
            "<binary>",
            "media_segment_complete",
            "ltx2_segment_complete",
        ]
    );
    let start = t.find("ltx2_segment_start").expect("start");
    assert_eq!(start["segment_idx"], 0);
    assert_eq!(start["prompt"], "a red fox");
    assert_eq!(start["total_steps"], 3);
    let steps: Vec<_> = t
        .messages
        .iter()
        .filter(|m| m["type"] == "step_complete")
        .map(|m| {
            (
                m["step"].as_u64(),
                m["total_steps"].as_u64(),
                m["stage"].clone(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            (Some(1), Some(3), json!("denoise")),
            (Some(2), Some(3), json!("denoise")),
            (Some(3), Some(3), json!("denoise"))
        ]
    );
    let init = t.find("media_init").expect("media_init");
    assert_eq!(init["mode"], "av_fmp4");
    let stream_id = init["stream_id"].as_str().expect("stream_id");
    assert_eq!(stream_id.len(), 32);
    assert!(stream_id.chars().all(|c| c.is_ascii_hexdigit()));
    let done = t.find("media_segment_complete").expect("media done");
    assert_eq!(done["stream_id"], stream_id);
    assert_eq!(done["chunks"], 3, "binaries after the init one");
    let duration = done["duration_ms"].as_f64().expect("duration");
    assert!((duration - 10.0 * 1000.0 / 24.0).abs() < 1e-6);
    assert_eq!(done["pts_base_ms"], 0.0);
    let seg = t.find("ltx2_segment_complete").expect("segment done");
    assert!(seg["generation_time_ms"].as_f64().is_some());
    assert!(seg["e2e_latency_ms"].as_f64().is_some());
    Ok(())
}

#[tokio::test]
async fn media_is_real_h264_fmp4_with_the_true_codec_string() -> anyhow::Result<()> {
    let mut config = test_config();
    // Video only here; the audio track is tested in tests/audio.rs.
    config.streaming.audio = fv_server::config::AudioMode::Off;
    config.default_request.sampling.num_frames = 9;
    config.streaming.fragment_frames = 4;
    let server = TestServer::start(config).await?;
    let mut c = server.connect().await?;
    c.init().await?;
    let t = c.segment("x").await?;
    let mime = t.find("media_init").expect("init")["mime"]
        .as_str()
        .expect("mime")
        .to_string();
    // The init segment is ftyp+moov, each later binary is exactly moof+mdat (box-aligned).
    let init_boxes = fv_encoder::inspect::top_level_kinds(&t.binaries[0])?;
    assert_eq!(init_boxes, ["ftyp", "moov"]);
    for frag in &t.binaries[1..] {
        let boxes = fv_encoder::inspect::top_level_kinds(frag)?;
        assert_eq!(boxes, ["moof", "mdat"]);
    }
    let decoded = fv_testkit::decode_fmp4(&t.media())?;
    assert_eq!(decoded.frames, 9);
    assert_eq!((decoded.width, decoded.height), (64, 64));
    // The codec string is the one the SPS declares, and there is no audio codec.
    assert_eq!(mime, format!("video/mp4; codecs=\"{}\"", decoded.codec));
    assert!(mime.starts_with("video/mp4; codecs=\"avc1.42"), "{mime}");
    assert!(!mime.contains("mp4a"));
    Ok(())
}

#[tokio::test]
async fn segment_indices_and_stream_time_advance() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    let mut c = server.connect().await?;
    c.init().await?;
    let mut stream_ids = Vec::new();
    for i in 0..3u32 {
        let t = c.segment(&format!("prompt {i}")).await?;
        for m in &t.messages {
            assert_eq!(m["segment_idx"], i, "{m}");
        }
        let done = t.find("media_segment_complete").expect("done");
        let expected_base = f64::from(i) * 6.0 * 1000.0 / 24.0;
        assert!((done["pts_base_ms"].as_f64().expect("pts") - expected_base).abs() < 1e-6);
        stream_ids.push(done["stream_id"].clone());
        // Every segment is self-contained: its own init segment, decodable on its own.
        let decoded = fv_testkit::decode_fmp4(&t.media())?;
        assert_eq!(decoded.frames, 6);
    }
    stream_ids.dedup();
    assert_eq!(stream_ids.len(), 3, "a new stream_id per segment");
    Ok(())
}

#[tokio::test]
async fn prompts_sent_during_a_segment_are_served_in_order() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    let mut c = server.connect().await?;
    c.init().await?;
    for p in ["one", "two", "three"] {
        c.send_json(&json!({"type": "segment_prompt_source", "prompt": p}))
            .await?;
    }
    for (i, p) in ["one", "two", "three"].iter().enumerate() {
        let t = c.collect_segment().await?;
        let start = t.find("ltx2_segment_start").expect("start");
        assert_eq!(start["prompt"], *p);
        assert_eq!(start["segment_idx"], i);
    }
    Ok(())
}

#[tokio::test]
async fn client_seed_and_steps_override_the_defaults() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    let mut c = server.connect().await?;
    c.init().await?;
    c.send_json(&json!({"type": "segment_prompt_source", "prompt": "p", "seed": "7", "num_inference_steps": 4}))
        .await?;
    let t = c.collect_segment().await?;
    assert_eq!(
        t.find("ltx2_segment_start").expect("start")["total_steps"],
        4
    );
    assert_eq!(
        t.messages
            .iter()
            .filter(|m| m["type"] == "step_complete")
            .count(),
        4
    );
    Ok(())
}

#[tokio::test]
async fn toggles_and_repeated_init_get_no_reply() -> anyhow::Result<()> {
    let server = TestServer::start(test_config()).await?;
    let mut c = server.connect().await?;
    c.init().await?;
    // Values that start nothing by themselves (what each toggle does is tested in
    // tests/prompts.rs and the session core's transcripts).
    for msg in [
        json!({"type": "seed_prompts_updated", "seed_prompts": ["a", "b"]}),
        json!({"type": "enhancement_updated", "enabled": false}),
        json!({"type": "auto_extension_updated", "enabled": "false"}),
        json!({"type": "loop_generation_updated", "enabled": 0}),
        json!({"type": "generation_paused_updated", "paused": false}),
        json!({"type": "session_init_v2"}),
    ] {
        c.send_json(&msg).await?;
    }
    // The next thing the client sees is the segment it asks for: nothing answered the toggles.
    let t = c.segment("after toggles").await?;
    assert_eq!(t.order[0], "ltx2_segment_start");
    Ok(())
}

#[tokio::test]
async fn media_reaches_the_client_before_generation_finishes() -> anyhow::Result<()> {
    use fv_testkit::Received;
    use fv_testkit::generators::Behaviour;
    let mut config = test_config();
    config.default_request.sampling.num_frames = 12;
    config.streaming.fragment_frames = 4;
    let (server, observed) = TestServer::with_test_generators(
        config,
        1,
        std::time::Duration::ZERO,
        Behaviour::GatedFrames,
    )
    .await?;
    let mut c = server.connect().await?;
    c.init().await?;
    c.send_json(&json!({"type": "segment_prompt_source", "prompt": "early"}))
        .await?;
    // The generator is now blocked after its first 4 frames. Their init segment and first
    // fragment must arrive while it waits.
    let mut binaries = 0;
    while binaries < 2 {
        match c.recv().await? {
            Received::Binary(_) => binaries += 1,
            Received::Json(m) => assert_ne!(m["type"], "error", "{m}"),
            other => anyhow::bail!("unexpected {other:?}"),
        }
    }
    observed.open_gate();
    let rest = c.collect_segment().await?;
    let done = rest.find("media_segment_complete").expect("complete");
    assert_eq!(done["chunks"], 3);
    Ok(())
}
