//! Prompt work of the session core: the calls the runtime makes for the directors (LLM calls
//! with a budget, safety checks) and the `/v1/stream` director.
//!
//! `/v1/stream` stays client-driven: the client's `segment_prompt_source` requests run in
//! order. What the FastVideo toggles add (issue 11; upstream stores them and ignores them):
//!
//! * enhancement on: the prompt at the head of the queue is enhanced as soon as it is the
//!   head — while the previous segment still runs — within `streaming.prompt.latency_budget_ms`
//!   counted from the call's start; when the call fails or runs out of budget the raw prompt
//!   runs and the session log says so. The worker waits at most one budget for it.
//! * loop on: when the queue is empty the seed prompts (`curated_prompts`, replaced by
//!   `seed_prompts_updated`) run in turn, round and round, up to the segment cap.
//! * auto-extension on: when the queue is empty (and loop has nothing), the next prompt is
//!   written by the LLM from the prompts run so far; a failed call is logged and not retried
//!   until the toggle is set again or the client sends a prompt.
//! * paused: no segment starts; the one in flight finishes.
//! * safety on: a blocked `segment_prompt_source` or seed list gets an `error` frame
//!   (`prompt_blocked`) and is dropped; blocked init prompts close the session with 1008.

use super::event::{ClientMsg, InitRequest, SegmentAsk};
use super::machine::{Action, SessionMachine};
use crate::error::{EndReason, Failure};
use crate::metrics as m;
use fv_protocol::StreamCompleteReason;
use fv_session::Toggle;
use serde_json::json;
use std::time::{Duration, Instant};

/// Prompts kept for auto-extension's context (the most recent ones).
pub const MAX_PROMPT_HISTORY: usize = 32;

/// A validated segment request waiting for its turn.
#[derive(Debug)]
pub(crate) struct Pending {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub seed: i64,
    pub steps: u32,
    pub guidance: f64,
    pub received: Instant,
    pub enhance: Enhance,
}

/// Where a queued prompt is with enhancement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Enhance {
    /// Not asked for (yet).
    Raw,
    /// Call `id` is running.
    Waiting(u64),
    /// Enhanced text to run.
    Done(String),
    /// Runs as it is (written by the LLM already, or enhancement failed).
    Keep,
}

/// One LLM call for the runtime to make.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PromptJob {
    pub id: u64,
    pub call: PromptCall,
    /// The longest the call may take; the runtime gives up after it.
    pub budget: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PromptCall {
    Enhance {
        prompt: String,
    },
    AutoExtend {
        prior: Vec<String>,
    },
    Rewrite {
        instruction: String,
        window: Vec<String>,
        count: usize,
        model: Option<String>,
        temperature: Option<f64>,
    },
}

/// What a prompt call produced.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PromptDone {
    pub id: u64,
    pub latency: Duration,
    pub outcome: Result<PromptAnswer, PromptFailure>,
}

impl PromptDone {
    pub(crate) fn latency_ms(&self) -> f64 {
        self.latency.as_secs_f64() * 1000.0
    }
}

/// A successful call: one prompt (enhance, auto-extend) or several (rewrite).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PromptAnswer {
    pub prompts: Vec<String>,
    pub raw: String,
    pub provider: String,
    pub model: String,
    pub fallback_used: bool,
}

/// Why a call produced no prompt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PromptFailure {
    /// `streaming.prompt.enabled` is false.
    Disabled,
    /// The budget ran out.
    OverBudget(Duration),
    /// Every provider failed, or the input was refused.
    Failed(String),
    /// The answer had no usable prompt.
    Empty,
    /// The safety filter blocked prompt `index` of the answer.
    Blocked(Blocked),
}

impl PromptFailure {
    /// A short label for metrics and logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            PromptFailure::Disabled => "disabled",
            PromptFailure::OverBudget(_) => "over_budget",
            PromptFailure::Failed(_) => "failed",
            PromptFailure::Empty => "empty",
            PromptFailure::Blocked(_) => "blocked",
        }
    }
}

impl std::fmt::Display for PromptFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PromptFailure::Disabled => f.write_str("the prompt enhancer is disabled"),
            PromptFailure::OverBudget(b) => {
                write!(f, "no answer within the {} ms budget", b.as_millis())
            }
            PromptFailure::Failed(e) => f.write_str(e),
            PromptFailure::Empty => f.write_str("the LLM returned no prompt"),
            PromptFailure::Blocked(b) => write!(
                f,
                "Prompt safety filter blocked generated prompt {}. {}",
                b.index + 1,
                b.reason
            ),
        }
    }
}

/// A prompt the safety filter blocked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Blocked {
    /// 0-based position in the list checked.
    pub index: usize,
    pub reason: String,
}

/// What waits on a safety check (handed to the runtime and back).
#[derive(Debug)]
pub(crate) enum Checked {
    /// The prompts of `session_init_v2`.
    Init(Box<InitRequest>),
    /// A `segment_prompt_source` prompt.
    Segment(Pending),
    /// A `seed_prompts_updated` list.
    Seeds(Vec<String>),
    /// `/ws` `append_prompt`.
    Append { prompt_id: String, prompt: String },
    /// `/ws` `project_init_v1`.
    ProjectInit(Box<InitRequest>),
}

/// Auto-extension's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Auto {
    #[default]
    Idle,
    Waiting(u64),
    /// The last call failed: not retried until the toggle is set or another prompt arrives.
    Failed,
}

/// The `/v1/stream` director's state beyond the request queue.
#[derive(Debug, Default)]
pub(crate) struct V1Director {
    /// Next seed prompt for loop generation.
    seed_next: usize,
    /// Prompts run so far, newest last (auto-extension's context).
    history: Vec<String>,
    auto: Auto,
}

impl SessionMachine {
    pub(super) fn v1_message(&mut self, msg: ClientMsg) {
        match msg {
            // A second init is valid and ignored, as upstream does.
            ClientMsg::Init(_) => tracing::debug!("ignoring repeated session_init_v2"),
            ClientMsg::Segment(ask) => {
                let checked = if self.pending.len() >= super::MAX_PENDING_SEGMENTS {
                    Err(Failure::TooManyPending(super::MAX_PENDING_SEGMENTS))
                } else {
                    self.validate(ask)
                };
                match checked {
                    Ok(pending) if self.config.streaming.safety.enabled => {
                        self.actions.push(Action::CheckSafety {
                            prompts: vec![pending.prompt.clone()],
                            then: Checked::Segment(pending),
                        })
                    }
                    Ok(pending) => self.queue(pending),
                    Err(failure) => self.fail(failure),
                }
            }
            ClientMsg::Toggle(Toggle::SeedPrompts(prompts))
                if self.config.streaming.safety.enabled && !prompts.is_empty() =>
            {
                self.actions.push(Action::CheckSafety {
                    prompts: prompts.clone(),
                    then: Checked::Seeds(prompts),
                })
            }
            ClientMsg::Toggle(toggle) => {
                match &toggle {
                    Toggle::SeedPrompts(_) => self.v1.seed_next = 0,
                    Toggle::AutoExtension(_) => self.v1.auto = Auto::Idle,
                    _ => {}
                }
                self.session.apply_toggle(toggle);
                self.pump();
            }
            ClientMsg::Snapshot => self.actions.push(Action::LoadSnapshot),
            ClientMsg::Product(_) => {
                tracing::error!("a product message reached the client-driven director")
            }
        }
    }

    fn queue(&mut self, pending: Pending) {
        // A prompt from the client is a new source: auto-extension may try again later.
        if self.v1.auto == Auto::Failed {
            self.v1.auto = Auto::Idle;
        }
        self.pending.push_back(pending);
        self.pump();
    }

    pub(super) fn v1_checked(&mut self, blocked: Option<super::prompting::Blocked>, then: Checked) {
        match (then, blocked) {
            (Checked::Segment(pending), None) => self.queue(pending),
            (Checked::Segment(_), Some(b)) => {
                self.log_blocked("segment", &b);
                self.fail(Failure::PromptBlocked {
                    what: "prompt",
                    index: None,
                    reason: b.reason,
                    ends: false,
                });
            }
            (Checked::Seeds(prompts), None) => {
                self.v1.seed_next = 0;
                self.session.apply_toggle(Toggle::SeedPrompts(prompts));
                self.pump();
            }
            (Checked::Seeds(_), Some(b)) => {
                self.log_blocked("seeds", &b);
                self.fail(Failure::PromptBlocked {
                    what: "seed prompt",
                    index: Some(b.index),
                    reason: b.reason,
                    ends: false,
                });
            }
            (other, _) => tracing::error!(?other, "unexpected safety result"),
        }
    }

    /// Checks a segment request when it arrives, so a bad one is answered at once instead of
    /// when its turn comes, and fills in the configured defaults.
    fn validate(&self, ask: SegmentAsk) -> Result<Pending, Failure> {
        use super::{MAX_GUIDANCE, MAX_PROMPT_BYTES, MAX_STEPS};
        let defaults = &self.config.default_request;
        let sampling = &defaults.sampling;
        for (field, text) in [
            ("prompt", Some(&ask.prompt)),
            ("negative_prompt", ask.negative_prompt.as_ref()),
        ] {
            if let Some(text) = text.filter(|t| t.len() > MAX_PROMPT_BYTES) {
                return Err(Failure::OutOfRange(format!(
                    "segment_prompt_source.{field}: {} bytes is longer than the {MAX_PROMPT_BYTES} byte limit",
                    text.len()
                )));
            }
        }
        let steps = match ask.num_inference_steps {
            None => sampling.num_inference_steps,
            Some(n) if (1..=i64::from(MAX_STEPS)).contains(&n) => n as u32,
            Some(n) => {
                return Err(Failure::OutOfRange(format!(
                    "segment_prompt_source.num_inference_steps: {n} is out of range (1..={MAX_STEPS})"
                )));
            }
        };
        let guidance = match ask.guidance_scale {
            None => sampling.guidance_scale,
            Some(g) if g.is_finite() && (0.0..=MAX_GUIDANCE).contains(&g) => g,
            Some(g) => {
                return Err(Failure::OutOfRange(format!(
                    "segment_prompt_source.guidance_scale: {g} is out of range (0..={MAX_GUIDANCE})"
                )));
            }
        };
        let negative_prompt = ask
            .negative_prompt
            .filter(|s| !s.is_empty())
            .or_else(|| defaults.negative_prompt.clone());
        Ok(Pending {
            prompt: ask.prompt,
            negative_prompt,
            seed: ask.seed.unwrap_or(sampling.seed),
            steps,
            guidance,
            received: Instant::now(),
            enhance: Enhance::Raw,
        })
    }

    /// A request with the configured defaults (prompts the server picks itself).
    pub(super) fn default_pending(&self, prompt: String, enhance: Enhance) -> Pending {
        let defaults = &self.config.default_request;
        Pending {
            prompt,
            negative_prompt: defaults.negative_prompt.clone(),
            seed: defaults.sampling.seed,
            steps: defaults.sampling.num_inference_steps,
            guidance: defaults.sampling.guidance_scale,
            received: Instant::now(),
            enhance,
        }
    }

    fn prompts_on(&self) -> bool {
        self.config.streaming.prompt.enabled
    }

    pub(super) fn v1_pump(&mut self) {
        self.enhance_head();
        if self.running {
            return;
        }
        if self.session.cap_reached() {
            self.stream_complete(StreamCompleteReason::SegmentCap);
            return self.end(EndReason::SegmentCap);
        }
        if self.draining {
            self.stream_complete(StreamCompleteReason::StopRequested);
            return self.end(EndReason::Shutdown);
        }
        if self.session.generation_paused() {
            return;
        }
        if self.pending.is_empty() && !self.refill() {
            return;
        }
        self.enhance_head();
        let enhancing = self.session.settings().enhancement_enabled;
        if let Some(head) = self.pending.front_mut()
            && !enhancing
            && matches!(head.enhance, Enhance::Waiting(_))
        {
            // Turned off while the call runs: the raw prompt goes now, the answer is dropped.
            head.enhance = Enhance::Keep;
        }
        let waiting = matches!(
            self.pending.front().map(|p| &p.enhance),
            Some(Enhance::Waiting(_))
        );
        if waiting {
            // The call's own budget bounds this wait (the runtime answers by then).
            return;
        }
        let Some(mut next) = self.pending.pop_front() else {
            return;
        };
        if let Enhance::Done(text) = std::mem::replace(&mut next.enhance, Enhance::Keep) {
            next.prompt = text;
        }
        self.v1.history.push(next.prompt.clone());
        if self.v1.history.len() > MAX_PROMPT_HISTORY {
            self.v1.history.remove(0);
        }
        let idx = self.session.segment_idx();
        self.start_segment(next, idx, None);
    }

    /// With enhancement on, starts the call for the prompt at the head of the queue.
    fn enhance_head(&mut self) {
        if !self.session.settings().enhancement_enabled || !self.prompts_on() {
            return;
        }
        let budget = self
            .config
            .streaming
            .prompt
            .settings()
            .latency_budget
            .unwrap_or(self.config.streaming.prompt.settings().timeout);
        if !self
            .pending
            .front()
            .is_some_and(|h| h.enhance == Enhance::Raw)
        {
            return;
        }
        let id = self.job_id();
        let Some(head) = self.pending.front_mut() else {
            return;
        };
        head.enhance = Enhance::Waiting(id);
        let prompt = head.prompt.clone();
        self.actions.push(Action::Prompt(PromptJob {
            id,
            call: PromptCall::Enhance { prompt },
            budget,
        }));
    }

    /// Queues a prompt the server writes itself (loop, auto-extension); false when there is
    /// none to run now.
    fn refill(&mut self) -> bool {
        let settings = self.session.settings();
        let seeds = &settings.curated_prompts;
        if settings.loop_generation_enabled && !seeds.is_empty() {
            let prompt = seeds[self.v1.seed_next % seeds.len()].clone();
            self.v1.seed_next = (self.v1.seed_next + 1) % seeds.len();
            let pending = self.default_pending(prompt, Enhance::Raw);
            self.pending.push_back(pending);
            return true;
        }
        let context = if self.v1.history.is_empty() {
            seeds.clone()
        } else {
            self.v1.history.clone()
        };
        if settings.auto_extension_enabled
            && self.prompts_on()
            && self.v1.auto == Auto::Idle
            && !context.is_empty()
        {
            let id = self.job_id();
            self.v1.auto = Auto::Waiting(id);
            self.actions.push(Action::Prompt(PromptJob {
                id,
                call: PromptCall::AutoExtend { prior: context },
                budget: self.config.streaming.prompt.auto_extension_budget(),
            }));
        }
        false
    }

    pub(super) fn v1_prompt_done(&mut self, done: PromptDone) {
        let latency_ms = done.latency_ms();
        if self.v1.auto == Auto::Waiting(done.id) {
            match done.outcome {
                Ok(answer) => {
                    let prompt = answer.prompts.into_iter().next().unwrap_or_default();
                    metrics::counter!(m::AUTO_EXTENSIONS_TOTAL, "outcome" => "ok").increment(1);
                    self.log(
                        "auto_extension",
                        json!({"prompt": prompt, "provider": answer.provider,
                               "fallback_used": answer.fallback_used, "latency_ms": latency_ms}),
                    );
                    self.v1.auto = Auto::Idle;
                    let pending = self.default_pending(prompt, Enhance::Keep);
                    self.pending.push_back(pending);
                }
                Err(failure) => {
                    metrics::counter!(m::AUTO_EXTENSIONS_TOTAL, "outcome" => failure.kind())
                        .increment(1);
                    tracing::info!(error = %failure, "auto-extension failed; waiting for the client");
                    self.log(
                        "auto_extension_failed",
                        json!({"error": failure.to_string(), "latency_ms": latency_ms}),
                    );
                    self.v1.auto = Auto::Failed;
                }
            }
            return self.pump();
        }
        let Some(head) = self
            .pending
            .iter_mut()
            .find(|p| p.enhance == Enhance::Waiting(done.id))
        else {
            // A call for a prompt that is gone (the session drained its queue).
            return;
        };
        let raw = head.prompt.clone();
        match done.outcome {
            Ok(answer) => {
                let text = answer.prompts.into_iter().next().unwrap_or_default();
                metrics::counter!(m::SEGMENT_ENHANCEMENTS_TOTAL, "outcome" => "enhanced")
                    .increment(1);
                let payload = json!({"prompt": raw, "enhanced": text, "provider": answer.provider,
                    "fallback_used": answer.fallback_used, "latency_ms": latency_ms});
                head.enhance = Enhance::Done(text);
                self.log("prompt_enhanced", payload);
            }
            Err(failure) => {
                metrics::counter!(m::SEGMENT_ENHANCEMENTS_TOTAL, "outcome" => failure.kind())
                    .increment(1);
                tracing::info!(error = %failure, "enhancement skipped: the raw prompt runs");
                head.enhance = Enhance::Keep;
                self.log(
                    "prompt_enhancement_skipped",
                    json!({"prompt": raw, "reason": failure.kind(), "error": failure.to_string(),
                           "latency_ms": latency_ms}),
                );
            }
        }
        self.pump();
    }
}
