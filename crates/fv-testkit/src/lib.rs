//! Test helpers for the streaming server: start the real server in-process on port 0
//! ([`TestServer`]), test generators ([`generators`]), a segment decoder ([`decode_fmp4`]) and
//! the headless-browser player ([`browser`]).
//!
//! The protocol client, `http_get`, the router harness and the process helpers live in
//! `fv-testkit-router` (which never compiles the server, so router tests stay light) and are
//! re-exported here, so server tests keep one import path.
//!
//! Every server started here binds `127.0.0.1:0` and is shut down when its [`TestServer`] is
//! dropped, so tests never collide on ports and leave nothing running.

pub mod browser;
mod fmp4;
pub mod generators;
mod server;

pub use fmp4::{Decoded, decode_fmp4};
pub use fv_testkit_router::router;
pub use fv_testkit_router::{
    Background, ChildGuard, Client, RECV_TIMEOUT, Received, SegmentTranscript, http_get, http_post,
    processes_with_env, spawn_listening,
};
pub use server::{TestServer, test_config};
