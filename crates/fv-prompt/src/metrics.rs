//! Metric names of this crate, in one place, recorded through the `metrics` facade. The
//! application installs the recorder (fv-server's Prometheus exporter) and calls
//! [`describe`] once after installing it.

use crate::enhancer::Operation;
use crate::provider::ProviderError;
use std::time::Duration;

/// Provider attempts. Labels: `provider`, `operation`, `outcome` (`ok` | `error`).
pub const PROVIDER_REQUESTS_TOTAL: &str = "fv_prompt_provider_requests_total";
/// Seconds per provider attempt, successful or not. Labels: `provider`.
pub const PROVIDER_LATENCY_SECONDS: &str = "fv_prompt_provider_latency_seconds";
/// Failed provider attempts. Labels: `provider`, `kind` ([`ProviderError::kind`]).
pub const PROVIDER_ERRORS_TOTAL: &str = "fv_prompt_provider_errors_total";
/// Calls answered by a provider other than the first. Labels: `operation`, `provider` (the
/// one that answered).
pub const FALLBACKS_TOTAL: &str = "fv_prompt_fallbacks_total";
/// Enhancer calls. Labels: `operation`, `outcome` (`ok` | `error`).
pub const OPERATIONS_TOTAL: &str = "fv_prompt_operations_total";
/// Safety checks. Labels: `decision` (`allow` | `block` | `unavailable`).
pub const SAFETY_DECISIONS_TOTAL: &str = "fv_prompt_safety_decisions_total";
/// System-prompt reloads. Labels: `outcome` (`ok` | `error`).
pub const SYSTEM_PROMPT_RELOADS_TOTAL: &str = "fv_prompt_system_prompt_reloads_total";

/// Every metric name above.
pub const ALL: [&str; 7] = [
    PROVIDER_REQUESTS_TOTAL,
    PROVIDER_LATENCY_SECONDS,
    PROVIDER_ERRORS_TOTAL,
    FALLBACKS_TOTAL,
    OPERATIONS_TOTAL,
    SAFETY_DECISIONS_TOTAL,
    SYSTEM_PROMPT_RELOADS_TOTAL,
];

/// Registers units and help texts with the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        PROVIDER_REQUESTS_TOTAL,
        "LLM provider attempts, by provider, operation and outcome"
    );
    describe_histogram!(
        PROVIDER_LATENCY_SECONDS,
        Unit::Seconds,
        "LLM provider attempt time, by provider"
    );
    describe_counter!(
        PROVIDER_ERRORS_TOTAL,
        "Failed LLM provider attempts, by provider and error kind"
    );
    describe_counter!(
        FALLBACKS_TOTAL,
        "Prompt calls answered by a fallback provider, by operation and provider"
    );
    describe_counter!(
        OPERATIONS_TOTAL,
        "Prompt enhancer calls, by operation and outcome"
    );
    describe_counter!(SAFETY_DECISIONS_TOTAL, "Prompt safety checks, by decision");
    describe_counter!(
        SYSTEM_PROMPT_RELOADS_TOTAL,
        "System prompt reloads from files, by outcome"
    );
}

fn outcome(ok: bool) -> &'static str {
    if ok { "ok" } else { "error" }
}

pub(crate) fn attempt(
    provider: &str,
    op: Operation,
    result: &Result<String, ProviderError>,
    took: Duration,
) {
    metrics::counter!(
        PROVIDER_REQUESTS_TOTAL,
        "provider" => provider.to_owned(),
        "operation" => op.as_str(),
        "outcome" => outcome(result.is_ok())
    )
    .increment(1);
    metrics::histogram!(PROVIDER_LATENCY_SECONDS, "provider" => provider.to_owned())
        .record(took.as_secs_f64());
    if let Err(e) = result {
        metrics::counter!(
            PROVIDER_ERRORS_TOTAL,
            "provider" => provider.to_owned(),
            "kind" => e.kind()
        )
        .increment(1);
    }
}

pub(crate) fn fallback(op: Operation, provider: &str) {
    metrics::counter!(
        FALLBACKS_TOTAL,
        "operation" => op.as_str(),
        "provider" => provider.to_owned()
    )
    .increment(1);
}

pub(crate) fn operation(op: Operation, ok: bool) {
    metrics::counter!(OPERATIONS_TOTAL, "operation" => op.as_str(), "outcome" => outcome(ok))
        .increment(1);
}

pub(crate) fn safety(decision: &'static str) {
    metrics::counter!(SAFETY_DECISIONS_TOTAL, "decision" => decision).increment(1);
}

pub(crate) fn reload(ok: bool) {
    metrics::counter!(SYSTEM_PROMPT_RELOADS_TOTAL, "outcome" => outcome(ok)).increment(1);
}
