//! The `/prompt-system-config` body the Dreamverse web app reads and writes.

#![allow(clippy::unwrap_used)]

mod support;

use fv_prompt::{
    EnhancerSettings, PromptEnhancer, PromptSystemConfigUpdate, RewriteOptions, SystemConfigError,
    SystemPromptKind, TemplateProvider,
};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use support::{Behavior, FakeLlm};

fn update(v: serde_json::Value) -> PromptSystemConfigUpdate {
    serde_json::from_value(v).unwrap()
}

#[test]
fn get_has_exactly_the_dreamverse_keys() {
    let e = PromptEnhancer::offline();
    let v = serde_json::to_value(e.system_config()).unwrap();
    let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = [
        "next_segment_system_prompt",
        "auto_extension_system_prompt",
        "rewrite_window_system_prompt",
        "rewrite_user_system_prompt",
        "rewrite_model",
        "rewrite_model_options",
        "rewrite_temperature",
        "next_segment_system_prompt_path",
        "auto_extension_system_prompt_path",
        "rewrite_window_system_prompt_path",
        "rewrite_user_system_prompt_path",
    ]
    .into();
    assert_eq!(keys, want);
    assert_eq!(
        v["next_segment_system_prompt"],
        SystemPromptKind::Enhance.default_text()
    );
    assert_eq!(v["rewrite_model"], "template-v1");
    assert_eq!(v["rewrite_model_options"], json!(["template-v1"]));
    assert!((v["rewrite_temperature"].as_f64().unwrap() - 0.7).abs() < 1e-6);
    assert!(v["next_segment_system_prompt_path"].is_null());
}

#[test]
fn post_changes_prompts_and_refuses_blank_ones_without_changing_anything() {
    let e = PromptEnhancer::offline();
    let after = e
        .update_system_config(&update(json!({
            "next_segment_system_prompt": "Enhance v2",
            "auto_extension_system_prompt": "Auto v2",
            "rewrite_window_system_prompt": "Window v2",
        })))
        .unwrap();
    assert_eq!(after.next_segment_system_prompt, "Enhance v2");
    assert_eq!(after.auto_extension_system_prompt, "Auto v2");
    assert_eq!(after.rewrite_window_system_prompt, "Window v2");
    assert_eq!(
        after.rewrite_user_system_prompt,
        SystemPromptKind::Rewrite.default_text()
    );
    assert_eq!(
        e.system_prompts().get(SystemPromptKind::Enhance),
        "Enhance v2"
    );
    assert_eq!(e.reload_count(), 1);

    let err = e
        .update_system_config(&update(json!({
            "auto_extension_system_prompt": "Auto v3",
            "next_segment_system_prompt": "   ",
        })))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "next_segment_system_prompt cannot be empty."
    );
    assert_eq!(e.system_config().auto_extension_system_prompt, "Auto v2");
}

#[test]
fn post_body_accepts_the_read_only_keys_and_refuses_unknown_ones() {
    let e = PromptEnhancer::offline();
    let echoed = serde_json::to_value(e.system_config()).unwrap();
    let parsed: PromptSystemConfigUpdate = serde_json::from_value(echoed).unwrap();
    assert!(parsed.next_segment_system_prompt.is_some());
    e.update_system_config(&parsed).unwrap();
    let err = serde_json::from_value::<PromptSystemConfigUpdate>(json!({"enhance_prompt": "x"}))
        .unwrap_err();
    assert!(err.to_string().contains("enhance_prompt"), "{err}");
    let err =
        serde_json::from_value::<PromptSystemConfigUpdate>(json!({"rewrite_temperature": "hot"}))
            .unwrap_err();
    assert!(err.to_string().contains("invalid type"), "{err}");
}

#[test]
fn post_model_must_be_an_option_and_temperature_in_range() {
    let e = PromptEnhancer::offline();
    let err = e
        .update_system_config(&update(json!({"rewrite_model": "gpt-9"})))
        .unwrap_err();
    assert!(matches!(err, SystemConfigError::UnknownModel { .. }));
    assert_eq!(
        err.to_string(),
        "Unknown rewrite_model \"gpt-9\"; choose one of: template-v1."
    );
    for t in [-0.1, 2.5] {
        let err = e
            .update_system_config(&update(json!({"rewrite_temperature": t})))
            .unwrap_err();
        assert!(matches!(err, SystemConfigError::BadTemperature), "{t}");
    }
    let ok = e
        .update_system_config(&update(json!({"rewrite_temperature": 2.0})))
        .unwrap();
    assert_eq!(ok.rewrite_temperature, 2.0);
}

#[tokio::test]
async fn post_model_and_temperature_steer_rewrites() {
    let a = FakeLlm::start(Behavior::Reply("1. from a".into())).await;
    let b = FakeLlm::start(Behavior::Reply("1. from b".into())).await;
    let e = PromptEnhancer::new(
        vec![a.arc("a", "model-a"), b.arc("b", "model-b")],
        EnhancerSettings {
            latency_budget: None,
            ..EnhancerSettings::default()
        },
    )
    .unwrap();
    let cfg = e.system_config();
    assert_eq!(cfg.rewrite_model, "model-a");
    assert_eq!(cfg.rewrite_model_options, ["model-a", "model-b"]);
    e.update_system_config(&update(
        json!({"rewrite_model": "model-b", "rewrite_temperature": 1.25}),
    ))
    .unwrap();
    let out = e
        .rewrite("a fox", &RewriteOptions::default())
        .await
        .unwrap();
    assert_eq!(out.prompts, ["from b"]);
    assert_eq!(a.hits(), 0);
    assert_eq!(b.requests()[0].body["temperature"], 1.25);
    // Enhance keeps the registered order and temperature.
    e.enhance("a fox").await.unwrap();
    assert_eq!(a.hits(), 1);
    assert_eq!(
        a.requests()[0].body["temperature"]
            .as_f64()
            .map(|t| (t * 10.0).round()),
        Some(7.0)
    );
}

#[test]
fn post_with_a_directory_saves_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let e = PromptEnhancer::with_system_prompt_dir(
        vec![Arc::new(TemplateProvider::new())],
        EnhancerSettings::default(),
        dir.path(),
    )
    .unwrap();
    let cfg = e.system_config();
    let path = dir.path().join("rewrite.txt");
    assert_eq!(
        cfg.rewrite_user_system_prompt_path.as_deref(),
        Some(path.display().to_string().as_str())
    );
    e.update_system_config(&update(
        json!({"rewrite_user_system_prompt": "  Saved rewrite  "}),
    ))
    .unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "Saved rewrite\n");
    // Our own write is not a change to re-read; a reload reads the same text back.
    assert!(!e.check_system_prompts().unwrap());
    e.reload_system_prompts().unwrap();
    assert_eq!(
        e.system_prompts().get(SystemPromptKind::Rewrite),
        "Saved rewrite"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers, ["rewrite.txt"], "no temporary files left");
}

#[test]
fn post_to_an_unwritable_directory_fails_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let e = PromptEnhancer::with_system_prompt_dir(
        vec![Arc::new(TemplateProvider::new())],
        EnhancerSettings::default(),
        dir.path(),
    )
    .unwrap();
    // A directory where the file should be makes the rename fail, even as root.
    std::fs::create_dir(dir.path().join("enhance.txt")).unwrap();
    let err = e
        .update_system_config(&update(json!({"next_segment_system_prompt": "New"})))
        .unwrap_err();
    assert!(matches!(err, SystemConfigError::Save(_)), "{err:?}");
    assert_eq!(
        e.system_prompts().get(SystemPromptKind::Enhance),
        SystemPromptKind::Enhance.default_text()
    );
}
