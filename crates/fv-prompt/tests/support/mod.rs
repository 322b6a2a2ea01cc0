//! A real OpenAI-compatible HTTP server on 127.0.0.1:0 whose answers tests script: fast,
//! slow, 429/500/400, garbage, no `choices`, empty content, or never.

#![allow(dead_code, clippy::unwrap_used)] // each test file uses a different part

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use fv_prompt::{LlmProvider, MapEnv, OpenAiCompatProvider};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The key the fake expects and tests configure.
pub const TEST_KEY: &str = "sk-test-0123456789abcdef";
/// The variable tests read it from.
pub const TEST_KEY_ENV: &str = "FV_PROMPT_TEST_KEY";

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// 200 with `choices[0].message.content` = this.
    Reply(String),
    /// 200 with `content: null`.
    NullContent,
    /// This status with a JSON error body.
    Status(u16),
    /// This status and body, as they are.
    Raw(u16, String),
    /// 200 with this JSON.
    Json(Value),
    /// Waits, then replies.
    Slow(Duration, String),
    /// Never answers.
    Hang,
    /// 200 with a JSON body of about this many bytes.
    Huge(usize),
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Value,
}

impl Recorded {
    /// `(role, content)` of each message.
    pub fn messages(&self) -> Vec<(String, String)> {
        self.body["messages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        (
                            m["role"].as_str().unwrap_or_default().to_owned(),
                            m["content"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

struct State {
    script: Mutex<VecDeque<Behavior>>,
    default: Behavior,
    requests: Mutex<Vec<Recorded>>,
}

/// The fake server; stops when dropped.
pub struct FakeLlm {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeLlm {
    /// Starts a fake answering `default` unless something was [`push`](Self::push)ed.
    pub async fn start(default: Behavior) -> Self {
        let state = Arc::new(State {
            script: Mutex::new(VecDeque::new()),
            default,
            requests: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let app = Router::new().fallback(move |method, uri, headers, body| {
            handle(shared.clone(), method, uri, headers, body)
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state, task }
    }

    /// Answers the next request with `b` (FIFO), before falling back to the default.
    pub fn push(&self, b: Behavior) {
        self.state.script.lock().unwrap().push_back(b);
    }

    /// `http://127.0.0.1:<port>/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Number of requests received.
    pub fn hits(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// A provider named `name` with model `model` pointing at this fake, key set.
    pub fn provider(&self, name: &str, model: &str) -> OpenAiCompatProvider {
        OpenAiCompatProvider::new(name, &self.base_url(), TEST_KEY_ENV, model)
            .expect("provider")
            .with_env(Arc::new(MapEnv::new().with(TEST_KEY_ENV, TEST_KEY)))
    }

    /// [`provider`](Self::provider) as a trait object.
    pub fn arc(&self, name: &str, model: &str) -> Arc<dyn LlmProvider> {
        Arc::new(self.provider(name, model))
    }
}

fn completion(content: Value) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    })
}

fn respond(status: u16, body: impl Into<Body>) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("status"))
        .header("content-type", "application/json")
        .body(body.into())
        .expect("response")
}

async fn handle(
    state: Arc<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    state.requests.lock().unwrap().push(Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let behavior = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| state.default.clone());
    match behavior {
        Behavior::Reply(text) => respond(200, completion(json!(text)).to_string()),
        Behavior::NullContent => respond(200, completion(Value::Null).to_string()),
        Behavior::Status(code) => respond(
            code,
            json!({"error": {"message": format!("fake error {code}")}}).to_string(),
        ),
        Behavior::Raw(code, body) => respond(code, body),
        Behavior::Json(v) => respond(200, v.to_string()),
        Behavior::Slow(wait, text) => {
            tokio::time::sleep(wait).await;
            respond(200, completion(json!(text)).to_string())
        }
        Behavior::Hang => std::future::pending().await,
        Behavior::Huge(n) => respond(200, completion(json!("x".repeat(n))).to_string()),
    }
}

/// A bounded wait for tests: panics with `what` instead of hanging.
pub async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 30 s"))
}
