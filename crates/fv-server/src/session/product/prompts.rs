//! The product director's prompt work: appended prompts (`append_prompt`, enhanced one at a
//! time), seed-prompt rewrites (`rewrite_seed_prompts` and a typed prompt's initial rewrite),
//! and the answers of every prompt call (enhancement, auto-extension, rewrite).

use super::{Appended, ReadyPrompt, Rewrite};
use crate::error::{Failure, ProductRefusal};
use crate::session::event::{ProductEvent, PromptOrigin, ResetReason, RewriteReport};
use crate::session::machine::{Action, SessionMachine};
use crate::session::prompting::{Auto, Checked, PromptCall, PromptDone, PromptFailure, PromptJob};
use serde_json::json;

/// Prompts a rewrite writes when there is no window to edit (a new rollout).
pub const NEW_ROLLOUT_PROMPTS: usize = 6;
/// What a client is told when enhancing its appended prompt failed (Dreamverse's words).
const ENHANCE_FAILED: &str = "Prompt extension failed for this request.";

impl SessionMachine {
    pub(super) fn append(&mut self, prompt_id: Option<String>, prompt: String) {
        if !self.project_open() {
            return self.fail(ProductRefusal::NoProject.into());
        }
        if self.product.waiting_for_rewrite {
            return self.fail(ProductRefusal::UseRewrite.into());
        }
        let prompt = prompt.trim().to_owned();
        if prompt.is_empty() {
            return self.fail(ProductRefusal::EmptyAppend.into());
        }
        if prompt.len() > crate::session::MAX_PROMPT_BYTES {
            return self.fail(Failure::OutOfRange(format!(
                "append_prompt.prompt: {} bytes is longer than the {} byte limit",
                prompt.len(),
                crate::session::MAX_PROMPT_BYTES
            )));
        }
        if self.product.raw.len() + self.product.ready.len() >= crate::session::MAX_PENDING_SEGMENTS
        {
            return self.fail(Failure::TooManyPending(
                crate::session::MAX_PENDING_SEGMENTS,
            ));
        }
        let prompt_id = match prompt_id {
            Some(id) => id,
            None => format!("prompt-{}", self.job_id()),
        };
        if self.config.streaming.safety.enabled {
            self.actions.push(Action::CheckSafety {
                prompts: vec![prompt.clone()],
                then: Checked::Append { prompt_id, prompt },
            });
        } else {
            self.accept_append(prompt_id, prompt);
        }
    }

    pub(super) fn accept_append(&mut self, prompt_id: String, prompt: String) {
        let dv = &self.product;
        let queue_depth =
            crate::session::machine::saturating_u32(dv.raw.len() + dv.ready.len() + 1);
        self.prompt(ProductEvent::PromptReceived {
            prompt_id: prompt_id.clone(),
            queue_depth,
        });
        if self.product.enhance_on && self.config.streaming.prompt.enabled {
            self.product.raw.push_back(Appended {
                prompt_id,
                prompt,
                job: None,
            });
            self.enhance_next_append();
        } else {
            self.prompt(ProductEvent::PromptReady {
                prompt_id: prompt_id.clone(),
                prompt: prompt.clone(),
                source: PromptOrigin::UserRaw,
                latency_ms: 0.0,
            });
            self.product.ready.push_back(ReadyPrompt {
                prompt_id,
                prompt,
                source: PromptOrigin::UserRaw,
            });
            self.pump();
        }
    }

    /// Appended prompts are enhanced one at a time, in order.
    fn enhance_next_append(&mut self) {
        if self.product.raw.front().is_none_or(|a| a.job.is_some()) {
            return;
        }
        let id = self.job_id();
        let budget = self.config.streaming.prompt.rewrite_budget();
        let Some(head) = self.product.raw.front_mut() else {
            return;
        };
        head.job = Some(id);
        let (prompt_id, prompt) = (head.prompt_id.clone(), head.prompt.clone());
        self.prompt(ProductEvent::PromptEnhancing { prompt_id });
        self.actions.push(Action::Prompt(PromptJob {
            id,
            call: PromptCall::Enhance { prompt },
            budget,
        }));
    }

    pub(super) fn rewrite_model_name(&self) -> String {
        if let Some(model) = &self.product.rewrite_model {
            return model.clone();
        }
        let prompt = &self.config.streaming.prompt;
        if !prompt.enabled {
            return "none".to_owned();
        }
        prompt
            .effective_providers()
            .first()
            .map(|p| match p.kind {
                fv_prompt::ProviderKind::Template => "template".to_owned(),
                _ => p.model.clone().unwrap_or_else(|| prompt.model.clone()),
            })
            .unwrap_or_default()
    }

    pub(super) fn rewrite_asked(&mut self, instruction: String, window: Vec<String>) {
        if !self.project_open() {
            return self.fail(ProductRefusal::NoProject.into());
        }
        if self.product.rewrite.is_some() {
            return self.fail(ProductRefusal::RewriteInProgress.into());
        }
        if self.product.seeds.is_empty() {
            return self.fail(ProductRefusal::NoSeeds.into());
        }
        let instruction = instruction.trim().to_owned();
        if instruction.is_empty() {
            return self.fail(ProductRefusal::NoInstruction.into());
        }
        let window = if window.is_empty() {
            self.product.seeds.clone()
        } else {
            window
        };
        self.start_rewrite(instruction, window, false);
    }

    pub(super) fn start_rewrite(
        &mut self,
        instruction: String,
        window: Vec<String>,
        initial: bool,
    ) {
        let id = self.job_id();
        let model = self.rewrite_model_name();
        self.prompt(ProductEvent::RewriteStarted { model });
        let count = if window.is_empty() {
            NEW_ROLLOUT_PROMPTS
        } else {
            window.len()
        };
        self.actions.push(Action::Prompt(PromptJob {
            id,
            call: PromptCall::Rewrite {
                instruction: instruction.clone(),
                window: window.clone(),
                count,
                model: self.product.rewrite_model.clone(),
                temperature: self.product.rewrite_temperature,
            },
            budget: self.config.streaming.prompt.rewrite_budget(),
        }));
        self.product.rewrite = Some(Rewrite {
            id,
            instruction,
            window,
            initial,
            during_generation: self.running,
        });
    }

    pub(in crate::session) fn product_prompt_done(&mut self, done: PromptDone) {
        let latency_ms = done.latency_ms();
        let dv = &self.product;
        if dv.raw.front().and_then(|a| a.job) == Some(done.id) {
            let Some(head) = self.product.raw.pop_front() else {
                return;
            };
            match done.outcome {
                Ok(answer) => {
                    let prompt = answer.prompts.into_iter().next().unwrap_or_default();
                    self.prompt(ProductEvent::PromptReady {
                        prompt_id: head.prompt_id.clone(),
                        prompt: prompt.clone(),
                        source: PromptOrigin::UserEnhanced,
                        latency_ms,
                    });
                    self.product.ready.push_back(ReadyPrompt {
                        prompt_id: head.prompt_id,
                        prompt,
                        source: PromptOrigin::UserEnhanced,
                    });
                }
                Err(failure) => {
                    self.log(
                        "append_enhancement_failed",
                        json!({"prompt_id": head.prompt_id, "error": failure.to_string()}),
                    );
                    self.prompt(ProductEvent::PromptFallbackUsed {
                        prompt_id: head.prompt_id,
                        latency_ms,
                        error: ENHANCE_FAILED.to_owned(),
                    });
                }
            }
            self.enhance_next_append();
            return self.pump();
        }
        if dv.auto == Auto::Waiting(done.id) {
            match done.outcome {
                Ok(answer) => {
                    metrics::counter!(crate::metrics::AUTO_EXTENSIONS_TOTAL, "outcome" => "ok")
                        .increment(1);
                    self.product.auto = Auto::Idle;
                    self.product.auto_ready = answer.prompts.into_iter().next();
                }
                Err(failure) => {
                    metrics::counter!(crate::metrics::AUTO_EXTENSIONS_TOTAL, "outcome" => failure.kind())
                        .increment(1);
                    self.product.auto = Auto::Failed;
                    let segment_idx = self.product.rollout_idx;
                    self.prompt(ProductEvent::AutoPromptFailed {
                        segment_idx,
                        latency_ms,
                        error: failure.to_string(),
                    });
                }
            }
            return self.pump();
        }
        if dv.rewrite.as_ref().is_some_and(|r| r.id == done.id) {
            if let Some(rewrite) = self.product.rewrite.take() {
                self.rewrite_done(rewrite, done);
            }
            self.pump();
        }
        // An abandoned call (reset, project end, toggle): nothing waits for it.
    }

    fn rewrite_done(&mut self, rw: Rewrite, done: PromptDone) {
        let latency_ms = done.latency_ms();
        let dv = &self.product;
        let mut report = RewriteReport {
            prompts: Vec::new(),
            preset_id: dv.preset_id.clone(),
            preset_label: dv.preset_label.clone(),
            fallback_used: false,
            error: None,
            model: self.rewrite_model_name(),
            latency_ms,
            raw_llm_output: None,
            instruction: rw.instruction.clone(),
        };
        if rw.initial {
            self.prompt(ProductEvent::PausedUpdated(self.product.paused));
        }
        match done.outcome {
            Ok(answer) => {
                report.prompts = answer.prompts;
                report.model = answer.model;
                report.raw_llm_output = Some(answer.raw);
                self.product.seeds = report.prompts.clone();
                self.prompt(ProductEvent::SeedsRewritten(Box::new(report.clone())));
                self.prompt(ProductEvent::RewriteComplete(Box::new(report)));
                let dv = self.dv();
                if rw.initial {
                    dv.pending_reset = Some(ResetReason::InitialRewrite);
                } else if dv.waiting_for_rewrite {
                    dv.waiting_for_rewrite = false;
                    dv.pending_reset = Some(ResetReason::RewriteRollout);
                    self.session.restart_segment_count();
                } else if rw.during_generation {
                    dv.pending_reset = Some(ResetReason::RewriteDuringGeneration);
                    self.session.restart_segment_count();
                } else {
                    // Between segments: the new list goes on from the current position.
                    dv.seed_next = dv.seed_next.min(dv.seeds.len());
                }
            }
            Err(PromptFailure::Blocked(b)) => {
                self.log_blocked("rewrite", &b);
                report.fallback_used = true;
                report.error = Some(format!(
                    "Prompt safety filter blocked rewritten prompt {}. {}",
                    b.index + 1,
                    b.reason
                ));
                self.prompt(ProductEvent::RewriteComplete(Box::new(report)));
                if rw.initial {
                    self.product.pending_reset = Some(ResetReason::InitialRewrite);
                }
            }
            Err(failure) => {
                report.fallback_used = true;
                report.error = Some(failure.to_string());
                // The submitted window stays; a project's typed prompt becomes its only seed
                // prompt (Dreamverse would keep an empty list and block).
                report.prompts = if rw.initial {
                    vec![rw.instruction.clone()]
                } else {
                    rw.window.clone()
                };
                self.prompt(ProductEvent::SeedsRewritten(Box::new(report.clone())));
                if rw.initial {
                    self.product.seeds = report.prompts.clone();
                    self.product.pending_reset = Some(ResetReason::InitialRewrite);
                }
                self.prompt(ProductEvent::RewriteComplete(Box::new(report)));
            }
        }
    }
}
