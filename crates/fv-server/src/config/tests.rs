//! The serve config's own rules: which keys are used, defaults, device spellings, the
//! generated reference. (Loading and error messages: `tests/config/`.)

use super::*;

/// The `used` column of the generated reference, as (key, used).
fn used_column() -> Vec<(String, bool)> {
    reference_markdown()
        .lines()
        .skip(2)
        .filter_map(|row| {
            let cells: Vec<&str> = row.split(" | ").collect();
            let key = cells
                .first()?
                .trim_start_matches("| `")
                .trim_end_matches('`');
            Some((key.to_owned(), *cells.get(4)? == "yes"))
        })
        .collect()
}

#[test]
fn defaults_pass_every_rule() {
    ServeConfig::new("model")
        .validate()
        .expect("FastVideo defaults");
    ServeConfig::mock_defaults()
        .validate()
        .expect("mock defaults");
}

#[test]
fn used_keys_are_exactly_the_ones_the_server_reads() {
    let expected = [
        "generator.model_path",
        "generator.engine.num_gpus",
        "generator.pipeline.preset_overrides",
        "generator.device",
        "generator.dtype",
        "generator.text_encoder_device",
        "server.host",
        "server.port",
        "default_request.negative_prompt",
        "default_request.sampling.seed",
        "default_request.sampling.num_frames",
        "default_request.sampling.height",
        "default_request.sampling.width",
        "default_request.sampling.fps",
        "default_request.sampling.num_inference_steps",
        "default_request.sampling.guidance_scale",
        "streaming.session_timeout_seconds",
        "streaming.generation_segment_cap",
        "streaming.stream_mode",
        "streaming.warmup.enabled",
        "streaming.warmup.prompt",
        "streaming.warmup.timeout_seconds",
        "streaming.pool.num_workers",
        "streaming.pool.mode",
        "streaming.pool.restart_backoff_ms",
        "streaming.pool.restart_backoff_max_ms",
        "streaming.pool.max_restarts",
        "streaming.pool.worker_stop_timeout_seconds",
        "streaming.prompt.enabled",
        "streaming.prompt.provider",
        "streaming.prompt.model",
        "streaming.prompt.timeout_ms",
        "streaming.prompt.system_prompt_dir",
        "streaming.prompt.providers",
        "streaming.prompt.providers[].kind",
        "streaming.prompt.providers[].name",
        "streaming.prompt.providers[].base_url",
        "streaming.prompt.providers[].api_key_env",
        "streaming.prompt.providers[].model",
        "streaming.prompt.providers[].priority",
        "streaming.prompt.temperature",
        "streaming.prompt.max_tokens",
        "streaming.prompt.latency_budget_ms",
        "streaming.prompt.offline_fallback",
        "streaming.prompt.reload_interval_ms",
        "streaming.prompt.auto_extension_budget_ms",
        "streaming.prompt.rewrite_budget_ms",
        "streaming.safety.enabled",
        "streaming.safety.classifier_path",
        "streaming.safety.threshold",
        "streaming.safety.unsafe_label",
        "streaming.safety.blocked_words",
        "streaming.safety.blocked_patterns",
        "streaming.safety.on_unavailable",
        "streaming.audio",
        "streaming.service_name",
        "streaming.dreamverse.enabled",
        "streaming.dreamverse.session_limit_seconds",
        "streaming.dreamverse.presets_file",
        "streaming.dreamverse.max_consecutive_failures",
        "streaming.max_sessions",
        "streaming.max_sessions_per_ip",
        "streaming.allowed_origins",
        "streaming.auth_token",
        "streaming.max_queue",
        "streaming.init_timeout_seconds",
        "streaming.acquire_timeout_seconds",
        "streaming.max_message_bytes",
        "streaming.max_init_image_bytes",
        "streaming.fragment_frames",
        "streaming.video_bitrate_bps",
        "streaming.shutdown_grace_seconds",
        "streaming.session_log_dir",
        "streaming.reaper_interval_ms",
        "store.kind",
        "store.ttl_seconds",
        "store.inline_max_bytes",
        "store.sessions.capacity",
        "store.sessions.max_state_bytes",
        "store.blobs.max_total_bytes",
        "store.blobs.max_blob_bytes",
        "store.blobs.max_blobs",
        "store.filesystem",
        "store.filesystem.path",
        "store.filesystem.fsync",
        "store.filesystem.sweep_interval_seconds",
        "store.redis",
        "store.redis.url",
        "store.redis.key_prefix",
        "store.redis.op_timeout_ms",
        "store.redis.connect_timeout_ms",
    ];
    let used: Vec<String> = used_column()
        .into_iter()
        .filter(|(_, used)| *used)
        .map(|(key, _)| key)
        .collect();
    assert_eq!(used, expected);
    // Every used key is documented.
    for row in reference_markdown().lines().skip(2) {
        if row.contains(" | yes | ") {
            assert!(!row.ends_with(" | yes |  |"), "undocumented: {row}");
        }
    }
}

#[test]
fn a_set_unused_key_is_reported_as_ignored() {
    let text = "generator:\n  model_path: m\n  engine:\n    num_gpus: 2\n    use_fsdp_inference: true\n\
                default_request:\n  sampling:\n    guidance_rescale: 0.5\n    seed: 7\n";
    let loaded = ServeConfig::from_yaml_str(text).expect("valid");
    // `num_gpus` places workers on GPUs; the rest of `engine` is FastVideo's alone.
    assert_eq!(
        loaded.ignored,
        [
            "generator.engine.use_fsdp_inference",
            "default_request.sampling.guidance_rescale"
        ]
    );
}

#[test]
fn generator_device_and_dtype_parse_and_bad_spellings_name_the_key() {
    let text = "generator:\n  model_path: m\n  device: cuda:1\n  dtype: bf16\n";
    let c = ServeConfig::from_yaml_str(text).expect("valid").config;
    assert_eq!(c.generator.model_device(), Some(ModelDevice::Cuda(1)));
    assert_eq!(c.generator.dtype, Some(ModelDtype::Bf16));
    assert_eq!(ServeConfig::new("m").generator.model_device(), None);
    for bad in ["gpu", "cuda:", "cuda:x", "cuda:1234", "CPU"] {
        let text = format!("generator:\n  model_path: m\n  device: \"{bad}\"\n");
        let err = ServeConfig::from_yaml_str(&text)
            .expect_err(bad)
            .to_string();
        assert!(err.contains("generator.device"), "{bad}: {err}");
    }
    let err = ServeConfig::from_yaml_str("generator:\n  model_path: m\n  dtype: f8\n")
        .expect_err("f8")
        .to_string();
    assert!(err.contains("generator.dtype"), "{err}");
    assert_eq!(ModelDevice::parse("cpu"), Some(ModelDevice::Cpu));
    assert_eq!(ModelDevice::parse("cuda"), Some(ModelDevice::Cuda(0)));
    let text = "generator:\n  model_path: m\n  device: cuda\n  text_encoder_device: cpu\n";
    let c = ServeConfig::from_yaml_str(text).expect("valid").config;
    assert_eq!(c.generator.text_encoder_device(), Some(ModelDevice::Cpu));
    let err =
        ServeConfig::from_yaml_str("generator:\n  model_path: m\n  text_encoder_device: tpu\n")
            .expect_err("tpu")
            .to_string();
    assert!(err.contains("generator.text_encoder_device"), "{err}");
}

#[test]
fn the_two_stage_preset_reads_fastvideos_refine_override() {
    let with = |refine: &str| {
        ServeConfig::from_yaml_str(&format!(
            "generator:\n  model_path: m\n  pipeline:\n    preset_overrides:\n      refine: {refine}\n"
        ))
    };
    // FastVideo's streaming_demo.yaml spelling.
    let demo =
        with("{enabled: true, num_inference_steps: 2, guidance_scale: 1.0, add_noise: true}")
            .expect("valid")
            .config;
    assert_eq!(
        demo.generator.refine(),
        Some(RefineSettings {
            steps: 2,
            add_noise: true
        })
    );
    assert_eq!(demo.generator.refine_steps(), 2);
    let three = with("{num_inference_steps: 3, add_noise: false}")
        .expect("valid")
        .config;
    assert_eq!(
        three.generator.refine(),
        Some(RefineSettings {
            steps: 3,
            add_noise: false
        })
    );
    for off in ["{enabled: false, num_inference_steps: 2}", "null"] {
        let c = with(off).expect(off).config;
        assert_eq!(c.generator.refine(), None, "{off}");
        assert_eq!(c.generator.refine_steps(), 0, "{off}");
    }
    assert_eq!(ServeConfig::new("m").generator.refine_steps(), 0);
    for (bad, key) in [
        ("{num_inference_steps: 5}", "refine.num_inference_steps"),
        ("{num_inference_steps: two}", "refine.num_inference_steps"),
        ("{guidance_scale: 3.0}", "refine.guidance_scale"),
        ("{enabled: yes please}", "refine.enabled"),
        ("{add_nosie: true}", "refine.add_nosie"),
        ("[1, 2]", "refine: must be a mapping"),
    ] {
        let err = with(bad).expect_err(bad).to_string();
        assert!(
            err.contains(&format!("generator.pipeline.preset_overrides.{key}")),
            "{bad}: {err}"
        );
    }
}

#[test]
fn defaults_match_fastvideo_and_our_additions() {
    let c = ServeConfig::new("m");
    assert_eq!(
        (
            c.server.host.as_str(),
            c.server.port,
            c.server.output_dir.as_str()
        ),
        ("0.0.0.0", 8000, "outputs/")
    );
    let s = &c.default_request.sampling;
    assert_eq!(
        (
            s.num_frames,
            s.height,
            s.width,
            s.fps,
            s.num_inference_steps,
            s.seed
        ),
        (125, 720, 1280, 24, 50, 1024)
    );
    assert_eq!(
        (s.guidance_scale, s.cfg_truncation, s.num_videos_per_prompt),
        (1.0, Some(1.0), 1)
    );
    let st = &c.streaming;
    assert_eq!(
        (
            st.session_timeout_seconds,
            st.generation_segment_cap,
            st.stream_mode
        ),
        (300, 6, StreamMode::AvFmp4)
    );
    assert_eq!(
        (
            st.warmup.enabled,
            st.warmup.prompt.as_str(),
            st.warmup.timeout_seconds
        ),
        (true, DEFAULT_WARMUP_PROMPT, 2400)
    );
    assert_eq!(
        (
            st.pool.num_workers,
            c.worker_devices(),
            st.pool.conditioning_num_frames,
            st.pool.mode
        ),
        (None, vec![None], 9, PoolMode::InProcess)
    );
    assert_eq!(
        (
            st.prompt.enabled,
            st.prompt.provider,
            st.prompt.model.as_str(),
            st.prompt.timeout_ms
        ),
        (
            false,
            fv_prompt::ProviderKind::Cerebras,
            "gpt-oss-120b",
            20000
        )
    );
    assert_eq!(
        (
            st.max_sessions,
            st.max_queue,
            st.init_timeout_seconds,
            st.acquire_timeout_seconds
        ),
        (8, 64, 10, 300)
    );
    assert_eq!(
        (
            st.max_message_bytes,
            st.max_init_image_bytes,
            st.fragment_frames,
            st.video_bitrate_bps
        ),
        (16_777_216, 33_554_432, 12, 4_000_000)
    );
    assert_eq!(
        (
            st.shutdown_grace_seconds,
            st.session_log_dir.clone(),
            st.reaper_interval_ms
        ),
        (30, None, 1000)
    );
    let store = &c.store;
    assert_eq!(
        (
            store.kind,
            store.ttl_seconds,
            store.sessions.capacity,
            store.blobs.max_total_bytes,
            store.blobs.max_blob_bytes
        ),
        (
            fv_store::StoreKind::Memory,
            3600,
            1024,
            268_435_456,
            67_108_864
        )
    );
    let e = &c.generator.engine;
    assert_eq!(
        (
            e.num_gpus,
            e.execution_backend,
            e.enable_stage_verification,
            e.offload.dit
        ),
        (1, ExecutionBackend::Mp, true, true)
    );
    assert_eq!(
        c.default_request.output,
        OutputSection {
            output_path: "outputs/".into(),
            output_video_name: None,
            save_video: true,
            return_frames: true,
            return_state: false
        }
    );
}

#[test]
fn reference_table_lists_every_key_once() {
    let keys: Vec<String> = used_column().into_iter().map(|(k, _)| k).collect();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "a key listed twice");
    assert!(keys.len() > 100, "{} keys", keys.len());
    let table = reference_markdown();
    assert!(
        table.contains("| `server.port` | int | `8000` | 0..=65535 | yes |"),
        "{table}"
    );
    assert!(
        table.contains(
            "| `default_request.sampling.width` | int | `1280` | 16..=4096, even | yes |"
        ),
        "{table}"
    );
}

#[test]
fn workers_go_one_per_gpu_from_the_configured_device() {
    let devices = |yaml: &str| {
        let text = format!("generator:\n  model_path: m\n{yaml}");
        ServeConfig::from_yaml_str(&text)
            .expect("valid")
            .config
            .worker_devices()
    };
    // One worker per GPU by default, from the device's ordinal on.
    assert_eq!(
        devices("  device: cuda\n  engine:\n    num_gpus: 4\n"),
        [Some(0), Some(1), Some(2), Some(3)]
    );
    assert_eq!(
        devices("  device: cuda:2\n  engine:\n    num_gpus: 2\n"),
        [Some(2), Some(3)]
    );
    // More workers than GPUs: round-robin. Fewer: the first GPUs.
    assert_eq!(
        devices(
            "  device: cuda\n  engine:\n    num_gpus: 2\nstreaming:\n  pool:\n    num_workers: 5\n"
        ),
        [Some(0), Some(1), Some(0), Some(1), Some(0)]
    );
    assert_eq!(
        devices(
            "  device: cuda:1\n  engine:\n    num_gpus: 3\nstreaming:\n  pool:\n    num_workers: 2\n"
        ),
        [Some(1), Some(2)]
    );
    // CPU (or no device, the mock): num_workers workers, no device, num_gpus irrelevant.
    assert_eq!(devices("  engine:\n    num_gpus: 4\n"), [None]);
    assert_eq!(
        devices("  device: cpu\nstreaming:\n  pool:\n    num_workers: 3\n"),
        [None, None, None]
    );
}

#[test]
fn pool_mode_and_restart_keys_load_and_are_checked() {
    let text = "generator:\n  model_path: m\nstreaming:\n  pool:\n    mode: subprocess\n    \
                restart_backoff_ms: 250\n    restart_backoff_max_ms: 4000\n    max_restarts: 0\n    \
                worker_stop_timeout_seconds: 3\n";
    let loaded = ServeConfig::from_yaml_str(text).expect("valid");
    let pool = &loaded.config.streaming.pool;
    assert_eq!(pool.mode, PoolMode::Subprocess);
    assert_eq!(
        (
            pool.restart_backoff_ms,
            pool.restart_backoff_max_ms,
            pool.max_restarts,
            pool.worker_stop_timeout_seconds
        ),
        (250, 4000, 0, 3)
    );
    assert!(loaded.ignored.is_empty(), "{:?}", loaded.ignored);

    let problems = |yaml: &str| match ServeConfig::from_yaml_str(&format!(
        "generator:\n  model_path: m\nstreaming:\n  pool:\n{yaml}"
    )) {
        Err(ConfigError::Invalid { problems }) => problems,
        other => panic!("expected problems, got {other:?}"),
    };
    assert_eq!(
        problems("    mode: threads\n"),
        ["streaming.pool.mode: expected one of in_process, subprocess, got string \"threads\""]
    );
    assert_eq!(
        problems("    restart_backoff_ms: 5000\n    restart_backoff_max_ms: 1000\n"),
        [
            "streaming.pool.restart_backoff_ms: must not exceed streaming.pool.restart_backoff_max_ms (5000 > 1000)"
        ]
    );
    let p = problems(
        "    restart_backoff_ms: 0\n    worker_stop_timeout_seconds: 0\n    max_restarts: 1001\n",
    );
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p.iter().all(|p| p.starts_with("streaming.pool.")), "{p:?}");
}
