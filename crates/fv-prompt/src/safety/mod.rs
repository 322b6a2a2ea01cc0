//! Prompt safety: classifiers behind a trait, one filter that asks them in order.

mod fasttext;
mod words;

pub use self::fasttext::{DEFAULT_THRESHOLD, DEFAULT_UNSAFE_LABEL, FastTextClassifier, ModelState};
pub use self::words::{WordListClassifier, WordListError};

use crate::metrics as m;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// What a safety check decided (FastVideo's `SafetyDecision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SafetyDecision {
    /// No classifier objects.
    Allow,
    /// A classifier flagged the prompt.
    Block,
    /// The filter is disabled, or a classifier could not answer (model missing, failed to
    /// load, failed to predict) and none blocked. [`UnavailablePolicy`] says what it means.
    Unavailable,
}

impl SafetyDecision {
    /// Label: `allow`, `block`, `unavailable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Block => "block",
            Self::Unavailable => "unavailable",
        }
    }
}

/// What [`SafetyDecision::Unavailable`] means for an enabled filter.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UnavailablePolicy {
    /// Let the prompt through (FastVideo's behaviour).
    #[default]
    Allow,
    /// Refuse the prompt (fail closed).
    Block,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct SafetyVerdict {
    /// The decision.
    pub decision: SafetyDecision,
    /// Classifier that blocked, or that was unavailable.
    pub classifier: Option<String>,
    /// Its label (e.g. `unsafe`), when it has one.
    pub label: Option<String>,
    /// Its score for that label, when it has one.
    pub score: Option<f32>,
    /// Why, for logs.
    pub reason: String,
}

impl SafetyVerdict {
    fn new(decision: SafetyDecision, reason: impl Into<String>) -> Self {
        Self {
            decision,
            classifier: None,
            label: None,
            score: None,
            reason: reason.into(),
        }
    }
}

/// One classifier's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// Whether the prompt must be blocked.
    pub blocked: bool,
    /// Top label, if the classifier has labels.
    pub label: Option<String>,
    /// Its score.
    pub score: Option<f32>,
    /// What matched, for logs.
    pub detail: Option<String>,
}

/// Why a classifier could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ClassifierError(pub String);

/// A prompt classifier. Calls are blocking; [`PromptSafetyFilter::check`] moves them off the
/// async threads while a classifier is not [`ready`](SafetyClassifier::is_ready).
pub trait SafetyClassifier: Send + Sync + fmt::Debug {
    /// Name for verdicts and logs.
    fn name(&self) -> &str;

    /// Whether [`classify`](SafetyClassifier::classify) can answer without slow work (e.g.
    /// loading a model). Default: true.
    fn is_ready(&self) -> bool {
        true
    }

    /// Does the slow one-time work (loading a model). Default: nothing.
    fn prepare(&self) -> Result<(), ClassifierError> {
        Ok(())
    }

    /// Classifies `text`.
    fn classify(&self, text: &str) -> Result<Classification, ClassifierError>;
}

/// A prompt and the verdict that blocked it.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockedPrompt {
    /// 0-based position in the list checked.
    pub index: usize,
    /// The prompt.
    pub prompt: String,
    /// Why it was blocked.
    pub verdict: SafetyVerdict,
}

/// Asks its classifiers in order: the first to block decides; an unavailable classifier
/// makes the decision [`Unavailable`](SafetyDecision::Unavailable) unless a later one
/// blocks; otherwise [`Allow`](SafetyDecision::Allow). Cheap to clone, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct PromptSafetyFilter {
    classifiers: Arc<[Arc<dyn SafetyClassifier>]>,
    on_unavailable: UnavailablePolicy,
}

impl PromptSafetyFilter {
    /// A filter over `classifiers` (none: the filter is disabled).
    pub fn new(
        classifiers: Vec<Arc<dyn SafetyClassifier>>,
        on_unavailable: UnavailablePolicy,
    ) -> Self {
        Self {
            classifiers: classifiers.into(),
            on_unavailable,
        }
    }

    /// A disabled filter: every check is [`Unavailable`](SafetyDecision::Unavailable) and
    /// nothing is blocked, whatever the policy.
    pub fn disabled() -> Self {
        Self::new(Vec::new(), UnavailablePolicy::Allow)
    }

    /// Whether any classifier is configured.
    pub fn is_enabled(&self) -> bool {
        !self.classifiers.is_empty()
    }

    /// What `Unavailable` means.
    pub fn on_unavailable(&self) -> UnavailablePolicy {
        self.on_unavailable
    }

    /// Whether `verdict` stops the prompt: `Block` always; `Unavailable` when the filter is
    /// enabled and the policy is [`UnavailablePolicy::Block`].
    pub fn blocks(&self, verdict: &SafetyVerdict) -> bool {
        match verdict.decision {
            SafetyDecision::Block => true,
            SafetyDecision::Unavailable => {
                self.is_enabled() && self.on_unavailable == UnavailablePolicy::Block
            }
            _ => false,
        }
    }

    /// Checks one prompt on the current thread (may load a model the first time).
    pub fn check_blocking(&self, prompt: &str) -> SafetyVerdict {
        let verdict = self.decide(prompt);
        m::safety(verdict.decision.as_str());
        if verdict.decision != SafetyDecision::Allow {
            tracing::debug!(
                decision = verdict.decision.as_str(),
                classifier = verdict.classifier.as_deref(),
                reason = %verdict.reason,
                "prompt safety"
            );
        }
        verdict
    }

    fn decide(&self, prompt: &str) -> SafetyVerdict {
        if !self.is_enabled() {
            return SafetyVerdict::new(SafetyDecision::Unavailable, "safety filter disabled");
        }
        let mut unavailable = None;
        for c in self.classifiers.iter() {
            match c.prepare().and_then(|()| c.classify(prompt)) {
                Ok(cl) if cl.blocked => {
                    let reason = match &cl.detail {
                        Some(d) => format!("blocked by {}: {d}", c.name()),
                        None => format!("blocked by {}", c.name()),
                    };
                    return SafetyVerdict {
                        decision: SafetyDecision::Block,
                        classifier: Some(c.name().to_owned()),
                        label: cl.label,
                        score: cl.score,
                        reason,
                    };
                }
                Ok(_) => {}
                Err(e) => {
                    unavailable.get_or_insert_with(|| SafetyVerdict {
                        classifier: Some(c.name().to_owned()),
                        ..SafetyVerdict::new(
                            SafetyDecision::Unavailable,
                            format!("{} unavailable: {e}", c.name()),
                        )
                    });
                }
            }
        }
        unavailable.unwrap_or_else(|| SafetyVerdict::new(SafetyDecision::Allow, "allowed"))
    }

    /// Checks one prompt; a classifier that still has to load its model does so on a
    /// blocking thread.
    pub async fn check(&self, prompt: &str) -> SafetyVerdict {
        if self.classifiers.iter().all(|c| c.is_ready()) {
            return self.check_blocking(prompt);
        }
        let filter = self.clone();
        let prompt = prompt.to_owned();
        tokio::task::spawn_blocking(move || filter.check_blocking(&prompt))
            .await
            .unwrap_or_else(|e| {
                m::safety(SafetyDecision::Unavailable.as_str());
                SafetyVerdict::new(
                    SafetyDecision::Unavailable,
                    format!("safety check failed: {e}"),
                )
            })
    }

    /// Loads every classifier's model now (on a blocking thread) instead of at the first
    /// check; returns the first classifier error. A failed load is not retried later.
    pub async fn preload(&self) -> Result<(), ClassifierError> {
        let classifiers = self.classifiers.clone();
        tokio::task::spawn_blocking(move || classifiers.iter().try_for_each(|c| c.prepare()))
            .await
            .map_err(|e| ClassifierError(format!("preload failed: {e}")))?
    }

    /// The first prompt that [`blocks`](Self::blocks) (FastVideo's `first_blocked`, which
    /// Dreamverse uses on the curated prompts of `session_init_v2`).
    pub async fn first_blocked(&self, prompts: &[String]) -> Option<BlockedPrompt> {
        for (index, prompt) in prompts.iter().enumerate() {
            let verdict = self.check(prompt).await;
            if self.blocks(&verdict) {
                return Some(BlockedPrompt {
                    index,
                    prompt: prompt.clone(),
                    verdict,
                });
            }
        }
        None
    }

    /// [`first_blocked`](Self::first_blocked) on the current thread.
    pub fn first_blocked_blocking(&self, prompts: &[String]) -> Option<BlockedPrompt> {
        prompts.iter().enumerate().find_map(|(index, prompt)| {
            let verdict = self.check_blocking(prompt);
            self.blocks(&verdict).then(|| BlockedPrompt {
                index,
                prompt: prompt.clone(),
                verdict,
            })
        })
    }
}
