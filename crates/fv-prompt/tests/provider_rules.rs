//! One test per rule of protocol-facts §15 for the OpenAI-compatible transport, each against a
//! real HTTP server on 127.0.0.1:0.

#![allow(clippy::unwrap_used)]

mod support;

use fv_prompt::{
    ChatMessage, CompletionRequest, LlmProvider, MapEnv, OpenAiCompatProvider, ProviderError, Task,
};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use support::{Behavior, FakeLlm, TEST_KEY, TEST_KEY_ENV, within};

fn request(timeout: Duration) -> CompletionRequest {
    CompletionRequest {
        task: Task::Custom,
        messages: vec![ChatMessage::system("be brief"), ChatMessage::user("a fox")],
        max_tokens: 77,
        temperature: 0.25,
        timeout,
    }
}

async fn call(fake: &FakeLlm, timeout: Duration) -> Result<String, ProviderError> {
    within(
        "provider call",
        fake.provider("fake", "m-1").complete(&request(timeout)),
    )
    .await
}

#[tokio::test]
async fn rule_post_base_chat_completions_bearer_key_and_body_fields() {
    let fake = FakeLlm::start(Behavior::Reply("ok".into())).await;
    assert_eq!(call(&fake, Duration::from_secs(10)).await.unwrap(), "ok");
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.authorization.as_deref(),
        Some(&*format!("Bearer {TEST_KEY}"))
    );
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    // Exactly these four keys.
    assert_eq!(
        r.body,
        json!({
            "model": "m-1",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "a fox"}
            ],
            "max_tokens": 77,
            "temperature": 0.25
        })
    );
}

#[tokio::test]
async fn rule_missing_api_key_is_not_retryable() {
    let fake = FakeLlm::start(Behavior::Reply("ok".into())).await;
    for env in [MapEnv::new(), MapEnv::new().with(TEST_KEY_ENV, "  ")] {
        let p = OpenAiCompatProvider::new("fake", &fake.base_url(), TEST_KEY_ENV, "m")
            .unwrap()
            .with_env(Arc::new(env));
        let err = p
            .complete(&request(Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProviderError::MissingApiKey { env_var, .. } if env_var == TEST_KEY_ENV),
            "{err:?}"
        );
        assert!(!err.retryable());
    }
    assert_eq!(fake.hits(), 0, "no request without a key");
}

#[tokio::test]
async fn rule_timeout_is_a_retryable_timeout_error() {
    let fake = FakeLlm::start(Behavior::Hang).await;
    let err = call(&fake, Duration::from_millis(200)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Timeout { .. }), "{err:?}");
    assert!(err.retryable());
    // A slow answer past the timeout is a timeout too; one within it succeeds.
    fake.push(Behavior::Slow(Duration::from_secs(5), "late".into()));
    let err = call(&fake, Duration::from_millis(200)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Timeout { .. }), "{err:?}");
    fake.push(Behavior::Slow(Duration::from_millis(50), "in time".into()));
    assert_eq!(
        call(&fake, Duration::from_secs(10)).await.unwrap(),
        "in time"
    );
}

#[tokio::test]
async fn rule_transport_errors_are_retryable() {
    // A server that accepts and closes without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closer = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            drop(sock);
        }
    });
    let env = Arc::new(MapEnv::new().with(TEST_KEY_ENV, TEST_KEY));
    let p = OpenAiCompatProvider::new("fake", &format!("http://{addr}/v1"), TEST_KEY_ENV, "m")
        .unwrap()
        .with_env(env.clone());
    let err = within("closed", p.complete(&request(Duration::from_secs(10))))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Transport { .. }), "{err:?}");
    assert!(err.retryable());
    closer.abort();

    // Nothing listening: connection refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let p = OpenAiCompatProvider::new(
        "fake",
        &format!("http://127.0.0.1:{port}/v1"),
        TEST_KEY_ENV,
        "m",
    )
    .unwrap()
    .with_env(env);
    let err = within("refused", p.complete(&request(Duration::from_secs(10))))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Transport { .. }), "{err:?}");
    assert!(err.retryable());
}

#[tokio::test]
async fn rule_http_5xx_is_retryable() {
    let fake = FakeLlm::start(Behavior::Status(500)).await;
    for status in [500, 502, 503, 504] {
        fake.push(Behavior::Status(status));
        let err = call(&fake, Duration::from_secs(10)).await.unwrap_err();
        assert!(
            matches!(&err, ProviderError::Http { status: s, body, .. } if *s == status && body.contains("fake error")),
            "{err:?}"
        );
        assert!(err.retryable(), "{status}");
    }
}

#[tokio::test]
async fn rule_http_429_is_retryable() {
    let fake = FakeLlm::start(Behavior::Status(429)).await;
    let err = call(&fake, Duration::from_secs(10)).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Http { status: 429, .. }),
        "{err:?}"
    );
    assert!(err.retryable());
}

#[tokio::test]
async fn rule_other_http_4xx_is_not_retryable() {
    let fake = FakeLlm::start(Behavior::Status(400)).await;
    for status in [400, 401, 403, 404, 422] {
        fake.push(Behavior::Status(status));
        let err = call(&fake, Duration::from_secs(10)).await.unwrap_err();
        assert!(
            matches!(err, ProviderError::Http { status: s, .. } if s == status),
            "{err:?}"
        );
        assert!(!err.retryable(), "{status}");
    }
}

#[tokio::test]
async fn rule_non_json_body_is_retryable() {
    let fake = FakeLlm::start(Behavior::Raw(200, "<html>upstream hiccup</html>".into())).await;
    let err = call(&fake, Duration::from_secs(10)).await.unwrap_err();
    assert!(matches!(err, ProviderError::BadResponse { .. }), "{err:?}");
    assert!(err.retryable());
    fake.push(Behavior::Raw(200, "{\"choices\": [".into()));
    let err = call(&fake, Duration::from_secs(10)).await.unwrap_err();
    assert!(matches!(err, ProviderError::BadResponse { .. }), "{err:?}");
}

#[tokio::test]
async fn rule_no_choices_is_retryable() {
    let fake = FakeLlm::start(Behavior::Json(
        json!({"id": "x", "object": "chat.completion"}),
    ))
    .await;
    let err = call(&fake, Duration::from_secs(10)).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::BadResponse { message, .. } if message.contains("choices")),
        "{err:?}"
    );
    assert!(err.retryable());
    for body in [
        json!({"choices": []}),
        json!({"choices": "no"}),
        json!({"choices": [{}]}),
    ] {
        fake.push(Behavior::Json(body));
        let err = call(&fake, Duration::from_secs(10)).await.unwrap_err();
        assert!(matches!(err, ProviderError::BadResponse { .. }), "{err:?}");
        assert!(err.retryable());
    }
}

#[tokio::test]
async fn rule_content_is_first_choice_message_content_stripped() {
    let fake = FakeLlm::start(Behavior::Reply("  \n A fox in the snow. \t\n".into())).await;
    assert_eq!(
        call(&fake, Duration::from_secs(10)).await.unwrap(),
        "A fox in the snow."
    );
    fake.push(Behavior::Json(json!({"choices": [
        {"message": {"content": " first "}},
        {"message": {"content": "second"}}
    ]})));
    assert_eq!(call(&fake, Duration::from_secs(10)).await.unwrap(), "first");
}

#[tokio::test]
async fn rule_empty_content_is_a_success() {
    let fake = FakeLlm::start(Behavior::Reply(String::new())).await;
    assert_eq!(call(&fake, Duration::from_secs(10)).await.unwrap(), "");
    fake.push(Behavior::Reply("   \n ".into()));
    assert_eq!(call(&fake, Duration::from_secs(10)).await.unwrap(), "");
    fake.push(Behavior::NullContent);
    assert_eq!(call(&fake, Duration::from_secs(10)).await.unwrap(), "");
}

#[tokio::test]
async fn oversized_response_is_a_retryable_bad_response() {
    let fake = FakeLlm::start(Behavior::Huge(64 * 1024)).await;
    let p = fake
        .provider("fake", "m")
        .with_max_response_bytes(16 * 1024);
    let err = p
        .complete(&request(Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::BadResponse { message, .. } if message.contains("16384")),
        "{err:?}"
    );
    assert!(err.retryable());
    // At the limit it is fine.
    fake.push(Behavior::Reply("small".into()));
    assert_eq!(
        p.complete(&request(Duration::from_secs(10))).await.unwrap(),
        "small"
    );
}

#[tokio::test]
async fn api_key_is_never_in_debug_output_or_errors() {
    let fake = FakeLlm::start(Behavior::Status(401)).await;
    let p = fake.provider("fake", "m");
    assert!(!format!("{p:?}").contains(TEST_KEY));
    assert!(format!("{p:?}").contains(TEST_KEY_ENV));
    let err = p
        .complete(&request(Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert!(!err.to_string().contains(TEST_KEY));
    assert!(!format!("{err:?}").contains(TEST_KEY));
}
