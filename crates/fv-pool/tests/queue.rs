//! Admission: positions, FIFO order, leaving the queue, limits, timeout.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use fv_core::{Generator, MockGenerator};
use fv_pool::{GpuPool, InProcessPool, Lease, PoolConfig, PoolError};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::task::JoinHandle;

fn mock_pool(workers: usize, config: PoolConfig) -> Arc<InProcessPool> {
    let generators: Vec<Box<dyn Generator>> = (0..workers)
        .map(|_| Box::new(MockGenerator::default()) as Box<dyn Generator>)
        .collect();
    InProcessPool::new(generators, config).expect("valid pool")
}

fn spawn_acquire(
    pool: &Arc<InProcessPool>,
    session: &'static str,
) -> (
    JoinHandle<Result<Lease, PoolError>>,
    tokio::sync::mpsc::UnboundedReceiver<fv_pool::QueuePosition>,
) {
    let (tx, rx) = updates();
    let pool = pool.clone();
    (
        tokio::spawn(async move { pool.acquire(session, tx).await }),
        rx,
    )
}

async fn lease_of(task: JoinHandle<Result<Lease, PoolError>>) -> Lease {
    within("acquire", task)
        .await
        .expect("acquire task panicked")
        .expect("acquire succeeded")
}

#[tokio::test]
async fn two_workers_four_sessions_positions_and_updates() {
    let pool = mock_pool(2, config());
    let (ta, mut ra) = updates();
    let a = pool.acquire("a", ta).await.unwrap();
    assert_eq!(next_update(&mut ra).await, pos(0, 0));
    let (tb, mut rb) = updates();
    let b = pool.acquire("b", tb).await.unwrap();
    assert_eq!(next_update(&mut rb).await, pos(0, 0));
    assert_ne!(a.worker_id(), b.worker_id());

    let (c, mut rc) = spawn_acquire(&pool, "c");
    assert_eq!(next_update(&mut rc).await, pos(1, 1));
    let (d, mut rd) = spawn_acquire(&pool, "d");
    assert_eq!(next_update(&mut rd).await, pos(2, 2));
    assert_eq!(next_update(&mut rc).await, pos(1, 2), "depth grew behind c");

    let status = pool.status();
    assert_eq!(status.queue_depth, 2);
    assert_eq!(status.available_workers, 0);
    assert!(status.workers.iter().all(|w| w.busy));

    let a_worker = a.worker_id();
    drop(a);
    assert_eq!(next_update(&mut rc).await, pos(0, 1), "c gets a worker");
    assert_eq!(next_update(&mut rd).await, pos(1, 1), "d moves up");
    let c = lease_of(c).await;
    assert_eq!(c.worker_id(), a_worker);
    assert_eq!(c.session_id(), "c");

    b.release();
    assert_eq!(next_update(&mut rd).await, pos(0, 0));
    let d = lease_of(d).await;
    assert_eq!(pool.status().queue_depth, 0);

    // No updates beyond the grant: the pool dropped every waiter's sender.
    for rx in [&mut ra, &mut rb, &mut rc, &mut rd] {
        assert_eq!(within("sender dropped", rx.recv()).await, None);
    }
    drop((c, d));
}

#[tokio::test]
async fn waiters_are_served_first_come_first_served() {
    let pool = mock_pool(1, config());
    let (ta, _ra) = updates();
    let a = pool.acquire("a", ta).await.unwrap();
    let mut tasks = Vec::new();
    for (i, name) in ["b", "c", "d"].into_iter().enumerate() {
        let (task, mut rx) = spawn_acquire(&pool, name);
        // Wait until it is queued so the arrival order is the spawn order.
        assert_eq!(next_update(&mut rx).await.position, i + 1);
        tasks.push((name, task));
    }
    let mut holder = a;
    for (name, task) in tasks {
        holder.release();
        holder = lease_of(task).await;
        assert_eq!(holder.session_id(), name);
        let status = pool.status();
        assert_eq!(status.workers[0].session_id.as_deref(), Some(name));
    }
}

#[tokio::test]
async fn dropping_a_waiting_acquire_leaves_the_queue_and_shifts_positions() {
    let pool = mock_pool(1, config());
    let (ta, _ra) = updates();
    let a = pool.acquire("a", ta).await.unwrap();
    let (b, mut rb) = spawn_acquire(&pool, "b");
    assert_eq!(next_update(&mut rb).await, pos(1, 1));
    let (c, mut rc) = spawn_acquire(&pool, "c");
    assert_eq!(next_update(&mut rc).await, pos(2, 2));
    let (d, mut rd) = spawn_acquire(&pool, "d");
    assert_eq!(next_update(&mut rd).await, pos(3, 3));
    assert_eq!(next_update(&mut rb).await, pos(1, 2));
    assert_eq!(next_update(&mut rb).await, pos(1, 3));
    assert_eq!(next_update(&mut rc).await, pos(2, 3));

    b.abort();
    assert!(within("abort", b).await.unwrap_err().is_cancelled());
    assert_eq!(next_update(&mut rc).await, pos(1, 2));
    assert_eq!(next_update(&mut rd).await, pos(2, 2));
    assert_eq!(pool.status().queue_depth, 2);
    assert_eq!(within("b's sender dropped", rb.recv()).await, None);

    drop(a);
    let c = lease_of(c).await;
    assert_eq!(c.session_id(), "c", "the dropped waiter is skipped");
    drop(c);
    assert_eq!(lease_of(d).await.session_id(), "d");
}

#[tokio::test]
async fn a_grant_racing_the_drop_of_the_acquire_returns_the_worker() {
    let pool = mock_pool(1, config());
    let (ta, _ra) = updates();
    let a = pool.acquire("a", ta).await.unwrap();

    let (tb, mut rb) = updates();
    let mut waiting = pool.acquire("b", tb);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(waiting.as_mut().poll(&mut cx), Poll::Pending));
    assert_eq!(rb.try_recv(), Ok(pos(1, 1)));

    // The worker is granted to b while b's future is not being polled...
    drop(a);
    assert_eq!(rb.try_recv(), Ok(pos(0, 0)));
    assert!(pool.status().workers[0].busy);
    // ...and then the future is dropped without ever seeing it.
    drop(waiting);

    let status = pool.status();
    assert!(!status.workers[0].busy, "worker handed back");
    assert_eq!(status.available_workers, 1);
    let (tc, mut rc) = updates();
    let c = pool.acquire("c", tc).await.unwrap();
    assert_eq!(next_update(&mut rc).await, pos(0, 0));
    assert_eq!(c.worker_id(), 0);
}

#[tokio::test]
async fn acquire_times_out_and_leaves_the_queue() {
    let timeout = Duration::from_millis(50);
    let pool = mock_pool(
        1,
        PoolConfig {
            acquire_timeout: timeout,
            ..PoolConfig::default()
        },
    );
    let (ta, _ra) = updates();
    let _a = pool.acquire("a", ta).await.unwrap();
    let (tb, mut rb) = updates();
    let err = within("timeout", pool.acquire("b", tb)).await.unwrap_err();
    assert_eq!(err, PoolError::AcquireTimeout(timeout));
    assert_eq!(rb.try_recv(), Ok(pos(1, 1)));
    assert_eq!(pool.status().queue_depth, 0);
}

#[tokio::test]
async fn a_full_queue_fails_fast() {
    let pool = mock_pool(
        1,
        PoolConfig {
            max_queue: 1,
            ..config()
        },
    );
    let (ta, _ra) = updates();
    let a = pool.acquire("a", ta).await.unwrap();
    let (b, mut rb) = spawn_acquire(&pool, "b");
    assert_eq!(next_update(&mut rb).await, pos(1, 1));

    let (tc, mut rc) = updates();
    let err = pool.acquire("c", tc).await.unwrap_err();
    assert_eq!(err, PoolError::QueueFull { max: 1 });
    assert_eq!(
        rc.try_recv(),
        Err(TryRecvError::Disconnected),
        "no position for c"
    );
    assert_eq!(pool.status().queue_depth, 1);

    drop(a);
    assert_eq!(lease_of(b).await.session_id(), "b");
}

#[tokio::test]
async fn max_queue_zero_admits_only_free_workers() {
    let pool = mock_pool(
        1,
        PoolConfig {
            max_queue: 0,
            ..config()
        },
    );
    let (ta, _ra) = updates();
    let a = pool.acquire("a", ta).await.unwrap();
    let (tb, _rb) = updates();
    assert_eq!(
        pool.acquire("b", tb).await.unwrap_err(),
        PoolError::QueueFull { max: 0 }
    );
    drop(a);
    let (tc, _rc) = updates();
    assert!(pool.acquire("c", tc).await.is_ok());
}

#[tokio::test]
async fn bad_configs_are_rejected() {
    let none = InProcessPool::new(Vec::new(), PoolConfig::default()).unwrap_err();
    assert!(matches!(none, PoolError::InvalidConfig(ref m) if m.contains("at least one")));
    let zero_buffer = InProcessPool::new(
        vec![Box::new(MockGenerator::default())],
        PoolConfig {
            event_buffer: 0,
            ..PoolConfig::default()
        },
    )
    .unwrap_err();
    assert!(matches!(zero_buffer, PoolError::InvalidConfig(ref m) if m.contains("event_buffer")));
}

#[test]
fn defaults_match_the_documented_limits() {
    let config = PoolConfig::default();
    assert_eq!(config.acquire_timeout, Duration::from_secs(300));
    assert_eq!(config.max_queue, 64);
    assert_eq!(config.event_buffer, 64);
    assert_eq!(config.warmup, None);
}
