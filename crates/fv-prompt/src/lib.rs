//! Prompt services for fv-stream: LLM prompt enhancement with provider fallback, prompt
//! rewrites, hot-reloaded system prompts, and a prompt safety filter (protocol-facts §15).
//!
//! The server's session director asks this crate for prompts through [`PromptService`]
//! (implemented by [`PromptEnhancer`]) and checks prompts with [`PromptSafetyFilter`]. Both
//! are `Clone + Send + Sync` handles around an `Arc`: build one at startup, clone it into
//! every session.
//!
//! # Main types
//!
//! * [`LlmProvider`] — one chat completion per call. [`OpenAiCompatProvider`] speaks the
//!   OpenAI format (`POST {base}/chat/completions`) with presets for Cerebras and Groq;
//!   [`TemplateProvider`] answers offline and deterministically (the embedded default).
//!   [`ProviderError::retryable`] decides fallback.
//! * [`PromptEnhancer`] — [`enhance`](PromptEnhancer::enhance),
//!   [`auto_extend`](PromptEnhancer::auto_extend), [`rewrite`](PromptEnhancer::rewrite) over
//!   providers in priority order ([`register_provider`](PromptEnhancer::register_provider)),
//!   a latency budget per call ([`CallOptions`]), system prompts from a directory with
//!   [`reload_system_prompts`](PromptEnhancer::reload_system_prompts) and a polling
//!   [watcher](PromptEnhancer::watch_system_prompts), and the Dreamverse
//!   `/prompt-system-config` body ([`system_config`](PromptEnhancer::system_config),
//!   [`update_system_config`](PromptEnhancer::update_system_config)).
//! * [`split_rewrite`] — FastVideo's rule for turning an answer into prompt lines.
//! * [`PromptSafetyFilter`] — [`SafetyClassifier`]s ([`FastTextClassifier`],
//!   [`WordListClassifier`]) asked in order, [`SafetyDecision`] and
//!   [`first_blocked`](PromptSafetyFilter::first_blocked); what `Unavailable` means is an
//!   [`UnavailablePolicy`].
//! * [`PromptConfig`], [`SafetyConfig`] — the `streaming.prompt` / `streaming.safety` blocks,
//!   with `validate()` naming key paths.
//! * [`metrics`] — metric names (`fv_prompt_*`) and their descriptions.
//!
//! # Latency
//!
//! Every call is bounded twice: each provider attempt by the timeout (`timeout_ms`), the
//! whole call by a latency budget ([`EnhancerSettings::latency_budget`], per call
//! [`CallOptions::budget`]); when the budget is spent, only offline providers are still
//! tried. Calls are cancel-safe, so a caller may also wrap one in `tokio::time::timeout`.
//!
//! # Example
//!
//! ```
//! use fv_prompt::{CallOptions, PromptEnhancer, RewriteOptions};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), fv_prompt::PromptError> {
//! // Offline and deterministic; from_config() builds Cerebras/Groq/... in front of it.
//! let enhancer = PromptEnhancer::offline();
//!
//! let out = enhancer.enhance("a red fox in the snow").await?;
//! assert!(out.text.starts_with("A red fox in the snow, "));
//! assert_eq!((out.provider.as_str(), out.fallback_used), ("template", false));
//!
//! // The next prompt of a story, within 300 ms whatever the configured budget.
//! let prior = vec![out.text.clone()];
//! let next = enhancer
//!     .auto_extend_with(&prior, &CallOptions::with_budget(Duration::from_millis(300)))
//!     .await?;
//! assert!(next.text.starts_with("A red fox in the snow, "));
//!
//! // Six prompts for a new rollout.
//! let rollout = enhancer
//!     .rewrite("a glass whale over a neon forest", &RewriteOptions::with_count(6))
//!     .await?;
//! assert_eq!(rollout.prompts.len(), 6);
//! # Ok(())
//! # }
//! ```

mod calls;
pub mod config;
mod enhancer;
pub mod env;
pub mod metrics;
pub mod provider;
mod reload;
mod rewrite;
pub mod safety;
mod service;
mod system_config;
mod system_prompts;

pub use calls::{
    CallOptions, EnhancerSettings, LatencyBudget, MAX_INPUT_BYTES, Operation, PromptError,
    PromptOutput, ProviderInfo, RewriteOutput,
};
pub use config::{
    ConfigError, ConfigProblem, PromptConfig, ProviderConfig, ProviderKind, SafetyConfig,
};
pub use enhancer::PromptEnhancer;
pub use env::{EnvSource, MapEnv, ProcessEnv};
pub use provider::{
    ChatMessage, CompletionRequest, LlmProvider, OpenAiCompatProvider, ProviderError, Role, Task,
    TemplateProvider,
};
pub use reload::{MIN_WATCH_INTERVAL, SystemPromptWatcher};
pub use rewrite::{DEFAULT_REWRITE_COUNT, RewriteOptions, split_rewrite};
pub use safety::{
    BlockedPrompt, FastTextClassifier, PromptSafetyFilter, SafetyClassifier, SafetyDecision,
    SafetyVerdict, UnavailablePolicy, WordListClassifier,
};
pub use service::PromptService;
pub use system_config::{PromptSystemConfig, PromptSystemConfigUpdate, SystemConfigError};
pub use system_prompts::{
    MAX_SYSTEM_PROMPT_BYTES, SystemPromptError, SystemPromptKind, SystemPrompts,
};
