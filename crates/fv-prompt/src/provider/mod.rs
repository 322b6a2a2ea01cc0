//! The LLM provider interface: one chat completion per call, errors that say whether trying
//! the next provider may help.

mod openai;
mod template;

pub use openai::{
    CEREBRAS_API_KEY_ENV, CEREBRAS_BASE_URL, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MODEL,
    GROQ_API_KEY_ENV, GROQ_BASE_URL, OpenAiCompatProvider, ProviderBuildError,
};
pub use template::{TEMPLATE_MODEL, TEMPLATE_PROVIDER_NAME, TemplateProvider};

use async_trait::async_trait;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// Instructions for the model (the system prompt).
    System,
    /// The user's text.
    User,
    /// An earlier answer of the model.
    Assistant,
}

/// One message of a chat completion request, serialized as `{"role", "content"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// Author.
    pub role: Role,
    /// Text.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
}

/// What a request is for, with its structured input. Network providers only send
/// [`CompletionRequest::messages`]; offline providers such as [`TemplateProvider`] answer
/// from this instead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Task {
    /// Turn a short user prompt into a detailed one.
    Enhance {
        /// The user's prompt.
        prompt: String,
    },
    /// Write the next prompt of a story from the prompts used so far (oldest first).
    AutoExtend {
        /// Prompts already used.
        prior_prompts: Vec<String>,
    },
    /// Write `count` prompts from a seed (or an instruction applied to an existing window).
    Rewrite {
        /// The seed prompt or the user's instruction.
        seed: String,
        /// Prompts to rewrite; empty for a new set from the seed.
        window: Vec<String>,
        /// How many prompts are wanted.
        count: usize,
    },
    /// Anything else (only the messages describe it).
    Custom,
}

/// One chat completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    /// What the request is for.
    pub task: Task,
    /// `[system, user]` for the enhancer's operations.
    pub messages: Vec<ChatMessage>,
    /// `max_tokens` of the request body.
    pub max_tokens: u32,
    /// `temperature` of the request body.
    pub temperature: f32,
    /// The longest this request may take, connection and body included. A provider that
    /// cannot answer in time returns [`ProviderError::Timeout`].
    pub timeout: Duration,
}

impl CompletionRequest {
    /// A request with FastVideo's defaults: 256 tokens, temperature 0.7, 20 s.
    pub fn new(task: Task, messages: Vec<ChatMessage>) -> Self {
        Self {
            task,
            messages,
            max_tokens: 256,
            temperature: 0.7,
            timeout: Duration::from_millis(20_000),
        }
    }
}

/// A chat-completion backend.
///
/// Implement it to add a provider that does not speak the OpenAI wire format; register it
/// with [`PromptEnhancer::register_provider`](crate::PromptEnhancer::register_provider).
/// Dropping the future returned by [`complete`](LlmProvider::complete) must cancel the
/// request (the enhancer and its callers enforce latency budgets that way).
#[async_trait]
pub trait LlmProvider: Send + Sync + fmt::Debug {
    /// Name used in results, logs and metric labels (e.g. `cerebras`).
    fn name(&self) -> &str;

    /// Model this provider asks for.
    fn model(&self) -> &str;

    /// True when the provider answers locally without network IO (e.g. [`TemplateProvider`]).
    /// The enhancer still tries such a provider after a call's latency budget is spent, so an
    /// offline fallback always gets its turn.
    fn is_offline(&self) -> bool {
        false
    }

    /// The completion's text, stripped of surrounding whitespace. An empty string is a
    /// successful answer.
    async fn complete(&self, request: &CompletionRequest) -> Result<String, ProviderError>;
}

/// Why a provider gave no answer. [`retryable`](ProviderError::retryable) says whether the
/// enhancer should try the next provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The API key variable is unset or blank. Not retryable: a misconfiguration that no
    /// other provider should paper over.
    #[error("{provider}: API key variable {env_var} is not set")]
    MissingApiKey {
        /// Provider name.
        provider: String,
        /// Name of the variable that was read.
        env_var: String,
    },
    /// No complete answer within the request's timeout. Retryable.
    #[error("{provider}: no answer within {} ms", .after.as_millis())]
    Timeout {
        /// Provider name.
        provider: String,
        /// The timeout that ran out.
        after: Duration,
    },
    /// Connecting, sending or receiving failed (refused, reset, DNS, TLS). Retryable.
    #[error("{provider}: transport error: {message}")]
    Transport {
        /// Provider name.
        provider: String,
        /// What failed.
        message: String,
    },
    /// HTTP status ≥ 400. Retryable for ≥ 500 and 429, not for other 4xx.
    #[error("{provider}: HTTP {status}: {body}")]
    Http {
        /// Provider name.
        provider: String,
        /// Status code.
        status: u16,
        /// Start of the response body (at most 300 characters), for the log.
        body: String,
    },
    /// A 2xx answer that is not a usable completion: not JSON, no `choices`, no message,
    /// or larger than the provider's response limit. Retryable.
    #[error("{provider}: unusable response: {message}")]
    BadResponse {
        /// Provider name.
        provider: String,
        /// What was wrong.
        message: String,
    },
    /// Any other failure of a custom provider, which says itself whether a retry may help.
    #[error("{provider}: {message}")]
    Other {
        /// Provider name.
        provider: String,
        /// What failed.
        message: String,
        /// Whether the next provider should be tried.
        retryable: bool,
    },
}

impl ProviderError {
    /// Whether the next provider should be tried (protocol-facts §15).
    pub fn retryable(&self) -> bool {
        match self {
            Self::MissingApiKey { .. } => false,
            Self::Timeout { .. } | Self::Transport { .. } | Self::BadResponse { .. } => true,
            Self::Http { status, .. } => *status >= 500 || *status == 429,
            Self::Other { retryable, .. } => *retryable,
        }
    }

    /// Short label for metrics and logs: `missing_api_key`, `timeout`, `transport`,
    /// `http_429`, `http_5xx`, `http_4xx`, `bad_response`, `other`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingApiKey { .. } => "missing_api_key",
            Self::Timeout { .. } => "timeout",
            Self::Transport { .. } => "transport",
            Self::Http { status: 429, .. } => "http_429",
            Self::Http { status, .. } if *status >= 500 => "http_5xx",
            Self::Http { .. } => "http_4xx",
            Self::BadResponse { .. } => "bad_response",
            Self::Other { .. } => "other",
        }
    }

    /// Name of the provider that failed.
    pub fn provider(&self) -> &str {
        match self {
            Self::MissingApiKey { provider, .. }
            | Self::Timeout { provider, .. }
            | Self::Transport { provider, .. }
            | Self::Http { provider, .. }
            | Self::BadResponse { provider, .. }
            | Self::Other { provider, .. } => provider,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn http(status: u16) -> ProviderError {
        ProviderError::Http {
            provider: "p".into(),
            status,
            body: String::new(),
        }
    }

    #[test]
    fn retryable_classes_follow_section_15() {
        assert!(http(500).retryable());
        assert!(http(503).retryable());
        assert!(http(429).retryable());
        assert!(!http(400).retryable());
        assert!(!http(401).retryable());
        assert!(!http(404).retryable());
        assert_eq!(http(429).kind(), "http_429");
        assert_eq!(http(502).kind(), "http_5xx");
        assert_eq!(http(403).kind(), "http_4xx");
        let missing = ProviderError::MissingApiKey {
            provider: "p".into(),
            env_var: "K".into(),
        };
        assert!(!missing.retryable());
        let timeout = ProviderError::Timeout {
            provider: "p".into(),
            after: Duration::from_millis(5),
        };
        assert!(timeout.retryable());
        assert_eq!(timeout.to_string(), "p: no answer within 5 ms");
    }
}
