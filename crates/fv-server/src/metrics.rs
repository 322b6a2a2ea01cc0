//! Metric names in one place, and the process-wide Prometheus recorder.
//!
//! The `metrics` facade has one global recorder per process; several servers in one process
//! (tests) share it, so counters are process totals and tests assert on deltas.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

pub const SESSIONS_ACTIVE: &str = "fv_sessions_active";
pub const SESSIONS_TOTAL: &str = "fv_sessions_total";
pub const QUEUE_DEPTH: &str = "fv_queue_depth";
pub const SEGMENTS_TOTAL: &str = "fv_segments_total";
pub const GENERATION_SECONDS: &str = "fv_generation_seconds";
pub const ENCODE_SECONDS: &str = "fv_encode_seconds";
pub const SEGMENT_E2E_SECONDS: &str = "fv_segment_e2e_seconds";
pub const FIRST_MEDIA_SECONDS: &str = "fv_first_media_seconds";
pub const MEDIA_BYTES_TOTAL: &str = "fv_media_bytes_total";
pub const ERRORS_TOTAL: &str = "fv_errors_total";
pub const SESSION_BUGS_TOTAL: &str = "fv_session_bugs_total";
pub const SEGMENT_ENHANCEMENTS_TOTAL: &str = "fv_segment_enhancements_total";
pub const AUTO_EXTENSIONS_TOTAL: &str = "fv_auto_extensions_total";
pub const PROMPTS_BLOCKED_TOTAL: &str = "fv_prompts_blocked_total";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle. `None` when some
/// other recorder was installed first (an embedding application's): `/metrics` then says so.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(SESSIONS_ACTIVE, "WebSocket sessions currently connected");
    describe_counter!(SESSIONS_TOTAL, "Sessions ended, by end reason");
    describe_gauge!(QUEUE_DEPTH, "Sessions waiting for a worker");
    describe_counter!(SEGMENTS_TOTAL, "Segments finished, by result");
    describe_histogram!(
        GENERATION_SECONDS,
        Unit::Seconds,
        "Generator time per segment"
    );
    describe_histogram!(ENCODE_SECONDS, Unit::Seconds, "Encoder time per segment");
    describe_histogram!(
        SEGMENT_E2E_SECONDS,
        Unit::Seconds,
        "segment_prompt_source received to last media byte sent"
    );
    describe_histogram!(
        FIRST_MEDIA_SECONDS,
        Unit::Seconds,
        "segment_prompt_source received to first media byte sent"
    );
    describe_counter!(MEDIA_BYTES_TOTAL, Unit::Bytes, "fMP4 bytes sent");
    describe_counter!(ERRORS_TOTAL, "Error frames sent, by code");
    // The stores count their own operations and failures (`fv_store_*`).
    fv_store::metrics::describe();
    // fv-prompt counts provider calls, latency, errors, fallbacks, safety decisions.
    fv_prompt::metrics::describe();
    describe_counter!(
        SEGMENT_ENHANCEMENTS_TOTAL,
        "Segment prompts sent to enhancement, by outcome (enhanced, over_budget, failed, empty, blocked, disabled)"
    );
    describe_counter!(
        AUTO_EXTENSIONS_TOTAL,
        "Auto-extension calls, by outcome (ok, over_budget, failed, empty, blocked, disabled)"
    );
    describe_counter!(
        PROMPTS_BLOCKED_TOTAL,
        "Prompts the safety filter blocked, by source (init, segment, seeds, append, project_init, rewrite)"
    );
    describe_counter!(
        SESSION_BUGS_TOTAL,
        "Refused state transitions in the session core (always a bug; logged with details)"
    );
}
