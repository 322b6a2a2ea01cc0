//! The data of enhancer calls: settings, per-call options, results and errors.

use crate::provider::ProviderError;
use crate::system_prompts::SystemPromptError;
use std::fmt;
use std::time::Duration;

/// Largest user text sent in one call (a prompt, the joined prior prompts, a rewrite
/// window), in bytes. Dreamverse prompts are at most 500 characters; the cap keeps a runaway
/// client from sending megabytes to a paid API.
pub const MAX_INPUT_BYTES: usize = 32 * 1024;

/// Settings every call of a [`PromptEnhancer`](crate::PromptEnhancer) uses.
#[derive(Debug, Clone, PartialEq)]
pub struct EnhancerSettings {
    /// Longest one provider attempt may take (FastVideo's `timeout_ms`, default 20 s).
    pub timeout: Duration,
    /// Sampling temperature (default 0.7).
    pub temperature: f32,
    /// `max_tokens` of each request (default 256).
    pub max_tokens: u32,
    /// Longest a whole call may take, fallbacks included, unless the call says otherwise
    /// ([`CallOptions::budget`]); `None`: only the per-attempt timeout applies. Default
    /// 1500 ms.
    pub latency_budget: Option<Duration>,
}

impl Default for EnhancerSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(20_000),
            temperature: 0.7,
            max_tokens: 256,
            latency_budget: Some(Duration::from_millis(1500)),
        }
    }
}

/// How long one call may take in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LatencyBudget {
    /// [`EnhancerSettings::latency_budget`].
    #[default]
    Configured,
    /// No overall limit; each attempt is still bounded by [`EnhancerSettings::timeout`].
    Unbounded,
    /// At most this long: each attempt gets the time left (and at most the timeout); once it
    /// is spent only offline providers are still tried.
    Limit(Duration),
}

/// Per-call options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// The call's latency budget.
    pub budget: LatencyBudget,
}

impl CallOptions {
    /// Options with a budget of `limit`.
    pub fn with_budget(limit: Duration) -> Self {
        Self {
            budget: LatencyBudget::Limit(limit),
        }
    }

    /// Options without an overall budget.
    pub fn unbounded() -> Self {
        Self {
            budget: LatencyBudget::Unbounded,
        }
    }
}

/// The enhancer's operations (metric label `operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// [`PromptEnhancer::enhance`](crate::PromptEnhancer::enhance).
    Enhance,
    /// [`PromptEnhancer::auto_extend`](crate::PromptEnhancer::auto_extend).
    AutoExtend,
    /// [`PromptEnhancer::rewrite`](crate::PromptEnhancer::rewrite).
    Rewrite,
    /// [`PromptEnhancer::complete_with`](crate::PromptEnhancer::complete_with).
    Custom,
}

impl Operation {
    /// Label: `enhance`, `auto_extend`, `rewrite`, `custom`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enhance => "enhance",
            Self::AutoExtend => "auto_extend",
            Self::Rewrite => "rewrite",
            Self::Custom => "custom",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one successful call produced.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptOutput {
    /// The prompt: the provider's answer, or its `next_prompt` / `prompt` field when the
    /// answer is a JSON object (optionally in a code fence), as Dreamverse-style system
    /// prompts ask for. May be empty: callers decide whether an empty prompt is a failure.
    pub text: String,
    /// The provider's answer as received (stripped).
    pub raw_output: String,
    /// Provider that answered.
    pub provider: String,
    /// Its model.
    pub model: String,
    /// Whole call, fallbacks included.
    pub latency: Duration,
    /// True when a provider other than the first answered.
    pub fallback_used: bool,
    /// Errors of the providers tried before the one that answered.
    pub failures: Vec<ProviderError>,
}

/// A rewrite's prompts and the call that produced them.
#[derive(Debug, Clone, PartialEq)]
pub struct RewriteOutput {
    /// The split answer ([`split_rewrite`](crate::split_rewrite)): at most
    /// `max(1, count)` prompts, possibly fewer and possibly none.
    pub prompts: Vec<String>,
    /// The call (its `text` is the unsplit answer).
    pub output: PromptOutput,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromptError {
    /// Enhance got a blank prompt.
    #[error("{operation}: the prompt is empty")]
    EmptyInput {
        /// Which call.
        operation: Operation,
    },
    /// Rewrite got a blank seed (FastVideo's `ValueError`).
    #[error("rewrite: the seed prompt is empty")]
    EmptySeed,
    /// The user text is larger than [`MAX_INPUT_BYTES`].
    #[error("{operation}: input is {len} bytes; at most {max} are sent")]
    InputTooLong {
        /// Which call.
        operation: Operation,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// No provider is registered.
    #[error("no LLM provider is registered")]
    NoProviders,
    /// A provider failed in a way the next one should not paper over; no further provider
    /// was tried (§15).
    #[error("{operation}: {error}")]
    NotRetryable {
        /// Which call.
        operation: Operation,
        /// The error that stopped the call.
        error: ProviderError,
        /// Errors of earlier providers.
        failures: Vec<ProviderError>,
    },
    /// Every provider failed with a retryable error; `last` is the last one (§15).
    #[error("{operation}: every provider failed; last: {last}")]
    AllFailed {
        /// Which call.
        operation: Operation,
        /// The last provider's error.
        last: ProviderError,
        /// Errors of the providers before it.
        failures: Vec<ProviderError>,
    },
    /// The latency budget ran out before any provider answered.
    #[error("{operation}: latency budget of {} ms spent after {} failed attempt(s)", .budget.as_millis(), .failures.len())]
    BudgetExhausted {
        /// Which call.
        operation: Operation,
        /// The budget.
        budget: Duration,
        /// Errors of the providers tried.
        failures: Vec<ProviderError>,
    },
    /// A system prompt could not be read or saved.
    #[error(transparent)]
    SystemPrompt(#[from] SystemPromptError),
    /// The config is not valid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A provider could not be built from the config.
    #[error("{path}: {message}")]
    Provider {
        /// Key path of the provider in the config.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The system-prompt watcher cannot start.
    #[error("watching system prompts: {0}")]
    Watch(String),
}

impl PromptError {
    /// Whether the same call may succeed later (provider outages, budgets); false for bad
    /// input and configuration errors.
    pub fn retryable(&self) -> bool {
        match self {
            Self::NotRetryable { .. }
            | Self::EmptyInput { .. }
            | Self::EmptySeed
            | Self::InputTooLong { .. }
            | Self::NoProviders
            | Self::SystemPrompt(_)
            | Self::Provider { .. }
            | Self::Config(_)
            | Self::Watch(_) => false,
            Self::AllFailed { .. } | Self::BudgetExhausted { .. } => true,
        }
    }
}

/// A provider and its model, as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    /// [`LlmProvider::name`](crate::LlmProvider::name).
    pub name: String,
    /// [`LlmProvider::model`](crate::LlmProvider::model).
    pub model: String,
    /// [`LlmProvider::is_offline`](crate::LlmProvider::is_offline).
    pub offline: bool,
}
