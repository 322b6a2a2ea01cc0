//! The trait a session director calls, so a server can hold any prompt backend.

use crate::calls::{CallOptions, PromptError, PromptOutput, RewriteOutput};
use crate::enhancer::PromptEnhancer;
use crate::rewrite::RewriteOptions;
use async_trait::async_trait;
use std::fmt;

/// The prompt operations a session director needs, as a trait so a server can hold
/// `Arc<dyn PromptService>` and tests can substitute their own. [`PromptEnhancer`]
/// implements it.
#[async_trait]
pub trait PromptService: Send + Sync + fmt::Debug {
    /// [`PromptEnhancer::enhance_with`].
    async fn enhance_with(
        &self,
        prompt: &str,
        call: &CallOptions,
    ) -> Result<PromptOutput, PromptError>;

    /// [`PromptEnhancer::auto_extend_with`].
    async fn auto_extend_with(
        &self,
        prior_prompts: &[String],
        call: &CallOptions,
    ) -> Result<PromptOutput, PromptError>;

    /// [`PromptEnhancer::rewrite`].
    async fn rewrite(
        &self,
        seed: &str,
        options: &RewriteOptions,
    ) -> Result<RewriteOutput, PromptError>;
}

#[async_trait]
impl PromptService for PromptEnhancer {
    async fn enhance_with(
        &self,
        prompt: &str,
        call: &CallOptions,
    ) -> Result<PromptOutput, PromptError> {
        PromptEnhancer::enhance_with(self, prompt, call).await
    }

    async fn auto_extend_with(
        &self,
        prior_prompts: &[String],
        call: &CallOptions,
    ) -> Result<PromptOutput, PromptError> {
        PromptEnhancer::auto_extend_with(self, prior_prompts, call).await
    }

    async fn rewrite(
        &self,
        seed: &str,
        options: &RewriteOptions,
    ) -> Result<RewriteOutput, PromptError> {
        PromptEnhancer::rewrite(self, seed, options).await
    }
}
