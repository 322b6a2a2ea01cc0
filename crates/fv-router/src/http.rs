//! Plain HTTP endpoints: `/status`, `/healthz`, `/readyz`, `/metrics`, and the Dreamverse
//! monitor page's `/router/replicas/sessions`.

use crate::app::App;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

const SERVICE: &str = "stream-router";

/// Every replica with its health, capacity and sessions (upstream's keys plus ours).
pub(crate) async fn status(State(app): State<Arc<App>>) -> Json<Value> {
    let replicas = app.registry.status();
    let healthy = replicas
        .iter()
        .filter(|r| r.status == crate::health::Health::Healthy)
        .count();
    Json(json!({
        "replicas": replicas,
        "healthy_replicas": healthy,
        "draining": app.is_draining(),
        "uptime_seconds": app.started.elapsed().as_secs_f64(),
    }))
}

/// The Dreamverse monitor page's view (`replicas[].{url, healthy, active_sessions,
/// pending_sessions, max_available_sessions}`): the replica's own report where it gave one,
/// else what this router counts.
pub(crate) async fn replica_sessions(State(app): State<Arc<App>>) -> Json<Value> {
    let replicas: Vec<Value> = app
        .registry
        .status()
        .into_iter()
        .map(|r| {
            let reported = r.reported.as_ref();
            json!({
                "url": r.url,
                "healthy": r.status == crate::health::Health::Healthy,
                "active_sessions": reported.map_or(r.active_sessions, |p| p.active_sessions),
                "pending_sessions": reported.and_then(|p| p.queue_size),
                "max_available_sessions": reported.map(|p| p.max_sessions),
            })
        })
        .collect();
    Json(json!({ "replicas": replicas }))
}

/// Liveness: the process answers. Always 200.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok", "service": SERVICE}))
}

/// Readiness: 200 while some replica is healthy and the router is not draining, else 503.
pub(crate) async fn readyz(State(app): State<Arc<App>>) -> Response {
    let healthy = app.registry.healthy_count();
    let status = if app.is_draining() {
        "draining"
    } else if healthy == 0 {
        "no_healthy_replica"
    } else {
        "ready"
    };
    let code = if status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": status,
        "service": SERVICE,
        "healthy_replicas": healthy,
        "replicas": app.registry.replicas.len(),
    });
    (code, Json(body)).into_response()
}

/// Prometheus text of this router's metrics.
pub(crate) async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.registry.metrics.render(),
    )
        .into_response()
}
