//! OpenAI-compatible chat completions over HTTPS (Cerebras, Groq, vLLM, llama.cpp, ...).

use super::{CompletionRequest, LlmProvider, ProviderError};
use crate::env::{EnvSource, ProcessEnv};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::fmt;
use std::sync::Arc;

/// Cerebras' OpenAI-compatible API.
pub const CEREBRAS_BASE_URL: &str = "https://api.cerebras.ai/v1";
/// Variable holding the Cerebras key.
pub const CEREBRAS_API_KEY_ENV: &str = "CEREBRAS_API_KEY";
/// Groq's OpenAI-compatible API.
pub const GROQ_BASE_URL: &str = "https://api.groq.com/openai/v1";
/// Variable holding the Groq key.
pub const GROQ_API_KEY_ENV: &str = "GROQ_API_KEY";
/// FastVideo's default model (`streaming.prompt.model`).
pub const DEFAULT_MODEL: &str = "gpt-oss-120b";
/// Largest response body read, in bytes. Completions of a few hundred tokens are a few KiB;
/// the cap keeps a broken or hostile endpoint from filling memory.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Characters of an error body kept in [`ProviderError::Http`].
const ERROR_BODY_CHARS: usize = 300;

/// A provider speaking the OpenAI chat-completions format: `POST {base_url}/chat/completions`
/// with `Authorization: Bearer <key>` and the body `{model, messages, max_tokens,
/// temperature}`; the answer is `choices[0].message.content`, stripped.
///
/// The key is read from a named variable through an [`EnvSource`] at every request and is
/// never stored, logged or shown by `Debug`. Cheap to share: clone the `Arc` it is
/// registered in; the HTTP client inside pools connections.
///
/// Errors follow protocol-facts §15: missing key → [`ProviderError::MissingApiKey`] (not
/// retryable); timeout → [`ProviderError::Timeout`]; other transport failures →
/// [`ProviderError::Transport`]; HTTP ≥ 400 → [`ProviderError::Http`] (retryable for ≥ 500 and
/// 429); a body that is not JSON, has no `choices` or exceeds the size limit →
/// [`ProviderError::BadResponse`]. A `null` content counts as the empty string.
pub struct OpenAiCompatProvider {
    name: String,
    endpoint: String,
    api_key_env: String,
    model: String,
    env: Arc<dyn EnvSource>,
    client: reqwest::Client,
    max_response_bytes: usize,
}

impl fmt::Debug for OpenAiCompatProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is never held here; only where it comes from is shown.
        f.debug_struct("OpenAiCompatProvider")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("api_key_env", &self.api_key_env)
            .field("model", &self.model)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish_non_exhaustive()
    }
}

/// Why a provider could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderBuildError {
    /// The base URL is not an absolute `http://` or `https://` URL.
    #[error("base URL {url:?} must start with http:// or https:// and name a host")]
    BadBaseUrl {
        /// The URL given.
        url: String,
    },
    /// The name, key variable or model is blank.
    #[error("{field} must not be blank")]
    Blank {
        /// Which argument.
        field: &'static str,
    },
    /// The HTTP client could not be set up (TLS initialisation).
    #[error("HTTP client: {0}")]
    Client(String),
}

impl OpenAiCompatProvider {
    /// A provider named `name` at `base_url` (e.g. `http://127.0.0.1:8000/v1`; a trailing
    /// `/` is ignored), reading its key from the process variable `api_key_env`.
    pub fn new(
        name: impl Into<String>,
        base_url: &str,
        api_key_env: impl Into<String>,
        model: impl Into<String>,
    ) -> Result<Self, ProviderBuildError> {
        let name = name.into();
        let api_key_env = api_key_env.into();
        let model = model.into();
        for (field, value) in [
            ("name", &name),
            ("api_key_env", &api_key_env),
            ("model", &model),
        ] {
            if value.trim().is_empty() {
                return Err(ProviderBuildError::Blank { field });
            }
        }
        let base = base_url.trim().trim_end_matches('/');
        let host = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"));
        if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
            return Err(ProviderBuildError::BadBaseUrl {
                url: base_url.to_owned(),
            });
        }
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| ProviderBuildError::Client(e.to_string()))?;
        Ok(Self {
            name,
            endpoint: format!("{base}/chat/completions"),
            api_key_env,
            model,
            env: Arc::new(ProcessEnv),
            client,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        })
    }

    /// Cerebras (`https://api.cerebras.ai/v1`, key in `CEREBRAS_API_KEY`).
    pub fn cerebras(model: impl Into<String>) -> Result<Self, ProviderBuildError> {
        Self::new("cerebras", CEREBRAS_BASE_URL, CEREBRAS_API_KEY_ENV, model)
    }

    /// Groq (`https://api.groq.com/openai/v1`, key in `GROQ_API_KEY`).
    pub fn groq(model: impl Into<String>) -> Result<Self, ProviderBuildError> {
        Self::new("groq", GROQ_BASE_URL, GROQ_API_KEY_ENV, model)
    }

    /// Reads the key from `env` instead of the process environment.
    #[must_use]
    pub fn with_env(mut self, env: Arc<dyn EnvSource>) -> Self {
        self.env = env;
        self
    }

    /// Caps the response body read (default [`DEFAULT_MAX_RESPONSE_BYTES`]).
    #[must_use]
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// The URL requests go to: `{base_url}/chat/completions`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Name of the variable the key is read from.
    pub fn api_key_env(&self) -> &str {
        &self.api_key_env
    }

    fn transport(&self, err: &reqwest::Error, timeout: std::time::Duration) -> ProviderError {
        if err.is_timeout() {
            ProviderError::Timeout {
                provider: self.name.clone(),
                after: timeout,
            }
        } else {
            ProviderError::Transport {
                provider: self.name.clone(),
                message: error_chain(err),
            }
        }
    }

    fn bad(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::BadResponse {
            provider: self.name.clone(),
            message: message.into(),
        }
    }

    /// Reads the body, refusing more than `max_response_bytes`.
    async fn read_body(
        &self,
        mut response: reqwest::Response,
        timeout: std::time::Duration,
    ) -> Result<Vec<u8>, ProviderError> {
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport(&e, timeout))?
        {
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(self.bad(format!(
                    "response body exceeds {} bytes",
                    self.max_response_bytes
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The error and its sources, which carry the useful part ("connection refused").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[async_trait]
impl LlmProvider for OpenAiCompatProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<String, ProviderError> {
        let key = self
            .env
            .var(&self.api_key_env)
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ProviderError::MissingApiKey {
                provider: self.name.clone(),
                env_var: self.api_key_env.clone(),
            })?;
        let body = json!({
            "model": self.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        });
        let timeout = request.timeout;
        let response = self
            .client
            .post(&self.endpoint)
            .bearer_auth(key)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.transport(&e, timeout))?;
        let status = response.status().as_u16();
        let bytes = self.read_body(response, timeout).await?;
        if status >= 400 {
            let text = String::from_utf8_lossy(&bytes);
            return Err(ProviderError::Http {
                provider: self.name.clone(),
                status,
                body: text.chars().take(ERROR_BODY_CHARS).collect(),
            });
        }
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.bad(format!("body is not JSON: {e}")))?;
        let choices = value
            .get("choices")
            .and_then(Value::as_array)
            .ok_or_else(|| self.bad("no `choices` in the response"))?;
        let message = choices
            .first()
            .and_then(|c| c.get("message"))
            .ok_or_else(|| self.bad("`choices` has no first message"))?;
        match message.get("content") {
            Some(Value::String(content)) => Ok(content.trim().to_owned()),
            // Some servers send `null` content with an empty answer.
            Some(Value::Null) | None => Ok(String::new()),
            Some(_) => Err(self.bad("`choices[0].message.content` is not a string")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base_url_must_be_http_with_a_host() {
        for bad in ["", "api.example", "ftp://x/v1", "http://", "https:///v1"] {
            assert!(
                matches!(
                    OpenAiCompatProvider::new("p", bad, "K", "m"),
                    Err(ProviderBuildError::BadBaseUrl { .. })
                ),
                "{bad:?} accepted"
            );
        }
        let p = OpenAiCompatProvider::new("p", "http://127.0.0.1:9/v1/", "K", "m").unwrap();
        assert_eq!(p.endpoint(), "http://127.0.0.1:9/v1/chat/completions");
        assert!(matches!(
            OpenAiCompatProvider::new("p", "http://h", " ", "m"),
            Err(ProviderBuildError::Blank {
                field: "api_key_env"
            })
        ));
    }

    #[test]
    fn presets_name_their_urls_and_key_variables() {
        let c = OpenAiCompatProvider::cerebras("gpt-oss-120b").unwrap();
        assert_eq!(c.name(), "cerebras");
        assert_eq!(c.endpoint(), "https://api.cerebras.ai/v1/chat/completions");
        assert_eq!(c.api_key_env(), "CEREBRAS_API_KEY");
        assert_eq!(c.model(), "gpt-oss-120b");
        let g = OpenAiCompatProvider::groq("llama-3.3-70b-versatile").unwrap();
        assert_eq!(g.name(), "groq");
        assert_eq!(
            g.endpoint(),
            "https://api.groq.com/openai/v1/chat/completions"
        );
        assert_eq!(g.api_key_env(), "GROQ_API_KEY");
        assert_eq!(g.model(), "llama-3.3-70b-versatile");
    }
}
