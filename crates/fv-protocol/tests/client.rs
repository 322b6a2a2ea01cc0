//! Client message parsing: round trips, defaults, lax coercion and error messages.
#![allow(clippy::unwrap_used)]

use fv_protocol::{
    ClientMessage, ContinuationStateWire, PausedToggle, PromptSource, SeedPromptsUpdated,
    SegmentPromptSource, SessionInitV2, StreamMode, Toggle, parse_client_message,
    parse_client_value,
};
use serde_json::{Map, Value, json};

fn parse(v: Value) -> ClientMessage {
    parse_client_message(&v.to_string()).unwrap_or_else(|e| panic!("{v} failed: {e}"))
}

fn segment(v: Value) -> SegmentPromptSource {
    match parse(v) {
        ClientMessage::SegmentPromptSource(s) => s,
        other => panic!("not a segment_prompt_source: {other:?}"),
    }
}

fn init(v: Value) -> SessionInitV2 {
    match parse(v) {
        ClientMessage::SessionInitV2(s) => s,
        other => panic!("not a session_init_v2: {other:?}"),
    }
}

/// Parses a frame that must fail and checks the error text is clean.
fn error_for(text: &str) -> fv_protocol::ParseError {
    let err = parse_client_message(text).expect_err("frame must be rejected");
    let msg = err.to_string();
    for leak in [
        "tagged-union",
        "line 1 column",
        "invalid type",
        "at line",
        "`",
        "(body)",
    ] {
        assert!(!msg.contains(leak), "message leaks {leak:?}: {msg}");
    }
    err
}

fn state(kind: &str) -> ContinuationStateWire {
    let mut payload = Map::new();
    payload.insert("schema_version".into(), json!(1));
    payload.insert("nested".into(), json!({"a": [1, 2, 3]}));
    ContinuationStateWire {
        kind: kind.into(),
        payload,
    }
}

fn all_messages() -> Vec<ClientMessage> {
    let mut extra = Map::new();
    extra.insert("preset_id".into(), json!("p1"));
    extra.insert("initial_rollout_prompt".into(), json!({"x": [1]}));
    vec![
        ClientMessage::SessionInitV2(SessionInitV2::default()),
        ClientMessage::SessionInitV2(SessionInitV2 {
            client_id: Some("c".into()),
            preset: Some("fast".into()),
            preset_label: Some("Fast".into()),
            curated_prompts: vec!["a".into(), "b".into()],
            initial_image: Some(json!({"mime": "image/png", "data": "AAAA", "name": "x.png"})),
            enhancement_enabled: true,
            auto_extension_enabled: true,
            loop_generation_enabled: true,
            single_clip_mode: true,
            stream_mode: StreamMode::LegacyJpeg,
            continuation_state: Some(state("ltx2.v1")),
            extra,
        }),
        ClientMessage::SegmentPromptSource(SegmentPromptSource {
            prompt: "a cat".into(),
            ..Default::default()
        }),
        ClientMessage::SegmentPromptSource(SegmentPromptSource {
            prompt: String::new(),
            negative_prompt: Some("blurry".into()),
            source: PromptSource::AutoExtension,
            seed: Some(-3),
            num_inference_steps: Some(8),
            guidance_scale: Some(1.5),
        }),
        ClientMessage::SeedPromptsUpdated(SeedPromptsUpdated {
            seed_prompts: vec!["x".into()],
        }),
        ClientMessage::EnhancementUpdated(Toggle { enabled: true }),
        ClientMessage::AutoExtensionUpdated(Toggle { enabled: false }),
        ClientMessage::LoopGenerationUpdated(Toggle { enabled: true }),
        ClientMessage::GenerationPausedUpdated(PausedToggle { paused: true }),
        ClientMessage::SnapshotState,
    ]
}

#[test]
fn every_message_round_trips() {
    for msg in all_messages() {
        let text = msg.to_json();
        assert_eq!(parse_client_message(&text).unwrap(), msg, "{text}");
        // The serde path (used by generic code) agrees with the parse function.
        assert_eq!(serde_json::from_str::<ClientMessage>(&text).unwrap(), msg);
    }
}

#[test]
fn type_names_match_the_wire() {
    let mut seen = Vec::new();
    for msg in all_messages() {
        let wire: Value = serde_json::from_str(&msg.to_json()).unwrap();
        assert_eq!(wire["type"], json!(msg.type_name()));
        if !seen.contains(&msg.type_name()) {
            seen.push(msg.type_name());
        }
    }
    assert_eq!(seen, ClientMessage::TYPES);
}

#[test]
fn serialized_init_omits_unset_options() {
    let wire: Value = serde_json::from_str(&all_messages()[0].to_json()).unwrap();
    let obj = wire.as_object().unwrap();
    for key in [
        "client_id",
        "preset",
        "preset_label",
        "initial_image",
        "continuation_state",
    ] {
        assert!(!obj.contains_key(key), "{key} serialized: {wire}");
    }
    assert_eq!(wire["stream_mode"], json!("av_fmp4"));
}

#[test]
fn session_init_defaults() {
    assert_eq!(
        init(json!({"type": "session_init_v2"})),
        SessionInitV2::default()
    );
    let d = SessionInitV2::default();
    assert_eq!(d.stream_mode, StreamMode::AvFmp4);
    assert!(d.curated_prompts.is_empty());
    assert!(!d.enhancement_enabled && !d.auto_extension_enabled);
    assert!(!d.loop_generation_enabled && !d.single_clip_mode);
    assert!(d.extra.is_empty());
    // Explicit nulls in optional fields mean the same as absent.
    let nulls = init(
        json!({"type": "session_init_v2", "client_id": null, "preset": null,
        "preset_label": null, "initial_image": null, "continuation_state": null}),
    );
    assert_eq!(nulls, SessionInitV2::default());
}

#[test]
fn segment_defaults() {
    let s = segment(json!({"type": "segment_prompt_source", "prompt": "p"}));
    assert_eq!(
        s,
        SegmentPromptSource {
            prompt: "p".into(),
            negative_prompt: None,
            source: PromptSource::User,
            seed: None,
            num_inference_steps: None,
            guidance_scale: None,
        }
    );
    let s = segment(
        json!({"type": "segment_prompt_source", "prompt": "", "seed": null,
        "num_inference_steps": null, "guidance_scale": null, "negative_prompt": null}),
    );
    assert_eq!(s.prompt, "");
    assert_eq!(s.seed, None);
    assert_eq!(
        parse(json!({"type": "seed_prompts_updated"})),
        ClientMessage::SeedPromptsUpdated(SeedPromptsUpdated::default())
    );
}

#[test]
fn init_keeps_unknown_keys_but_not_type() {
    let s = init(json!({"type": "session_init_v2", "preset_id": "abc", "n": 3}));
    assert_eq!(s.extra.get("preset_id"), Some(&json!("abc")));
    assert_eq!(s.extra.get("n"), Some(&json!(3)));
    assert!(!s.extra.contains_key("type"));
}

#[test]
fn other_messages_ignore_unknown_keys() {
    assert_eq!(
        parse(json!({"type": "enhancement_updated", "enabled": true, "junk": [1]})),
        ClientMessage::EnhancementUpdated(Toggle { enabled: true })
    );
    assert_eq!(
        parse(json!({"type": "snapshot_state", "junk": 1})),
        ClientMessage::SnapshotState
    );
    assert_eq!(
        segment(json!({"type": "segment_prompt_source", "prompt": "p", "width": 9})).prompt,
        "p"
    );
}

#[test]
fn lax_bools() {
    let cases = [
        (json!(true), true),
        (json!("true"), true),
        (json!("TRUE"), true),
        (json!("1"), true),
        (json!("yes"), true),
        (json!("On"), true),
        (json!(1), true),
        (json!(false), false),
        (json!("false"), false),
        (json!("0"), false),
        (json!("No"), false),
        (json!("off"), false),
        (json!(0), false),
    ];
    for (raw, want) in cases {
        assert_eq!(
            parse(json!({"type": "loop_generation_updated", "enabled": raw})),
            ClientMessage::LoopGenerationUpdated(Toggle { enabled: want }),
            "{raw}"
        );
        assert_eq!(
            init(json!({"type": "session_init_v2", "single_clip_mode": raw})).single_clip_mode,
            want
        );
        assert_eq!(
            parse(json!({"type": "generation_paused_updated", "paused": raw})),
            ClientMessage::GenerationPausedUpdated(PausedToggle { paused: want })
        );
    }
    for bad in [
        json!(2),
        json!("maybe"),
        json!(null),
        json!([true]),
        json!(0.5),
    ] {
        let text = json!({"type": "enhancement_updated", "enabled": bad}).to_string();
        let err = error_for(&text);
        assert_eq!(err.field(), Some("enabled"), "{err}");
        assert!(
            err.to_string()
                .starts_with("enhancement_updated.enabled: expected a boolean, got "),
            "{err}"
        );
    }
}

#[test]
fn lax_ints() {
    for (raw, want) in [
        (json!(5), 5),
        (json!(5.0), 5),
        (json!("5"), 5),
        (json!("-12"), -12),
    ] {
        let s = segment(
            json!({"type": "segment_prompt_source", "prompt": "p", "seed": raw,
            "num_inference_steps": raw}),
        );
        assert_eq!(s.seed, Some(want), "{raw}");
        assert_eq!(s.num_inference_steps, Some(want), "{raw}");
    }
    let err = error_for(r#"{"type":"segment_prompt_source","prompt":"p","seed":true}"#);
    assert_eq!(
        err.to_string(),
        "segment_prompt_source.seed: expected an integer or null, got boolean true"
    );
    let err =
        error_for(r#"{"type":"segment_prompt_source","prompt":"p","num_inference_steps":2.5}"#);
    assert_eq!(err.field(), Some("num_inference_steps"));
    assert!(err.to_string().contains("got number 2.5"), "{err}");
}

#[test]
fn lax_floats() {
    for (raw, want) in [(json!(2), 2.0), (json!(2.5), 2.5), (json!("3.25"), 3.25)] {
        let s = segment(json!({"type": "segment_prompt_source", "prompt": "p",
            "guidance_scale": raw}));
        assert_eq!(s.guidance_scale, Some(want), "{raw}");
    }
    for bad in [json!(true), json!("fast"), json!("NaN"), json!([1.0])] {
        let text = json!({"type": "segment_prompt_source", "prompt": "p", "guidance_scale": bad})
            .to_string();
        let err = error_for(&text);
        assert_eq!(err.field(), Some("guidance_scale"), "{err}");
        assert!(
            err.to_string().contains("expected a number or null"),
            "{err}"
        );
    }
}

#[test]
fn strings_are_not_coerced_from_numbers() {
    let err = error_for(r#"{"type":"segment_prompt_source","prompt":5}"#);
    assert_eq!(
        err.to_string(),
        "segment_prompt_source.prompt: expected a string, got integer 5"
    );
    let err = error_for(r#"{"type":"session_init_v2","preset":1.5}"#);
    assert_eq!(
        err.to_string(),
        "session_init_v2.preset: expected a string or null, got number 1.5"
    );
}

#[test]
fn lists_are_not_coerced_from_strings() {
    let err = error_for(r#"{"type":"session_init_v2","curated_prompts":"a cat"}"#);
    assert_eq!(
        err.to_string(),
        r#"session_init_v2.curated_prompts: expected a list of strings, got string "a cat""#
    );
    let err = error_for(r#"{"type":"seed_prompts_updated","seed_prompts":["a",7]}"#);
    assert_eq!(err.field(), Some("seed_prompts[1]"));
    assert_eq!(
        err.to_string(),
        "seed_prompts_updated.seed_prompts[1]: expected a string, got integer 7"
    );
    let err = error_for(r#"{"type":"seed_prompts_updated","seed_prompts":null}"#);
    assert_eq!(err.field(), Some("seed_prompts"));
}

#[test]
fn not_json() {
    for text in ["", "{", "hello", "{\"type\": }", "\u{0}"] {
        let err = error_for(text);
        assert!(
            matches!(err, fv_protocol::ParseError::NotJson { .. }),
            "{text:?}: {err:?}"
        );
        assert!(
            err.to_string().starts_with("message is not valid JSON"),
            "{err}"
        );
        assert_eq!(err.field(), None);
    }
}

#[test]
fn not_an_object() {
    let err = error_for("[1,2]");
    assert_eq!(
        err.to_string(),
        "message must be a JSON object with a string \"type\", got an array"
    );
    assert!(
        error_for("\"session_init_v2\"")
            .to_string()
            .contains("got string")
    );
    assert!(error_for("null").to_string().contains("got null"));
}

#[test]
fn missing_type_lists_known_types() {
    let err = error_for(r#"{"prompt":"p"}"#);
    assert_eq!(err.field(), Some("type"));
    let msg = err.to_string();
    assert!(msg.contains("no \"type\" field"), "{msg}");
    for t in ClientMessage::TYPES {
        assert!(msg.contains(t), "{msg} lacks {t}");
    }
}

#[test]
fn unknown_type_lists_known_types() {
    let err = error_for(r#"{"type":"append_prompt","prompt":"p"}"#);
    assert_eq!(err.field(), Some("type"));
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "type: unknown message type \"append_prompt\"; expected one of: session_init_v2, "
        ),
        "{msg}"
    );
    assert!(msg.contains("snapshot_state"), "{msg}");

    let err = error_for(r#"{"type":5}"#);
    assert_eq!(err.field(), Some("type"));
    assert!(
        err.to_string()
            .starts_with("type: expected a string, got integer 5"),
        "{err}"
    );

    // A huge type string is not echoed in full.
    let long = "x".repeat(10_000);
    let err = error_for(&json!({ "type": long }).to_string());
    assert!(err.to_string().len() < 600, "{}", err.to_string().len());
}

#[test]
fn missing_required_fields() {
    let err = error_for(r#"{"type":"segment_prompt_source"}"#);
    assert_eq!(
        err.to_string(),
        "segment_prompt_source: missing required field \"prompt\""
    );
    assert_eq!(err.field(), Some("prompt"));
    assert_eq!(err.message_type(), Some("segment_prompt_source"));
    for t in [
        "enhancement_updated",
        "auto_extension_updated",
        "loop_generation_updated",
    ] {
        let err = error_for(&json!({ "type": t }).to_string());
        assert_eq!(
            err.to_string(),
            format!("{t}: missing required field \"enabled\"")
        );
    }
    let err = error_for(r#"{"type":"generation_paused_updated"}"#);
    assert_eq!(err.field(), Some("paused"));
}

#[test]
fn wrong_field_types() {
    let err = error_for(r#"{"type":"segment_prompt_source","prompt":"p","seed":"abc"}"#);
    assert_eq!(
        err.to_string(),
        r#"segment_prompt_source.seed: expected an integer or null, got string "abc""#
    );
    assert_eq!(err.field(), Some("seed"));
    let err = error_for(r#"{"type":"session_init_v2","enhancement_enabled":{}}"#);
    assert_eq!(
        err.to_string(),
        "session_init_v2.enhancement_enabled: expected a boolean, got an object"
    );
    let err = error_for(r#"{"type":"segment_prompt_source","prompt":"p","source":"robot"}"#);
    assert_eq!(
        err.to_string(),
        r#"segment_prompt_source.source: expected one of "curated", "enhanced", "user", "auto_extension", got string "robot""#
    );
}

#[test]
fn stream_mode_values() {
    assert_eq!(
        init(json!({"type": "session_init_v2", "stream_mode": "legacy_jpeg"})).stream_mode,
        StreamMode::LegacyJpeg
    );
    for bad in [r#""AV_FMP4""#, r#""webm""#, "null", "1"] {
        let err = error_for(&format!(
            r#"{{"type":"session_init_v2","stream_mode":{bad}}}"#
        ));
        assert_eq!(err.field(), Some("stream_mode"), "{err}");
        assert!(
            err.to_string().starts_with(
                r#"session_init_v2.stream_mode: expected one of "av_fmp4", "legacy_jpeg", got "#
            ),
            "{err}"
        );
    }
}

#[test]
fn initial_image_shapes() {
    let img = json!({"mime": "image/png", "data": "AAAA"});
    assert_eq!(
        init(json!({"type": "session_init_v2", "initial_image": img.clone()})).initial_image,
        Some(img)
    );
    assert_eq!(
        init(json!({"type": "session_init_v2", "initial_image": {}})).initial_image,
        None
    );
    for bad in [r#""data:image/png;base64,AAAA""#, "[1]", "true", "0"] {
        let err = error_for(&format!(
            r#"{{"type":"session_init_v2","initial_image":{bad}}}"#
        ));
        assert_eq!(err.field(), Some("initial_image"), "{err}");
        assert!(
            err.to_string()
                .starts_with("session_init_v2.initial_image: expected an object or null, got "),
            "{err}"
        );
    }
}

#[test]
fn continuation_state_shapes() {
    let s = init(json!({"type": "session_init_v2",
        "continuation_state": {"kind": "ltx2.v1", "payload": {"schema_version": 1}, "x": 1}}));
    let st = s.continuation_state.unwrap();
    assert_eq!(st.kind, "ltx2.v1");
    assert_eq!(st.payload.get("schema_version"), Some(&json!(1)));
    assert_eq!(
        init(json!({"type": "session_init_v2", "continuation_state": {}})).continuation_state,
        None
    );

    let cases: [(&str, &str, &str); 6] = [
        (
            r#""abc""#,
            "continuation_state",
            "expected an object {kind: string, payload: object} or null, got string \"abc\"",
        ),
        (
            "[]",
            "continuation_state",
            "expected an object {kind: string, payload: object} or null, got an array",
        ),
        (r#"{"payload":{}}"#, "continuation_state.kind", ""),
        (r#"{"kind":"k"}"#, "continuation_state.payload", ""),
        (
            r#"{"kind":5,"payload":{}}"#,
            "continuation_state.kind",
            "expected a string, got integer 5",
        ),
        (
            r#"{"kind":"k","payload":[1]}"#,
            "continuation_state.payload",
            "expected an object, got an array",
        ),
    ];
    for (raw, field, reason) in cases {
        let err = error_for(&format!(
            r#"{{"type":"session_init_v2","continuation_state":{raw}}}"#
        ));
        assert_eq!(err.field(), Some(field), "{raw}: {err}");
        let msg = err.to_string();
        if reason.is_empty() {
            assert_eq!(
                msg,
                format!("session_init_v2: missing required field \"{field}\"")
            );
        } else {
            assert_eq!(msg, format!("session_init_v2.{field}: {reason}"));
        }
    }
}

#[test]
fn parse_value_and_serde_agree_on_errors() {
    let v = json!({"type": "segment_prompt_source"});
    let direct = parse_client_value(v.clone()).unwrap_err().to_string();
    let via_serde = serde_json::from_value::<ClientMessage>(v)
        .unwrap_err()
        .to_string();
    assert_eq!(direct, via_serde);
}
