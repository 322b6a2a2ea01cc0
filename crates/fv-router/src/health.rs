//! The health loop: every `interval_seconds`, probe every replica at once, each probe bounded
//! by `timeout_seconds`; after a successful probe, read the replica's `/status` for capacity.

use crate::config::HealthCheckConfig;
use crate::probe;
use crate::registry::{Registry, Reported};
use futures_util::future::join_all;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

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
    let result = match probe::get(&replica.url, &config.path, timeout).await {
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
    let reported = match probe::get(&replica.url, status_path, timeout).await {
        Ok(r) if r.status < 300 => serde_json::from_slice(&r.body)
            .ok()
            .and_then(|v| Reported::from_status(&v)),
        Ok(_) | Err(_) => None,
    };
    registry.record_status(i, reported);
}
