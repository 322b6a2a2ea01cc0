//! Session admission, limits and the idle/init reaper.

use crate::error::SessionError;
use crate::session::{Session, new_session_id};
use crate::state::SessionState;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

/// Largest accepted `max_sessions`; far above what one server can serve, it only catches typos.
pub const MAX_SESSIONS_LIMIT: usize = 100_000;
/// Largest accepted init or idle timeout (24 h).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// Reaper scan period used by servers unless configured otherwise.
pub const DEFAULT_REAP_PERIOD: Duration = Duration::from_secs(1);
/// Shortest reaper period; a zero period is raised to this (tokio intervals reject zero).
pub const MIN_REAP_PERIOD: Duration = Duration::from_millis(1);

/// Budgets every session runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Concurrent sessions, counting every accepted socket, even one that has not sent
    /// `session_init_v2` yet (the init timeout bounds how long it can hold the slot).
    /// Default 8; range `1..=MAX_SESSIONS_LIMIT`.
    pub max_sessions: usize,
    /// Segments per session before it completes with reason `segment_cap`. Default 6; must be
    /// at least 1 (there is no "unlimited").
    pub segment_cap: u32,
    /// How long an initialized session may stay silent while not generating. Default 300 s;
    /// range `(0, MAX_TIMEOUT]`.
    pub idle_timeout: Duration,
    /// How long a new socket may take to send `session_init_v2`. Default 10 s; range
    /// `(0, MAX_TIMEOUT]`.
    pub init_timeout: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_sessions: 8,
            segment_cap: 6,
            idle_timeout: Duration::from_secs(300),
            init_timeout: Duration::from_secs(10),
        }
    }
}

impl SessionLimits {
    /// Checks every field's range; the error names the field and the value.
    pub fn validate(&self) -> Result<(), SessionError> {
        if self.max_sessions == 0 || self.max_sessions > MAX_SESSIONS_LIMIT {
            return Err(SessionError::InvalidLimits {
                field: "max_sessions",
                reason: format!(
                    "must be in 1..={MAX_SESSIONS_LIMIT} (got {})",
                    self.max_sessions
                ),
            });
        }
        if self.segment_cap == 0 {
            return Err(SessionError::InvalidLimits {
                field: "segment_cap",
                reason: "must be at least 1 (got 0)".to_string(),
            });
        }
        for (field, value) in [
            ("idle_timeout", self.idle_timeout),
            ("init_timeout", self.init_timeout),
        ] {
            if value.is_zero() || value > MAX_TIMEOUT {
                return Err(SessionError::InvalidLimits {
                    field,
                    reason: format!(
                        "must be greater than 0 and at most {}s (got {value:?})",
                        MAX_TIMEOUT.as_secs()
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Why a session was expired by the manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Expiry {
    /// No `session_init_v2` within the init timeout (the value given).
    InitTimeout(Duration),
    /// No client frame for the idle timeout (the value given) while not generating.
    IdleTimeout(Duration),
    /// The server is shutting down ([`SessionManager::expire_all`]).
    Shutdown,
    /// Ended by an operator or a test ([`Session::expire_now`]).
    Evicted,
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expiry::InitTimeout(d) => write!(f, "no session_init_v2 within {d:?}"),
            Expiry::IdleTimeout(d) => write!(f, "idle for {d:?}"),
            Expiry::Shutdown => f.write_str("server shutting down"),
            Expiry::Evicted => f.write_str("session evicted"),
        }
    }
}

/// One row of [`SessionManager::snapshot`], for `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: String,
    /// The session's state.
    pub state: SessionState,
    /// Segments the session has completed.
    pub segment_idx: u32,
    /// Time since admission.
    pub age: Duration,
    /// Time the idle timer has been running: since the last client activity or the end of
    /// the last busy period; zero while busy.
    pub idle_for: Duration,
    /// A segment is generating (idle timer suspended).
    pub busy: bool,
    /// `session_init_v2` was accepted (the idle timeout applies instead of the init timeout).
    pub initialized: bool,
    /// Set once the manager expired the session; the slot is freed when the handle drops.
    pub expired: Option<Expiry>,
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) state: SessionState,
    pub(crate) segment_idx: u32,
    created: Instant,
    pub(crate) last_activity: Instant,
    pub(crate) busy: bool,
    pub(crate) initialized: bool,
    expiry: watch::Sender<Option<Expiry>>,
}

impl Entry {
    /// When this entry expires and why, if a timer is running.
    fn deadline(&self, limits: &SessionLimits) -> Option<(Instant, Expiry)> {
        // Busy sessions and sessions already ending run no timer; an expired one fires once.
        if self.busy || self.state.is_terminal() || self.expiry.borrow().is_some() {
            return None;
        }
        // checked_add: an Instant overflow would panic; no deadline is the sane fallback.
        if self.initialized {
            let d = self.last_activity.checked_add(limits.idle_timeout)?;
            Some((d, Expiry::IdleTimeout(limits.idle_timeout)))
        } else {
            let d = self.created.checked_add(limits.init_timeout)?;
            Some((d, Expiry::InitTimeout(limits.init_timeout)))
        }
    }

    /// Fires `reason` unless the entry already expired. Returns whether it fired.
    fn expire(&self, reason: Expiry) -> bool {
        self.expiry.send_if_modified(|current| {
            if current.is_some() {
                false
            } else {
                *current = Some(reason);
                true
            }
        })
    }
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<String, Entry>,
    shutting_down: bool,
}

/// Admits sessions up to [`SessionLimits::max_sessions`] and expires silent ones.
///
/// Shared as `Arc<SessionManager>`; all methods take `&self` and hold a `std::sync::Mutex`
/// only for short, non-async critical sections. Time is `tokio::time::Instant`, so tests can
/// pause and advance it.
#[derive(Debug)]
pub struct SessionManager {
    limits: SessionLimits,
    inner: Mutex<Inner>,
    /// `true` stops the reaper; dropping the manager drops the sender, which stops it too.
    stop: watch::Sender<bool>,
}

impl SessionManager {
    /// Validates `limits` and creates an empty manager.
    pub fn new(limits: SessionLimits) -> Result<Arc<Self>, SessionError> {
        limits.validate()?;
        Ok(Arc::new(Self {
            limits,
            inner: Mutex::new(Inner::default()),
            stop: watch::Sender::new(false),
        }))
    }

    pub fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    // A panic while holding the lock cannot leave an entry half-updated in a harmful way
    // (every update is a few field stores), so a poisoned lock is simply reused.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot for a newly accepted socket. Call it at accept, before reading any frame.
    ///
    /// Fails with [`SessionError::Full`] when `max_sessions` slots are held and with
    /// [`SessionError::ShuttingDown`] after [`shutdown`](Self::shutdown). The slot is freed
    /// when the returned [`Session`] is dropped.
    pub fn admit(self: &Arc<Self>) -> Result<Session, SessionError> {
        let mut inner = self.lock();
        if inner.shutting_down {
            return Err(SessionError::ShuttingDown);
        }
        if inner.sessions.len() >= self.limits.max_sessions {
            return Err(SessionError::Full {
                max: self.limits.max_sessions,
            });
        }
        let id = loop {
            // A v4 collision is practically impossible; looping keeps the map consistent anyway.
            let id = new_session_id();
            if !inner.sessions.contains_key(&id) {
                break id;
            }
        };
        let now = Instant::now();
        let (tx, rx) = watch::channel(None);
        inner.sessions.insert(
            id.clone(),
            Entry {
                state: SessionState::Initializing,
                segment_idx: 0,
                created: now,
                last_activity: now,
                busy: false,
                initialized: false,
                expiry: tx,
            },
        );
        Ok(Session::admitted(Arc::clone(self), id, rx))
    }

    /// Slots currently held (every admitted session whose handle is alive, expired or not).
    pub fn active_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// A consistent view of every held slot, oldest first.
    pub fn snapshot(&self) -> Vec<SessionInfo> {
        let now = Instant::now();
        let inner = self.lock();
        let mut rows: Vec<(Instant, SessionInfo)> = inner
            .sessions
            .iter()
            .map(|(id, e)| {
                let info = SessionInfo {
                    id: id.clone(),
                    state: e.state,
                    segment_idx: e.segment_idx,
                    age: now.saturating_duration_since(e.created),
                    idle_for: if e.busy {
                        Duration::ZERO
                    } else {
                        now.saturating_duration_since(e.last_activity)
                    },
                    busy: e.busy,
                    initialized: e.initialized,
                    expired: *e.expiry.borrow(),
                };
                (e.created, info)
            })
            .collect();
        drop(inner);
        rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
        rows.into_iter().map(|(_, info)| info).collect()
    }

    /// Expires every session whose init or idle deadline has passed; returns how many fired.
    /// The reaper calls this; it is public so callers can drive expiry without a task.
    pub fn reap(&self) -> usize {
        let now = Instant::now();
        let inner = self.lock();
        let mut fired = 0;
        for (id, entry) in &inner.sessions {
            if let Some((deadline, reason)) = entry.deadline(&self.limits)
                && deadline <= now
                && entry.expire(reason)
            {
                tracing::debug!(session_id = %id, %reason, "session expired");
                fired += 1;
            }
        }
        fired
    }

    /// Expires every live session with `reason` (e.g. [`Expiry::Shutdown`] when draining);
    /// returns how many fired. Sessions already expired keep their first reason.
    pub fn expire_all(&self, reason: Expiry) -> usize {
        self.lock()
            .sessions
            .values()
            .filter(|e| e.expire(reason))
            .count()
    }

    /// Starts the background reaper: every `period` (raised to [`MIN_REAP_PERIOD`] if
    /// smaller) it calls [`reap`](Self::reap). It holds only a `Weak` reference, so it ends on
    /// its own when the manager is dropped, or at the next tick after
    /// [`shutdown`](Self::shutdown). Must be called inside a tokio runtime.
    pub fn spawn_reaper(self: &Arc<Self>, period: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let mut stop = self.stop.subscribe();
        let period = period.max(MIN_REAP_PERIOD);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    // Err = sender dropped = manager gone; Ok = shutdown requested.
                    _ = stop.wait_for(|stopped| *stopped) => break,
                }
                let Some(manager) = weak.upgrade() else { break };
                manager.reap();
            }
        })
    }

    /// Stops admitting (further [`admit`](Self::admit) calls fail with
    /// [`SessionError::ShuttingDown`]) and stops the reaper. Live sessions are untouched; use
    /// [`expire_all`](Self::expire_all) to tell them to end.
    pub fn shutdown(&self) {
        self.lock().shutting_down = true;
        self.stop.send_replace(true);
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.lock().shutting_down
    }

    pub(crate) fn update(&self, id: &str, f: impl FnOnce(&mut Entry)) {
        if let Some(entry) = self.lock().sessions.get_mut(id) {
            f(entry);
        }
    }

    /// Fires `reason` on session `id` unless it already expired; whether it fired.
    pub(crate) fn expire_one(&self, id: &str, reason: Expiry) -> bool {
        self.lock()
            .sessions
            .get(id)
            .is_some_and(|e| e.expire(reason))
    }

    /// Frees the slot of session `id` (its [`Session`] was dropped).
    pub(crate) fn remove(&self, id: &str) {
        self.lock().sessions.remove(id);
    }
}
