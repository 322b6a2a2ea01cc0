//! Plain HTTP endpoints: health, readiness, status, metrics, the player page, and what the
//! Dreamverse web app reads (`/prompt-system-config`, `/curated-presets`, `/models`).

use crate::app::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

/// Largest body accepted by the POST endpoints.
pub const MAX_POST_BYTES: usize = 1024 * 1024;

const PLAYER_HTML: &str = include_str!("../assets/player.html");

pub(crate) async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "sessions": state.sessions.active_count(),
        "stream_mode": state.config.streaming.stream_mode.as_str(),
    }))
}

pub(crate) async fn healthz(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "service": state.config.streaming.service_name,
        "ts": crate::time::now_iso8601(),
    }))
}

fn detail(code: StatusCode, detail: impl Into<String>) -> Response {
    (code, Json(json!({ "detail": detail.into() }))).into_response()
}

/// `GET /prompt-system-config`: the enhancer's system prompts and rewrite settings; 503
/// `"Prompt enhancer not initialized."` when `streaming.prompt.enabled` is false.
pub(crate) async fn prompt_system_config(State(state): State<Arc<AppState>>) -> Response {
    match &state.enhancer {
        Some(enhancer) => Json(enhancer.system_config()).into_response(),
        None => detail(
            StatusCode::SERVICE_UNAVAILABLE,
            "Prompt enhancer not initialized.",
        ),
    }
}

/// `POST /prompt-system-config`: guarded by `streaming.auth_token` when set; 400 with the
/// reason for a bad edit (nothing changes), 500 when saving a prompt file failed.
pub(crate) async fn update_prompt_system_config(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    if let Err(refusal) = crate::access::check_token(&state.config.streaming, &headers, &uri) {
        return detail(StatusCode::UNAUTHORIZED, refusal.to_string());
    }
    let Some(enhancer) = state.enhancer.clone() else {
        return detail(
            StatusCode::SERVICE_UNAVAILABLE,
            "Prompt enhancer not initialized.",
        );
    };
    if body.len() > MAX_POST_BYTES {
        return detail(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {MAX_POST_BYTES} bytes"),
        );
    }
    let update: fv_prompt::PromptSystemConfigUpdate = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => return detail(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
    };
    // Saving writes files: off the async threads.
    let saved = tokio::task::spawn_blocking(move || enhancer.update_system_config(&update)).await;
    match saved {
        Ok(Ok(config)) => Json(config).into_response(),
        Ok(Err(e @ fv_prompt::SystemConfigError::Save(_))) => {
            tracing::error!(error = %e, "saving system prompts failed");
            detail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Ok(Err(e)) => detail(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /curated-presets`.
pub(crate) async fn curated_presets(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(state.presets.list())
}

/// `POST /curated-presets/append`: guarded by `streaming.auth_token` when set.
pub(crate) async fn append_curated_preset(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    if let Err(refusal) = crate::access::check_token(&state.config.streaming, &headers, &uri) {
        return detail(StatusCode::UNAUTHORIZED, refusal.to_string());
    }
    if body.len() > MAX_POST_BYTES {
        return detail(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {MAX_POST_BYTES} bytes"),
        );
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return detail(StatusCode::BAD_REQUEST, "body must be a JSON object"),
        Err(e) => return detail(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
    };
    let appended = tokio::task::spawn_blocking(move || state.presets.append(&body)).await;
    match appended {
        Ok(Ok(answer)) => Json(answer).into_response(),
        Ok(Err(e)) => detail(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            e.detail,
        ),
        Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /models`: the model this server generates with, OpenAI-style.
pub(crate) async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": state.config.generator.model_path,
            "object": "model",
            "owned_by": state.config.streaming.service_name,
        }],
    }))
}

/// Same body as upstream, but the HTTP status tells the truth: 503 while warming or draining.
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let pool = state.deps.pool.status();
    let ready_workers = pool
        .workers
        .iter()
        .filter(|w| w.ready && w.warmup_ok != Some(false))
        .count();
    let failed = pool.workers.iter().filter(|w| out_of_service(w)).count();
    let succeeded = pool
        .workers
        .iter()
        .filter(|w| w.warmup_ok == Some(true))
        .count();
    let status = if state.is_draining() {
        "draining"
    } else if state.deps.pool.is_ready() && ready_workers > 0 {
        "ready"
    } else if state
        .warmup_timed_out
        .load(std::sync::atomic::Ordering::Acquire)
        || (pool.total_workers > 0 && failed == pool.total_workers)
    {
        "warmup_failed"
    } else {
        "warming"
    };
    let why = match status {
        "ready" => None,
        "draining" => Some("Server is draining."),
        "warmup_failed" => Some("GPU warmup failed."),
        _ => Some("No ready GPU worker processes."),
    };
    let body = json!({
        "status": status,
        "detail": why,
        "service": state.config.streaming.service_name,
        "ready_gpu_workers": ready_workers,
        "total_gpus": pool.total_workers,
        "available_gpus": pool.available_workers,
        "warmup_successful_gpus": succeeded,
        "warmup_failed_gpus": failed,
        "queue_size": pool.queue_depth,
        "ts": crate::time::now_iso8601(),
    });
    let code = if status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

pub(crate) async fn status(State(state): State<Arc<AppState>>) -> Json<Value> {
    let pool = state.deps.pool.status();
    let mut gpu_status = serde_json::Map::new();
    for w in &pool.workers {
        gpu_status.insert(
            w.id.to_string(),
            json!({
                "ready": w.ready,
                "available": w.ready && !w.busy && w.warmup_ok != Some(false),
                "client_count": u32::from(w.busy),
                "running": w.running,
                "session_id": w.session_id,
                "current_model_id": state.config.generator.model_path,
                "generator": w.generator,
                "process_alive": w.alive,
                "warmup_enabled": w.warmup_ok.is_some(),
                "warmup_success": w.warmup_ok.unwrap_or(true),
                "warmup_error": w.warmup_error,
                "warmup_timings": {},
                "segments_run": w.segments_run,
                "state": w.phase.as_str(),
                "pid": w.pid,
                "device": w.device,
                "restarts": w.restarts,
                "last_error": w.last_error,
            }),
        );
    }
    let sessions: Vec<Value> = state
        .sessions
        .snapshot()
        .into_iter()
        .map(|s| {
            json!({
                "id": s.id,
                "state": s.state.as_str(),
                "segment_idx": s.segment_idx,
                "age_seconds": s.age.as_secs_f64(),
                "idle_seconds": s.idle_for.as_secs_f64(),
                "busy": s.busy,
            })
        })
        .collect();
    let s = &state.config.streaming;
    Json(json!({
        "total_gpus": pool.total_workers,
        "available_gpus": pool.available_workers,
        "queue_size": pool.queue_depth,
        "warmup_enabled": s.warmup.enabled,
        "warmup_successful_gpus": pool.workers.iter().filter(|w| w.warmup_ok == Some(true)).count(),
        "warmup_failed_gpus": pool.workers.iter().filter(|w| out_of_service(w)).count(),
        "gpu_status": gpu_status,
        "active_sessions": state.sessions.active_count(),
        "max_sessions": s.max_sessions,
        "max_queue": s.max_queue,
        "draining": state.is_draining(),
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "sessions": sessions,
    }))
}

/// Failed to boot or warm up, or left out of service after crashing too often: counted as
/// `warmup_failed_gpus` (upstream counted failed boots as ready, §18 item 10).
fn out_of_service(w: &fv_pool::WorkerStatus) -> bool {
    w.warmup_ok == Some(false) || w.phase == fv_pool::WorkerPhase::Failed
}

pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    // Sampled at scrape time: the pool knows its queue exactly, whereas updates pushed from
    // sessions would miss the ones that leave the queue.
    metrics::gauge!(crate::metrics::QUEUE_DEPTH).set(state.deps.pool.status().queue_depth as f64);
    match crate::metrics::handle() {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are exported by the embedding application's recorder",
        )
            .into_response(),
    }
}

pub(crate) async fn player() -> Html<&'static str> {
    Html(PLAYER_HTML)
}
