//! What router tests need, and nothing that makes them compile the server: a protocol
//! [`Client`], [`http_get`], the router in-process on port 0 ([`router::TestRouter`]), a
//! scriptable replica ([`replica::ScriptedReplica`]), and the process helpers
//! ([`Background`], [`ChildGuard`]).
//!
//! Its internal dependencies are fv-router and fv-protocol only; `cargo xtask check-layers`
//! fails if fv-router's tests could reach fv-server, fv-session, fv-pool, fv-encoder or
//! fv-inference through it. fv-testkit (the server-side kit) re-exports all of it.
//!
//! Everything started here binds `127.0.0.1:0` and stops when dropped.

mod background;
mod child;
mod client;
mod http;
mod procs;
mod replica;
pub mod router;

pub use background::Background;
pub use child::{ChildGuard, spawn_listening};
pub use client::{Client, RECV_TIMEOUT, Received, SegmentTranscript};
pub use http::{http_get, http_post};
pub use procs::processes_with_env;
