//! Runs: event streams, cancellation, freeing workers, panics, warm-up, shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use fv_core::{GenerateError, Generator, MockGenerator, MockGeneratorConfig};
use fv_pool::{GpuPool, InProcessPool, PoolConfig, PoolError, RunEvent};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::task::{Context, Waker};
use std::time::Duration;

/// Steps and per-step time of the "long" segment: long enough that finishing it would be
/// obvious in the step counters.
const LONG_STEPS: u32 = 50;
const STEP_TIME: Duration = Duration::from_millis(20);

fn probe_pool(
    workers: usize,
    config: PoolConfig,
) -> (Arc<InProcessPool>, Vec<Arc<std::sync::atomic::AtomicU32>>) {
    let mut counters = Vec::new();
    let generators: Vec<Box<dyn Generator>> = (0..workers)
        .map(|_| {
            let (probe, steps) = Probe::new(STEP_TIME);
            counters.push(steps);
            Box::new(probe) as Box<dyn Generator>
        })
        .collect();
    (InProcessPool::new(generators, config).unwrap(), counters)
}

fn done_error(events: &[RunEvent]) -> Option<GenerateError> {
    match events.last() {
        Some(RunEvent::Done(Err(e))) => Some(e.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn a_run_streams_every_step_then_frames_then_done() {
    let generators: Vec<Box<dyn Generator>> =
        vec![Box::new(MockGenerator::new(MockGeneratorConfig {
            segment_time: Duration::ZERO,
            frame_batch: 4,
        }))];
    let pool = InProcessPool::new(generators, config()).unwrap();
    let (tx, _rx) = updates();
    let mut lease = pool.acquire("s", tx).await.unwrap();
    let req = request("a cat", 4, 6);
    let mut run = lease.run(req.clone()).unwrap();
    let events = drain(&mut run).await;

    let steps: Vec<_> = events
        .iter()
        .take(4)
        .map(|e| match e {
            RunEvent::Step { step, total } => (*step, *total),
            other => panic!("expected a step, got {other:?}"),
        })
        .collect();
    assert_eq!(steps, vec![(1, 4), (2, 4), (3, 4), (4, 4)]);
    // One batch of 4 through the sink, then the 2 the generator returned, as a last batch.
    let batches: Vec<usize> = events[4..events.len() - 1]
        .iter()
        .map(|e| match e {
            RunEvent::Frames(frames) => frames.len(),
            other => panic!("expected frames, got {other:?}"),
        })
        .collect();
    assert_eq!(batches, vec![4, 2]);
    let frames: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Frames(f) => Some(f.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let expected: Vec<_> = (0..6).map(|i| MockGenerator::frame(&req, i)).collect();
    assert_eq!(frames, expected, "frames in order, none lost or repeated");
    match events.last() {
        Some(RunEvent::Done(Ok(result))) => {
            assert!(result.frames.is_empty(), "tail frames went out as an event");
            assert_eq!(
                result.state.as_ref().map(|s| s.kind.as_str()),
                Some("ltx2.v1")
            );
        }
        other => panic!("expected Done(Ok), got {other:?}"),
    }
    assert_eq!(run.next().await, None, "nothing after Done");

    // The lease stays bound across segments.
    let mut second = lease.run(request("a dog", 2, 1)).unwrap();
    assert!(matches!(
        drain(&mut second).await.last(),
        Some(RunEvent::Done(Ok(_)))
    ));
    let status = pool.status();
    assert_eq!(status.workers[0].segments_run, 2);
    assert_eq!(status.workers[0].generator, "mock");
}

#[tokio::test]
async fn status_tracks_lease_and_run() {
    let (pool, _steps) = probe_pool(1, config());
    let (tx, _rx) = updates();
    let mut lease = pool.acquire("sess-1", tx).await.unwrap();
    let w = &pool.status().workers[0];
    assert!(w.busy && !w.running && w.ready && w.alive);
    assert_eq!(w.session_id.as_deref(), Some("sess-1"));

    let mut run = lease.run(request("x", 2, 1)).unwrap();
    assert!(pool.status().workers[0].running);
    assert_eq!(
        lease.run(request("y", 1, 1)).unwrap_err(),
        PoolError::RunInProgress { worker_id: 0 }
    );
    drain(&mut run).await;
    let w = &pool.status().workers[0];
    assert!(!w.running, "a run that delivered Done is finished");
    assert_eq!(w.segments_run, 1);

    drop(lease);
    let status = pool.status();
    assert!(!status.workers[0].busy);
    assert_eq!(status.workers[0].session_id, None);
    assert_eq!(status.available_workers, 1);
}

#[tokio::test]
async fn cancel_stops_the_generator_within_one_step() {
    let (pool, steps) = probe_pool(1, config());
    let (tx, _rx) = updates();
    let mut lease = pool.acquire("s", tx).await.unwrap();
    let mut run = lease.run(request("long", LONG_STEPS, 1)).unwrap();
    until_step(&mut run, 3).await;

    run.cancel();
    let at_cancel = Probe::steps(&steps[0]);
    let rest = drain(&mut run).await;
    assert_eq!(done_error(&rest), Some(GenerateError::Cancelled));
    let after = Probe::steps(&steps[0]);
    assert!(
        after <= at_cancel + 1,
        "generator took {after} steps, {at_cancel} when cancelled"
    );
    assert!(after < LONG_STEPS);

    // The worker is usable again on the same lease.
    let mut again = lease.run(request("short", 2, 1)).unwrap();
    assert!(matches!(
        drain(&mut again).await.last(),
        Some(RunEvent::Done(Ok(_)))
    ));
    assert_eq!(Probe::steps(&steps[0]), after + 2);
}

#[tokio::test]
async fn dropping_the_run_handle_cancels_the_run() {
    let (pool, steps) = probe_pool(1, config());
    let (tx, _rx) = updates();
    let mut lease = pool.acquire("s", tx).await.unwrap();
    let mut run = lease.run(request("long", LONG_STEPS, 1)).unwrap();
    until_step(&mut run, 2).await;
    drop(run);
    let at_drop = Probe::steps(&steps[0]);
    within("run to stop", async {
        while pool.status().workers[0].running {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(Probe::steps(&steps[0]) <= at_drop + 1);
    let mut again = lease.run(request("short", 1, 1)).unwrap();
    assert!(matches!(
        drain(&mut again).await.last(),
        Some(RunEvent::Done(Ok(_)))
    ));
}

#[tokio::test]
async fn dropping_the_lease_mid_run_frees_the_worker_for_the_next_waiter() {
    let (pool, steps) = probe_pool(1, config());
    let (ta, _ra) = updates();
    let mut a = pool.acquire("a", ta).await.unwrap();
    let mut a_run = a.run(request("long", LONG_STEPS, 1)).unwrap();

    let (tb, mut rb) = updates();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire("b", tb).await })
    };
    assert_eq!(next_update(&mut rb).await, pos(1, 1));
    until_step(&mut a_run, 3).await;

    drop(a); // the run handle is still held: only the lease goes
    let at_release = Probe::steps(&steps[0]);
    let mut b = within("b's acquire", waiter).await.unwrap().unwrap();
    let at_grant = Probe::steps(&steps[0]);
    assert!(
        at_grant <= at_release + 1,
        "worker handed over after {at_grant} steps; lease dropped at {at_release}"
    );
    assert!(
        at_grant < LONG_STEPS,
        "handed over before the segment would have ended"
    );
    assert_eq!(
        done_error(&drain(&mut a_run).await),
        Some(GenerateError::Cancelled)
    );

    let mut b_run = b.run(request("b", 2, 1)).unwrap();
    assert!(matches!(
        drain(&mut b_run).await.last(),
        Some(RunEvent::Done(Ok(_)))
    ));
    assert_eq!(
        Probe::steps(&steps[0]),
        at_grant + 2,
        "a's generator took no step after b got the worker"
    );
}

#[tokio::test]
async fn a_consumer_that_stops_reading_cannot_pin_a_released_worker() {
    let generators: Vec<Box<dyn Generator>> = vec![Box::new(Probe::new(Duration::ZERO).0)];
    let pool = InProcessPool::new(
        generators,
        PoolConfig {
            event_buffer: 1,
            ..config()
        },
    )
    .unwrap();
    let (ta, _ra) = updates();
    let mut a = pool.acquire("a", ta).await.unwrap();
    // Never read: the generator blocks on its second step event.
    let mut a_run = a.run(request("long", LONG_STEPS, 1)).unwrap();
    let (b, mut rb) = {
        let (tb, rb) = updates();
        let pool = pool.clone();
        (tokio::spawn(async move { pool.acquire("b", tb).await }), rb)
    };
    assert_eq!(next_update(&mut rb).await, pos(1, 1));

    drop(a);
    let b = within("b's acquire", b).await.unwrap().unwrap();
    assert_eq!(b.worker_id(), 0);
    let events = drain(&mut a_run).await;
    assert_eq!(done_error(&events), Some(GenerateError::Cancelled));
    let steps_seen = events
        .iter()
        .filter(|e| matches!(e, RunEvent::Step { .. }))
        .count();
    assert!(steps_seen < LONG_STEPS as usize);
}

#[tokio::test]
async fn a_panicking_generator_fails_the_run_and_the_worker_stays_in_service() {
    let (pool, _steps) = probe_pool(1, config());
    let (tx, _rx) = updates();
    let mut lease = pool.acquire("s", tx).await.unwrap();
    let mut req = request("panic", 3, 1);
    req.segment_idx = 4;
    let mut run = lease.run(req).unwrap();
    let events = drain(&mut run).await;
    assert_eq!(
        events,
        vec![RunEvent::Done(Err(GenerateError::Failed(
            "generator panicked: boom on segment 4".into()
        )))]
    );
    let w = &pool.status().workers[0];
    assert!(w.alive && w.ready && !w.running);
    assert_eq!(w.segments_run, 0);

    let mut next = lease.run(request("fine", 2, 1)).unwrap();
    assert!(matches!(
        drain(&mut next).await.last(),
        Some(RunEvent::Done(Ok(_)))
    ));
}

#[tokio::test]
async fn acquire_waits_for_warm_up_and_readiness_follows_it() {
    let (mut probe, _steps) = Probe::new(Duration::ZERO);
    let (gate, gate_rx) = std_mpsc::channel();
    probe.warmup_gate = Some(gate_rx);
    let pool = InProcessPool::new(
        vec![Box::new(probe)],
        PoolConfig {
            warmup: Some(request("warmup", 1, 1)),
            ..config()
        },
    )
    .unwrap();
    assert!(!pool.is_ready());
    let status = pool.status();
    assert!(status.warmup_enabled);
    assert_eq!(status.available_workers, 0);
    assert!(!status.workers[0].ready);
    assert_eq!(status.workers[0].warmup_ok, None);

    let (tx, mut rx) = updates();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire("early", tx).await })
    };
    assert_eq!(next_update(&mut rx).await, pos(1, 1));

    gate.send(()).unwrap();
    assert!(within("warm-up", pool.ready()).await);
    assert!(pool.is_ready());
    let lease = within("acquire", waiter).await.unwrap().unwrap();
    assert_eq!(next_update(&mut rx).await, pos(0, 0));
    let w = &pool.status().workers[0];
    assert_eq!(w.warmup_ok, Some(true));
    assert_eq!(w.warmup_error, None);
    assert!(w.ready && w.busy);
    assert_eq!(w.segments_run, 0, "warm-up is not a served segment");
    drop(lease);
}

#[tokio::test]
async fn workers_that_fail_warm_up_are_excluded_from_service() {
    let generators: Vec<Box<dyn Generator>> = [
        WarmupOutcome::Pass,
        WarmupOutcome::Fail,
        WarmupOutcome::Panic,
    ]
    .into_iter()
    .map(|outcome| {
        let (mut probe, _) = Probe::new(Duration::ZERO);
        probe.warmup_outcome = outcome;
        Box::new(probe) as Box<dyn Generator>
    })
    .collect();
    let pool = InProcessPool::new(
        generators,
        PoolConfig {
            warmup: Some(request("warmup", 1, 1)),
            acquire_timeout: Duration::from_millis(50),
            ..PoolConfig::default()
        },
    )
    .unwrap();
    assert!(
        within("warm-up", pool.ready()).await,
        "one worker is enough"
    );

    let status = pool.status();
    let outcomes: Vec<_> = status
        .workers
        .iter()
        .map(|w| (w.ready, w.warmup_ok, w.warmup_error.clone()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (true, Some(true), None),
            (
                false,
                Some(false),
                Some("generation failed: warm-up broke".into())
            ),
            (
                false,
                Some(false),
                Some("generation failed: generator panicked: warm-up exploded".into())
            ),
        ]
    );
    assert_eq!(status.available_workers, 1);

    let (ta, _ra) = updates();
    let a = pool.acquire("a", ta).await.unwrap();
    assert_eq!(a.worker_id(), 0);
    let (tb, _rb) = updates();
    assert!(matches!(
        within("timeout", pool.acquire("b", tb)).await,
        Err(PoolError::AcquireTimeout(_))
    ));
}

#[tokio::test]
async fn when_every_warm_up_fails_waiters_fail_fast() {
    let mut gates = Vec::new();
    let generators: Vec<Box<dyn Generator>> = (0..2)
        .map(|_| {
            let (mut probe, _) = Probe::new(Duration::ZERO);
            let (gate, gate_rx) = std_mpsc::channel::<()>();
            gates.push(gate);
            probe.warmup_gate = Some(gate_rx);
            probe.warmup_outcome = WarmupOutcome::Fail;
            Box::new(probe) as Box<dyn Generator>
        })
        .collect();
    let pool = InProcessPool::new(
        generators,
        PoolConfig {
            warmup: Some(request("warmup", 1, 1)),
            ..config()
        },
    )
    .unwrap();
    let (tx, mut rx) = updates();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire("early", tx).await })
    };
    assert_eq!(next_update(&mut rx).await, pos(1, 1));
    drop(gates); // both warm-ups proceed and fail

    assert!(!within("warm-up", pool.ready()).await);
    assert!(!pool.is_ready());
    assert_eq!(
        within("waiter", waiter).await.unwrap().unwrap_err(),
        PoolError::NoWorkers
    );
    let (tx, _rx) = updates();
    assert_eq!(
        pool.acquire("late", tx).await.unwrap_err(),
        PoolError::NoWorkers
    );
}

#[tokio::test]
async fn shutdown_cancels_runs_fails_waiters_and_joins_threads() {
    let (pool, steps) = probe_pool(2, config());
    let (ta, _ra) = updates();
    let mut a = pool.acquire("a", ta).await.unwrap();
    let mut a_run = a.run(request("long", LONG_STEPS, 1)).unwrap();
    let (tb, _rb) = updates();
    let _b = pool.acquire("b", tb).await.unwrap();
    let (c, mut rc) = {
        let (tc, rc) = updates();
        let pool = pool.clone();
        (tokio::spawn(async move { pool.acquire("c", tc).await }), rc)
    };
    assert_eq!(next_update(&mut rc).await, pos(1, 1));
    until_step(&mut a_run, 2).await;

    within("shutdown", pool.shutdown()).await;
    let after = Probe::steps(&steps[0]);
    assert!(after < LONG_STEPS);
    assert_eq!(
        within("waiter", c).await.unwrap().unwrap_err(),
        PoolError::Closed
    );
    assert_eq!(
        done_error(&drain(&mut a_run).await),
        Some(GenerateError::Cancelled)
    );
    assert_eq!(a.run(request("x", 1, 1)).unwrap_err(), PoolError::Closed);
    let (td, _rd) = updates();
    assert_eq!(pool.acquire("d", td).await.unwrap_err(), PoolError::Closed);
    let status = pool.status();
    assert!(status.workers.iter().all(|w| !w.alive && !w.ready));
    assert!(!pool.is_ready());

    // Idempotent, and leases dropped after shutdown are harmless.
    within("second shutdown", pool.shutdown()).await;
    drop(a);
    assert_eq!(pool.status().available_workers, 0);
}

#[tokio::test]
async fn shutdown_interrupts_a_warm_up() {
    let (mut probe, _) = Probe::new(Duration::ZERO);
    let (gate, gate_rx) = std_mpsc::channel::<()>();
    probe.warmup_gate = Some(gate_rx);
    let pool = InProcessPool::new(
        vec![Box::new(probe)],
        PoolConfig {
            warmup: Some(request("warmup", 1, 1)),
            ..config()
        },
    )
    .unwrap();
    // Poll once so the pool is closed (and the warm-up cancelled) before the gate opens.
    let mut shutdown = std::pin::pin!(pool.shutdown());
    let mut cx = Context::from_waker(Waker::noop());
    let _ = shutdown.as_mut().poll(&mut cx);
    gate.send(()).unwrap();
    within("shutdown", shutdown).await;
    assert!(!within("warm-up", pool.ready()).await);
    let w = &pool.status().workers[0];
    assert!(!w.alive);
    assert_eq!(w.warmup_ok, Some(false));
    assert_eq!(w.warmup_error.as_deref(), Some("generation cancelled"));
}

#[tokio::test]
async fn dropping_the_pool_closes_it_for_outstanding_leases() {
    let (pool, steps) = probe_pool(1, config());
    let (tx, _rx) = updates();
    let mut lease = pool.acquire("s", tx).await.unwrap();
    let mut run = lease.run(request("long", LONG_STEPS, 1)).unwrap();
    until_step(&mut run, 2).await;
    drop(pool);
    assert_eq!(
        done_error(&drain(&mut run).await),
        Some(GenerateError::Cancelled)
    );
    assert!(Probe::steps(&steps[0]) < LONG_STEPS);
    assert_eq!(
        lease.run(request("x", 1, 1)).unwrap_err(),
        PoolError::Closed
    );
}
