//! Config of this crate: FastVideo's `streaming.prompt` / `streaming.safety` keys plus ours.
//! The server mounts both blocks under `streaming:`; [`PromptConfig::problems_at`] and
//! [`SafetyConfig::problems_at`] name keys with whatever prefix it mounts them at.

use crate::enhancer::{EnhancerSettings, PromptEnhancer, PromptError};
use crate::env::EnvSource;
use crate::provider::{
    CEREBRAS_API_KEY_ENV, CEREBRAS_BASE_URL, DEFAULT_MODEL, GROQ_API_KEY_ENV, GROQ_BASE_URL,
    LlmProvider, OpenAiCompatProvider, TemplateProvider,
};
use crate::safety::{
    DEFAULT_THRESHOLD, DEFAULT_UNSAFE_LABEL, FastTextClassifier, PromptSafetyFilter,
    SafetyClassifier, UnavailablePolicy, WordListClassifier,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Longest `timeout_ms` / `latency_budget_ms` accepted: 10 minutes.
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// Largest `max_tokens` accepted.
pub const MAX_TOKENS_LIMIT: u32 = 131_072;

/// One problem of a config, with the dotted path of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, e.g. `streaming.prompt.providers[1].base_url`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem of a config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ConfigError {
    /// One entry per problem.
    pub problems: Vec<ConfigProblem>,
}

struct Problems<'a> {
    prefix: &'a str,
    list: Vec<ConfigProblem>,
}

impl Problems<'_> {
    fn add(&mut self, key: impl fmt::Display, message: impl Into<String>) {
        let path = if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        };
        self.list.push(ConfigProblem {
            path,
            message: message.into(),
        });
    }
}

/// `prompt.provider` and `prompt.providers[].kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProviderKind {
    /// Cerebras (`https://api.cerebras.ai/v1`, `CEREBRAS_API_KEY`).
    Cerebras,
    /// Groq (`https://api.groq.com/openai/v1`, `GROQ_API_KEY`).
    Groq,
    /// Any OpenAI-compatible server; needs `base_url` and `api_key_env` (fv-stream addition).
    OpenaiCompat,
    /// The offline [`TemplateProvider`] (fv-stream addition).
    Template,
}

impl ProviderKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Cerebras => "cerebras",
            Self::Groq => "groq",
            Self::OpenaiCompat => "openai_compat",
            Self::Template => "template",
        }
    }

    fn preset(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Cerebras => Some((CEREBRAS_BASE_URL, CEREBRAS_API_KEY_ENV)),
            Self::Groq => Some((GROQ_BASE_URL, GROQ_API_KEY_ENV)),
            Self::OpenaiCompat | Self::Template => None,
        }
    }
}

/// One entry of `prompt.providers` (fv-stream addition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Which kind of provider.
    pub kind: ProviderKind,
    /// Name in results and metrics; default: the kind (`cerebras`, `groq`, `openai_compat`,
    /// `template`). Unique.
    #[serde(default)]
    pub name: Option<String>,
    /// API base URL (`.../v1`); required for `openai_compat`, overrides a preset's.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Variable holding the API key; required for `openai_compat`, overrides a preset's.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Model; default `prompt.model`.
    #[serde(default)]
    pub model: Option<String>,
    /// Lower is tried first; entries without one come after those with one, in list order.
    #[serde(default)]
    pub priority: Option<u32>,
}

impl ProviderConfig {
    /// An entry of `kind` with every optional key unset.
    pub fn new(kind: ProviderKind) -> Self {
        Self {
            kind,
            name: None,
            base_url: None,
            api_key_env: None,
            model: None,
            priority: None,
        }
    }

    fn effective_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.kind.as_str().to_owned())
    }
}

/// `streaming.prompt:`. FastVideo's keys are `enabled`, `provider`, `model`, `timeout_ms`,
/// `system_prompt_dir`; the rest are fv-stream additions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PromptConfig {
    /// Turn the enhancer on (default false).
    pub enabled: bool,
    /// The provider when `providers` is empty (default `cerebras`).
    pub provider: ProviderKind,
    /// Model of `provider`, and of `providers` entries without one (default `gpt-oss-120b`).
    pub model: String,
    /// Longest one provider attempt may take, ms, 1..=600000 (default 20000).
    pub timeout_ms: u64,
    /// Directory with `enhance.txt`, `auto_extend.txt`, `rewrite.txt`,
    /// `rewrite_window.txt`; edits through `/prompt-system-config` are saved there.
    pub system_prompt_dir: Option<String>,
    /// Providers in priority order; when non-empty it replaces `provider`.
    pub providers: Vec<ProviderConfig>,
    /// Sampling temperature, 0..=2 (default 0.7).
    pub temperature: f32,
    /// `max_tokens` of each request, 1..=131072 (default 256).
    pub max_tokens: u32,
    /// Longest a whole call may take, fallbacks included, ms, 0..=600000; 0 = no budget
    /// beyond `timeout_ms` per attempt (default 1500).
    pub latency_budget_ms: u64,
    /// Append the offline template provider as the last fallback unless one is listed
    /// (default true).
    pub offline_fallback: bool,
    /// How often the system-prompt files are checked for changes, ms; 0 = never, else
    /// 10..=3600000 (default 1000).
    pub reload_interval_ms: u64,
    /// Budget of one auto-extension call (the next prompt when nothing is queued), ms,
    /// 1..=600000 (default 3000, Dreamverse's auto-extension timeout).
    pub auto_extension_budget_ms: u64,
    /// Budget of one rewrite call and of enhancing a prompt appended on `/ws`, ms,
    /// 1..=600000 (default 20000, Dreamverse's).
    pub rewrite_budget_ms: u64,
}

impl Default for PromptConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            provider: ProviderKind::Cerebras,
            model: DEFAULT_MODEL.to_owned(),
            timeout_ms: 20_000,
            system_prompt_dir: None,
            providers: Vec::new(),
            temperature: 0.7,
            max_tokens: 256,
            latency_budget_ms: 1500,
            offline_fallback: true,
            reload_interval_ms: 1000,
            auto_extension_budget_ms: 3000,
            rewrite_budget_ms: 20_000,
        }
    }
}

fn valid_base_url(url: &str) -> bool {
    let u = url.trim().trim_end_matches('/');
    u.strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .is_some_and(|h| !h.is_empty() && !h.starts_with('/'))
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0']) && !name.contains(char::is_whitespace)
}

impl PromptConfig {
    /// [`problems_at`](Self::problems_at) with the prefix `prompt`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self.problems_at("prompt");
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Every problem, each key path starting with `prefix` (e.g. `streaming.prompt`).
    pub fn problems_at(&self, prefix: &str) -> Vec<ConfigProblem> {
        let mut p = Problems {
            prefix,
            list: Vec::new(),
        };
        if !(1..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            p.add("timeout_ms", format!("must be 1..={MAX_TIMEOUT_MS}"));
        }
        if !(self.temperature.is_finite() && (0.0..=2.0).contains(&self.temperature)) {
            p.add("temperature", "must be 0..=2");
        }
        if !(1..=MAX_TOKENS_LIMIT).contains(&self.max_tokens) {
            p.add("max_tokens", format!("must be 1..={MAX_TOKENS_LIMIT}"));
        }
        if self.latency_budget_ms > MAX_TIMEOUT_MS {
            p.add(
                "latency_budget_ms",
                format!("must be 0..={MAX_TIMEOUT_MS} (0: none)"),
            );
        }
        for (key, value) in [
            ("auto_extension_budget_ms", self.auto_extension_budget_ms),
            ("rewrite_budget_ms", self.rewrite_budget_ms),
        ] {
            if !(1..=MAX_TIMEOUT_MS).contains(&value) {
                p.add(key, format!("must be 1..={MAX_TIMEOUT_MS}"));
            }
        }
        if self.reload_interval_ms != 0 && !(10..=3_600_000).contains(&self.reload_interval_ms) {
            p.add("reload_interval_ms", "must be 0 (off) or 10..=3600000");
        }
        if self
            .system_prompt_dir
            .as_deref()
            .is_some_and(|d| d.trim().is_empty())
        {
            p.add("system_prompt_dir", "must not be blank (use null for none)");
        }
        if self.model.trim().is_empty() {
            p.add("model", "must not be blank");
        }
        if self.providers.is_empty() && self.provider == ProviderKind::OpenaiCompat {
            p.add(
                "provider",
                "openai_compat needs base_url and api_key_env: list it under providers",
            );
        }
        let mut names: Vec<String> = Vec::new();
        for (i, entry) in self.providers.iter().enumerate() {
            let at = |key: &str| format!("providers[{i}].{key}");
            if entry.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                p.add(at("name"), "must not be blank");
            }
            let name = entry.effective_name();
            if names.contains(&name) {
                p.add(at("name"), format!("duplicate provider name {name:?}"));
            }
            names.push(name);
            if entry.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
                p.add(at("model"), "must not be blank");
            }
            match (entry.kind, &entry.base_url) {
                (ProviderKind::Template, Some(_)) => {
                    p.add(at("base_url"), "not used by the template provider")
                }
                (ProviderKind::OpenaiCompat, None) => p.add(at("base_url"), "required"),
                (_, Some(url)) if !valid_base_url(url) => p.add(
                    at("base_url"),
                    "must be an http:// or https:// URL with a host",
                ),
                _ => {}
            }
            match (entry.kind, &entry.api_key_env) {
                (ProviderKind::Template, Some(_)) => {
                    p.add(at("api_key_env"), "not used by the template provider")
                }
                (ProviderKind::OpenaiCompat, None) => p.add(at("api_key_env"), "required"),
                (_, Some(name)) if !valid_env_name(name) => p.add(
                    at("api_key_env"),
                    "must be a variable name (no blanks, '=' or NUL)",
                ),
                _ => {}
            }
        }
        p.list
    }

    /// The providers in try order: `providers` sorted by priority (or `provider` alone),
    /// plus the template provider last when `offline_fallback` is on and none is listed.
    pub fn effective_providers(&self) -> Vec<ProviderConfig> {
        let mut list = if self.providers.is_empty() {
            vec![ProviderConfig::new(self.provider)]
        } else {
            let mut l = self.providers.clone();
            l.sort_by_key(|e| e.priority.unwrap_or(u32::MAX));
            l
        };
        if self.offline_fallback && !list.iter().any(|e| e.kind == ProviderKind::Template) {
            list.push(ProviderConfig::new(ProviderKind::Template));
        }
        list
    }

    /// The per-call settings this config asks for.
    pub fn settings(&self) -> EnhancerSettings {
        EnhancerSettings {
            timeout: Duration::from_millis(self.timeout_ms),
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            latency_budget: (self.latency_budget_ms > 0)
                .then(|| Duration::from_millis(self.latency_budget_ms)),
        }
    }

    /// [`auto_extension_budget_ms`](Self::auto_extension_budget_ms) as a duration.
    pub fn auto_extension_budget(&self) -> Duration {
        Duration::from_millis(self.auto_extension_budget_ms)
    }

    /// [`rewrite_budget_ms`](Self::rewrite_budget_ms) as a duration.
    pub fn rewrite_budget(&self) -> Duration {
        Duration::from_millis(self.rewrite_budget_ms)
    }

    /// The watcher interval, `None` when watching is off or there is no directory.
    pub fn reload_interval(&self) -> Option<Duration> {
        (self.reload_interval_ms > 0 && self.system_prompt_dir.is_some())
            .then(|| Duration::from_millis(self.reload_interval_ms))
    }

    /// Providers whose key variable is unset in `env`, as startup warnings (their calls will
    /// fail with a non-retryable missing-key error).
    pub fn key_warnings(&self, env: &dyn EnvSource) -> Vec<String> {
        self.effective_providers()
            .iter()
            .filter_map(|e| {
                let var = e
                    .api_key_env
                    .clone()
                    .or_else(|| e.kind.preset().map(|(_, v)| v.to_owned()))?;
                let set = env.var(&var).is_some_and(|v| !v.trim().is_empty());
                (!set).then(|| {
                    format!(
                        "prompt provider {}: {var} is not set; its calls will fail",
                        e.effective_name()
                    )
                })
            })
            .collect()
    }
}

impl PromptEnhancer {
    /// An enhancer as `config` describes it (validated first), reading API keys through
    /// `env`. It does not start the file watcher: call
    /// [`watch_system_prompts`](Self::watch_system_prompts) with
    /// [`PromptConfig::reload_interval`] inside a tokio runtime.
    pub fn from_config(
        config: &PromptConfig,
        env: Arc<dyn EnvSource>,
    ) -> Result<Self, PromptError> {
        config.validate().map_err(PromptError::Config)?;
        let mut providers: Vec<Arc<dyn LlmProvider>> = Vec::new();
        for entry in config.effective_providers() {
            let name = entry.effective_name();
            let model = entry.model.clone().unwrap_or_else(|| config.model.clone());
            let provider: Arc<dyn LlmProvider> = match entry.kind {
                ProviderKind::Template => Arc::new(TemplateProvider::new()),
                kind => {
                    let (preset_url, preset_env) = kind.preset().unwrap_or(("", ""));
                    let url = entry.base_url.as_deref().unwrap_or(preset_url);
                    let key_env = entry
                        .api_key_env
                        .clone()
                        .unwrap_or_else(|| preset_env.to_owned());
                    let p = OpenAiCompatProvider::new(name.clone(), url, key_env, model).map_err(
                        |e| PromptError::Provider {
                            path: format!("prompt.providers ({name})"),
                            message: e.to_string(),
                        },
                    )?;
                    Arc::new(p.with_env(env.clone()))
                }
            };
            providers.push(provider);
        }
        let settings = config.settings();
        match &config.system_prompt_dir {
            Some(dir) => Self::with_system_prompt_dir(providers, settings, dir),
            None => Self::new(providers, settings),
        }
    }
}

/// `streaming.safety:`. FastVideo's keys are `enabled` and `classifier_path`; the rest are
/// fv-stream additions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SafetyConfig {
    /// Turn the filter on (default false).
    pub enabled: bool,
    /// fastText `.bin` model (loaded at the first check).
    pub classifier_path: Option<String>,
    /// Score at or above which the unsafe label blocks, 0..=1 (default 0.5).
    pub threshold: f32,
    /// The fastText label that blocks, without `__label__` (default `unsafe`).
    pub unsafe_label: String,
    /// Words and phrases that block (case-insensitive, whole words).
    pub blocked_words: Vec<String>,
    /// Regular expressions that block (`regex` crate syntax).
    pub blocked_patterns: Vec<String>,
    /// What a check that could not run means: `allow` (FastVideo) or `block`.
    pub on_unavailable: UnavailablePolicy,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            classifier_path: None,
            threshold: DEFAULT_THRESHOLD,
            unsafe_label: DEFAULT_UNSAFE_LABEL.to_owned(),
            blocked_words: Vec::new(),
            blocked_patterns: Vec::new(),
            on_unavailable: UnavailablePolicy::Allow,
        }
    }
}

impl SafetyConfig {
    /// [`problems_at`](Self::problems_at) with the prefix `safety`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self.problems_at("safety");
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Every problem, each key path starting with `prefix` (e.g. `streaming.safety`).
    pub fn problems_at(&self, prefix: &str) -> Vec<ConfigProblem> {
        let mut p = Problems {
            prefix,
            list: Vec::new(),
        };
        if !(self.threshold.is_finite() && (0.0..=1.0).contains(&self.threshold)) {
            p.add("threshold", "must be 0..=1");
        }
        if self.unsafe_label.trim().is_empty() {
            p.add("unsafe_label", "must not be blank");
        }
        if self
            .classifier_path
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            p.add("classifier_path", "must not be blank (use null for none)");
        }
        // One compile reports the first bad word or pattern with its index.
        if let Err(e) = WordListClassifier::new(&self.blocked_words, &self.blocked_patterns) {
            let text = e.to_string();
            match text.split_once(": ") {
                Some((key, message)) => p.add(key, message),
                None => p.add("blocked_patterns", text),
            }
        }
        if self.enabled && self.on_unavailable == UnavailablePolicy::Block && !self.has_classifier()
        {
            p.add(
                "on_unavailable",
                "block needs a classifier (classifier_path, blocked_words or blocked_patterns)",
            );
        }
        p.list
    }

    fn has_classifier(&self) -> bool {
        self.classifier_path.is_some()
            || !self.blocked_words.is_empty()
            || !self.blocked_patterns.is_empty()
    }
}

impl PromptSafetyFilter {
    /// The filter `config` describes (validated first): disabled unless `enabled`; the word
    /// list first (cheap), then the fastText model. The model is not read here.
    pub fn from_config(config: &SafetyConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        if !config.enabled {
            return Ok(Self::disabled());
        }
        let mut classifiers: Vec<Arc<dyn SafetyClassifier>> = Vec::new();
        if !config.blocked_words.is_empty() || !config.blocked_patterns.is_empty() {
            let list = WordListClassifier::new(&config.blocked_words, &config.blocked_patterns)
                .map_err(|e| ConfigError {
                    problems: vec![ConfigProblem {
                        path: "safety".into(),
                        message: e.to_string(),
                    }],
                })?;
            classifiers.push(Arc::new(list));
        }
        if let Some(path) = &config.classifier_path {
            classifiers.push(Arc::new(
                FastTextClassifier::new(path)
                    .with_threshold(config.threshold)
                    .with_unsafe_label(&config.unsafe_label),
            ));
        }
        Ok(Self::new(classifiers, config.on_unavailable))
    }
}
