//! Helpers shared by the router's integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use serde_json::Value;

/// `gpu_id` from the messages `Client::init*` returned (the scripted replicas put their id there).
pub fn gpu_id(init: &[Value]) -> u64 {
    init.iter()
        .find(|m| m["type"] == "gpu_assigned")
        .and_then(|m| m["gpu_id"].as_u64())
        .expect("gpu_assigned in the init transcript")
}

pub fn replica_row<'a>(status: &'a Value, url: &str) -> &'a Value {
    status["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["url"] == url)
        .unwrap()
}
