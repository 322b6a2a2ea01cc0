//! A real OpenAI-compatible HTTP server on 127.0.0.1:0 for the prompt tests: it answers
//! `POST /v1/chat/completions` after a configurable delay with `<reply> #<n>` (n counts
//! requests), or with lines `<reply> line i` when the request asks for several prompts, or
//! with a scripted status. Requests are recorded.

#![allow(dead_code, clippy::unwrap_used)] // each test file uses a different part

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the fake answers.
#[derive(Debug, Clone)]
pub struct Script {
    /// Waits this long before answering.
    pub delay: Duration,
    /// The text answers start with.
    pub reply: String,
    /// Answer with this status and no completion.
    pub status: Option<u16>,
}

impl Script {
    pub fn reply(text: &str) -> Self {
        Self {
            delay: Duration::ZERO,
            reply: text.to_owned(),
            status: None,
        }
    }

    pub fn slow(delay: Duration, text: &str) -> Self {
        Self {
            delay,
            ..Self::reply(text)
        }
    }
}

struct State {
    script: Mutex<Script>,
    requests: Mutex<Vec<Value>>,
}

/// The fake; stops when dropped.
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
    pub async fn start(script: Script) -> Self {
        let state = Arc::new(State {
            script: Mutex::new(script),
            requests: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let app = Router::new().fallback(move |body: Bytes| answer(shared.clone(), body));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state, task }
    }

    pub fn set(&self, script: Script) {
        *self.state.script.lock().unwrap() = script;
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Bodies received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The user message of request `i`.
    pub fn user_text(&self, i: usize) -> String {
        let r = &self.requests()[i];
        r["messages"][1]["content"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// `streaming.prompt` pointing at this fake only (no offline fallback, so what the
    /// segment runs comes from here or is the raw prompt).
    pub fn prompt_config(&self, budget_ms: u64) -> fv_prompt::PromptConfig {
        let mut provider = fv_prompt::ProviderConfig::new(fv_prompt::ProviderKind::OpenaiCompat);
        provider.name = Some("fake".into());
        provider.base_url = Some(self.base_url());
        // Any variable that is set: the fake checks no key.
        provider.api_key_env = Some("PATH".into());
        provider.model = Some("fake-model".into());
        fv_prompt::PromptConfig {
            enabled: true,
            providers: vec![provider],
            offline_fallback: false,
            latency_budget_ms: budget_ms,
            reload_interval_ms: 0,
            ..fv_prompt::PromptConfig::default()
        }
    }
}

async fn answer(state: Arc<State>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = {
        let mut requests = state.requests.lock().unwrap();
        requests.push(request.clone());
        requests.len()
    };
    let script = state.script.lock().unwrap().clone();
    tokio::time::sleep(script.delay).await;
    if let Some(code) = script.status {
        let status = StatusCode::from_u16(code).unwrap();
        return (
            status,
            json!({"error": {"message": "scripted"}}).to_string(),
        )
            .into_response();
    }
    let user = request["messages"][1]["content"].as_str().unwrap_or("");
    // Rewrites ask for a number of prompts ("Write N prompts." with a window; a bare seed
    // otherwise): answer with numbered lines.
    let system = request["messages"][0]["content"].as_str().unwrap_or("");
    let lines = system.contains("numbered 1.").then(|| {
        user.split("Write ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(6)
    });
    let content = match lines {
        Some(k) => (1..=k)
            .map(|i| format!("{i}. {} line {i}", script.reply))
            .collect::<Vec<_>>()
            .join("\n"),
        None => format!("{} #{n}", script.reply),
    };
    let completion = json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        completion.to_string(),
    )
        .into_response()
}
