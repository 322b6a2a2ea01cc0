//! PromptEnhancer against real HTTP servers: §15 fallback, priorities, budgets, messages.

#![allow(clippy::unwrap_used)]

mod support;

use fv_prompt::{
    CallOptions, EnhancerSettings, LlmProvider, Operation, PromptEnhancer, PromptError,
    PromptService, ProviderError, RewriteOptions, SystemPromptKind, TemplateProvider,
};
use std::sync::Arc;
use std::time::Duration;
use support::{Behavior, FakeLlm, TEST_KEY, within};

fn settings() -> EnhancerSettings {
    EnhancerSettings {
        timeout: Duration::from_secs(10),
        temperature: 0.4,
        max_tokens: 99,
        latency_budget: None,
    }
}

fn names(e: &PromptEnhancer) -> Vec<String> {
    e.providers().into_iter().map(|p| p.name).collect()
}

#[tokio::test]
async fn fallback_retryable_error_tries_next_provider_and_sets_fallback_used() {
    let a = FakeLlm::start(Behavior::Status(503)).await;
    let b = FakeLlm::start(Behavior::Reply("from b".into())).await;
    let e = PromptEnhancer::new(vec![a.arc("a", "ma"), b.arc("b", "mb")], settings()).unwrap();
    let out = within("enhance", e.enhance("a fox")).await.unwrap();
    assert_eq!(out.text, "from b");
    assert_eq!(out.raw_output, "from b");
    assert_eq!((out.provider.as_str(), out.model.as_str()), ("b", "mb"));
    assert!(out.fallback_used);
    assert_eq!(out.failures.len(), 1);
    assert!(matches!(
        out.failures[0],
        ProviderError::Http { status: 503, .. }
    ));
    assert_eq!((a.hits(), b.hits()), (1, 1));
}

#[tokio::test]
async fn fallback_first_provider_success_is_not_a_fallback() {
    let a = FakeLlm::start(Behavior::Reply("from a".into())).await;
    let b = FakeLlm::start(Behavior::Reply("from b".into())).await;
    let e = PromptEnhancer::new(vec![a.arc("a", "ma"), b.arc("b", "mb")], settings()).unwrap();
    let out = within("enhance", e.enhance("a fox")).await.unwrap();
    assert_eq!((out.provider.as_str(), out.fallback_used), ("a", false));
    assert!(out.failures.is_empty());
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn fallback_non_retryable_error_stops_and_is_raised() {
    let a = FakeLlm::start(Behavior::Status(400)).await;
    let b = FakeLlm::start(Behavior::Reply("from b".into())).await;
    let e = PromptEnhancer::new(vec![a.arc("a", "ma"), b.arc("b", "mb")], settings()).unwrap();
    let err = within("enhance", e.enhance("a fox")).await.unwrap_err();
    match &err {
        PromptError::NotRetryable {
            operation: Operation::Enhance,
            error:
                ProviderError::Http {
                    status: 400,
                    provider,
                    ..
                },
            failures,
        } => {
            assert_eq!(provider, "a");
            assert!(failures.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.retryable());
    assert_eq!(b.hits(), 0, "no provider after a non-retryable error");
}

#[tokio::test]
async fn fallback_missing_key_stops_before_the_next_provider() {
    let b = FakeLlm::start(Behavior::Reply("from b".into())).await;
    let keyless = fv_prompt::OpenAiCompatProvider::new("a", &b.base_url(), "FV_PROMPT_UNSET", "m")
        .unwrap()
        .with_env(Arc::new(fv_prompt::MapEnv::new()));
    let e = PromptEnhancer::new(
        vec![
            Arc::new(keyless),
            b.arc("b", "mb"),
            Arc::new(TemplateProvider::new()),
        ],
        settings(),
    )
    .unwrap();
    let err = within("enhance", e.enhance("a fox")).await.unwrap_err();
    assert!(
        matches!(
            err,
            PromptError::NotRetryable {
                error: ProviderError::MissingApiKey { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn fallback_all_failing_raises_the_last_error() {
    let a = FakeLlm::start(Behavior::Status(429)).await;
    let b = FakeLlm::start(Behavior::Raw(200, "not json".into())).await;
    let e = PromptEnhancer::new(vec![a.arc("a", "ma"), b.arc("b", "mb")], settings()).unwrap();
    let err = within("enhance", e.enhance("a fox")).await.unwrap_err();
    match &err {
        PromptError::AllFailed {
            last: ProviderError::BadResponse { provider, .. },
            failures,
            ..
        } => {
            assert_eq!(provider, "b");
            assert_eq!(failures.len(), 1);
            assert!(matches!(
                failures[0],
                ProviderError::Http { status: 429, .. }
            ));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.retryable());
}

#[tokio::test]
async fn fallback_after_an_attempt_timeout() {
    let a = FakeLlm::start(Behavior::Hang).await;
    let b = FakeLlm::start(Behavior::Reply("from b".into())).await;
    let e = PromptEnhancer::new(
        vec![a.arc("a", "ma"), b.arc("b", "mb")],
        EnhancerSettings {
            timeout: Duration::from_millis(200),
            ..settings()
        },
    )
    .unwrap();
    let out = within("enhance", e.enhance("a fox")).await.unwrap();
    assert_eq!(out.provider, "b");
    assert!(matches!(out.failures[0], ProviderError::Timeout { .. }));
}

#[tokio::test]
async fn register_provider_negative_priority_appends() {
    let e = PromptEnhancer::offline();
    let a = FakeLlm::start(Behavior::Reply("a".into())).await;
    e.register_provider(a.arc("a", "ma"), -1);
    e.register_provider(a.arc("b", "mb"), -5);
    assert_eq!(names(&e), ["template", "a", "b"]);
}

#[tokio::test]
async fn register_provider_priority_inserts_at_that_position() {
    let fake = FakeLlm::start(Behavior::Reply("from fake".into())).await;
    let e = PromptEnhancer::offline();
    e.register_provider(fake.arc("x", "mx"), -1);
    e.register_provider(fake.arc("first", "m0"), 0);
    assert_eq!(names(&e), ["first", "template", "x"]);
    e.register_provider(fake.arc("second", "m1"), 1);
    assert_eq!(names(&e), ["first", "second", "template", "x"]);
    // Past the end appends.
    e.register_provider(fake.arc("last", "m9"), 99);
    assert_eq!(names(&e), ["first", "second", "template", "x", "last"]);
    // The inserted provider is really tried first.
    let out = within("enhance", e.enhance("a fox")).await.unwrap();
    assert_eq!(
        (out.provider.as_str(), out.text.as_str()),
        ("first", "from fake")
    );
}

#[tokio::test]
async fn latency_budget_skips_network_providers_but_not_the_offline_one() {
    let a = FakeLlm::start(Behavior::Hang).await;
    let b = FakeLlm::start(Behavior::Reply("from b".into())).await;
    let e = PromptEnhancer::new(
        vec![
            a.arc("a", "ma"),
            b.arc("b", "mb"),
            Arc::new(TemplateProvider::new()),
        ],
        EnhancerSettings {
            latency_budget: Some(Duration::from_millis(300)),
            ..settings()
        },
    )
    .unwrap();
    let out = within("enhance", e.enhance("a fox")).await.unwrap();
    assert_eq!(out.provider, "template");
    assert!(out.fallback_used);
    assert!(out.text.starts_with("A fox, "), "{}", out.text);
    assert!(matches!(
        out.failures.as_slice(),
        [ProviderError::Timeout { provider, .. }] if provider == "a"
    ));
    assert_eq!(b.hits(), 0, "budget spent: b is skipped");
}

#[tokio::test]
async fn latency_budget_exhausted_without_an_offline_provider() {
    let a = FakeLlm::start(Behavior::Hang).await;
    let b = FakeLlm::start(Behavior::Reply("from b".into())).await;
    let e = PromptEnhancer::new(vec![a.arc("a", "ma"), b.arc("b", "mb")], settings()).unwrap();
    let err = within(
        "enhance",
        e.enhance_with(
            "a fox",
            &CallOptions::with_budget(Duration::from_millis(200)),
        ),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, PromptError::BudgetExhausted { budget, failures, .. }
            if *budget == Duration::from_millis(200) && failures.len() == 1),
        "{err:?}"
    );
    assert!(err.retryable());
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn caller_timeout_cancels_a_call_and_the_enhancer_stays_usable() {
    let fake = FakeLlm::start(Behavior::Hang).await;
    let e = PromptEnhancer::new(vec![fake.arc("a", "m")], settings()).unwrap();
    let cut = tokio::time::timeout(
        Duration::from_millis(100),
        e.enhance_with("a fox", &CallOptions::unbounded()),
    )
    .await;
    assert!(cut.is_err(), "the caller's timeout ends the call");
    fake.push(Behavior::Reply("now fine".into()));
    let out = within("enhance", e.enhance("a fox")).await.unwrap();
    assert_eq!(out.text, "now fine");
}

#[tokio::test]
async fn operations_send_system_and_user_messages() {
    let fake = FakeLlm::start(Behavior::Reply("1. one\n2. two\n3. three".into())).await;
    let e = PromptEnhancer::new(vec![fake.arc("a", "m")], settings()).unwrap();
    let prompts = e.system_prompts();
    let system = |k: SystemPromptKind| prompts.get(k).to_owned();

    e.enhance("a fox").await.unwrap();
    let prior = vec!["first shot".to_owned(), "second shot".to_owned()];
    e.auto_extend(&prior).await.unwrap();
    e.rewrite("a whale", &RewriteOptions::default())
        .await
        .unwrap();
    let window = RewriteOptions {
        window: vec!["p one".into(), "p two".into()],
        count: 2,
        ..RewriteOptions::default()
    };
    e.rewrite("make it night", &window).await.unwrap();

    let reqs = fake.requests();
    let sent: Vec<_> = reqs.iter().map(|r| r.messages()).collect();
    let pair = |k, user: &str| {
        vec![
            ("system".to_owned(), system(k)),
            ("user".to_owned(), user.to_owned()),
        ]
    };
    assert_eq!(sent[0], pair(SystemPromptKind::Enhance, "a fox"));
    assert_eq!(
        sent[1],
        pair(SystemPromptKind::AutoExtend, "first shot\nsecond shot")
    );
    assert_eq!(sent[2], pair(SystemPromptKind::Rewrite, "a whale"));
    assert_eq!(
        sent[3],
        pair(
            SystemPromptKind::RewriteWindow,
            "Current prompts:\n1. p one\n2. p two\nInstruction: make it night\nWrite 2 prompts."
        )
    );
    for r in &reqs {
        assert_eq!(r.body["max_tokens"], 99);
        assert_eq!(
            r.body["temperature"].as_f64().map(|t| (t * 100.0).round()),
            Some(40.0)
        );
        assert_eq!(r.body["model"], "m");
    }
}

#[tokio::test]
async fn rewrite_splits_the_answer_and_uses_call_overrides() {
    let fake = FakeLlm::start(Behavior::Reply(
        "1. A fox runs\n- The fox jumps\n\n• The fox sleeps\n4) Dawn".into(),
    ))
    .await;
    let e = PromptEnhancer::new(vec![fake.arc("a", "m")], settings()).unwrap();
    let out = e
        .rewrite("a fox", &RewriteOptions::default())
        .await
        .unwrap();
    assert_eq!(
        out.prompts,
        ["A fox runs", "The fox jumps", "The fox sleeps"]
    );
    assert!(out.output.raw_output.contains("4) Dawn"));
    let opts = RewriteOptions {
        count: 10,
        temperature: Some(1.5),
        system_prompt: Some("custom rewrite rules".into()),
        ..RewriteOptions::default()
    };
    let out = e.rewrite("a fox", &opts).await.unwrap();
    assert_eq!(out.prompts.len(), 4);
    let last = fake.requests().pop().unwrap();
    assert_eq!(last.body["temperature"], 1.5);
    assert_eq!(last.messages()[0].1, "custom rewrite rules");
}

#[tokio::test]
async fn rewrite_blank_seed_is_an_error_and_sends_nothing() {
    let fake = FakeLlm::start(Behavior::Reply("x".into())).await;
    let e = PromptEnhancer::new(vec![fake.arc("a", "m")], settings()).unwrap();
    for seed in ["", "   ", "\n\t"] {
        let err = e
            .rewrite(seed, &RewriteOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, PromptError::EmptySeed), "{err:?}");
    }
    let err = e.enhance(" ").await.unwrap_err();
    assert!(matches!(err, PromptError::EmptyInput { .. }));
    assert_eq!(fake.hits(), 0);
}

#[tokio::test]
async fn rewrite_model_option_tries_that_model_first() {
    let a = FakeLlm::start(Behavior::Reply("from a".into())).await;
    let b = FakeLlm::start(Behavior::Reply("from b".into())).await;
    let e = PromptEnhancer::new(
        vec![a.arc("a", "model-a"), b.arc("b", "model-b")],
        settings(),
    )
    .unwrap();
    let opts = RewriteOptions {
        model: Some("model-b".into()),
        ..RewriteOptions::default()
    };
    let out = e.rewrite("a fox", &opts).await.unwrap();
    assert_eq!(
        (out.output.provider.as_str(), out.output.fallback_used),
        ("b", false)
    );
    assert_eq!(a.hits(), 0);
    // Other operations keep the registered order.
    assert_eq!(e.enhance("a fox").await.unwrap().provider, "a");
}

#[tokio::test]
async fn enhance_takes_the_prompt_out_of_a_json_answer() {
    let fake = FakeLlm::start(Behavior::Reply(
        "```json\n{\"next_prompt\": \"A fox at dusk.\"}\n```".into(),
    ))
    .await;
    let e = PromptEnhancer::new(vec![fake.arc("a", "m")], settings()).unwrap();
    let out = e.enhance("a fox").await.unwrap();
    assert_eq!(out.text, "A fox at dusk.");
    assert!(out.raw_output.starts_with("```json"));
}

#[tokio::test]
async fn input_larger_than_the_limit_is_refused_before_any_request() {
    let fake = FakeLlm::start(Behavior::Reply("x".into())).await;
    let e = PromptEnhancer::new(vec![fake.arc("a", "m")], settings()).unwrap();
    let big = "a".repeat(fv_prompt::MAX_INPUT_BYTES + 1);
    let err = e.enhance(&big).await.unwrap_err();
    assert!(matches!(err, PromptError::InputTooLong { len, .. } if len == big.len()));
    let at_limit = "a".repeat(fv_prompt::MAX_INPUT_BYTES);
    assert!(e.enhance(&at_limit).await.is_ok());
    assert_eq!(fake.hits(), 1);
}

#[tokio::test]
async fn one_enhancer_serves_concurrent_calls_through_the_service_trait() {
    let fake = FakeLlm::start(Behavior::Slow(Duration::from_millis(20), "ok".into())).await;
    let e = PromptEnhancer::new(vec![fake.arc("a", "m")], settings()).unwrap();
    let service: Arc<dyn PromptService> = Arc::new(e.clone());
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let s = service.clone();
            tokio::spawn(async move {
                s.enhance_with(&format!("prompt {i}"), &CallOptions::default())
                    .await
            })
        })
        .collect();
    for c in calls {
        assert_eq!(within("call", c).await.unwrap().unwrap().text, "ok");
    }
    assert_eq!(fake.hits(), 16);
}

#[test]
fn metrics_count_attempts_errors_fallbacks_and_operations() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        fv_prompt::metrics::describe();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let a = FakeLlm::start(Behavior::Status(500)).await;
            let e = PromptEnhancer::new(
                vec![a.arc("a", "ma"), Arc::new(TemplateProvider::new())],
                settings(),
            )
            .unwrap();
            e.enhance("a fox").await.unwrap();
            e.enhance("a cat").await.unwrap();
        });
    });
    let text = handle.render();
    for line in [
        r#"fv_prompt_provider_requests_total{provider="a",operation="enhance",outcome="error"} 2"#,
        r#"fv_prompt_provider_requests_total{provider="template",operation="enhance",outcome="ok"} 2"#,
        r#"fv_prompt_provider_errors_total{provider="a",kind="http_5xx"} 2"#,
        r#"fv_prompt_fallbacks_total{operation="enhance",provider="template"} 2"#,
        r#"fv_prompt_operations_total{operation="enhance",outcome="ok"} 2"#,
        r#"fv_prompt_provider_latency_seconds_count{provider="a"} 2"#,
        "# HELP fv_prompt_fallbacks_total",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn api_key_is_never_logged() {
    use std::io::Write;
    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let a = FakeLlm::start(Behavior::Status(503)).await;
            let b = FakeLlm::start(Behavior::Reply("ok".into())).await;
            let e =
                PromptEnhancer::new(vec![a.arc("a", "m"), b.arc("b", "m")], settings()).unwrap();
            e.enhance("a fox").await.unwrap();
            tracing::debug!(enhancer = ?e, "state");
        });
    });
    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("trying the next one"),
        "the failure was logged:\n{log}"
    );
    assert!(!log.contains(TEST_KEY), "key leaked into the log:\n{log}");
}

#[test]
fn provider_trait_is_object_safe_and_implementable_outside_the_crate() {
    #[derive(Debug)]
    struct Echo;
    #[async_trait::async_trait]
    impl LlmProvider for Echo {
        fn name(&self) -> &str {
            "echo"
        }
        fn model(&self) -> &str {
            "echo-1"
        }
        async fn complete(
            &self,
            r: &fv_prompt::CompletionRequest,
        ) -> Result<String, ProviderError> {
            Ok(r.messages
                .last()
                .map(|m| m.content.clone())
                .unwrap_or_default())
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = PromptEnhancer::new(vec![Arc::new(Echo)], EnhancerSettings::default()).unwrap();
    let out = rt.block_on(e.enhance("hello")).unwrap();
    assert_eq!(
        (out.text.as_str(), out.provider.as_str()),
        ("hello", "echo")
    );
    assert!(matches!(
        PromptEnhancer::new(vec![], EnhancerSettings::default()),
        Err(PromptError::NoProviders)
    ));
}
