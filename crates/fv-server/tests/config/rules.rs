//! FastVideo's parser rules and every range limit, key by key.

use super::*;

// ----- parser rules --------------------------------------------------------------------

#[test]
fn unknown_top_level_key_is_named_with_a_suggestion() {
    let p = problems(yaml("generator: {model_path: m}\nservr: {port: 1}\n"));
    assert_eq!(p, ["servr: unknown field (did you mean server?)"]);
}

#[test]
fn unknown_nested_key_is_named_by_full_path() {
    let p = problems(yaml(
        "generator: {model_path: m}\nstreaming:\n  sesion_timeout_seconds: 5\n",
    ));
    assert_eq!(
        p,
        ["streaming.sesion_timeout_seconds: unknown field (did you mean session_timeout_seconds?)"]
    );
    let p = problems(yaml(
        "generator:\n  model_path: m\n  engine:\n    compile:\n      bogus_knob: 1\n",
    ));
    assert_eq!(p, ["generator.engine.compile.bogus_knob: unknown field"]);
    let p = problems(yaml(
        "generator: {model_path: m}\ndefault_request:\n  plan:\n    stages:\n      - {name: a, kind: b, nme: c}\n",
    ));
    assert_eq!(
        p,
        ["default_request.plan.stages[0].nme: unknown field (did you mean name?)"]
    );
}

#[test]
fn key_in_the_wrong_block_points_to_the_right_one() {
    let p = problems(yaml(
        "generator: {model_path: m}\nserver:\n  max_sessions: 4\n",
    ));
    assert_eq!(
        p,
        ["server.max_sessions: unknown field (did you mean streaming.max_sessions?)"]
    );
}

#[test]
fn missing_model_path_and_missing_generator() {
    let p = problems(yaml("generator: {revision: main}\n"));
    assert_eq!(p, ["generator.model_path: missing required field"]);
    assert_eq!(
        problems(yaml("server: {port: 1}\n")),
        ["generator: missing required field"]
    );
    // An empty document is an empty mapping, as in FastVideo.
    assert_eq!(
        problems(yaml("# nothing\n")),
        ["generator: missing required field"]
    );
    assert_eq!(
        problems(ServeConfig::from_json_str("null")),
        ["generator: missing required field"]
    );
    let p = problems(yaml(
        "generator: {model_path: m}\ndefault_request: {state: {kind: k}}\n",
    ));
    assert_eq!(p, ["default_request.state.payload: missing required field"]);
}

#[test]
fn bools_must_be_real_booleans() {
    for (text, shown) in [
        ("yes", "string \"yes\""),
        ("\"true\"", "string \"true\""),
        ("1", "integer 1"),
        ("on", "string \"on\""),
    ] {
        let p = problems(yaml(&format!(
            "generator: {{model_path: m}}\nstreaming:\n  warmup:\n    enabled: {text}\n"
        )));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(&format!(
                "streaming.warmup.enabled: expected a boolean (true or false), got {shown}"
            )),
            "{p:?}"
        );
    }
    // Unused keys follow the same rules.
    let p = problems(yaml("generator: {model_path: m, trust_remote_code: no}\n"));
    assert!(
        p[0].starts_with("generator.trust_remote_code: expected a boolean"),
        "{p:?}"
    );
    assert!(p[0].contains("write true or false"), "{p:?}");
}

#[test]
fn ints_reject_floats_bools_and_strings() {
    let cases = [
        ("1.5", "float 1.5"),
        ("1.0", "float 1.0"),
        ("true", "boolean true"),
        ("\"8\"", "string \"8\""),
        ("010", "string \"010\""),
    ];
    for (text, shown) in cases {
        let p = problems(yaml(&format!(
            "generator: {{model_path: m}}\nstreaming: {{max_sessions: {text}}}\n"
        )));
        assert_eq!(
            p,
            [format!(
                "streaming.max_sessions: expected an integer (1..=10000), got {shown}"
            )]
        );
    }
    let p = problems(yaml(
        "generator:\n  model_path: m\n  engine: {parallelism: {tp_size: 2.5}}\n",
    ));
    assert_eq!(
        p,
        ["generator.engine.parallelism.tp_size: expected an integer, got float 2.5"]
    );
    let p = problems(yaml("generator: {model_path: m}\nserver: {port: null}\n"));
    assert_eq!(
        p,
        ["server.port: expected an integer (0..=65535), got null"]
    );
}

#[test]
fn floats_accept_ints() {
    let loaded = yaml_ok(
        "generator: {model_path: m}\ndefault_request: {sampling: {guidance_scale: 3, sigmas: [1, 0.5, 0]}}\n",
    );
    let s = &loaded.config.default_request.sampling;
    assert_eq!(s.guidance_scale, 3.0);
    assert_eq!(s.sigmas, Some(vec![1.0, 0.5, 0.0]));
    let p = problems(yaml(
        "generator: {model_path: m}\ndefault_request: {sampling: {sigmas: [1, x, true]}}\n",
    ));
    assert_eq!(
        p,
        [
            "default_request.sampling.sigmas[1]: expected a number, got string \"x\"",
            "default_request.sampling.sigmas[2]: expected a number, got boolean true"
        ]
    );
    let p = problems(yaml(
        "generator: {model_path: m}\ndefault_request: {sampling: {guidance_scale: \"2\"}}\n",
    ));
    assert_eq!(
        p,
        ["default_request.sampling.guidance_scale: expected a number >= 0, got string \"2\""]
    );
}

#[test]
fn strings_and_string_lists() {
    let p = problems(yaml("generator: {model_path: 12}\n"));
    assert_eq!(
        p,
        ["generator.model_path: expected a string, got integer 12"]
    );
    let loaded = yaml_ok(
        "generator: {model_path: m}\ndefault_request: {prompt: [a, b], inputs: {image_path: x.png}}\n",
    );
    assert!(
        loaded
            .ignored
            .contains(&"default_request.prompt".to_string())
    );
    let p = problems(yaml(
        "generator: {model_path: m}\ndefault_request: {inputs: {video_path: [a, 2]}}\n",
    ));
    assert_eq!(
        p,
        ["default_request.inputs.video_path[1]: expected a string, got integer 2"]
    );
    let p = problems(yaml(
        "generator: {model_path: m}\ndefault_request: {prompt: {a: 1}}\n",
    ));
    assert_eq!(
        p,
        ["default_request.prompt: expected a string or a list of strings or null, got a mapping"]
    );
}

#[test]
fn enums_list_their_allowed_values() {
    let p = problems(yaml(
        "generator: {model_path: m}\nstreaming: {stream_mode: mp4}\n",
    ));
    assert_eq!(
        p,
        ["streaming.stream_mode: expected one of av_fmp4, legacy_jpeg, got string \"mp4\""]
    );
    let p = problems(yaml(
        "generator: {model_path: m, engine: {execution_backend: slurm}}\n",
    ));
    assert_eq!(
        p,
        ["generator.engine.execution_backend: expected one of mp, ray, got string \"slurm\""]
    );
    let p = problems(yaml(
        "generator: {model_path: m, pipeline: {workload_type: v2v}}\n",
    ));
    assert_eq!(
        p,
        [
            "generator.pipeline.workload_type: expected one of t2v, i2v, t2i, i2i or null, got string \"v2v\""
        ]
    );
    let p = problems(yaml(
        "generator: {model_path: m}\nstreaming: {prompt: {provider: openai}}\n",
    ));
    assert_eq!(
        p,
        [
            "streaming.prompt.provider: expected one of cerebras, groq, openai_compat, template, got string \"openai\""
        ]
    );
    let loaded = yaml_ok("generator: {model_path: m}\nstreaming: {stream_mode: legacy_jpeg}\n");
    assert_eq!(loaded.config.streaming.stream_mode, StreamMode::LegacyJpeg);
    assert_eq!(StreamMode::LegacyJpeg.as_str(), "legacy_jpeg");
    assert_eq!(StreamMode::AvFmp4.to_string(), "av_fmp4");
}

#[test]
fn blocks_must_be_mappings_and_null_only_where_allowed() {
    let p = problems(yaml("generator: {model_path: m}\nserver: 8000\n"));
    assert_eq!(p, ["server: expected a mapping, got integer 8000"]);
    let p = problems(yaml("generator: null\n"));
    assert_eq!(p, ["generator: expected a mapping, got null"]);
    // Optional blocks take null.
    let loaded = yaml_ok(
        "generator: {model_path: m, engine: {quantization: null}}\ndefault_request: {state: null, plan: null}\n",
    );
    assert!(loaded.config.generator.engine.quantization.is_none());
    assert!(
        loaded.ignored.is_empty(),
        "null values are not reported: {:?}",
        loaded.ignored
    );
    let p = problems(yaml(
        "generator: {model_path: m}\ndefault_request: {plan: {stages: [1]}}\n",
    ));
    assert_eq!(
        p,
        ["default_request.plan.stages[0]: expected a mapping, got integer 1"]
    );
    let p = problems(yaml("- generator\n"));
    assert_eq!(
        p,
        ["(top level): expected a mapping at the top level, got a list of 1 item"]
    );
}

// ----- ranges --------------------------------------------------------------------------

/// (dotted path, min, max) of every integer range rule.
const RANGES: &[(&str, i64, i64)] = &[
    ("server.port", 0, 65535),
    ("default_request.sampling.num_frames", 1, 1000),
    ("default_request.sampling.height", 16, 4096),
    ("default_request.sampling.width", 16, 4096),
    ("default_request.sampling.fps", 1, 240),
    ("default_request.sampling.num_inference_steps", 1, 1000),
    ("streaming.session_timeout_seconds", 1, 86_400),
    ("streaming.generation_segment_cap", 1, 10_000),
    ("streaming.warmup.timeout_seconds", 1, 86_400),
    ("streaming.pool.num_workers", 1, 1024),
    ("streaming.max_sessions", 1, 10_000),
    ("streaming.max_queue", 0, 10_000),
    ("streaming.init_timeout_seconds", 1, 3600),
    ("streaming.acquire_timeout_seconds", 1, 86_400),
    ("streaming.max_message_bytes", 1024, 268_435_456),
    ("streaming.max_init_image_bytes", 1, 268_435_456),
    ("streaming.fragment_frames", 1, 1000),
    ("streaming.video_bitrate_bps", 100_000, 100_000_000),
    ("streaming.shutdown_grace_seconds", 0, 3600),
    ("streaming.reaper_interval_ms", 10, 60_000),
    ("store.sessions.capacity", 1, 1_000_000),
    ("store.ttl_seconds", 1, 2_592_000),
    ("store.blobs.max_total_bytes", 1, 1_099_511_627_776),
    ("store.blobs.max_blob_bytes", 1, 536_870_912),
];

#[test]
fn every_range_limit_accepts_its_edges_and_rejects_beyond() {
    for &(path, min, max) in RANGES {
        for ok in [min, max] {
            let mut doc = doc_with(path, json!(ok));
            if path == "store.blobs.max_total_bytes" {
                // Keep the one-blob limit under the total and above the inline limit.
                set(&mut doc, "store.blobs.max_blob_bytes", json!(1));
                set(&mut doc, "store.inline_max_bytes", json!(0));
            }
            if path == "store.blobs.max_blob_bytes" {
                set(
                    &mut doc,
                    "store.blobs.max_total_bytes",
                    json!(1_099_511_627_776_u64),
                );
                set(&mut doc, "store.inline_max_bytes", json!(0));
            }
            let loaded = load_value(&doc).unwrap_or_else(|e| panic!("{path} = {ok}: {e}"));
            loaded.config.validate().unwrap();
        }
        for bad in [min - 1, max + 1] {
            let p = problems(load_value(&doc_with(path, json!(bad))));
            assert_eq!(
                p,
                [format!("{path}: must be in {min}..={max} (got {bad})")],
                "{path} = {bad}"
            );
        }
    }
}

#[test]
fn frame_sizes_must_be_even() {
    for path in [
        "default_request.sampling.width",
        "default_request.sampling.height",
    ] {
        let p = problems(load_value(&doc_with(path, json!(721))));
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with(&format!("{path}: must be even (got 721)")),
            "{p:?}"
        );
    }
}

#[test]
fn num_gpus_must_be_positive_and_bounded() {
    for bad in [0, -1, 1025] {
        let p = problems(load_value(&doc_with(
            "generator.engine.num_gpus",
            json!(bad),
        )));
        assert_eq!(
            p,
            [format!(
                "generator.engine.num_gpus: must be in 1..=1024 (got {bad})"
            )]
        );
    }
    assert!(load_value(&doc_with("generator.engine.num_gpus", json!(8))).is_ok());
}

#[test]
fn guidance_scale_must_be_non_negative_and_finite() {
    let p = problems(load_value(&doc_with(
        "default_request.sampling.guidance_scale",
        json!(-0.5),
    )));
    assert_eq!(
        p,
        ["default_request.sampling.guidance_scale: must be >= 0 (got -0.5)"]
    );
    assert!(
        load_value(&doc_with(
            "default_request.sampling.guidance_scale",
            json!(0.0)
        ))
        .is_ok()
    );
    // YAML's .inf/.nan never get this far: the parser refuses non-finite floats.
    assert!(matches!(
        yaml("generator: {model_path: m}\ndefault_request: {sampling: {guidance_scale: .inf}}\n"),
        Err(ConfigError::File(FileError::Parse { .. }))
    ));
    let mut config = ServeConfig::new("m");
    config.default_request.sampling.guidance_scale = f64::NAN;
    let Err(ConfigError::Invalid { problems }) = config.validate() else {
        panic!("NaN accepted")
    };
    assert_eq!(
        problems,
        ["default_request.sampling.guidance_scale: must be a finite number (got NaN)"]
    );
}

#[test]
fn cross_field_rules() {
    let mut doc = doc_with("store.blobs.max_blob_bytes", json!(4_194_304));
    set(&mut doc, "store.blobs.max_total_bytes", json!(1_048_576));
    let p = problems(load_value(&doc));
    assert_eq!(
        p,
        [
            "store.blobs.max_blob_bytes: must not exceed store.blobs.max_total_bytes (4194304 > 1048576)"
        ]
    );
    let p = problems(load_value(&doc_with(
        "streaming.warmup.prompt",
        json!("  "),
    )));
    assert_eq!(
        p,
        ["streaming.warmup.prompt: must not be blank while streaming.warmup.enabled is true"]
    );
    let mut doc = doc_with("streaming.warmup.prompt", json!(""));
    set(&mut doc, "streaming.warmup.enabled", json!(false));
    assert!(load_value(&doc).is_ok());
    let p = problems(load_value(&doc_with(
        "streaming.session_log_dir",
        json!(""),
    )));
    assert_eq!(
        p,
        ["streaming.session_log_dir: must not be empty (use null to turn session logs off)"]
    );
    let p = problems(load_value(&doc_with("generator.model_path", json!(""))));
    assert_eq!(p, ["generator.model_path: must not be empty"]);
    let p = problems(load_value(&doc_with("server.host", json!(""))));
    assert_eq!(p, ["server.host: must not be empty"]);
}

#[test]
fn all_problems_are_reported_together() {
    let text = "\
generator:
  revision: main
servr: {}
default_request:
  sampling:
    width: 1001
    fps: 0
    num_frames: 2.5
streaming:
  warmup: {enabled: yes}
  stream_mode: h264
";
    let err = yaml(text).unwrap_err();
    let shown = err.to_string();
    let ConfigError::Invalid { problems } = err else {
        panic!("not Invalid")
    };
    let expected = [
        "servr: unknown field (did you mean server?)",
        "generator.model_path: missing required field",
        "default_request.sampling.num_frames: expected an integer (1..=1000), got float 2.5",
        "default_request.sampling.width: must be even (got 1001)",
        "default_request.sampling.fps: must be in 1..=240 (got 0)",
        "streaming.stream_mode: expected one of av_fmp4, legacy_jpeg, got string \"h264\"",
        "streaming.warmup.enabled: expected a boolean (true or false), got string \"yes\"",
    ];
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    for want in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in {problems:#?}"
        );
    }
    assert!(
        shown.starts_with("invalid config (7 problems):\n  "),
        "{shown}"
    );
    for p in &problems {
        assert!(shown.contains(p.as_str()));
    }
}

#[test]
fn validate_reports_every_problem_of_a_config_built_in_code() {
    let mut config = ServeConfig::mock_defaults();
    config.default_request.sampling.width = 17;
    config.default_request.sampling.fps = 1000;
    config.streaming.max_sessions = 0;
    config.streaming.pool.num_workers = Some(0);
    config.store.blobs.max_blob_bytes = config.store.blobs.max_total_bytes + 1;
    let Err(ConfigError::Invalid { problems }) = config.validate() else {
        panic!("accepted")
    };
    assert_eq!(problems.len(), 5, "{problems:#?}");
    for path in [
        "default_request.sampling.width:",
        "default_request.sampling.fps:",
        "streaming.max_sessions:",
        "streaming.pool.num_workers:",
        "store.blobs.max_blob_bytes:",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(path)),
            "{path} in {problems:#?}"
        );
    }
}
