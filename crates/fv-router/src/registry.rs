//! The replicas and what the router knows about them: health (from probes and failed
//! connects), capacity (from each replica's `/status`), sessions routed, stickiness.
//!
//! Choosing a replica and counting the session against it happen under one lock
//! ([`Registry::acquire`]), so concurrent connections never both take a replica's last slot.

use crate::config::{ReplicaUrl, RouterConfig};
use crate::health::{Health, HealthTracker};
use crate::metrics::{ReplicaMetrics, RouterMetrics};
use crate::report::{ReplicaStatus, Reported, epoch};
use crate::select::{Candidate, Free, Selector};
use fv_lru::LruTtlMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// Static facts about one replica plus its metric handles.
#[derive(Debug)]
pub(crate) struct Replica {
    pub url: ReplicaUrl,
    pub name: Option<String>,
    /// `name`, else the url: used in logs and metric labels.
    pub label: String,
    pub primary: bool,
    pub weight: f64,
    pub metrics: ReplicaMetrics,
}

#[derive(Debug, Default)]
struct ReplicaState {
    health: HealthTracker,
    last_ok_at: Option<SystemTime>,
    last_failure_at: Option<SystemTime>,
    last_error: Option<String>,
    last_latency: Option<Duration>,
    reported: Option<Reported>,
    reported_at: Option<SystemTime>,
    /// `active` when the report arrived; later sessions are added on top of the report.
    active_at_report: u32,
    /// The replica refused a session for lack of room since its last report.
    full_hint: bool,
    /// Sessions this router has open on the replica, reservations included.
    active: u32,
    routed_total: u64,
}

impl ReplicaState {
    fn free(&self) -> Free {
        if self.full_hint {
            return Free::Slots(0);
        }
        match &self.reported {
            Some(r) if r.draining => Free::Slots(0),
            Some(r) => {
                let since_report = i64::from(self.active) - i64::from(self.active_at_report);
                let estimate =
                    (i64::from(r.active_sessions) + since_report).max(i64::from(self.active));
                let free = (i64::from(r.max_sessions) - estimate).max(0);
                Free::Slots(u32::try_from(free).unwrap_or(u32::MAX))
            }
            None => Free::Unknown {
                routed: self.active,
            },
        }
    }

    fn has_room(&self) -> bool {
        !matches!(self.free(), Free::Slots(0))
    }
}

/// All replicas and their state.
#[derive(Debug)]
pub(crate) struct Registry {
    pub replicas: Vec<Replica>,
    state: Mutex<Vec<ReplicaState>>,
    /// `client_id` → replica index: refreshed when a session with that id is bridged, the
    /// least recently refreshed dropped when full, ignored once its TTL has passed.
    sticky: Option<Mutex<LruTtlMap<String, usize>>>,
    selector: Arc<dyn Selector>,
    failure_threshold: u32,
    recovery_threshold: u32,
    pub metrics: RouterMetrics,
    /// Completed probe rounds; sessions that arrive before the first one wait for it.
    rounds: tokio::sync::watch::Sender<u64>,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (state here is plain
/// counters that stay consistent).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Registry {
    /// Builds the registry; the config must be valid (urls are parsed again here).
    pub fn new(
        config: &RouterConfig,
        selector: Arc<dyn Selector>,
    ) -> Result<Self, crate::RouterError> {
        let metrics = RouterMetrics::new();
        let mut replicas = Vec::with_capacity(config.replicas.len());
        for (i, r) in config.replicas.iter().enumerate() {
            let url = ReplicaUrl::parse(&r.url).map_err(|e| {
                crate::RouterError::Config(crate::config::ConfigError::Invalid {
                    problems: vec![format!("router.replicas[{i}].url: {e}")],
                })
            })?;
            let label = r.name.clone().unwrap_or_else(|| url.as_str().to_owned());
            let m = metrics.replica(&label);
            m.up.set(0.0);
            replicas.push(Replica {
                url,
                name: r.name.clone(),
                label,
                primary: r.primary,
                weight: r.weight,
                metrics: m,
            });
        }
        let state = replicas.iter().map(|_| ReplicaState::default()).collect();
        let s = &config.stickiness;
        let sticky = s.enabled.then(|| {
            Mutex::new(LruTtlMap::new(
                NonZeroUsize::new(s.max_clients).unwrap_or(NonZeroUsize::MIN),
                Duration::try_from_secs_f64(s.ttl_seconds).unwrap_or(Duration::MAX),
            ))
        });
        Ok(Self {
            replicas,
            state: Mutex::new(state),
            sticky,
            selector,
            failure_threshold: config.health_check.failure_threshold,
            recovery_threshold: config.health_check.recovery_threshold,
            metrics,
            rounds: tokio::sync::watch::channel(0).0,
        })
    }

    /// Records a probe result (`Ok(latency)` or the error text).
    pub fn record_probe(&self, i: usize, result: Result<Duration, String>) {
        let Some(replica) = self.replicas.get(i) else {
            return;
        };
        let mut st = lock(&self.state);
        let Some(s) = st.get_mut(i) else { return };
        let ok = result.is_ok();
        match result {
            Ok(latency) => {
                s.last_ok_at = Some(SystemTime::now());
                s.last_latency = Some(latency);
                replica.metrics.probe_seconds.record(latency.as_secs_f64());
            }
            Err(e) => {
                s.last_failure_at = Some(SystemTime::now());
                s.last_error = Some(e);
                replica.metrics.probe_failures.increment(1);
            }
        }
        self.apply(i, s, ok, "probe");
    }

    /// A connect to the replica failed at the TCP or WebSocket level: it counts like a failed
    /// probe, so a dead replica leaves the rotation without waiting for the next probe round.
    pub fn record_connect_failure(&self, i: usize, error: &str) {
        let mut st = lock(&self.state);
        let Some(s) = st.get_mut(i) else { return };
        s.last_failure_at = Some(SystemTime::now());
        s.last_error = Some(format!("connect: {error}"));
        self.apply(i, s, false, "connect");
    }

    fn apply(&self, i: usize, s: &mut ReplicaState, ok: bool, source: &str) {
        let Some(replica) = self.replicas.get(i) else {
            return;
        };
        if let Some(now) = s
            .health
            .record(ok, self.failure_threshold, self.recovery_threshold)
        {
            replica
                .metrics
                .up
                .set(if now == Health::Healthy { 1.0 } else { 0.0 });
            match now {
                Health::Healthy => {
                    tracing::info!(replica = %replica.label, source, "replica is healthy")
                }
                _ => tracing::warn!(
                    replica = %replica.label,
                    source,
                    failures = s.health.consecutive_failures,
                    error = s.last_error.as_deref().unwrap_or(""),
                    "replica is {}",
                    now.as_str()
                ),
            }
        }
    }

    /// Stores a `/status` report (`None`: the replica reported nothing usable).
    pub fn record_status(&self, i: usize, reported: Option<Reported>) {
        let mut st = lock(&self.state);
        let Some(s) = st.get_mut(i) else { return };
        s.reported_at = reported.as_ref().map(|_| SystemTime::now());
        s.reported = reported;
        s.active_at_report = s.active;
        s.full_hint = false;
    }

    /// The replica refused a session for lack of room: skip it until its next report.
    pub fn mark_full(&self, i: usize) {
        if let Some(s) = lock(&self.state).get_mut(i) {
            s.full_hint = true;
        }
    }

    /// Marks the end of a probe round.
    pub fn round_done(&self) {
        self.rounds.send_modify(|n| *n += 1);
        self.metrics.upkeep();
    }

    /// Waits (up to `limit`) until at least one probe round has finished, so sessions that
    /// arrive right after startup are not refused only because nothing was probed yet.
    pub async fn first_round(&self, limit: Duration) {
        let mut rx = self.rounds.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|n| *n > 0)).await;
    }

    pub fn healthy_count(&self) -> usize {
        lock(&self.state)
            .iter()
            .filter(|s| s.health.status == Health::Healthy)
            .count()
    }

    /// Chooses a replica for a new session and counts the session against it.
    ///
    /// `key` is the client's `client_id`: when it is known and its replica is healthy, has room
    /// and is not in `exclude`, that replica is chosen; otherwise the selector picks among
    /// healthy replicas with room. `None` when no replica qualifies.
    pub fn acquire(self: &Arc<Self>, key: Option<&str>, exclude: &[usize]) -> Option<Slot> {
        let sticky = match (key, &self.sticky) {
            (Some(k), Some(t)) => lock(t).get(k, Instant::now()).copied(),
            _ => None,
        };
        let mut st = lock(&self.state);
        let eligible = |i: usize, s: &ReplicaState| {
            !exclude.contains(&i) && s.health.status == Health::Healthy && s.has_room()
        };
        let chosen = match sticky {
            Some(i) if st.get(i).is_some_and(|s| eligible(i, s)) => i,
            _ => {
                let candidates: Vec<Candidate> = st
                    .iter()
                    .enumerate()
                    .filter(|(i, s)| eligible(*i, s))
                    .filter_map(|(i, s)| {
                        let r = self.replicas.get(i)?;
                        Some(Candidate {
                            index: i,
                            primary: r.primary,
                            weight: r.weight,
                            free: s.free(),
                        })
                    })
                    .collect();
                if candidates.is_empty() {
                    return None;
                }
                let pick = self.selector.pick(&candidates);
                // A selector may only pick a candidate; anything else falls back to the first.
                if candidates.iter().any(|c| c.index == pick) {
                    pick
                } else {
                    candidates.first()?.index
                }
            }
        };
        let s = st.get_mut(chosen)?;
        s.active += 1;
        let replica = self.replicas.get(chosen)?;
        replica.metrics.active.increment(1.0);
        Some(Slot {
            registry: self.clone(),
            index: chosen,
            committed: false,
        })
    }

    /// Whether another replica than those in `exclude` could take a session now.
    pub fn has_candidate(&self, exclude: &[usize]) -> bool {
        lock(&self.state).iter().enumerate().any(|(i, s)| {
            !exclude.contains(&i) && s.health.status == Health::Healthy && s.has_room()
        })
    }

    pub fn status(&self) -> Vec<ReplicaStatus> {
        let st = lock(&self.state);
        self.replicas
            .iter()
            .zip(st.iter())
            .map(|(r, s)| ReplicaStatus {
                url: r.url.as_str().to_owned(),
                name: r.name.clone(),
                primary: r.primary,
                weight: r.weight,
                status: s.health.status,
                last_ok_at: epoch(s.last_ok_at),
                last_failure_at: epoch(s.last_failure_at),
                last_error: s.last_error.clone(),
                last_latency_ms: s.last_latency.map(|d| d.as_secs_f64() * 1000.0),
                consecutive_failures: s.health.consecutive_failures,
                consecutive_successes: s.health.consecutive_successes,
                active_sessions: s.active,
                sessions_routed: s.routed_total,
                free_slots: match s.free() {
                    Free::Slots(n) => Some(n),
                    Free::Unknown { .. } => None,
                },
                reported: s.reported.clone(),
                reported_at: epoch(s.reported_at),
            })
            .collect()
    }

    fn release(&self, i: usize) {
        if let Some(s) = lock(&self.state).get_mut(i) {
            s.active = s.active.saturating_sub(1);
        }
        if let Some(r) = self.replicas.get(i) {
            r.metrics.active.decrement(1.0);
        }
    }
}

/// One session counted against one replica; released on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    registry: Arc<Registry>,
    index: usize,
    committed: bool,
}

impl Slot {
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn replica(&self) -> Option<&Replica> {
        self.registry.replicas.get(self.index)
    }

    /// The session is bridged: count it and remember `key` → this replica.
    pub fn commit(&mut self, key: Option<&str>) {
        if self.committed {
            return;
        }
        self.committed = true;
        if let Some(s) = lock(&self.registry.state).get_mut(self.index) {
            s.routed_total += 1;
        }
        if let Some(r) = self.replica() {
            r.metrics.routed.increment(1);
        }
        if let (Some(k), Some(t)) = (key, &self.registry.sticky) {
            lock(t).insert(k.to_owned(), self.index, Instant::now());
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.release(self.index);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn free_counts_sessions_opened_since_the_report() {
        let mut s = ReplicaState {
            active: 1,
            ..ReplicaState::default()
        };
        s.reported = Reported::from_status(&json!({"active_sessions": 1, "max_sessions": 3}));
        s.active_at_report = 1;
        assert_eq!(s.free(), Free::Slots(2));
        s.active = 3;
        assert_eq!(s.free(), Free::Slots(0));
        assert!(!s.has_room());
        s.active = 0;
        assert_eq!(s.free(), Free::Slots(3));
        s.full_hint = true;
        assert_eq!(s.free(), Free::Slots(0));
    }
}
