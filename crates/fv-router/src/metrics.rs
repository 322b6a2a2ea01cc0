//! Metric names in one place, and the router's own Prometheus recorder.
//!
//! Each [`crate::Router`] owns a recorder instead of installing the process-wide one: a router
//! embedded next to a streaming server (or several routers in one test process) then never
//! fights over the global slot, and `/metrics` shows exactly this router's numbers. Handles
//! are registered once per replica at startup, so recording is an atomic add.

use metrics::{Counter, Gauge, Histogram, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Counter: sessions bridged to a replica (`replica`).
pub const SESSIONS_ROUTED_TOTAL: &str = "fv_router_sessions_routed_total";
/// Gauge: sessions open through the router now (`replica`).
pub const SESSIONS_ACTIVE: &str = "fv_router_sessions_active";
/// Counter: attempts on a replica that failed before the client saw anything, so the session
/// was offered to another replica or refused (`replica`, `reason`).
pub const FAILOVERS_TOTAL: &str = "fv_router_failovers_total";
/// Counter: sessions the router turned away itself (`reason`: `no_healthy_replica`,
/// `bridge_failed`, `draining`, `session_limit`, `first_frame_timeout`).
pub const REJECTED_TOTAL: &str = "fv_router_rejected_total";
/// Counter: WebSocket bytes relayed, frame headers included (`replica`, `direction`:
/// `to_replica`/`to_client`).
pub const BRIDGE_BYTES_TOTAL: &str = "fv_router_bridge_bytes_total";
/// Counter: WebSocket messages relayed (`replica`, `direction`).
pub const BRIDGE_MESSAGES_TOTAL: &str = "fv_router_bridge_messages_total";
/// Histogram: health-probe latency of successful probes (`replica`).
pub const PROBE_SECONDS: &str = "fv_router_probe_seconds";
/// Counter: failed health probes (`replica`).
pub const PROBE_FAILURES_TOTAL: &str = "fv_router_probe_failures_total";
/// Gauge: 1 when the replica is healthy, else 0 (`replica`).
pub const REPLICA_UP: &str = "fv_router_replica_up";

/// Every metric name, for docs and tests.
pub const ALL: [&str; 9] = [
    SESSIONS_ROUTED_TOTAL,
    SESSIONS_ACTIVE,
    FAILOVERS_TOTAL,
    REJECTED_TOTAL,
    BRIDGE_BYTES_TOTAL,
    BRIDGE_MESSAGES_TOTAL,
    PROBE_SECONDS,
    PROBE_FAILURES_TOTAL,
    REPLICA_UP,
];

/// The router's recorder and the handles that do not belong to one replica.
pub(crate) struct RouterMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for RouterMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterMetrics").finish_non_exhaustive()
    }
}

/// Handles of one replica.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaMetrics {
    pub routed: Counter,
    pub active: Gauge,
    pub up: Gauge,
    pub probe_seconds: Histogram,
    pub probe_failures: Counter,
    pub bytes_to_replica: Counter,
    pub bytes_to_client: Counter,
    pub messages_to_replica: Counter,
    pub messages_to_client: Counter,
}

impl RouterMetrics {
    pub fn new() -> Self {
        let buckets = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let recorder = match PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
        {
            Ok(builder) => builder.build_recorder(),
            // Only an empty bucket list fails; summaries are the exporter's fallback.
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, describe);
        // Descriptions are published on upkeep.
        handle.run_upkeep();
        Self { recorder, handle }
    }

    /// Prometheus text of every metric.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram samples into their buckets; the health loop calls it every round so
    /// memory stays bounded when nobody scrapes `/metrics`.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    pub fn replica(&self, label: &str) -> ReplicaMetrics {
        let l = label.to_owned();
        metrics::with_local_recorder(&self.recorder, || ReplicaMetrics {
            routed: metrics::counter!(SESSIONS_ROUTED_TOTAL, "replica" => l.clone()),
            active: metrics::gauge!(SESSIONS_ACTIVE, "replica" => l.clone()),
            up: metrics::gauge!(REPLICA_UP, "replica" => l.clone()),
            probe_seconds: metrics::histogram!(PROBE_SECONDS, "replica" => l.clone()),
            probe_failures: metrics::counter!(PROBE_FAILURES_TOTAL, "replica" => l.clone()),
            bytes_to_replica: metrics::counter!(BRIDGE_BYTES_TOTAL, "replica" => l.clone(), "direction" => "to_replica"),
            bytes_to_client: metrics::counter!(BRIDGE_BYTES_TOTAL, "replica" => l.clone(), "direction" => "to_client"),
            messages_to_replica: metrics::counter!(BRIDGE_MESSAGES_TOTAL, "replica" => l.clone(), "direction" => "to_replica"),
            messages_to_client: metrics::counter!(BRIDGE_MESSAGES_TOTAL, "replica" => l.clone(), "direction" => "to_client"),
        })
    }

    pub fn failover(&self, replica: &str, reason: &'static str) {
        let l = replica.to_owned();
        metrics::with_local_recorder(&self.recorder, || {
            metrics::counter!(FAILOVERS_TOTAL, "replica" => l, "reason" => reason).increment(1);
        });
    }

    pub fn rejected(&self, reason: &'static str) {
        metrics::with_local_recorder(&self.recorder, || {
            metrics::counter!(REJECTED_TOTAL, "reason" => reason).increment(1);
        });
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(SESSIONS_ROUTED_TOTAL, "Sessions bridged to each replica");
    describe_gauge!(
        SESSIONS_ACTIVE,
        "Sessions open through the router, per replica"
    );
    describe_counter!(
        FAILOVERS_TOTAL,
        "Replica attempts that failed before the client saw a frame, by replica and reason"
    );
    describe_counter!(REJECTED_TOTAL, "Sessions the router refused, by reason");
    describe_counter!(
        BRIDGE_BYTES_TOTAL,
        Unit::Bytes,
        "WebSocket bytes relayed (frames as sent), by replica and direction"
    );
    describe_counter!(
        BRIDGE_MESSAGES_TOTAL,
        "WebSocket messages relayed, by replica and direction"
    );
    describe_histogram!(PROBE_SECONDS, Unit::Seconds, "Health-probe latency");
    describe_counter!(PROBE_FAILURES_TOTAL, "Failed health probes");
    describe_gauge!(REPLICA_UP, "1 when the replica is healthy");
}
