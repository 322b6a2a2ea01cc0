//! Transcript tests of the session core: inputs in, actions out, no sockets, pools or stores.
//! Each action is written as one short line (`send gpu_assigned 3`, `end segment_cap 1000`).
//!
//! `flows.rs` and `segments.rs`: `/v1/stream` lifecycle; `prompts.rs`: its prompt toggles (enhancement, loop,
//! auto-extension, pause, seeds, safety); `product/`: every `/ws` flow of
//! dreamverse-facts.

mod flows;
mod product;
mod prompts;
mod segments;

use super::event::{ClientInput, ClientMsg, Event, InitRequest, ProductEvent, SegmentAsk};
use super::machine::{Action, Applied, Input, Mode, SessionMachine};
use super::prompting::{Blocked, PromptAnswer, PromptCall, PromptDone, PromptFailure};
use crate::config::ServeConfig;
use crate::segment::SegmentDone;
use fv_core::ContinuationState;
use fv_session::{SessionLimits, SessionManager, SessionSettings, SessionState};
use std::sync::Arc;
use std::time::Duration;

struct Harness {
    manager: Arc<SessionManager>,
    machine: SessionMachine,
    /// Checks and calls the machine asked for, answered by the test.
    checks: Vec<super::prompting::Checked>,
    jobs: Vec<super::prompting::PromptJob>,
}

fn config() -> ServeConfig {
    let mut config = ServeConfig::mock_defaults();
    config.streaming.session_timeout_seconds = 120;
    config.default_request.negative_prompt = Some("blurry".into());
    config
}

fn harness(cap: u32) -> Harness {
    harness_with(cap, config())
}

fn harness_with(cap: u32, config: ServeConfig) -> Harness {
    harness_mode(cap, config, Mode::ClientDriven)
}

fn harness_mode(cap: u32, mut config: ServeConfig, mode: Mode) -> Harness {
    config.streaming.generation_segment_cap = cap;
    let manager = SessionManager::new(SessionLimits {
        segment_cap: cap,
        ..SessionLimits::default()
    })
    .expect("valid limits");
    let session = manager.admit().expect("a slot");
    Harness {
        machine: SessionMachine::new(Arc::new(config), session, mode),
        manager,
        checks: Vec::new(),
        jobs: Vec::new(),
    }
}

fn product_line(event: &ProductEvent) -> String {
    use ProductEvent as P;
    let name = event.name();
    match event {
        P::LoopUpdated(b) | P::AutoExtensionUpdated(b) | P::EnhancementUpdated(b) => {
            format!("{name} {b}")
        }
        P::PausedUpdated(b) => format!("{name} {b}"),
        P::RolloutStart {
            total_segments,
            loop_iteration,
            loop_enabled,
            ..
        } => format!("{name} total={total_segments} iter={loop_iteration} loop={loop_enabled}"),
        P::SeedsInit { prompts, .. } => format!("{name} init {}", prompts.len()),
        P::SeedsRewritten(r) => format!(
            "{name} rewrite {} fallback={}",
            r.prompts.len(),
            r.fallback_used
        ),
        P::RewriteComplete(r) => format!(
            "{name} fallback={} error={}",
            r.fallback_used,
            r.error.is_some()
        ),
        P::ResetApplied {
            reason,
            loop_iteration,
            dropped,
            ..
        } => format!(
            "{name} {} iter={loop_iteration} dropped={}/{}",
            reason.as_str(),
            dropped.raw,
            dropped.ready
        ),
        P::LoopRestarted { loop_iteration, .. } => format!("{name} iter={loop_iteration}"),
        P::PromptSource {
            segment_idx,
            source,
            seed_prompt_index,
            ..
        } => format!(
            "{name} {} {} {}",
            segment_idx + 1,
            source.as_str(),
            seed_prompt_index.map_or("-".to_owned(), |i| i.to_string())
        ),
        P::PromptReceived {
            prompt_id,
            queue_depth,
        } => format!("{name} {prompt_id} {queue_depth}"),
        P::PromptEnhancing { prompt_id } => format!("{name} {prompt_id}"),
        P::PromptReady {
            prompt_id, source, ..
        } => format!("{name} {prompt_id} {}", source.as_str()),
        P::PromptFallbackUsed { prompt_id, .. } => format!("{name} {prompt_id}"),
        P::SourcesBlocked { segment_idx } => format!("{name} {}", segment_idx + 1),
        P::SourcesResumed {
            segment_idx,
            source,
            ..
        } => format!("{name} {} {}", segment_idx + 1, source.as_str()),
        P::AutoPromptFailed { segment_idx, .. } => format!("{name} {}", segment_idx + 1),
        P::ProjectIdle { dropped } => format!("{name} {}/{}", dropped.raw, dropped.ready),
        P::ResetPending { seed_count } => format!("{name} {seed_count}"),
        P::Restarted { segment_cap } => format!("{name} {segment_cap}"),
        other => other.name().to_owned(),
    }
}

/// One action as a transcript line.
fn line(action: &Action) -> String {
    match action {
        Action::Send(event) => match event {
            Event::QueueStatus {
                position,
                queue_depth,
                ..
            } => format!("send queue_status {position}/{queue_depth}"),
            Event::GpuAssigned { worker_id, .. } => format!("send gpu_assigned {worker_id}"),
            Event::StreamComplete(reason) => format!("send stream_complete {reason:?}"),
            Event::SessionTimeout { timeout_seconds } => {
                format!("send session_timeout {timeout_seconds}")
            }
            Event::Product(p) => format!("send {}", product_line(p)),
            other => format!("send {}", other.name()),
        },
        Action::Error(failure) => format!("error {}", failure.code_name()),
        Action::ApplyInit(_) => "apply_init".into(),
        Action::Acquire => "acquire".into(),
        Action::StartSegment(order) => {
            format!("start {} {}", order.plan.segment_idx, order.request.prompt)
        }
        Action::CancelSegment => "cancel".into(),
        Action::LoadSnapshot => "load_snapshot".into(),
        Action::Checkpoint(c) => format!(
            "checkpoint {} {}",
            c.segments,
            c.state.as_ref().map_or("-", |s| s.kind.as_str())
        ),
        Action::End(reason) => match reason.close() {
            Some((code, why)) => format!("end {} {code} {why}", reason.as_str()),
            None => format!("end {}", reason.as_str()),
        },
        Action::Prompt(job) => match &job.call {
            PromptCall::Enhance { prompt } => format!("prompt {} enhance {prompt}", job.id),
            PromptCall::AutoExtend { prior } => {
                format!("prompt {} auto_extend {}", job.id, prior.len())
            }
            PromptCall::Rewrite {
                instruction, count, ..
            } => format!("prompt {} rewrite {instruction} {count}", job.id),
        },
        Action::CheckSafety { prompts, .. } => format!("check_safety {}", prompts.len()),
        Action::StartTimer { timer, after } => format!("timer {timer:?} {}s", after.as_secs()),
        Action::Log { event, .. } => format!("log {event}"),
        Action::ForgetState => "forget_state".into(),
        Action::KeepState(state) => format!(
            "keep_state {}",
            state.as_ref().map_or("-", |s| s.kind.as_str())
        ),
    }
}

impl Harness {
    fn feed(&mut self, input: Input) -> Vec<String> {
        let actions = self.machine.handle(input);
        let lines = actions.iter().map(line).collect();
        // Keep what the test must answer.
        for action in actions {
            match action {
                Action::CheckSafety { then, .. } => self.checks.push(then),
                Action::Prompt(job) => self.jobs.push(job),
                _ => {}
            }
        }
        lines
    }

    fn feed_actions(&mut self, input: Input) -> Vec<Action> {
        self.machine.handle(input)
    }

    fn client(&mut self, msg: ClientMsg, wire_name: &'static str) -> Vec<String> {
        self.feed(Input::Client(ClientInput::Message { msg, wire_name }))
    }

    fn init(&mut self) -> Vec<String> {
        self.init_with(SessionSettings {
            preset: Some("p1".into()),
            ..SessionSettings::default()
        })
    }

    fn init_with(&mut self, settings: SessionSettings) -> Vec<String> {
        self.client(
            ClientMsg::Init(Box::new(InitRequest {
                settings,
                ..InitRequest::default()
            })),
            "session_init_v2",
        )
    }

    fn ask(&mut self, prompt: &str) -> Vec<String> {
        self.ask_with(SegmentAsk {
            prompt: prompt.into(),
            ..SegmentAsk::default()
        })
    }

    fn ask_with(&mut self, ask: SegmentAsk) -> Vec<String> {
        self.client(ClientMsg::Segment(ask), "segment_prompt_source")
    }

    /// Init, applied, granted worker 3: the session is active.
    fn active(&mut self) {
        assert_eq!(self.init(), ["apply_init"]);
        assert_eq!(self.feed(applied()), ["acquire"]);
        assert_eq!(
            self.feed(Input::Acquired(Ok(3))),
            [
                "send queue_status 0/0",
                "send gpu_assigned 3",
                "send stream_start"
            ]
        );
    }

    fn state(&self) -> SessionState {
        self.machine.session().state()
    }

    /// Answers the oldest safety check with `blocked`.
    fn checked(&mut self, blocked: Option<Blocked>) -> Vec<String> {
        assert!(!self.checks.is_empty(), "no safety check to answer");
        let then = self.checks.remove(0);
        self.feed(Input::SafetyChecked { blocked, then })
    }

    /// Answers the call with id `id`.
    fn answer(&mut self, id: u64, outcome: Result<Vec<&str>, PromptFailure>) -> Vec<String> {
        let Some(at) = self.jobs.iter().position(|j| j.id == id) else {
            panic!("no prompt call {id} in {:?}", self.jobs)
        };
        let job = self.jobs.remove(at);
        self.feed(Input::PromptDone(PromptDone {
            id: job.id,
            latency: Duration::from_millis(120),
            outcome: outcome.map(|prompts| PromptAnswer {
                prompts: prompts.into_iter().map(str::to_owned).collect(),
                raw: "raw".into(),
                provider: "fake".into(),
                model: "fake-model".into(),
                fallback_used: false,
            }),
        }))
    }
}

fn blocked(index: usize) -> Option<Blocked> {
    Some(Blocked {
        index,
        reason: "matched \"bad\"".into(),
    })
}

fn applied() -> Input {
    Input::InitApplied(Ok(Applied {
        resume_token: "t0".into(),
        ..Applied::default()
    }))
}

fn done(segment_idx: u32, state: Option<ContinuationState>) -> Input {
    Input::SegmentDone(Ok(SegmentDone {
        segment_idx,
        prompt: "p".into(),
        frames: 24,
        chunks: 3,
        bytes: 1000,
        duration_ms: 1000.0,
        generation_ms: 5.0,
        encode_ms: 1.0,
        first_media_ms: Some(2.0),
        e2e_ms: 7.0,
        meta: None,
        state,
    }))
}

fn state(kind: &str) -> ContinuationState {
    ContinuationState {
        kind: kind.into(),
        payload: serde_json::Map::new(),
    }
}
