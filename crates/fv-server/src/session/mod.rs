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

mod event;
mod machine;
mod runtime;
#[cfg(test)]
mod tests;

pub(crate) use event::{ClientInput, ClientMsg, Event, InitRequest, SegmentAsk};
pub use machine::{MAX_GUIDANCE, MAX_PENDING_SEGMENTS, MAX_PROMPT_BYTES, MAX_STEPS};
pub(crate) use runtime::run;

use bytes::Bytes;

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
}
