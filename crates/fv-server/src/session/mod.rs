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
    /// Who drives generation.
    fn mode(&self) -> Mode {
        Mode::ClientDriven
    }
    /// The close frame for a session that ended this way (`None`: send none).
    fn close(&self, end: &crate::error::EndReason) -> Option<(u16, String)> {
        end.close()
    }
}
