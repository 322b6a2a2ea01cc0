//! Shared by the integration tests; each test binary uses part of it.
#![allow(dead_code)]

pub mod conformance;
#[cfg(feature = "redis")]
pub mod redis_server;
