//! The `/v1/stream` adapter: FastVideo's client-driven protocol over the shared session core.
//! It checks the upgrade request, parses frames into session inputs and renders session events
//! as FastVideo's messages (0-based `segment_idx`, the per-segment order of protocol-facts §5).
//! Nothing else lives here: decisions are in `session/machine.rs`, IO in `session/runtime.rs`.

use crate::app::AppState;
use crate::session::{ClientInput, ClientMsg, Event, InitRequest, Protocol, SegmentAsk, WireFrame};
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use fv_protocol::{ClientMessage, MediaMode, STAGE_DENOISE, ServerMessage};
use fv_session::{SessionSettings, Toggle};
use std::net::SocketAddr;
use std::sync::Arc;

/// `GET /v1/stream`: access checks, then the WebSocket upgrade; the session runs under the
/// server's task tracker so a drain waits for it.
pub(crate) async fn upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    crate::session::upgrade(state, Arc::new(V1), request, peer)
}

/// FastVideo's `/v1/stream` wire format.
#[derive(Debug)]
pub(crate) struct V1;

impl Protocol for V1 {
    fn parse(&self, text: &str) -> ClientInput {
        let message = match fv_protocol::parse_client_message(text) {
            Ok(message) => message,
            Err(e) => return ClientInput::Invalid(e),
        };
        let wire_name = message.type_name();
        let msg = match message {
            ClientMessage::SessionInitV2(init) => ClientMsg::Init(Box::new(InitRequest {
                settings: SessionSettings {
                    client_id: init.client_id,
                    preset: init.preset,
                    preset_label: init.preset_label,
                    curated_prompts: init.curated_prompts,
                    enhancement_enabled: init.enhancement_enabled,
                    auto_extension_enabled: init.auto_extension_enabled,
                    loop_generation_enabled: init.loop_generation_enabled,
                    single_clip_mode: init.single_clip_mode,
                },
                initial_image: init.initial_image,
                continuation_state: init
                    .continuation_state
                    .map(|cs| fv_core::ContinuationState {
                        kind: cs.kind,
                        payload: cs.payload,
                    }),
                // An fv-stream addition, carried in the message's open extra fields; a
                // non-string is kept as its JSON text so the token check rejects it by name.
                resume_token: init.extra.get("resume_token").map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                }),
                rollout_prompt: None,
            })),
            ClientMessage::SegmentPromptSource(req) => ClientMsg::Segment(SegmentAsk {
                prompt: req.prompt,
                negative_prompt: req.negative_prompt,
                seed: req.seed,
                num_inference_steps: req.num_inference_steps,
                guidance_scale: req.guidance_scale,
            }),
            ClientMessage::SeedPromptsUpdated(u) => {
                ClientMsg::Toggle(Toggle::SeedPrompts(u.seed_prompts))
            }
            ClientMessage::EnhancementUpdated(t) => {
                ClientMsg::Toggle(Toggle::Enhancement(t.enabled))
            }
            ClientMessage::AutoExtensionUpdated(t) => {
                ClientMsg::Toggle(Toggle::AutoExtension(t.enabled))
            }
            ClientMessage::LoopGenerationUpdated(t) => {
                ClientMsg::Toggle(Toggle::LoopGeneration(t.enabled))
            }
            ClientMessage::GenerationPausedUpdated(p) => {
                ClientMsg::Toggle(Toggle::GenerationPaused(p.paused))
            }
            ClientMessage::SnapshotState => ClientMsg::Snapshot,
        };
        ClientInput::Message { msg, wire_name }
    }

    fn render(&self, event: Event, out: &mut Vec<WireFrame>) {
        let message = match event {
            Event::Media(data) => return out.push(WireFrame::Binary(data)),
            Event::QueueStatus {
                position,
                queue_depth,
                ..
            } => ServerMessage::queue_status(position, queue_depth),
            Event::GpuAssigned {
                worker_id,
                session_timeout,
            } => ServerMessage::gpu_assigned(worker_id, session_timeout),
            Event::StreamStart {
                preset,
                width,
                height,
                fps,
                num_frames,
                resume_token,
            } => ServerMessage::Ltx2StreamStart(fv_protocol::StreamStart {
                preset,
                width,
                height,
                fps,
                num_frames,
                resume_token,
            }),
            Event::SegmentStart {
                segment_idx,
                prompt,
                total_steps,
                ..
            } => ServerMessage::Ltx2SegmentStart(fv_protocol::SegmentStart {
                segment_idx,
                prompt,
                total_steps,
            }),
            Event::Step {
                segment_idx,
                step,
                total_steps,
            } => ServerMessage::StepComplete(fv_protocol::StepComplete {
                segment_idx,
                step,
                total_steps,
                stage: STAGE_DENOISE.into(),
            }),
            Event::MediaInit {
                segment_idx,
                mime,
                stream_id,
            } => ServerMessage::MediaInit(fv_protocol::MediaInit {
                segment_idx,
                mime,
                stream_id,
                mode: MediaMode::AvFmp4,
            }),
            Event::MediaComplete {
                segment_idx,
                stream_id,
                binaries,
                duration_ms,
                pts_base_ms,
            } => ServerMessage::MediaSegmentComplete(fv_protocol::MediaSegmentComplete {
                segment_idx,
                stream_id,
                // Upstream counts binaries after the first (init) one; keep that meaning.
                chunks: binaries.saturating_sub(1),
                duration_ms: Some(duration_ms),
                pts_base_ms: Some(pts_base_ms),
            }),
            Event::SegmentComplete {
                segment_idx,
                generation_ms,
                e2e_ms,
                ..
            } => ServerMessage::Ltx2SegmentComplete(fv_protocol::SegmentComplete {
                segment_idx,
                generation_time_ms: generation_ms,
                e2e_latency_ms: Some(e2e_ms),
            }),
            Event::StreamComplete(reason) => ServerMessage::stream_complete(reason),
            Event::SessionTimeout { timeout_seconds } => {
                ServerMessage::session_timeout(timeout_seconds)
            }
            Event::Snapshot(state) => ServerMessage::snapshot(fv_protocol::ContinuationStateWire {
                kind: state.kind,
                payload: state.payload,
            }),
            Event::Error {
                code,
                message,
                retryable,
                ..
            } => ServerMessage::error(code, message, retryable),
            // The product protocol's events have no `/v1/stream` form.
            Event::Product(_) => return,
        };
        out.push(WireFrame::Text(message.to_json()));
    }
}
