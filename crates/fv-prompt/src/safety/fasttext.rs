//! A fastText supervised model (`.bin`, as written by fastText's `supervised` command), as
//! FastVideo's safety filter uses one.

use super::{Classification, ClassifierError, SafetyClassifier};
use ::fasttext::FastText;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Score at or above which the unsafe label blocks (FastVideo's default).
pub const DEFAULT_THRESHOLD: f32 = 0.5;
/// The label that blocks, without `__label__` (FastVideo's).
pub const DEFAULT_UNSAFE_LABEL: &str = "unsafe";

/// Whether the model has been loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelState {
    /// Not tried yet.
    NotLoaded,
    /// Loaded.
    Loaded,
    /// Loading failed; it is not tried again.
    Failed(String),
}

/// fastText classifier: newlines become spaces, the top-1 label (without `__label__`) blocks
/// when it is the unsafe label with a score at or above the threshold. The model is loaded
/// once, at the first check or [`prepare`](SafetyClassifier::prepare), thread-safely; a failed
/// load (missing file, not a fastText model, no labels) is never retried, and every check then
/// answers "unavailable".
pub struct FastTextClassifier {
    path: PathBuf,
    threshold: f32,
    unsafe_label: String,
    model: OnceLock<Result<FastText, String>>,
}

impl fmt::Debug for FastTextClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastTextClassifier")
            .field("path", &self.path)
            .field("threshold", &self.threshold)
            .field("unsafe_label", &self.unsafe_label)
            .field("state", &self.state())
            .finish()
    }
}

impl FastTextClassifier {
    /// A classifier for the model at `path` (not read yet), threshold 0.5, label `unsafe`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            threshold: DEFAULT_THRESHOLD,
            unsafe_label: DEFAULT_UNSAFE_LABEL.to_owned(),
            model: OnceLock::new(),
        }
    }

    /// Blocks at scores of at least `threshold`.
    #[must_use]
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        self.threshold = threshold;
        self
    }

    /// Blocks on `label` (given with or without `__label__`).
    #[must_use]
    pub fn with_unsafe_label(mut self, label: impl AsRef<str>) -> Self {
        self.unsafe_label = strip_label(label.as_ref()).to_owned();
        self
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the model is loaded, failed, or not tried yet.
    pub fn state(&self) -> ModelState {
        match self.model.get() {
            None => ModelState::NotLoaded,
            Some(Ok(_)) => ModelState::Loaded,
            Some(Err(e)) => ModelState::Failed(e.clone()),
        }
    }

    fn model(&self) -> Result<&FastText, ClassifierError> {
        self.model
            .get_or_init(|| load(&self.path))
            .as_ref()
            .map_err(|e| ClassifierError(e.clone()))
    }
}

fn load(path: &Path) -> Result<FastText, String> {
    let shown = path.display();
    // A corrupt file must not take the server down: contain a panic in the loader.
    let loaded = catch_unwind(AssertUnwindSafe(|| FastText::load_model(path)))
        .map_err(|_| format!("{shown}: not a readable fastText model"))?
        .map_err(|e| format!("{shown}: {e}"))?;
    if loaded.get_labels().0.is_empty() {
        return Err(format!(
            "{shown}: the model has no labels (not a supervised classifier)"
        ));
    }
    tracing::info!(path = %shown, "fastText safety model loaded");
    Ok(loaded)
}

fn strip_label(label: &str) -> &str {
    label.strip_prefix("__label__").unwrap_or(label)
}

impl SafetyClassifier for FastTextClassifier {
    fn name(&self) -> &str {
        "fasttext"
    }

    fn is_ready(&self) -> bool {
        self.model.get().is_some()
    }

    fn prepare(&self) -> Result<(), ClassifierError> {
        self.model().map(|_| ())
    }

    fn classify(&self, text: &str) -> Result<Classification, ClassifierError> {
        let model = self.model()?;
        // fastText reads one line per prediction.
        let line = text.replace(['\n', '\r'], " ");
        let predictions = catch_unwind(AssertUnwindSafe(|| model.predict(&line, 1, 0.0)))
            .map_err(|_| ClassifierError("fastText prediction failed".into()))?;
        let Some(top) = predictions.first() else {
            // Nothing to classify (blank text): nothing to block.
            return Ok(Classification {
                blocked: false,
                label: None,
                score: None,
                detail: None,
            });
        };
        let label = strip_label(&top.label).to_owned();
        let blocked = label == self.unsafe_label && top.prob >= self.threshold;
        Ok(Classification {
            blocked,
            detail: blocked.then(|| format!("label {label} scored {:.3}", top.prob)),
            label: Some(label),
            score: Some(top.prob),
        })
    }
}
