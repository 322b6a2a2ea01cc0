//! Sessions, shared by every protocol: a pure core and its IO shell.
//!
//! ```text
//!   socket ──frames──▶ Protocol::parse ──ClientInput──▶ ┌──────────────┐
//!                                                       │ SessionMachine│ (machine.rs: pure)
//!   pool, segment task, timers, drain ──Input─────────▶ └──────┬───────┘
//!                                                              │ Actions
//!                         runtime.rs executes them: pool, store, segment task, outbox
//!   socket ◀──frames── Protocol::render ◀──Event── Outbox ◀────┘
//! ```
//!
//! The seams a protocol adapter fills are [`Protocol`] (frames in, frames out; `v1.rs` for
//! `/v1/stream`) and, for a server-driven protocol, the "what next" decision in
//! [`SessionMachine::pump`](machine::SessionMachine). Everything else — admission, the state
//! machine, limits, the pool lease, the segment pipeline, encoding, logs, stores, close codes
//! — is shared.

mod calls;
mod event;
mod io;
mod machine;
mod product;
mod prompting;
mod runtime;
#[cfg(test)]
mod tests;

pub(crate) use calls::PromptDeps;
pub(crate) use event::{
    ClientInput, ClientMsg, Dropped, Event, InitRequest, ProductEvent, ProductMsg, RewriteReport,
    SegmentAsk, SegmentMeta,
};
pub(crate) use machine::Mode;
pub use machine::{MAX_GUIDANCE, MAX_PENDING_SEGMENTS, MAX_PROMPT_BYTES, MAX_STEPS};

use crate::app::AppState;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;

/// The upgrade every protocol's route ends in: refused while draining or when the access
/// rules (origin, token) say no; otherwise the WebSocket upgrade, and the session runs in
/// `protocol` under the server's task tracker so a drain waits for it.
pub(crate) fn upgrade(
    state: Arc<AppState>,
    protocol: Arc<dyn Protocol>,
    request: Request,
    peer: SocketAddr,
) -> Response {
    if state.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "server is draining").into_response();
    }
    if let Err(refusal) =
        crate::access::check(&state.config.streaming, request.headers(), request.uri())
    {
        tracing::info!(%peer, %refusal, "websocket upgrade refused");
        return refusal.into_response();
    }
    let limit = state.config.streaming.max_message_bytes;
    let (response, socket) = crate::ws::accept(request, limit);
    if let Some(socket) = socket {
        let tracker = state.tracker.clone();
        tokio::spawn(tracker.track_future(async move {
            if let Some(socket) = socket.await {
                runtime::run(state, protocol, socket, peer).await;
            }
        }));
    }
    response
}

/// One frame of a protocol, as it goes on the socket.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WireFrame {
    Text(String),
    Binary(Bytes),
}

/// A wire protocol spoken over the shared session core.
pub(crate) trait Protocol: Send + Sync + 'static {
    /// Turns one text frame into a session input (a message, or why it is not one).
    fn parse(&self, text: &str) -> ClientInput;
    /// Renders one session event as zero or more frames, in order.
    fn render(&self, event: Event, out: &mut Vec<WireFrame>);
    /// Who drives generation.
    fn mode(&self) -> Mode {
        Mode::ClientDriven
    }
    /// The close frame for a session that ended this way (`None`: send none).
    fn close(&self, end: &crate::error::EndReason) -> Option<(u16, String)> {
        end.close()
    }
}
