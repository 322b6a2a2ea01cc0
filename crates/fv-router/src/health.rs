//! Replica health: the consecutive-results state machine ([`HealthTracker`]) and the loop
//! that feeds it. Every `interval_seconds` every replica is probed at once, each probe bounded
//! by `timeout_seconds`; after a successful probe the replica's `/status` is read for capacity.

use crate::client;
use crate::config::HealthCheckConfig;
use crate::registry::Registry;
use crate::report::Reported;
use futures_util::future::join_all;
use serde::Serialize;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A replica's health as the probes see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not probed successfully yet (not routable).
    Unknown,
    /// Routable.
    Healthy,
    /// `failure_threshold` consecutive failures; routable again after `recovery_threshold`
    /// consecutive successes.
    Unhealthy,
}

impl Health {
    /// The `/status` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// The consecutive-results state machine of protocol-facts §14: `unknown` becomes `healthy`
/// on the first success; `failure_threshold` failures in a row make `unknown` or `healthy`
/// `unhealthy`; `recovery_threshold` successes in a row make `unhealthy` `healthy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthTracker {
    /// Current state.
    pub status: Health,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Successes since the last failure.
    pub consecutive_successes: u32,
}

impl Default for HealthTracker {
    fn default() -> Self {
        Self {
            status: Health::Unknown,
            consecutive_failures: 0,
            consecutive_successes: 0,
        }
    }
}

impl HealthTracker {
    /// Records one probe result; returns the new state when it changed.
    pub fn record(
        &mut self,
        ok: bool,
        failure_threshold: u32,
        recovery_threshold: u32,
    ) -> Option<Health> {
        let before = self.status;
        if ok {
            self.consecutive_failures = 0;
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            self.status = match self.status {
                Health::Unknown | Health::Healthy => Health::Healthy,
                Health::Unhealthy if self.consecutive_successes >= recovery_threshold => {
                    Health::Healthy
                }
                Health::Unhealthy => Health::Unhealthy,
            };
        } else {
            self.consecutive_successes = 0;
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            if self.consecutive_failures >= failure_threshold {
                self.status = Health::Unhealthy;
            }
        }
        (self.status != before).then_some(self.status)
    }
}

/// Runs probe rounds until `stop` fires. The first round starts at once.
pub(crate) async fn run(
    registry: Arc<Registry>,
    config: HealthCheckConfig,
    stop: CancellationToken,
) {
    let interval = config.interval();
    loop {
        let started = tokio::time::Instant::now();
        tokio::select! {
            () = round(&registry, &config) => {}
            () = stop.cancelled() => return,
        }
        registry.round_done();
        // Rounds start `interval` apart; a round never overlaps the next because every probe
        // in it is bounded by the timeout.
        tokio::select! {
            () = tokio::time::sleep_until(started + interval) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// One probe of every replica, concurrently.
async fn round(registry: &Arc<Registry>, config: &HealthCheckConfig) {
    let probes = (0..registry.replicas.len()).map(|i| probe_one(registry, config, i));
    join_all(probes).await;
}

async fn probe_one(registry: &Registry, config: &HealthCheckConfig, i: usize) {
    let Some(replica) = registry.replicas.get(i) else {
        return;
    };
    let timeout = config.timeout();
    let result = match client::get(&replica.url, &config.path, timeout).await {
        // Redirects are not followed: a 3xx still proves the replica answers.
        Ok(r) if r.status < 400 => Ok(r.latency),
        Ok(r) => Err(format!("GET {} answered HTTP {}", config.path, r.status)),
        Err(e) => Err(format!("GET {}: {e}", config.path)),
    };
    let ok = result.is_ok();
    if let Err(e) = &result {
        tracing::debug!(replica = %replica.label, error = %e, "probe failed");
    }
    registry.record_probe(i, result);
    let Some(status_path) = config.status_path.as_deref().filter(|_| ok) else {
        return;
    };
    let reported = match client::get(&replica.url, status_path, timeout).await {
        Ok(r) if r.status < 300 => serde_json::from_slice(&r.body)
            .ok()
            .and_then(|v| Reported::from_status(&v)),
        Ok(_) | Err(_) => None,
    };
    registry.record_status(i, reported);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_transcript() {
        let mut h = HealthTracker::default();
        // unknown -> healthy on the first success
        assert_eq!(h.record(true, 3, 2), Some(Health::Healthy));
        // two failures: still healthy; the third flips it
        assert_eq!(h.record(false, 3, 2), None);
        assert_eq!(h.record(false, 3, 2), None);
        assert_eq!(h.record(false, 3, 2), Some(Health::Unhealthy));
        assert_eq!(h.consecutive_failures, 3);
        // one success is not enough to recover; a failure resets the count
        assert_eq!(h.record(true, 3, 2), None);
        assert_eq!(h.record(false, 3, 2), None);
        assert_eq!(h.record(true, 3, 2), None);
        assert_eq!(h.record(true, 3, 2), Some(Health::Healthy));
        assert_eq!(h.consecutive_failures, 0);
    }

    #[test]
    fn unknown_fails_to_unhealthy() {
        let mut h = HealthTracker::default();
        assert_eq!(h.record(false, 2, 1), None);
        assert_eq!(h.status, Health::Unknown);
        assert_eq!(h.record(false, 2, 1), Some(Health::Unhealthy));
        assert_eq!(h.record(true, 2, 1), Some(Health::Healthy));
    }
}
