//! What replicas report about themselves (their `/status`) and what the router reports about
//! each replica (its own `/status` rows).

use crate::health::Health;
use serde::Serialize;
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

/// Capacity a replica reported on its `/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reported {
    /// Session limit (`max_sessions`, else `total_gpus` for servers that have one session per
    /// GPU).
    pub max_sessions: u32,
    /// Sessions open on the replica (`active_sessions`, else `total_gpus - available_gpus`).
    pub active_sessions: u32,
    /// `total_gpus`, when reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_gpus: Option<u64>,
    /// `available_gpus`, when reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_gpus: Option<u64>,
    /// `queue_size`, when reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_size: Option<u64>,
    /// `draining`: a draining replica takes no new sessions.
    pub draining: bool,
}

impl Reported {
    /// Reads a replica's `/status` body; `None` when it says nothing about capacity.
    pub fn from_status(body: &Value) -> Option<Self> {
        let int = |k: &str| body.get(k).and_then(Value::as_u64);
        let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let total_gpus = int("total_gpus");
        let available_gpus = int("available_gpus");
        let (max_sessions, active_sessions) = match (int("max_sessions"), int("active_sessions")) {
            (Some(max), Some(active)) => (clamp(max), clamp(active)),
            // Upstream servers: one session per GPU, no session counts.
            _ => match (total_gpus, available_gpus) {
                (Some(t), Some(a)) => (clamp(t), clamp(t.saturating_sub(a))),
                _ => return None,
            },
        };
        Some(Self {
            max_sessions,
            active_sessions,
            total_gpus,
            available_gpus,
            queue_size: int("queue_size"),
            draining: body.get("draining").and_then(Value::as_bool) == Some(true),
        })
    }
}

/// One replica's row in the router's `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaStatus {
    /// Normalized url.
    pub url: String,
    /// Configured name.
    pub name: Option<String>,
    /// Primary tier.
    pub primary: bool,
    /// Configured weight.
    pub weight: f64,
    /// `unknown`, `healthy` or `unhealthy`.
    pub status: Health,
    /// Last successful probe, seconds since the epoch.
    pub last_ok_at: Option<f64>,
    /// Last failed probe or connect, seconds since the epoch.
    pub last_failure_at: Option<f64>,
    /// Why the last probe or connect failed.
    pub last_error: Option<String>,
    /// Latency of the last successful probe.
    pub last_latency_ms: Option<f64>,
    /// Failed probes since the last success.
    pub consecutive_failures: u32,
    /// Successful probes since the last failure.
    pub consecutive_successes: u32,
    /// Sessions open through this router now.
    pub active_sessions: u32,
    /// Sessions bridged through this router since it started.
    pub sessions_routed: u64,
    /// Free slots as the router estimates them (`null` when the replica reports no capacity).
    pub free_slots: Option<u32>,
    /// The replica's own report from its `/status`, if any.
    pub reported: Option<Reported>,
    /// When that report arrived, seconds since the epoch.
    pub reported_at: Option<f64>,
}

pub(crate) fn epoch(t: Option<SystemTime>) -> Option<f64> {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn capacity_from_status_bodies() {
        let ours = json!({"active_sessions": 3, "max_sessions": 8, "total_gpus": 2,
                          "available_gpus": 0, "queue_size": 1, "draining": false});
        let r = Reported::from_status(&ours).unwrap();
        assert_eq!(
            (r.max_sessions, r.active_sessions, r.queue_size),
            (8, 3, Some(1))
        );
        let upstream = json!({"total_gpus": 1, "available_gpus": 0, "queue_size": 0});
        let r = Reported::from_status(&upstream).unwrap();
        assert_eq!((r.max_sessions, r.active_sessions), (1, 1));
        assert!(Reported::from_status(&json!({"status": "ok"})).is_none());
    }
}
