//! The director of the Dreamverse product protocol (`/ws`, dreamverse-facts §5–§6): the
//! server picks every prompt. At each segment boundary ([`SessionMachine::pump`]) it applies
//! a pending seed reset, then — unless a rewrite runs, the client paused, or the rollout
//! waits for a rewrite at the segment cap — picks, in order: seed prompt 0 right after a
//! reset, the ready queue of appended prompts, an auto-extension answer, the next seed
//! prompt, a loop restart, a new auto-extension call; with none it reports
//! `prompt_sources_blocked` once and waits.
//!
//! Projects share the socket: `end_project_keep_session` lets the segment in flight finish,
//! closes the rollout and answers `project_idle`; `project_init_v1` starts the next project.
//! The session's wall-clock limit (`streaming.dreamverse.session_limit_seconds`) runs from
//! `gpu_assigned` and is not reset by projects. The segment cap counts segments since the
//! last restart (`restart_generation`, a rewrite that restarts the rollout, project start and
//! end), not loop restarts or manual resets.
//!
//! Deviation from Dreamverse's server: a rollout that already carried media is closed with
//! `ltx2_stream_complete` before the next rollout's `ltx2_stream_start` (loop restarts,
//! resets): the web app archives a rollout only on `ltx2_stream_complete` (facts §8).

use super::event::{
    ClientMsg, Dropped, Event, InitRequest, ProductEvent, ProductMsg, PromptOrigin, ResetReason,
    SegmentMeta,
};
use super::machine::{Action, Phase, SessionMachine, Timer};
use super::prompting::{Auto, Blocked, Checked, Enhance, PromptCall, PromptJob};
use crate::error::{EndReason, Failure, ProductRefusal};
use crate::segment::SegmentDone;
use fv_protocol::StreamCompleteReason;
use fv_session::SessionState;
use serde_json::json;
use std::collections::VecDeque;
use std::time::Duration;

mod prompts;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Project {
    /// Init received, no worker yet.
    #[default]
    Starting,
    Active,
    /// `end_project_keep_session`: waits for the segment in flight.
    Ending,
    /// Between projects.
    Idle,
}

#[derive(Debug)]
struct Appended {
    prompt_id: String,
    prompt: String,
    job: Option<u64>,
}

#[derive(Debug)]
struct ReadyPrompt {
    prompt_id: String,
    prompt: String,
    source: PromptOrigin,
}

#[derive(Debug)]
struct Rewrite {
    id: u64,
    instruction: String,
    window: Vec<String>,
    /// The rewrite of a typed prompt that starts a project.
    initial: bool,
    /// A segment was generating when it was asked for.
    during_generation: bool,
}

struct Choice {
    prompt: String,
    source: PromptOrigin,
    seed_prompt_index: Option<u32>,
    prompt_id: Option<String>,
}

/// The product director's state.
#[derive(Debug, Default)]
pub(crate) struct ProductState {
    pub(super) project: Project,
    preset_id: String,
    preset_label: String,
    seeds: Vec<String>,
    rollout_prompt: Option<String>,
    seed_next: usize,
    force_seed0: bool,
    rollout_open: bool,
    rollout_media: bool,
    /// Segments delivered in this rollout (the next one's 0-based index).
    rollout_idx: u32,
    loop_iteration: u32,
    waiting_for_rewrite: bool,
    raw: VecDeque<Appended>,
    ready: VecDeque<ReadyPrompt>,
    /// Prompts run in this rollout (auto-extension's context).
    used: Vec<String>,
    blocked_reported: bool,
    auto: Auto,
    auto_ready: Option<String>,
    rewrite: Option<Rewrite>,
    pending_reset: Option<ResetReason>,
    loop_on: bool,
    paused: bool,
    auto_on: bool,
    enhance_on: bool,
    rewrite_model: Option<String>,
    rewrite_temperature: Option<f64>,
    failures: u32,
}

impl SessionMachine {
    fn dv(&mut self) -> &mut ProductState {
        &mut self.product
    }

    fn prompt(&mut self, event: ProductEvent) {
        self.send(Event::Product(event));
    }

    /// The session starts: no session-manager timers (the product's limit is a wall clock),
    /// and the init is awaited for `streaming.init_timeout_seconds` before the session
    /// starts with an empty one (Dreamverse's behaviour).
    pub(super) fn product_opened(&mut self) {
        self.session.set_busy(true);
        self.actions.push(Action::StartTimer {
            timer: Timer::InitWait,
            after: Duration::from_secs(self.config.streaming.init_timeout_seconds),
        });
    }

    /// Takes the product fields of the init.
    pub(super) fn product_init(&mut self, init: &mut InitRequest) {
        let s = &init.settings;
        let dv = &mut self.product;
        dv.preset_id = s.preset.clone().unwrap_or_default();
        dv.preset_label = s.preset_label.clone().unwrap_or_default();
        dv.seeds = s.curated_prompts.clone();
        dv.loop_on = s.loop_generation_enabled;
        dv.auto_on = s.auto_extension_enabled;
        dv.enhance_on = s.enhancement_enabled;
        dv.rollout_prompt = init.rollout_prompt.take();
    }

    pub(super) fn product_bound(&mut self, worker_id: u32) {
        let limit = self.config.streaming.dreamverse.session_limit_seconds;
        self.send(Event::GpuAssigned {
            worker_id,
            session_timeout: limit,
        });
        self.enter(SessionState::Active);
        self.phase = Phase::Active;
        self.actions.push(Action::StartTimer {
            timer: Timer::SessionLimit,
            after: Duration::from_secs(limit),
        });
        if self.product.project == Project::Ending {
            return self.finish_project();
        }
        self.product.project = Project::Active;
        let typed = self.product.seeds.is_empty() && self.product.rollout_prompt.is_some();
        let (loop_on, paused) = (self.product.loop_on, self.product.paused);
        self.prompt(ProductEvent::LoopUpdated(loop_on));
        self.prompt(ProductEvent::PausedUpdated(paused || typed));
        self.product_begin(true);
    }

    /// Starts a project's first rollout: from its seed prompts, or by rewriting its typed
    /// prompt, or empty.
    fn product_begin(&mut self, first: bool) {
        let dv = self.dv();
        dv.loop_iteration = 1;
        dv.waiting_for_rewrite = false;
        if !dv.seeds.is_empty() {
            if first {
                dv.rollout_open = true;
                dv.rollout_media = false;
                dv.seed_next = 0;
                dv.rollout_idx = 0;
                self.rollout_start();
                let (prompts, preset_id, preset_label) = (
                    self.product.seeds.clone(),
                    self.product.preset_id.clone(),
                    self.product.preset_label.clone(),
                );
                self.prompt(ProductEvent::SeedsInit {
                    prompts,
                    preset_id,
                    preset_label,
                });
            } else {
                self.apply_reset(ResetReason::ProjectInit);
            }
        } else if let Some(typed) = self.product.rollout_prompt.clone() {
            if !first {
                self.prompt(ProductEvent::PausedUpdated(true));
            }
            self.start_rewrite(typed, Vec::new(), true);
        } else {
            let dv = self.dv();
            dv.rollout_open = true;
            dv.rollout_media = false;
            dv.seed_next = 0;
            dv.rollout_idx = 0;
            self.rollout_start();
        }
        self.pump();
    }

    fn rollout_start(&mut self) {
        let dv = &self.product;
        let event = ProductEvent::RolloutStart {
            total_segments: super::machine::saturating_u32(dv.seeds.len()),
            preset_id: dv.preset_id.clone(),
            loop_enabled: dv.loop_on,
            loop_iteration: dv.loop_iteration,
            segment_cap: self.config.streaming.generation_segment_cap,
        };
        self.prompt(event);
    }

    /// `ltx2_stream_complete` if a rollout is open.
    pub(super) fn product_close_rollout(&mut self, reason: StreamCompleteReason) {
        if self.product.rollout_open {
            self.product.rollout_open = false;
            self.stream_complete(reason);
        }
    }

    fn drain_queues(&mut self) -> Dropped {
        let dv = self.dv();
        let dropped = Dropped {
            raw: super::machine::saturating_u32(dv.raw.len()),
            ready: super::machine::saturating_u32(dv.ready.len()),
        };
        dv.raw.clear();
        dv.ready.clear();
        dropped
    }

    /// A new rollout from the seed prompts (`ltx2_stream_start` + `seed_prompts_reset_applied`).
    fn apply_reset(&mut self, reason: ResetReason) {
        let dropped = self.drain_queues();
        if self.product.rollout_media {
            self.product_close_rollout(StreamCompleteReason::StopRequested);
        }
        let dv = self.dv();
        dv.loop_iteration = match reason {
            ResetReason::InitialRewrite | ResetReason::ProjectInit => 1,
            _ => dv.loop_iteration + 1,
        };
        self.new_rollout();
        let dv = &self.product;
        let event = ProductEvent::ResetApplied {
            reason,
            loop_iteration: dv.loop_iteration,
            seed_count: super::machine::saturating_u32(dv.seeds.len()),
            dropped,
        };
        self.rollout_start();
        self.prompt(event);
    }

    fn new_rollout(&mut self) {
        let dv = self.dv();
        dv.seed_next = 0;
        dv.force_seed0 = true;
        dv.rollout_idx = 0;
        dv.used.clear();
        dv.blocked_reported = false;
        dv.auto_ready = None;
        dv.rollout_open = true;
        dv.rollout_media = false;
        // The first segment of a rollout is not conditioned on the last one's frames.
        self.actions.push(Action::ForgetState);
    }

    fn loop_restart(&mut self) {
        self.product_close_rollout(StreamCompleteReason::StopRequested);
        self.product.loop_iteration += 1;
        self.new_rollout();
        let dv = &self.product;
        let event = ProductEvent::LoopRestarted {
            loop_iteration: dv.loop_iteration,
            seed_count: super::machine::saturating_u32(dv.seeds.len()),
            dropped: Dropped::default(),
        };
        self.rollout_start();
        self.prompt(event);
    }

    pub(super) fn product_pump(&mut self) {
        if self.running {
            return;
        }
        if self.draining {
            self.product_close_rollout(StreamCompleteReason::StopRequested);
            return self.end(EndReason::Shutdown);
        }
        match self.product.project {
            Project::Starting | Project::Idle => return,
            Project::Ending => return self.finish_project(),
            Project::Active => {}
        }
        if let Some(reason) = self.product.pending_reset.take() {
            self.apply_reset(reason);
        }
        if self.product.waiting_for_rewrite {
            // Still at the cap (a manual reset does not reset the count): a rollout that was
            // just opened is completed again at once.
            return self.product_close_rollout(StreamCompleteReason::SegmentCap);
        }
        let dv = &self.product;
        if dv.rewrite.is_some() || dv.paused {
            return;
        }
        if self.session.cap_reached() {
            // Dreamverse: loop silently off, the rollout complete, a rewrite or restart next.
            self.product.loop_on = false;
            self.product.waiting_for_rewrite = true;
            return self.product_close_rollout(StreamCompleteReason::SegmentCap);
        }
        let Some(choice) = self.choose() else {
            return;
        };
        let idx = self.product.rollout_idx;
        if std::mem::take(&mut self.product.blocked_reported) {
            self.prompt(ProductEvent::SourcesResumed {
                segment_idx: idx,
                source: choice.source,
                prompt_id: choice.prompt_id.clone(),
            });
        }
        let dv = &self.product;
        let loop_iteration = dv.loop_iteration;
        let meta = SegmentMeta {
            total_segments: (idx + 1).max(super::machine::saturating_u32(dv.seeds.len())),
            source: choice.source,
            seed_prompt_index: choice.seed_prompt_index,
            loop_iteration,
        };
        self.prompt(ProductEvent::PromptSource {
            segment_idx: idx,
            source: choice.source,
            prompt_id: choice.prompt_id,
            seed_prompt_index: choice.seed_prompt_index,
            loop_iteration,
        });
        self.product.used.push(choice.prompt.clone());
        self.product.rollout_media = true;
        let pending = self.default_pending(choice.prompt, Enhance::Keep);
        self.start_segment(pending, idx, Some(meta));
    }

    /// The next prompt, in the product's order; `None` when there is none now.
    fn choose(&mut self) -> Option<Choice> {
        let seed = |dv: &mut ProductState, i: usize| {
            dv.seed_next = i + 1;
            Some(Choice {
                prompt: dv.seeds[i].clone(),
                source: PromptOrigin::Curated,
                seed_prompt_index: Some(super::machine::saturating_u32(i)),
                prompt_id: None,
            })
        };
        let dv = self.dv();
        if std::mem::take(&mut dv.force_seed0) && !dv.seeds.is_empty() {
            return seed(dv, 0);
        }
        if let Some(r) = dv.ready.pop_front() {
            return Some(Choice {
                prompt: r.prompt,
                source: r.source,
                seed_prompt_index: None,
                prompt_id: Some(r.prompt_id),
            });
        }
        if let Some(prompt) = dv.auto_ready.take() {
            return Some(Choice {
                prompt,
                source: PromptOrigin::AutoLlm,
                seed_prompt_index: None,
                prompt_id: None,
            });
        }
        if dv.seed_next < dv.seeds.len() {
            let i = dv.seed_next;
            return seed(dv, i);
        }
        if dv.loop_on && !dv.seeds.is_empty() {
            self.loop_restart();
            let dv = self.dv();
            dv.force_seed0 = false;
            return seed(dv, 0);
        }
        let (auto_on, auto) = (dv.auto_on, dv.auto);
        if auto_on && self.config.streaming.prompt.enabled && auto == Auto::Idle {
            let id = self.job_id();
            let prior = self.product.used.clone();
            self.product.auto = Auto::Waiting(id);
            self.actions.push(Action::Prompt(PromptJob {
                id,
                call: PromptCall::AutoExtend { prior },
                budget: self.config.streaming.prompt.auto_extension_budget(),
            }));
            return None;
        }
        if !matches!(self.product.auto, Auto::Waiting(_))
            && !std::mem::replace(&mut self.product.blocked_reported, true)
        {
            let segment_idx = self.product.rollout_idx;
            self.prompt(ProductEvent::SourcesBlocked { segment_idx });
        }
        None
    }

    pub(super) fn product_segment_done(&mut self, result: Result<SegmentDone, Failure>) {
        match result {
            Ok(done) => {
                let complete = done.complete_event();
                self.actions.push(Action::KeepState(done.state));
                self.send(complete);
                self.product.failures = 0;
                self.product.rollout_idx += 1;
                if let Err(e) = self.session.complete_segment() {
                    self.bug(&e);
                }
            }
            Err(Failure::ClientGone) => return self.end(EndReason::ClientGone),
            Err(failure) => {
                self.fail(failure);
                self.product.failures += 1;
                let limit = self.config.streaming.dreamverse.max_consecutive_failures;
                if self.product.failures >= limit {
                    return self.fail(Failure::TooManyFailures(limit));
                }
            }
        }
        self.pump();
    }

    fn finish_project(&mut self) {
        let dropped = self.drain_queues();
        self.product_close_rollout(StreamCompleteReason::StopRequested);
        self.prompt(ProductEvent::ProjectIdle { dropped });
        let dv = self.dv();
        dv.project = Project::Idle;
        dv.waiting_for_rewrite = false;
        dv.auto = Auto::Idle;
        dv.auto_ready = None;
        dv.blocked_reported = false;
        dv.pending_reset = None;
        dv.used.clear();
        self.session.restart_segment_count();
        self.actions.push(Action::ForgetState);
    }

    fn project_open(&self) -> bool {
        matches!(self.product.project, Project::Starting | Project::Active)
    }

    pub(super) fn product_message(&mut self, msg: ClientMsg) {
        let msg = match msg {
            ClientMsg::Product(msg) => msg,
            ClientMsg::Init(_) => return self.fail(ProductRefusal::AlreadyInitialized.into()),
            other => {
                return tracing::error!(
                    ?other,
                    "a /v1/stream message reached the product director"
                );
            }
        };
        match msg {
            ProductMsg::Append { prompt_id, prompt } => self.append(prompt_id, prompt),
            ProductMsg::Rewrite {
                instruction,
                window,
            } => self.rewrite_asked(instruction, window),
            ProductMsg::SetAutoExtension(on) => {
                self.product.auto_on = on;
                // Setting it again retries a failed auto-extension.
                self.product.auto = Auto::Idle;
                self.prompt(ProductEvent::AutoExtensionUpdated(on));
                self.pump();
            }
            ProductMsg::SetLoop(on) => {
                self.product.loop_on = on;
                self.prompt(ProductEvent::LoopUpdated(on));
                self.pump();
            }
            ProductMsg::SetPaused(paused) => {
                self.product.paused = paused;
                self.prompt(ProductEvent::PausedUpdated(paused));
                self.pump();
            }
            ProductMsg::SetEnhancement(on) => {
                self.product.enhance_on = on;
                self.prompt(ProductEvent::EnhancementUpdated(on));
            }
            ProductMsg::SetRewriteModel(model) => {
                self.product.rewrite_model = Some(model.clone());
                self.prompt(ProductEvent::RewriteModelUpdated(model));
            }
            ProductMsg::SetRewriteTemperature(t) if (0.0..=2.0).contains(&t) => {
                self.product.rewrite_temperature = Some(t);
                self.prompt(ProductEvent::RewriteTemperatureUpdated(t));
            }
            ProductMsg::SetRewriteTemperature(t) => {
                self.fail(ProductRefusal::BadTemperature(t).into())
            }
            ProductMsg::ResetToSeeds => {
                if !self.project_open() {
                    return self.fail(ProductRefusal::NoProject.into());
                }
                let seed_count = super::machine::saturating_u32(self.product.seeds.len());
                self.prompt(ProductEvent::ResetPending { seed_count });
                self.product.pending_reset = Some(ResetReason::ManualReset);
                self.pump();
            }
            ProductMsg::Restart => {
                if !self.project_open() {
                    return self.fail(ProductRefusal::NoProject.into());
                }
                let segment_cap = self.config.streaming.generation_segment_cap;
                self.prompt(ProductEvent::Restarted { segment_cap });
                self.session.restart_segment_count();
                self.product.waiting_for_rewrite = false;
                self.product.pending_reset = Some(ResetReason::CapRestart);
                self.pump();
            }
            ProductMsg::EndProject => match self.product.project {
                Project::Idle => self.prompt(ProductEvent::ProjectIdle {
                    dropped: Dropped::default(),
                }),
                Project::Ending => {}
                Project::Starting | Project::Active => {
                    let dv = self.dv();
                    // A running rewrite is abandoned (its answer is ignored when it comes).
                    dv.rewrite = None;
                    dv.loop_on = false;
                    dv.paused = false;
                    dv.pending_reset = None;
                    dv.project = Project::Ending;
                    self.pump();
                }
            },
            ProductMsg::ProjectInit(init) => {
                if self.product.project != Project::Idle {
                    return self.fail(ProductRefusal::ProjectStillEnding.into());
                }
                let seeds = init.settings.curated_prompts.clone();
                if self.config.streaming.safety.enabled && !seeds.is_empty() {
                    self.actions.push(Action::CheckSafety {
                        prompts: seeds,
                        then: Checked::ProjectInit(init),
                    });
                } else {
                    self.project_init(init);
                }
            }
            ProductMsg::Leave => self.end(EndReason::ClientLeft),
            ProductMsg::Unsupported(name) => self.fail(ProductRefusal::Unsupported(name).into()),
        }
    }

    fn project_init(&mut self, mut init: Box<InitRequest>) {
        self.product_init(&mut init);
        self.session
            .apply_settings(std::mem::take(&mut init.settings));
        self.session.restart_segment_count();
        let dv = self.dv();
        dv.project = Project::Active;
        dv.paused = false;
        dv.auto = Auto::Idle;
        self.log(
            "project_init",
            json!({"seed_prompts": self.product.seeds.len()}),
        );
        self.product_begin(false);
    }

    pub(super) fn product_checked(&mut self, blocked: Option<Blocked>, then: Checked) {
        match (then, blocked) {
            (Checked::Append { prompt_id, prompt }, None) => self.accept_append(prompt_id, prompt),
            (Checked::Append { .. }, Some(b)) => {
                self.log_blocked("append", &b);
                self.fail(Failure::PromptBlocked {
                    what: "prompt",
                    index: None,
                    reason: b.reason,
                    ends: false,
                });
            }
            (Checked::ProjectInit(init), None) if self.product.project == Project::Idle => {
                self.project_init(init)
            }
            (Checked::ProjectInit(_), Some(b)) => {
                self.log_blocked("project_init", &b);
                self.fail(Failure::PromptBlocked {
                    what: "initial prompt",
                    index: Some(b.index),
                    reason: b.reason,
                    ends: false,
                });
            }
            (other, _) => tracing::error!(?other, "unexpected safety result"),
        }
    }
}
