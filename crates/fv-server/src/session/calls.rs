//! The runtime side of prompt work: one LLM call within its budget, its answer checked by
//! the safety filter, and safety checks of client prompts.

use super::prompting::{Blocked, PromptAnswer, PromptCall, PromptDone, PromptFailure, PromptJob};
use fv_prompt::{CallOptions, PromptOutput, PromptSafetyFilter, PromptService, RewriteOptions};
use std::sync::Arc;
use std::time::Instant;

/// The prompt services a server holds (from `streaming.prompt` / `streaming.safety`).
#[derive(Debug, Clone)]
pub(crate) struct PromptDeps {
    /// `None` when `streaming.prompt.enabled` is false.
    pub service: Option<Arc<dyn PromptService>>,
    pub safety: PromptSafetyFilter,
}

fn one(out: PromptOutput) -> PromptAnswer {
    PromptAnswer {
        prompts: vec![out.text],
        raw: out.raw_output,
        provider: out.provider,
        model: out.model,
        fallback_used: out.fallback_used,
    }
}

/// Runs `job`: gives up after its budget (the caller then uses the raw prompt or reports the
/// failure), drops blank answers, and checks what came back with the safety filter.
pub(crate) async fn run_prompt(deps: PromptDeps, job: PromptJob) -> PromptDone {
    let started = Instant::now();
    let outcome = match &deps.service {
        None => Err(PromptFailure::Disabled),
        Some(service) => {
            let call = CallOptions::with_budget(job.budget);
            let work = async {
                match &job.call {
                    PromptCall::Enhance { prompt } => {
                        service.enhance_with(prompt, &call).await.map(one)
                    }
                    PromptCall::AutoExtend { prior } => {
                        service.auto_extend_with(prior, &call).await.map(one)
                    }
                    PromptCall::Rewrite {
                        instruction,
                        window,
                        count,
                        model,
                        temperature,
                    } => {
                        let options = RewriteOptions {
                            count: *count,
                            window: window.clone(),
                            temperature: temperature.map(|t| t as f32),
                            model: model.clone(),
                            call,
                            ..RewriteOptions::default()
                        };
                        service
                            .rewrite(instruction, &options)
                            .await
                            .map(|r| PromptAnswer {
                                prompts: r.prompts,
                                raw: r.output.raw_output,
                                provider: r.output.provider,
                                model: r.output.model,
                                fallback_used: r.output.fallback_used,
                            })
                    }
                }
            };
            // The enhancer keeps to the budget itself; this bound also covers a provider that
            // ignores its timeout, so the worker never waits longer than the budget.
            match tokio::time::timeout(job.budget, work).await {
                Err(_) => Err(PromptFailure::OverBudget(job.budget)),
                // The enhancer tries its offline providers once the budget is spent; an answer
                // that only came after the budget counts as over it, so the outcome does not
                // depend on which of the two finished first.
                Ok(_) if started.elapsed() >= job.budget => {
                    Err(PromptFailure::OverBudget(job.budget))
                }
                Ok(Err(e)) => Err(PromptFailure::Failed(e.to_string())),
                Ok(Ok(answer)) => Ok(answer),
            }
        }
    };
    let outcome = outcome.and_then(|mut answer| {
        answer.prompts = answer
            .prompts
            .into_iter()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        if answer.prompts.is_empty() {
            Err(PromptFailure::Empty)
        } else {
            Ok(answer)
        }
    });
    let outcome = match outcome {
        Ok(answer) if deps.safety.is_enabled() => {
            match check(&deps.safety, &answer.prompts).await {
                Some(blocked) => Err(PromptFailure::Blocked(blocked)),
                None => Ok(answer),
            }
        }
        other => other,
    };
    PromptDone {
        id: job.id,
        latency: started.elapsed(),
        outcome,
    }
}

/// The first of `prompts` the filter blocks.
pub(crate) async fn check(safety: &PromptSafetyFilter, prompts: &[String]) -> Option<Blocked> {
    safety.first_blocked(prompts).await.map(|b| Blocked {
        index: b.index,
        reason: b.verdict.reason,
    })
}
