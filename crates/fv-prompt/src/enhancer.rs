//! [`PromptEnhancer`]: LLM calls with provider fallback and latency budgets.

pub use crate::calls::{
    CallOptions, EnhancerSettings, LatencyBudget, MAX_INPUT_BYTES, Operation, PromptError,
    PromptOutput, ProviderInfo, RewriteOutput,
};
use crate::metrics as m;
use crate::provider::{
    ChatMessage, CompletionRequest, LlmProvider, ProviderError, Task, TemplateProvider,
};
use crate::rewrite::{RewriteOptions, split_rewrite};
use crate::system_prompts::{Fingerprint, SystemPromptKind, SystemPrompts, fingerprint};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;
use tokio::sync::watch;
use tracing::Instrument;

/// What can change at run time besides the providers: the system prompts and the rewrite
/// defaults of `/prompt-system-config`. Swapped whole, so a call sees one consistent set.
#[derive(Debug, Clone)]
pub(crate) struct PromptState {
    pub(crate) prompts: SystemPrompts,
    /// `None`: the first provider's model.
    pub(crate) rewrite_model: Option<String>,
    pub(crate) rewrite_temperature: f32,
}

pub(crate) struct Inner {
    pub(crate) providers: RwLock<Vec<Arc<dyn LlmProvider>>>,
    pub(crate) settings: EnhancerSettings,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) state: RwLock<Arc<PromptState>>,
    /// Held while prompts are re-read or saved (one writer at a time); the file fingerprint
    /// of the last read.
    pub(crate) files: Mutex<Fingerprint>,
    pub(crate) reloads: watch::Sender<u64>,
}

/// LLM prompt operations with provider fallback (protocol-facts §15).
///
/// Providers are tried in priority order. A retryable error moves on to the next one; a
/// non-retryable error stops the call; when all fail the last error is returned. A success
/// from any provider but the first has `fallback_used`. Every call sends `[system, user]`
/// with the system prompt of its kind.
///
/// `Clone` is cheap (an `Arc`); the enhancer is `Send + Sync` and every method takes
/// `&self`, so one instance serves every session. Calls are cancel-safe: dropping a call's
/// future (a caller's `tokio::time::timeout`) drops the HTTP request in flight. Calls need a
/// tokio runtime with the time driver.
#[derive(Clone)]
pub struct PromptEnhancer {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for PromptEnhancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromptEnhancer")
            .field("providers", &self.providers())
            .field("settings", &self.inner.settings)
            .field("system_prompt_dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

pub(crate) fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // A panic while holding the lock cannot leave these values half-written (they are
    // replaced whole), so a poisoned lock is still good.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl PromptEnhancer {
    /// An enhancer over `providers` (first = highest priority) with built-in system prompts.
    /// At least one provider is required.
    pub fn new(
        providers: Vec<Arc<dyn LlmProvider>>,
        settings: EnhancerSettings,
    ) -> Result<Self, PromptError> {
        Self::build(providers, settings, None)
    }

    /// Like [`new`](Self::new), with system prompts read from `dir` (`enhance.txt`,
    /// `auto_extend.txt`, `rewrite.txt`, `rewrite_window.txt`; missing or blank → built-in).
    pub fn with_system_prompt_dir(
        providers: Vec<Arc<dyn LlmProvider>>,
        settings: EnhancerSettings,
        dir: impl Into<PathBuf>,
    ) -> Result<Self, PromptError> {
        Self::build(providers, settings, Some(dir.into()))
    }

    /// The embedded default: the offline [`TemplateProvider`] alone. No network, no keys.
    pub fn offline() -> Self {
        Self::from_parts(
            vec![Arc::new(TemplateProvider::new())],
            EnhancerSettings::default(),
            None,
            SystemPrompts::defaults(),
            [None, None, None, None],
        )
    }

    fn build(
        providers: Vec<Arc<dyn LlmProvider>>,
        settings: EnhancerSettings,
        dir: Option<PathBuf>,
    ) -> Result<Self, PromptError> {
        if providers.is_empty() {
            return Err(PromptError::NoProviders);
        }
        let (prompts, files) = match &dir {
            Some(d) => {
                let files = fingerprint(d);
                (SystemPrompts::load_dir(d)?, files)
            }
            None => (SystemPrompts::defaults(), [None, None, None, None]),
        };
        Ok(Self::from_parts(providers, settings, dir, prompts, files))
    }

    fn from_parts(
        providers: Vec<Arc<dyn LlmProvider>>,
        settings: EnhancerSettings,
        dir: Option<PathBuf>,
        prompts: SystemPrompts,
        files: Fingerprint,
    ) -> Self {
        let rewrite_temperature = settings.temperature;
        Self {
            inner: Arc::new(Inner {
                providers: RwLock::new(providers),
                settings,
                dir,
                state: RwLock::new(Arc::new(PromptState {
                    prompts,
                    rewrite_model: None,
                    rewrite_temperature,
                })),
                files: Mutex::new(files),
                reloads: watch::Sender::new(0),
            }),
        }
    }

    /// Adds a provider: `priority < 0` appends it (lowest priority), `priority >= 0` inserts
    /// it at that position (0 = tried first; past the end appends), as FastVideo's
    /// `register_provider(p, priority=-1)`.
    pub fn register_provider(&self, provider: Arc<dyn LlmProvider>, priority: i64) {
        let mut providers = write(&self.inner.providers);
        match usize::try_from(priority) {
            Ok(at) => {
                let at = at.min(providers.len());
                providers.insert(at, provider);
            }
            Err(_) => providers.push(provider),
        }
    }

    /// The providers in the order they are tried.
    pub fn providers(&self) -> Vec<ProviderInfo> {
        read(&self.inner.providers)
            .iter()
            .map(|p| ProviderInfo {
                name: p.name().to_owned(),
                model: p.model().to_owned(),
                offline: p.is_offline(),
            })
            .collect()
    }

    /// The settings every call uses.
    pub fn settings(&self) -> &EnhancerSettings {
        &self.inner.settings
    }

    /// The system-prompt directory, if any.
    pub fn system_prompt_dir(&self) -> Option<&Path> {
        self.inner.dir.as_deref()
    }

    /// The system prompts in force.
    pub fn system_prompts(&self) -> SystemPrompts {
        read(&self.inner.state).prompts.clone()
    }

    pub(crate) fn state(&self) -> Arc<PromptState> {
        read(&self.inner.state).clone()
    }

    /// A detailed prompt from a user prompt, within the configured latency budget.
    pub async fn enhance(&self, prompt: &str) -> Result<PromptOutput, PromptError> {
        self.enhance_with(prompt, &CallOptions::default()).await
    }

    /// [`enhance`](Self::enhance) with per-call options.
    pub async fn enhance_with(
        &self,
        prompt: &str,
        call: &CallOptions,
    ) -> Result<PromptOutput, PromptError> {
        let op = Operation::Enhance;
        if prompt.trim().is_empty() {
            return Err(PromptError::EmptyInput { operation: op });
        }
        let state = self.state();
        let task = Task::Enhance {
            prompt: prompt.to_owned(),
        };
        let system = state.prompts.get(SystemPromptKind::Enhance).to_owned();
        let temperature = self.inner.settings.temperature;
        self.run(op, task, system, prompt.to_owned(), temperature, None, call)
            .await
    }

    /// The next prompt of a story from the prompts used so far (oldest first); the user text
    /// is the prompts joined by newlines. An empty list asks for an opening.
    pub async fn auto_extend(&self, prior_prompts: &[String]) -> Result<PromptOutput, PromptError> {
        self.auto_extend_with(prior_prompts, &CallOptions::default())
            .await
    }

    /// [`auto_extend`](Self::auto_extend) with per-call options.
    pub async fn auto_extend_with(
        &self,
        prior_prompts: &[String],
        call: &CallOptions,
    ) -> Result<PromptOutput, PromptError> {
        let state = self.state();
        let task = Task::AutoExtend {
            prior_prompts: prior_prompts.to_vec(),
        };
        let system = state.prompts.get(SystemPromptKind::AutoExtend).to_owned();
        let user = prior_prompts.join("\n");
        let temperature = self.inner.settings.temperature;
        self.run(
            Operation::AutoExtend,
            task,
            system,
            user,
            temperature,
            None,
            call,
        )
        .await
    }

    /// `options.count` prompts from `seed` (a blank seed is an error). With
    /// `options.window` empty the user text is the seed and the rewrite system prompt is
    /// used; otherwise the user text lists the window and gives the seed as the instruction,
    /// with the rewrite-window system prompt. The answer is split by [`split_rewrite`].
    pub async fn rewrite(
        &self,
        seed: &str,
        options: &RewriteOptions,
    ) -> Result<RewriteOutput, PromptError> {
        if seed.trim().is_empty() {
            return Err(PromptError::EmptySeed);
        }
        let state = self.state();
        let count = options.count.max(1);
        let (kind, user) = if options.window.is_empty() {
            (SystemPromptKind::Rewrite, seed.to_owned())
        } else {
            let mut user = String::from("Current prompts:\n");
            for (i, p) in options.window.iter().enumerate() {
                user.push_str(&format!("{}. {}\n", i + 1, p.trim()));
            }
            user.push_str(&format!(
                "Instruction: {}\nWrite {count} prompts.",
                seed.trim()
            ));
            (SystemPromptKind::RewriteWindow, user)
        };
        let system = match options.system_prompt.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => state.prompts.get(kind).to_owned(),
        };
        let temperature = options.temperature.unwrap_or(state.rewrite_temperature);
        let model = options
            .model
            .clone()
            .or_else(|| state.rewrite_model.clone());
        let task = Task::Rewrite {
            seed: seed.to_owned(),
            window: options.window.clone(),
            count,
        };
        let output = self
            .run(
                Operation::Rewrite,
                task,
                system,
                user,
                temperature,
                model.as_deref(),
                &options.call,
            )
            .await?;
        Ok(RewriteOutput {
            prompts: split_rewrite(&output.raw_output, count),
            output,
        })
    }

    /// One call with the system prompt of `kind` and your own user text (e.g. Dreamverse's
    /// locked segments plus a conditioning prompt). Offline providers treat the user text as
    /// a prompt to enhance.
    pub async fn complete_with(
        &self,
        kind: SystemPromptKind,
        user: &str,
        call: &CallOptions,
    ) -> Result<PromptOutput, PromptError> {
        let op = Operation::Custom;
        if user.trim().is_empty() {
            return Err(PromptError::EmptyInput { operation: op });
        }
        let system = self.state().prompts.get(kind).to_owned();
        let temperature = self.inner.settings.temperature;
        self.run(
            op,
            Task::Custom,
            system,
            user.to_owned(),
            temperature,
            None,
            call,
        )
        .await
    }

    /// The providers in try order, those whose model is `prefer` first (stable).
    fn ordered(&self, prefer: Option<&str>) -> Vec<Arc<dyn LlmProvider>> {
        let mut providers = read(&self.inner.providers).clone();
        if let Some(model) = prefer {
            providers.sort_by_key(|p| p.model() != model);
        }
        providers
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        op: Operation,
        task: Task,
        system: String,
        user: String,
        temperature: f32,
        prefer_model: Option<&str>,
        call: &CallOptions,
    ) -> Result<PromptOutput, PromptError> {
        if user.len() > MAX_INPUT_BYTES {
            return Err(PromptError::InputTooLong {
                operation: op,
                len: user.len(),
                max: MAX_INPUT_BYTES,
            });
        }
        let span = tracing::info_span!("prompt", operation = op.as_str());
        let result = self
            .fallback(op, task, system, user, temperature, prefer_model, call)
            .instrument(span)
            .await;
        m::operation(op, result.is_ok());
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn fallback(
        &self,
        op: Operation,
        task: Task,
        system: String,
        user: String,
        temperature: f32,
        prefer_model: Option<&str>,
        call: &CallOptions,
    ) -> Result<PromptOutput, PromptError> {
        let providers = self.ordered(prefer_model);
        if providers.is_empty() {
            return Err(PromptError::NoProviders);
        }
        let settings = &self.inner.settings;
        let budget = match call.budget {
            LatencyBudget::Configured => settings.latency_budget,
            LatencyBudget::Unbounded => None,
            LatencyBudget::Limit(d) => Some(d),
        };
        let start = Instant::now();
        let mut request = CompletionRequest {
            task,
            messages: vec![ChatMessage::system(system), ChatMessage::user(user)],
            max_tokens: settings.max_tokens,
            temperature,
            timeout: settings.timeout,
        };
        let mut failures: Vec<ProviderError> = Vec::new();
        let mut skipped = false;
        for (i, provider) in providers.iter().enumerate() {
            let remaining = budget.map(|b| b.saturating_sub(start.elapsed()));
            request.timeout = match remaining {
                // Budget spent: only a provider without network IO still gets its turn.
                Some(r) if r.is_zero() && !provider.is_offline() => {
                    skipped = true;
                    tracing::debug!(provider = provider.name(), "skipped: latency budget spent");
                    continue;
                }
                Some(r) if !r.is_zero() => r.min(settings.timeout),
                _ => settings.timeout,
            };
            let attempt = Instant::now();
            // The provider should honour `request.timeout` itself; this bound holds for
            // providers that do not.
            let result =
                match tokio::time::timeout(request.timeout, provider.complete(&request)).await {
                    Ok(r) => r,
                    Err(_) => Err(ProviderError::Timeout {
                        provider: provider.name().to_owned(),
                        after: request.timeout,
                    }),
                };
            m::attempt(provider.name(), op, &result, attempt.elapsed());
            match result {
                Ok(raw) => {
                    let fallback_used = i > 0;
                    if fallback_used {
                        m::fallback(op, provider.name());
                    }
                    tracing::debug!(
                        provider = provider.name(),
                        model = provider.model(),
                        fallback_used,
                        latency_ms = start.elapsed().as_millis() as u64,
                        "prompt call answered"
                    );
                    return Ok(PromptOutput {
                        text: extract_prompt(&raw),
                        raw_output: raw,
                        provider: provider.name().to_owned(),
                        model: provider.model().to_owned(),
                        latency: start.elapsed(),
                        fallback_used,
                        failures,
                    });
                }
                Err(error) if error.retryable() => {
                    tracing::warn!(%error, kind = error.kind(), "provider failed; trying the next one");
                    failures.push(error);
                }
                Err(error) => {
                    tracing::warn!(%error, kind = error.kind(), "provider failed; not retryable");
                    return Err(PromptError::NotRetryable {
                        operation: op,
                        error,
                        failures,
                    });
                }
            }
        }
        match (skipped, budget, failures.pop()) {
            (true, Some(budget), last) => {
                failures.extend(last);
                Err(PromptError::BudgetExhausted {
                    operation: op,
                    budget,
                    failures,
                })
            }
            (_, _, Some(last)) => Err(PromptError::AllFailed {
                operation: op,
                last,
                failures,
            }),
            (_, _, None) => Err(PromptError::NoProviders),
        }
    }
}

/// The prompt inside an answer: a JSON object's `next_prompt` or `prompt` string (inside a
/// Markdown code fence or not), else the answer itself.
fn extract_prompt(raw: &str) -> String {
    let mut body = raw.trim();
    if let Some(rest) = body.strip_prefix("```") {
        // Drop the fence line (it may name a language) and the closing fence.
        body = rest.split_once('\n').map_or("", |(_, b)| b);
        body = body.trim_end().trim_end_matches("```").trim();
    }
    if body.starts_with('{')
        && let Ok(serde_json::Value::Object(map)) = serde_json::from_str(body)
    {
        for key in ["next_prompt", "prompt"] {
            if let Some(serde_json::Value::String(s)) = map.get(key) {
                return s.trim().to_owned();
            }
        }
    }
    raw.trim().to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn extracts_json_prompts_and_keeps_plain_text() {
        assert_eq!(extract_prompt("  A fox.  "), "A fox.");
        assert_eq!(extract_prompt(r#"{"next_prompt": " A fox. "}"#), "A fox.");
        assert_eq!(extract_prompt(r#"{"prompt": "B"}"#), "B");
        assert_eq!(
            extract_prompt("```json\n{\"next_prompt\": \"C\"}\n```"),
            "C"
        );
        // JSON without a prompt field, or broken JSON, is returned as it came.
        assert_eq!(extract_prompt(r#"{"x": 1}"#), r#"{"x": 1}"#);
        assert_eq!(extract_prompt("{not json"), "{not json");
        assert_eq!(extract_prompt(""), "");
    }

    #[test]
    fn enhancer_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<PromptEnhancer>();
        let a = PromptEnhancer::offline();
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.inner, &b.inner));
    }
}
