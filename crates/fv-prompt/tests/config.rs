//! `streaming.prompt` / `streaming.safety` config: FastVideo's keys, ours, validation paths,
//! and building an enhancer and a filter from it.

#![allow(clippy::unwrap_used)]

mod support;

use fv_prompt::{
    MapEnv, PromptConfig, PromptEnhancer, PromptError, PromptSafetyFilter, ProviderConfig,
    ProviderKind, SafetyConfig, UnavailablePolicy,
};
use std::sync::Arc;
use support::{Behavior, FakeLlm, TEST_KEY, TEST_KEY_ENV};

fn paths(problems: &[fv_prompt::ConfigProblem]) -> Vec<&str> {
    problems.iter().map(|p| p.path.as_str()).collect()
}

#[test]
fn defaults_mirror_fastvideo() {
    let p = PromptConfig::default();
    assert!(!p.enabled);
    assert_eq!(p.provider, ProviderKind::Cerebras);
    assert_eq!(p.model, "gpt-oss-120b");
    assert_eq!(p.timeout_ms, 20_000);
    assert_eq!(p.system_prompt_dir, None);
    assert_eq!(
        (p.temperature, p.max_tokens, p.latency_budget_ms),
        (0.7, 256, 1500)
    );
    p.validate().unwrap();
    let s = SafetyConfig::default();
    assert!(!s.enabled);
    assert_eq!(s.classifier_path, None);
    assert_eq!((s.threshold, s.unsafe_label.as_str()), (0.5, "unsafe"));
    assert_eq!(s.on_unavailable, UnavailablePolicy::Allow);
    s.validate().unwrap();
}

#[test]
fn fastvideo_yaml_loads() {
    let p: PromptConfig = serde_saphyr::from_str(
        "enabled: true\nprovider: groq\nmodel: llama-3.3-70b-versatile\ntimeout_ms: 5000\nsystem_prompt_dir: /etc/prompts\n",
    )
    .unwrap();
    assert!(p.enabled);
    assert_eq!(p.provider, ProviderKind::Groq);
    assert_eq!(p.timeout_ms, 5000);
    assert_eq!(p.system_prompt_dir.as_deref(), Some("/etc/prompts"));
    p.validate().unwrap();
    let s: SafetyConfig =
        serde_saphyr::from_str("enabled: true\nclassifier_path: /models/nsfw.bin\n").unwrap();
    assert_eq!(s.classifier_path.as_deref(), Some("/models/nsfw.bin"));
}

#[test]
fn our_keys_load_and_unknown_keys_are_refused() {
    let p: PromptConfig = serde_saphyr::from_str(
        r#"
enabled: true
latency_budget_ms: 800
providers:
  - kind: groq
    priority: 1
  - kind: openai_compat
    name: local
    base_url: http://127.0.0.1:8080/v1
    api_key_env: LOCAL_KEY
    model: qwen
    priority: 0
"#,
    )
    .unwrap();
    p.validate().unwrap();
    let names: Vec<_> = p
        .effective_providers()
        .iter()
        .map(|e| (e.kind, e.name.clone()))
        .collect();
    assert_eq!(
        names,
        [
            (ProviderKind::OpenaiCompat, Some("local".into())),
            (ProviderKind::Groq, None),
            (ProviderKind::Template, None),
        ]
    );
    let err = serde_saphyr::from_str::<PromptConfig>("enabled: true\nprovidr: groq\n").unwrap_err();
    assert!(err.to_string().contains("providr"), "{err}");
    let err = serde_saphyr::from_str::<PromptConfig>("providers:\n  - kind: groq\n    url: x\n")
        .unwrap_err();
    assert!(err.to_string().contains("url"), "{err}");
    let err =
        serde_saphyr::from_str::<SafetyConfig>("enabled: true\nthreshhold: 0.4\n").unwrap_err();
    assert!(err.to_string().contains("threshhold"), "{err}");
    let err = serde_saphyr::from_str::<PromptConfig>("provider: openai\n").unwrap_err();
    assert!(err.to_string().contains("openai"), "{err}");
}

#[test]
fn validate_names_every_problem_by_key_path() {
    let mut p = PromptConfig {
        timeout_ms: 0,
        temperature: 3.0,
        max_tokens: 0,
        latency_budget_ms: 700_000,
        reload_interval_ms: 5,
        model: " ".into(),
        system_prompt_dir: Some("".into()),
        ..PromptConfig::default()
    };
    p.providers = vec![
        ProviderConfig::new(ProviderKind::OpenaiCompat),
        ProviderConfig {
            base_url: Some("ftp://x".into()),
            api_key_env: Some("BAD NAME".into()),
            ..ProviderConfig::new(ProviderKind::Groq)
        },
        ProviderConfig::new(ProviderKind::Groq),
        ProviderConfig {
            base_url: Some("http://x".into()),
            ..ProviderConfig::new(ProviderKind::Template)
        },
    ];
    let problems = p.problems_at("streaming.prompt");
    assert_eq!(
        paths(&problems),
        [
            "streaming.prompt.timeout_ms",
            "streaming.prompt.temperature",
            "streaming.prompt.max_tokens",
            "streaming.prompt.latency_budget_ms",
            "streaming.prompt.reload_interval_ms",
            "streaming.prompt.system_prompt_dir",
            "streaming.prompt.model",
            "streaming.prompt.providers[0].base_url",
            "streaming.prompt.providers[0].api_key_env",
            "streaming.prompt.providers[1].base_url",
            "streaming.prompt.providers[1].api_key_env",
            "streaming.prompt.providers[2].name",
            "streaming.prompt.providers[3].base_url",
        ]
    );
    let err = p.validate().unwrap_err();
    assert!(
        err.to_string()
            .contains("prompt.providers[2].name: duplicate provider name \"groq\""),
        "{err}"
    );
    let top = PromptConfig {
        provider: ProviderKind::OpenaiCompat,
        ..PromptConfig::default()
    };
    assert_eq!(paths(&top.problems_at("prompt")), ["prompt.provider"]);
}

#[test]
fn safety_validate_names_key_paths() {
    let s = SafetyConfig {
        threshold: 1.5,
        unsafe_label: "".into(),
        classifier_path: Some(" ".into()),
        blocked_patterns: vec!["ok".into(), "(bad".into()],
        ..SafetyConfig::default()
    };
    assert_eq!(
        paths(&s.problems_at("streaming.safety")),
        [
            "streaming.safety.threshold",
            "streaming.safety.unsafe_label",
            "streaming.safety.classifier_path",
            "streaming.safety.blocked_patterns[1]",
        ]
    );
    let words = SafetyConfig {
        blocked_words: vec!["fine".into(), "".into()],
        ..SafetyConfig::default()
    };
    assert_eq!(
        paths(&words.problems_at("safety")),
        ["safety.blocked_words[1]"]
    );
    let fail_closed_without_classifier = SafetyConfig {
        enabled: true,
        on_unavailable: UnavailablePolicy::Block,
        ..SafetyConfig::default()
    };
    assert_eq!(
        paths(&fail_closed_without_classifier.problems_at("safety")),
        ["safety.on_unavailable"]
    );
    assert!(PromptSafetyFilter::from_config(&fail_closed_without_classifier).is_err());
}

#[test]
fn safety_filter_from_config() {
    let off = PromptSafetyFilter::from_config(&SafetyConfig {
        blocked_words: vec!["gore".into()],
        ..SafetyConfig::default()
    })
    .unwrap();
    assert!(!off.is_enabled(), "enabled: false");
    let on = PromptSafetyFilter::from_config(&SafetyConfig {
        enabled: true,
        blocked_words: vec!["gore".into()],
        classifier_path: Some("/nonexistent/model.bin".into()),
        on_unavailable: UnavailablePolicy::Block,
        ..SafetyConfig::default()
    })
    .unwrap();
    assert!(on.blocks(&on.check_blocking("gore")));
    // The model is missing: unavailable, and this config fails closed.
    let v = on.check_blocking("a fox");
    assert_eq!(v.decision, fv_prompt::SafetyDecision::Unavailable);
    assert!(on.blocks(&v));
}

#[tokio::test]
async fn enhancer_from_config_tries_providers_in_priority_order() {
    let bad = FakeLlm::start(Behavior::Status(502)).await;
    let good = FakeLlm::start(Behavior::Reply("from good".into())).await;
    let entry = |name: &str, url: String, priority| ProviderConfig {
        name: Some(name.into()),
        base_url: Some(url),
        api_key_env: Some(TEST_KEY_ENV.into()),
        model: Some(format!("{name}-model")),
        priority: Some(priority),
        ..ProviderConfig::new(ProviderKind::OpenaiCompat)
    };
    let cfg = PromptConfig {
        enabled: true,
        providers: vec![
            entry("good", good.base_url(), 5),
            entry("bad", bad.base_url(), 1),
        ],
        latency_budget_ms: 0,
        ..PromptConfig::default()
    };
    let env = Arc::new(MapEnv::new().with(TEST_KEY_ENV, TEST_KEY));
    let e = PromptEnhancer::from_config(&cfg, env.clone()).unwrap();
    let order: Vec<_> = e.providers().into_iter().map(|p| p.name).collect();
    assert_eq!(order, ["bad", "good", "template"]);
    let out = e.enhance("a fox").await.unwrap();
    assert_eq!((out.provider.as_str(), out.fallback_used), ("good", true));
    assert_eq!(out.model, "good-model");
    assert_eq!(e.settings().latency_budget, None);
    assert!(cfg.key_warnings(env.as_ref()).is_empty());

    let no_fallback = PromptConfig {
        offline_fallback: false,
        ..cfg.clone()
    };
    let e = PromptEnhancer::from_config(&no_fallback, env).unwrap();
    assert_eq!(e.providers().len(), 2);
}

#[test]
fn enhancer_from_config_with_presets_and_missing_keys() {
    let cfg = PromptConfig {
        enabled: true,
        ..PromptConfig::default()
    };
    let e = PromptEnhancer::from_config(&cfg, Arc::new(MapEnv::new())).unwrap();
    let providers = e.providers();
    assert_eq!(
        providers
            .iter()
            .map(|p| (p.name.as_str(), p.model.as_str(), p.offline))
            .collect::<Vec<_>>(),
        [
            ("cerebras", "gpt-oss-120b", false),
            ("template", "template-v1", true)
        ]
    );
    assert_eq!(
        cfg.key_warnings(&MapEnv::new()),
        ["prompt provider cerebras: CEREBRAS_API_KEY is not set; its calls will fail"]
    );
    assert!(
        cfg.key_warnings(&MapEnv::new().with("CEREBRAS_API_KEY", "k"))
            .is_empty()
    );
    let bad = PromptConfig {
        timeout_ms: 0,
        ..cfg
    };
    assert!(matches!(
        PromptEnhancer::from_config(&bad, Arc::new(MapEnv::new())),
        Err(PromptError::Config(_))
    ));
}

#[test]
fn reload_interval_needs_a_directory() {
    let mut cfg = PromptConfig::default();
    assert_eq!(cfg.reload_interval(), None);
    cfg.system_prompt_dir = Some("/tmp".into());
    assert_eq!(
        cfg.reload_interval(),
        Some(std::time::Duration::from_secs(1))
    );
    cfg.reload_interval_ms = 0;
    assert_eq!(cfg.reload_interval(), None);
}
