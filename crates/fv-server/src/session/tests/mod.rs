//! Transcript tests of the session core: inputs in, actions out, no sockets, pools or stores.
//! Each action is written as one short line (`send gpu_assigned 3`, `end segment_cap 1000`).

use super::event::{ClientInput, ClientMsg, Event, InitRequest, SegmentAsk};
use super::machine::{Action, Applied, Input, SessionMachine};
use crate::config::ServeConfig;
use crate::segment::SegmentDone;
use fv_core::ContinuationState;
use fv_session::{SessionLimits, SessionManager, SessionSettings, SessionState};
use std::sync::Arc;

pub(super) struct Harness {
    pub(super) manager: Arc<SessionManager>,
    pub(super) machine: SessionMachine,
}

pub(super) fn config() -> ServeConfig {
    let mut config = ServeConfig::mock_defaults();
    config.streaming.session_timeout_seconds = 120;
    config.default_request.negative_prompt = Some("blurry".into());
    config
}

pub(super) fn harness(cap: u32) -> Harness {
    harness_with(cap, config())
}

pub(super) fn harness_with(cap: u32, config: ServeConfig) -> Harness {
    let manager = SessionManager::new(SessionLimits {
        segment_cap: cap,
        ..SessionLimits::default()
    })
    .expect("valid limits");
    let session = manager.admit().expect("a slot");
    Harness {
        machine: SessionMachine::new(Arc::new(config), session),
        manager,
    }
}

/// One action as a transcript line.
pub(super) fn line(action: &Action) -> String {
    match action {
        Action::Send(event) => match event {
            Event::QueueStatus {
                position,
                queue_depth,
            } => format!("send queue_status {position}/{queue_depth}"),
            Event::GpuAssigned { worker_id, .. } => format!("send gpu_assigned {worker_id}"),
            Event::StreamComplete(reason) => format!("send stream_complete {reason:?}"),
            Event::SessionTimeout { timeout_seconds } => {
                format!("send session_timeout {timeout_seconds}")
            }
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
    }
}

impl Harness {
    pub(super) fn feed(&mut self, input: Input) -> Vec<String> {
        self.machine.handle(input).iter().map(line).collect()
    }

    pub(super) fn feed_actions(&mut self, input: Input) -> Vec<Action> {
        self.machine.handle(input)
    }

    pub(super) fn client(&mut self, msg: ClientMsg, wire_name: &'static str) -> Vec<String> {
        self.feed(Input::Client(ClientInput::Message { msg, wire_name }))
    }

    pub(super) fn init(&mut self) -> Vec<String> {
        self.client(
            ClientMsg::Init(Box::new(InitRequest {
                settings: SessionSettings {
                    preset: Some("p1".into()),
                    ..SessionSettings::default()
                },
                ..InitRequest::default()
            })),
            "session_init_v2",
        )
    }

    pub(super) fn ask(&mut self, prompt: &str) -> Vec<String> {
        self.ask_with(SegmentAsk {
            prompt: prompt.into(),
            ..SegmentAsk::default()
        })
    }

    pub(super) fn ask_with(&mut self, ask: SegmentAsk) -> Vec<String> {
        self.client(ClientMsg::Segment(ask), "segment_prompt_source")
    }

    /// Init, applied, granted worker 3: the session is active.
    pub(super) fn active(&mut self) {
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

    pub(super) fn state(&self) -> SessionState {
        self.machine.session().state()
    }
}

pub(super) fn applied() -> Input {
    Input::InitApplied(Ok(Applied {
        resume_token: "t0".into(),
        ..Applied::default()
    }))
}

pub(super) fn done(segment_idx: u32, state: Option<ContinuationState>) -> Input {
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
        state,
    }))
}

pub(super) fn state(kind: &str) -> ContinuationState {
    ContinuationState {
        kind: kind.into(),
        payload: serde_json::Map::new(),
    }
}

mod flows;
mod segments;
