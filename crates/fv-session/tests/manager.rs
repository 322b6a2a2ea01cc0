//! Admission, limits and the reaper, on tokio's paused clock (no wall-clock assertions).

use fv_session::{
    DEFAULT_REAP_PERIOD, Expiry, MAX_SESSIONS_LIMIT, MAX_TIMEOUT, SessionError, SessionLimits,
    SessionManager, SessionState,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, advance, sleep, timeout};

const INIT: Duration = Duration::from_secs(10);
const IDLE: Duration = Duration::from_secs(60);
const PERIOD: Duration = Duration::from_millis(100);

fn manager(max_sessions: usize) -> Arc<SessionManager> {
    SessionManager::new(SessionLimits {
        max_sessions,
        segment_cap: 3,
        idle_timeout: IDLE,
        init_timeout: INIT,
    })
    .expect("valid limits")
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn types_are_send_and_sync() {
    assert_send_sync::<SessionManager>();
    assert_send_sync::<fv_session::Session>();
}

#[test]
fn default_limits() {
    let l = SessionLimits::default();
    assert_eq!(l.max_sessions, 8);
    assert_eq!(l.segment_cap, 6);
    assert_eq!(l.idle_timeout, Duration::from_secs(300));
    assert_eq!(l.init_timeout, Duration::from_secs(10));
    assert!(l.validate().is_ok());
    assert_eq!(DEFAULT_REAP_PERIOD, Duration::from_secs(1));
}

#[test]
fn limits_are_range_checked() {
    let ok = SessionLimits::default();
    let cases = [
        (
            SessionLimits {
                max_sessions: 0,
                ..ok
            },
            "invalid session limits: max_sessions must be in 1..=100000 (got 0)",
        ),
        (
            SessionLimits {
                max_sessions: MAX_SESSIONS_LIMIT + 1,
                ..ok
            },
            "invalid session limits: max_sessions must be in 1..=100000 (got 100001)",
        ),
        (
            SessionLimits {
                segment_cap: 0,
                ..ok
            },
            "invalid session limits: segment_cap must be at least 1 (got 0)",
        ),
        (
            SessionLimits {
                idle_timeout: Duration::ZERO,
                ..ok
            },
            "invalid session limits: idle_timeout must be greater than 0 and at most 86400s (got 0ns)",
        ),
        (
            SessionLimits {
                init_timeout: MAX_TIMEOUT + Duration::from_nanos(1),
                ..ok
            },
            "invalid session limits: init_timeout must be greater than 0 and at most 86400s (got 86400.000000001s)",
        ),
    ];
    for (limits, message) in cases {
        let err = limits.validate().expect_err("out of range");
        assert_eq!(err.to_string(), message);
        assert!(matches!(
            SessionManager::new(limits),
            Err(SessionError::InvalidLimits { .. })
        ));
    }
    // Bounds themselves are accepted.
    let edge = SessionLimits {
        max_sessions: MAX_SESSIONS_LIMIT,
        segment_cap: 1,
        idle_timeout: MAX_TIMEOUT,
        init_timeout: Duration::from_nanos(1),
    };
    assert!(edge.validate().is_ok());
}

#[tokio::test(start_paused = true)]
async fn full_until_a_handle_drops() {
    let m = manager(2);
    let a = m.admit().expect("slot 1");
    let b = m.admit().expect("slot 2");
    assert_ne!(a.id(), b.id());
    assert_eq!(a.id().len(), 32);
    assert_eq!(m.active_count(), 2);

    let err = m.admit().expect_err("full");
    assert!(matches!(err, SessionError::Full { max: 2 }));
    assert_eq!(err.to_string(), "max sessions reached (2)");

    drop(a);
    assert_eq!(m.active_count(), 1);
    let c = m.admit().expect("freed slot reused");
    assert_eq!(m.active_count(), 2);
    drop((b, c));
    assert_eq!(m.active_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn silent_socket_holds_its_slot_until_init_timeout_then_until_dropped() {
    let m = manager(1);
    let _reaper = m.spawn_reaper(PERIOD);
    let silent = m.admit().expect("slot");
    assert!(matches!(m.admit(), Err(SessionError::Full { max: 1 })));

    let start = Instant::now();
    assert!(
        timeout(INIT - Duration::from_millis(1), silent.expired())
            .await
            .is_err(),
        "must not expire before the init timeout"
    );
    let reason = silent.expired().await;
    assert_eq!(reason, Expiry::InitTimeout(INIT));
    assert!(start.elapsed() >= INIT);
    assert_eq!(silent.expiry(), Some(reason));

    // Expired but not dropped: the connection task still owns the slot.
    assert_eq!(m.active_count(), 1);
    drop(silent);
    m.admit().expect("slot free after drop");
}

#[tokio::test(start_paused = true)]
async fn touch_does_not_extend_the_init_timeout() {
    let m = manager(1);
    let _reaper = m.spawn_reaper(PERIOD);
    let h = m.admit().expect("slot");
    let start = Instant::now();
    sleep(INIT / 2).await;
    h.touch();
    assert_eq!(h.expired().await, Expiry::InitTimeout(INIT));
    assert!(start.elapsed() < INIT + Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_replaces_init_timeout_after_init() {
    let m = manager(1);
    let _reaper = m.spawn_reaper(PERIOD);
    let h = m.admit().expect("slot");
    sleep(INIT / 2).await;
    h.mark_initialized();
    let initialized_at = Instant::now();

    assert!(
        timeout(IDLE - Duration::from_millis(1), h.expired())
            .await
            .is_err(),
        "init timeout no longer applies; idle not yet reached"
    );
    assert_eq!(h.expired().await, Expiry::IdleTimeout(IDLE));
    let waited = initialized_at.elapsed();
    assert!(
        waited >= IDLE && waited < IDLE + Duration::from_secs(1),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn touch_resets_the_idle_timer() {
    let m = manager(1);
    let _reaper = m.spawn_reaper(PERIOD);
    let h = m.admit().expect("slot");
    h.mark_initialized();
    for _ in 0..5 {
        sleep(IDLE - Duration::from_secs(1)).await;
        assert_eq!(h.expiry(), None, "activity keeps the session alive");
        h.touch();
    }
    let touched_at = Instant::now();
    assert_eq!(h.expired().await, Expiry::IdleTimeout(IDLE));
    assert!(touched_at.elapsed() >= IDLE);
}

#[tokio::test(start_paused = true)]
async fn busy_suspends_the_idle_timer_and_clearing_restarts_it() {
    let m = manager(1);
    let _reaper = m.spawn_reaper(PERIOD);
    let h = m.admit().expect("slot");
    h.mark_initialized();
    h.set_busy(true);
    assert!(
        timeout(IDLE * 5, h.expired()).await.is_err(),
        "no timer while generating"
    );
    let info = &m.snapshot()[0];
    assert!(info.busy);
    assert_eq!(info.idle_for, Duration::ZERO);

    h.set_busy(false);
    let idle_since = Instant::now();
    assert_eq!(h.expired().await, Expiry::IdleTimeout(IDLE));
    let waited = idle_since.elapsed();
    assert!(
        waited >= IDLE && waited < IDLE + Duration::from_secs(1),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn busy_also_suspends_the_init_timer() {
    let m = manager(1);
    let h = m.admit().expect("slot");
    h.set_busy(true);
    advance(INIT * 3).await;
    assert_eq!(m.reap(), 0);
    h.set_busy(false);
    // Init deadline counts from admission, so it is already past.
    assert_eq!(m.reap(), 1);
    assert_eq!(h.expiry(), Some(Expiry::InitTimeout(INIT)));
}

#[tokio::test(start_paused = true)]
async fn reap_without_a_reaper_and_terminal_states_run_no_timer() {
    let m = manager(3);
    let live = m.admit().expect("slot");
    let mut ended = m.admit().expect("slot");
    ended.transition(SessionState::Complete).expect("edge");

    advance(INIT - Duration::from_millis(1)).await;
    assert_eq!(m.reap(), 0);
    advance(Duration::from_millis(1)).await;
    assert_eq!(m.reap(), 1, "deadline is inclusive");
    assert_eq!(m.reap(), 0, "an expiry fires once");
    assert_eq!(live.expiry(), Some(Expiry::InitTimeout(INIT)));
    assert_eq!(ended.expiry(), None);
}

#[tokio::test(start_paused = true)]
async fn expire_now_keeps_the_first_reason_and_expire_all_skips_expired() {
    let m = manager(3);
    let a = m.admit().expect("slot");
    let b = m.admit().expect("slot");
    assert!(a.expire_now(Expiry::Evicted));
    assert!(!a.expire_now(Expiry::Shutdown));
    assert_eq!(a.expired().await, Expiry::Evicted);

    assert_eq!(m.expire_all(Expiry::Shutdown), 1);
    assert_eq!(b.expired().await, Expiry::Shutdown);
    assert_eq!(a.expiry(), Some(Expiry::Evicted));
}

#[tokio::test(start_paused = true)]
async fn expired_future_is_cancel_safe_and_can_be_awaited_repeatedly() {
    let m = manager(1);
    let h = m.admit().expect("slot");
    // A future dropped before expiry loses nothing.
    assert!(timeout(Duration::from_secs(1), h.expired()).await.is_err());
    let waiter = tokio::spawn(h.expired());
    tokio::task::yield_now().await;
    assert!(h.expire_now(Expiry::Evicted));
    assert_eq!(waiter.await.expect("waiter task"), Expiry::Evicted);
    // Already expired: resolves at once, every time.
    assert_eq!(h.expired().await, Expiry::Evicted);
    assert_eq!(h.expired().await, Expiry::Evicted);
}

#[tokio::test(start_paused = true)]
async fn snapshot_reports_published_state_oldest_first() {
    let m = manager(3);
    let mut first = m.admit().expect("slot");
    advance(Duration::from_secs(2)).await;
    let mut second = m.admit().expect("slot");
    second.mark_initialized();
    second.transition(SessionState::GpuBinding).expect("edge");
    second.transition(SessionState::Active).expect("edge");
    second.complete_segment().expect("under the cap");
    first.transition(SessionState::Queued).expect("edge");
    first.set_busy(true);
    advance(Duration::from_secs(3)).await;

    let snap = m.snapshot();
    assert_eq!(snap.len(), 2);
    assert_eq!(snap[0].id, first.id());
    assert_eq!(snap[0].state, SessionState::Queued);
    assert_eq!(snap[0].segment_idx, 0);
    assert_eq!(snap[0].age, Duration::from_secs(5));
    assert!(snap[0].busy);
    assert!(!snap[0].initialized);
    assert_eq!(snap[0].idle_for, Duration::ZERO);

    assert_eq!(snap[1].id, second.id());
    assert_eq!(snap[1].state, SessionState::Active);
    assert_eq!(snap[1].segment_idx, 1);
    assert_eq!(snap[1].age, Duration::from_secs(3));
    assert_eq!(snap[1].idle_for, Duration::from_secs(3));
    assert!(snap[1].initialized);
    assert_eq!(snap[1].expired, None);
    assert_eq!(second.limits().segment_cap, 3);
}

#[tokio::test(start_paused = true)]
async fn reaper_ends_when_the_manager_is_dropped() {
    let m = manager(1);
    let reaper = m.spawn_reaper(PERIOD);
    drop(m);
    timeout(Duration::from_secs(5), reaper)
        .await
        .expect("reaper stops once the manager is gone")
        .expect("reaper did not panic");
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_admitting_and_stops_the_reaper() {
    let m = manager(2);
    let reaper = m.spawn_reaper(PERIOD);
    let live = m.admit().expect("slot");
    m.shutdown();
    assert!(m.is_shutting_down());
    let err = m.admit().expect_err("shutting down");
    assert!(matches!(err, SessionError::ShuttingDown));
    timeout(Duration::from_secs(5), reaper)
        .await
        .expect("reaper stops on shutdown")
        .expect("reaper did not panic");
    // Live sessions are untouched by shutdown itself.
    assert_eq!(live.expiry(), None);
    assert_eq!(m.active_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn zero_reaper_period_is_raised_not_a_panic() {
    let m = manager(1);
    let _reaper = m.spawn_reaper(Duration::ZERO);
    let h = m.admit().expect("slot");
    assert_eq!(h.expired().await, Expiry::InitTimeout(INIT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_admits_never_exceed_max() {
    let m = manager(4);
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let m = Arc::clone(&m);
        tasks.push(tokio::spawn(async move { m.admit().ok() }));
    }
    let mut held = Vec::new();
    for t in tasks {
        if let Some(h) = t.await.expect("admit task") {
            held.push(h);
        }
    }
    assert_eq!(held.len(), 4);
    assert_eq!(m.active_count(), 4);
}
