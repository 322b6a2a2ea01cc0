//! The `/ws` adapter: the Dreamverse product protocol (shared/reference/dreamverse-facts.md)
//! over the shared session core. Frames become session inputs, session events become the
//! product's messages: 1-based `segment_idx` within a rollout, `step_complete` once per
//! segment after its media, `null` for absent values, `error{message, error_code}`. The
//! product's decisions (what runs next) are the session core's director (`session/product/`).

use crate::app::AppState;
use crate::session::{
    ClientInput, ClientMsg, Dropped, Event, InitRequest, Mode, ProductEvent, ProductMsg, Protocol,
    RewriteReport, SegmentMeta, WireFrame,
};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fv_protocol::{DreamverseMessage, ErrorCode};
use fv_session::SessionSettings;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

/// `GET /ws`: the same access checks as `/v1/stream`, then the upgrade.
pub(crate) async fn upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    if !state.config.streaming.dreamverse.enabled {
        return (
            StatusCode::NOT_FOUND,
            "/ws is disabled (streaming.dreamverse.enabled)",
        )
            .into_response();
    }
    crate::session::upgrade(state, Arc::new(Dreamverse), request, peer)
}

/// The Dreamverse product protocol.
#[derive(Debug)]
pub(crate) struct Dreamverse;

fn init_request(init: fv_protocol::dreamverse::ProjectInit) -> Box<InitRequest> {
    let rollout_prompt = init.rollout_prompt().map(str::to_owned);
    let seeds = init.seed_prompts().to_vec();
    Box::new(InitRequest {
        settings: SessionSettings {
            preset: init.preset_id,
            preset_label: init.preset_label,
            curated_prompts: seeds,
            enhancement_enabled: init.enhancement_enabled,
            auto_extension_enabled: init.auto_extension_enabled,
            loop_generation_enabled: init.loop_generation_enabled,
            single_clip_mode: init.single_clip_mode,
            ..SessionSettings::default()
        },
        initial_image: init.initial_image.filter(|v| !v.is_null()),
        rollout_prompt,
        ..InitRequest::default()
    })
}

impl Protocol for Dreamverse {
    fn parse(&self, text: &str) -> ClientInput {
        let message = match fv_protocol::parse_dreamverse_message(text) {
            Ok(m) => m,
            Err(e) => return ClientInput::Invalid(e),
        };
        let wire_name = message.type_name();
        use DreamverseMessage as D;
        let product = |m| ClientMsg::Product(m);
        let msg = match message {
            D::SessionInit(init) => ClientMsg::Init(init_request(*init)),
            D::ProjectInit(init) => product(ProductMsg::ProjectInit(init_request(*init))),
            D::EndProject => product(ProductMsg::EndProject),
            D::AppendPrompt(a) => product(ProductMsg::Append {
                prompt_id: a.prompt_id,
                prompt: a.prompt.unwrap_or_default(),
            }),
            D::RewriteSeedPrompts(r) => product(ProductMsg::Rewrite {
                instruction: r.rewrite_instruction.unwrap_or_default(),
                window: r.prompt_window_prompts,
            }),
            D::SetAutoExtension(on) => product(ProductMsg::SetAutoExtension(on)),
            D::SetLoopGeneration(on) => product(ProductMsg::SetLoop(on)),
            D::SetGenerationPaused(p) => product(ProductMsg::SetPaused(p)),
            D::SetEnhancement(on) => product(ProductMsg::SetEnhancement(on)),
            D::SetRewriteModel(m) => product(ProductMsg::SetRewriteModel(m)),
            D::SetRewriteTemperature(t) => product(ProductMsg::SetRewriteTemperature(t)),
            D::ResetToSeedPrompts => product(ProductMsg::ResetToSeeds),
            D::RestartGeneration => product(ProductMsg::Restart),
            D::Leave => product(ProductMsg::Leave),
            D::SimpleGenerate => product(ProductMsg::Unsupported("simple_generate")),
            _ => product(ProductMsg::Unsupported(wire_name)),
        };
        ClientInput::Message { msg, wire_name }
    }

    fn render(&self, event: Event, out: &mut Vec<WireFrame>) {
        let mut text = |v: Value| out.push(WireFrame::Text(v.to_string()));
        match event {
            Event::Media(data) => out.push(WireFrame::Binary(data)),
            Event::QueueStatus {
                position,
                total_workers,
                available_workers,
                ..
            } => text(json!({"type": "queue_status", "position": position,
                "total_gpus": total_workers, "available_gpus": available_workers})),
            Event::GpuAssigned {
                worker_id,
                session_timeout,
            } => text(json!({"type": "gpu_assigned", "gpu_id": worker_id,
                "session_timeout": session_timeout})),
            Event::SegmentStart {
                segment_idx,
                prompt,
                meta,
                ..
            } => {
                let mut v = json!({"type": "ltx2_segment_start", "segment_idx": segment_idx + 1,
                    "prompt": prompt});
                add_meta(&mut v, segment_idx, meta.as_ref(), true);
                text(v)
            }
            Event::MediaInit {
                segment_idx,
                mime,
                stream_id,
            } => text(json!({"type": "media_init", "segment_idx": segment_idx + 1,
                "mime": mime, "stream_id": stream_id, "mode": "av_fmp4"})),
            Event::MediaComplete {
                segment_idx,
                stream_id,
                binaries,
                ..
            } => text(
                json!({"type": "media_segment_complete", "segment_idx": segment_idx + 1,
                "stream_id": stream_id, "chunks": binaries}),
            ),
            Event::SegmentComplete {
                segment_idx,
                generation_ms,
                e2e_ms,
                meta,
            } => {
                text(json!({"type": "step_complete", "latency_ms": {
                    "total": e2e_ms, "worker_e2e": generation_ms, "main_user_step": e2e_ms,
                    "overhead": (e2e_ms - generation_ms).max(0.0)}}));
                let mut v = json!({"type": "ltx2_segment_complete",
                    "segment_idx": segment_idx + 1});
                add_meta(&mut v, segment_idx, meta.as_ref(), false);
                text(v)
            }
            Event::StreamComplete(_) => text(json!({"type": "ltx2_stream_complete"})),
            Event::SessionTimeout { timeout_seconds } => text(json!({"type": "session_timeout",
                "message": format!("Session expired after {timeout_seconds} seconds")})),
            Event::Error {
                code,
                message,
                product_code,
                ..
            } => {
                let message = if code == ErrorCode::WorkerFailed {
                    format!("AV streaming failed: {message}")
                } else {
                    message
                };
                text(json!({"type": "error", "message": message, "error_code": product_code}))
            }
            Event::Product(event) => text(product_event(event)),
            // `/v1/stream` only.
            Event::StreamStart { .. } | Event::Step { .. } | Event::Snapshot(_) => {}
        }
    }

    fn close(&self, end: &crate::error::EndReason) -> Option<(u16, String)> {
        end.product_close()
    }

    fn mode(&self) -> Mode {
        Mode::Product
    }
}

fn add_meta(v: &mut Value, segment_idx: u32, meta: Option<&SegmentMeta>, start: bool) {
    let total = meta.map_or(segment_idx + 1, |m| m.total_segments);
    v["total_segments"] = json!(total);
    if let (true, Some(m)) = (start, meta) {
        v["source"] = json!(m.source.as_str());
        v["seed_prompt_index"] = json!(m.seed_prompt_index);
        v["loop_iteration"] = json!(m.loop_iteration);
    }
}

fn dropped(v: &mut Value, d: Dropped) {
    v["dropped_user_raw_queue"] = json!(d.raw);
    v["dropped_user_ready_queue"] = json!(d.ready);
}

fn rewrite(kind: &str, r: &RewriteReport, seeds: bool) -> Value {
    let mut v = json!({"type": kind, "fallback_used": r.fallback_used, "error": r.error,
        "preset_id": r.preset_id, "preset_label": r.preset_label, "model": r.model,
        "latency_ms": r.latency_ms});
    if seeds {
        v["prompts"] = json!(r.prompts);
        v["reason"] = json!("rewrite");
        v["raw_llm_output"] = json!(r.raw_llm_output);
        v["rewrite_instruction"] = json!(r.instruction);
    }
    v
}

fn product_event(event: ProductEvent) -> Value {
    use ProductEvent as P;
    let name = event.name();
    match event {
        P::LoopUpdated(on) | P::AutoExtensionUpdated(on) | P::EnhancementUpdated(on) => {
            json!({"type": name, "enabled": on})
        }
        P::PausedUpdated(paused) => json!({"type": name, "paused": paused}),
        P::RewriteModelUpdated(model) => json!({"type": name, "model": model}),
        P::RewriteTemperatureUpdated(t) => json!({"type": name, "temperature": t}),
        P::RolloutStart {
            total_segments,
            preset_id,
            loop_enabled,
            loop_iteration,
            segment_cap,
        } => json!({"type": name, "total_segments": total_segments, "preset_id": preset_id,
            "stream_mode": "av_fmp4", "live_mode": true, "loop_generation_enabled": loop_enabled,
            "loop_iteration": loop_iteration, "generation_segment_cap": segment_cap}),
        P::SeedsInit {
            prompts,
            preset_id,
            preset_label,
        } => json!({"type": name, "prompts": prompts, "preset_id": preset_id,
            "preset_label": preset_label, "reason": "init", "seed_prompt_count": prompts.len()}),
        P::SeedsRewritten(r) => rewrite(name, &r, true),
        P::RewriteStarted { model } => json!({"type": name, "model": model}),
        P::RewriteComplete(r) => rewrite(name, &r, false),
        P::ResetPending { seed_count } => json!({"type": name, "seed_prompt_count": seed_count}),
        P::ResetApplied {
            reason,
            loop_iteration,
            seed_count,
            dropped: d,
        } => {
            let mut v = json!({"type": name, "reason": reason.as_str(),
                "loop_iteration": loop_iteration, "seed_prompt_count": seed_count});
            dropped(&mut v, d);
            v
        }
        P::LoopRestarted {
            loop_iteration,
            seed_count,
            dropped: d,
        } => {
            let mut v = json!({"type": name, "loop_iteration": loop_iteration,
                "seed_prompt_count": seed_count});
            dropped(&mut v, d);
            v
        }
        P::Restarted { segment_cap } => {
            json!({"type": name, "reason": "cap_restart", "segment_cap": segment_cap})
        }
        P::PromptSource {
            segment_idx,
            source,
            prompt_id,
            seed_prompt_index,
            loop_iteration,
        } => json!({"type": name, "segment_idx": segment_idx + 1, "source": source.as_str(),
            "prompt_id": prompt_id, "fallback_used": false,
            "seed_prompt_index": seed_prompt_index, "loop_iteration": loop_iteration}),
        P::PromptReceived {
            prompt_id,
            queue_depth,
        } => json!({"type": name, "prompt_id": prompt_id, "queue_depth": queue_depth}),
        P::PromptEnhancing { prompt_id } => json!({"type": name, "prompt_id": prompt_id}),
        P::PromptReady {
            prompt_id,
            prompt,
            source,
            latency_ms,
        } => json!({"type": name, "prompt_id": prompt_id, "prompt": prompt,
            "source": source.as_str(), "latency_ms": latency_ms}),
        P::PromptFallbackUsed {
            prompt_id,
            latency_ms,
            error,
        } => json!({"type": name, "prompt_id": prompt_id, "prompt": "",
            "source": "user_enhancement_failed", "latency_ms": latency_ms, "error": error}),
        P::SourcesBlocked { segment_idx } => {
            json!({"type": name, "segment_idx": segment_idx + 1})
        }
        P::SourcesResumed {
            segment_idx,
            source,
            prompt_id,
        } => json!({"type": name, "segment_idx": segment_idx + 1, "source": source.as_str(),
            "prompt_id": prompt_id}),
        P::AutoPromptFailed {
            segment_idx,
            latency_ms,
            error,
        } => json!({"type": name, "segment_idx": segment_idx + 1, "latency_ms": latency_ms,
            "error": error}),
        P::ProjectIdle { dropped: d } => {
            let mut v = json!({"type": name});
            dropped(&mut v, d);
            v
        }
    }
}
