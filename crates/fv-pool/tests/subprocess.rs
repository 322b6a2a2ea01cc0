//! The subprocess pool with real worker processes (`fv-pool-worker`, this package's test
//! worker): runs across the process boundary, kill -9 mid-run, restart, warm-up and boot
//! failures, cancellation within one step, shutdown, and no process left behind.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use fv_core::{Frame, GenerateError, GenerationRequest, MockGenerator};
use fv_pool::{
    GpuPool, PoolConfig, PoolError, RunEvent, SubprocessConfig, SubprocessPool, WorkerCommand,
    WorkerPhase,
};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WORKER: &str = env!("CARGO_BIN_EXE_fv-pool-worker");

fn sub_config(workers: usize, payload: serde_json::Value) -> SubprocessConfig {
    let mut c = SubprocessConfig::new(WorkerCommand::new(WORKER), vec![None; workers]);
    c.payload = payload.to_string().into_bytes();
    c.start_timeout = GUARD;
    c.restart_backoff = Duration::from_millis(20);
    c.restart_backoff_max = Duration::from_millis(100);
    c
}

async fn start(workers: usize, payload: serde_json::Value) -> Arc<SubprocessPool> {
    start_with(config(), sub_config(workers, payload)).await
}

async fn start_with(pool: PoolConfig, sub: SubprocessConfig) -> Arc<SubprocessPool> {
    let pool = SubprocessPool::start(pool, sub).unwrap();
    within("workers to start", pool.ready()).await;
    pool
}

/// A process exists (not yet reaped).
fn exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn pid_of(pool: &SubprocessPool, worker: u32) -> u32 {
    pool.status().workers[worker as usize]
        .pid
        .expect("a running worker has a pid")
}

fn kill_9(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
}

/// Polls `check` until it holds (within the test guard; never a timing assertion).
async fn eventually(what: &str, check: impl Fn() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

fn frames_of(events: &[RunEvent]) -> Vec<Frame> {
    events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Frames(f) => Some(f.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn sized(prompt: &str, steps: u32, frames: u32) -> GenerationRequest {
    GenerationRequest {
        width: 32,
        height: 16,
        ..request(prompt, steps, frames)
    }
}

#[tokio::test]
async fn runs_stream_steps_frames_and_state_across_the_process_boundary() {
    let pool = start(2, json!({"frame_batch": 4})).await;
    let status = pool.status();
    assert!(pool.is_ready());
    assert_eq!(status.available_workers, 2);
    for w in &status.workers {
        assert!(w.ready && w.alive, "{w:?}");
        assert_eq!(w.phase, WorkerPhase::Ready);
        assert_eq!(w.generator, "probe");
        assert!(exists(w.pid.unwrap()));
        assert_ne!(w.pid, Some(std::process::id()));
    }

    let (tx, _rx) = updates();
    let mut lease = pool.acquire("s", tx).await.unwrap();
    let req = sized("a cat", 3, 10);
    let events = drain(&mut lease.run(req.clone()).unwrap()).await;
    let steps: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Step { step, total } => Some((*step, *total)),
            _ => None,
        })
        .collect();
    assert_eq!(steps, [(1, 3), (2, 3), (3, 3)]);
    let batches: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Frames(f) => Some(f.len()),
            _ => None,
        })
        .collect();
    assert_eq!(batches, [4, 4, 2], "the generator's batches, in order");
    // RGB frames travel as I420, exactly the planes the encoder would make of them.
    let expected: Vec<Frame> = (0..10)
        .map(|i| {
            let rgb = MockGenerator::frame(&req, i);
            Frame::from_i420(32, 16, rgb.i420().unwrap().into_owned()).unwrap()
        })
        .collect();
    assert_eq!(frames_of(&events), expected);
    match events.last() {
        Some(RunEvent::Done(Ok(result))) => {
            assert!(result.frames.is_empty());
            let state = result.state.as_ref().unwrap();
            assert_eq!(state.kind, "ltx2.v1");
            assert_eq!(state.payload["source_prompt"], "a cat");
        }
        other => panic!("expected Done(Ok), got {other:?}"),
    }
    assert_eq!(
        pool.status().workers[lease.worker_id() as usize].segments_run,
        1
    );
    drop(lease);
    within("shutdown", pool.shutdown()).await;
}

#[tokio::test]
async fn frames_can_travel_as_they_are() {
    let mut sub = sub_config(1, json!({}));
    sub.frames_as_i420 = false;
    let pool = start_with(config(), sub).await;
    let (tx, _rx) = updates();
    let mut lease = pool.acquire("s", tx).await.unwrap();
    let req = sized("a dog", 1, 3);
    let events = drain(&mut lease.run(req.clone()).unwrap()).await;
    let expected: Vec<Frame> = (0..3).map(|i| MockGenerator::frame(&req, i)).collect();
    assert_eq!(frames_of(&events), expected, "RGB24, byte for byte");
    drop(lease);
    pool.shutdown().await;
}

#[tokio::test]
async fn kill_9_mid_run_fails_that_run_only_then_the_worker_restarts_and_serves() {
    let pool = start(2, json!({"step_ms": 20})).await;
    let (ta, _ra) = updates();
    let mut a = pool.acquire("a", ta).await.unwrap();
    let (tb, _rb) = updates();
    let mut b = pool.acquire("b", tb).await.unwrap();
    let mut a_run = a.run(sized("long", 200, 1)).unwrap();
    let mut b_run = b.run(sized("short", 10, 2)).unwrap();
    until_step(&mut a_run, 2).await;

    let victim = pid_of(&pool, a.worker_id());
    let killed = Instant::now();
    kill_9(victim);
    let rest = drain(&mut a_run).await;
    match rest.last() {
        Some(RunEvent::Done(Err(GenerateError::Failed(message)))) => {
            assert!(
                message.contains("killed by signal 9"),
                "the error says what happened: {message}"
            );
        }
        other => panic!("expected Done(Err(Failed)), got {other:?}"),
    }
    // The other session's run is untouched.
    assert!(matches!(
        drain(&mut b_run).await.last(),
        Some(RunEvent::Done(Ok(_)))
    ));

    // The same lease runs again once the worker is back: a new process, one restart.
    let mut again = within(
        "worker restart",
        a.run_when_idle(sized("after", 2, 1), GUARD),
    )
    .await
    .unwrap();
    let respawn = killed.elapsed();
    assert!(matches!(
        drain(&mut again).await.last(),
        Some(RunEvent::Done(Ok(_)))
    ));
    let w = &pool.status().workers[a.worker_id() as usize];
    assert_eq!((w.phase, w.restarts), (WorkerPhase::Ready, 1));
    assert_ne!(w.pid, Some(victim));
    assert!(
        w.last_error
            .as_deref()
            .is_some_and(|e| e.contains("killed by signal 9")),
        "{w:?}"
    );
    assert!(!exists(victim), "the killed process was reaped");
    println!("kill -9 -> next run accepted on the restarted worker: {respawn:?}");

    drop((a, b));
    let pids: Vec<u32> = pool.status().workers.iter().filter_map(|w| w.pid).collect();
    within("shutdown", pool.shutdown()).await;
    assert!(
        pids.iter().all(|&p| !exists(p)),
        "no worker left after shutdown"
    );
    assert!(
        pool.status()
            .workers
            .iter()
            .all(|w| w.phase == WorkerPhase::Stopped && !w.alive)
    );
}

#[tokio::test]
async fn a_worker_that_dies_between_runs_is_restarted_and_capacity_comes_back() {
    let pool = start(1, json!({})).await;
    let first = pid_of(&pool, 0);
    kill_9(first);
    eventually("restart", || {
        let w = &pool.status().workers[0];
        w.phase == WorkerPhase::Ready && w.pid != Some(first)
    })
    .await;
    assert!(pool.is_ready());
    let (tx, _rx) = updates();
    let mut lease = pool.acquire("s", tx).await.unwrap();
    assert!(matches!(
        drain(&mut lease.run(sized("x", 1, 1)).unwrap())
            .await
            .last(),
        Some(RunEvent::Done(Ok(_)))
    ));
    drop(lease);
    pool.shutdown().await;
}

#[tokio::test]
async fn workers_that_fail_boot_or_warm_up_are_excluded_and_reported() {
    let pool = SubprocessPool::start(
        PoolConfig {
            warmup: Some(sized("warmup", 1, 1)),
            acquire_timeout: Duration::from_millis(100),
            ..config()
        },
        sub_config(3, json!({"fail_boot": [1], "fail_warmup": [2]})),
    )
    .unwrap();
    assert!(
        within("warm-up", pool.ready()).await,
        "one worker is enough"
    );
    let status = pool.status();
    assert!(status.warmup_enabled);
    assert_eq!(status.available_workers, 1);
    let w = &status.workers;
    assert!(w[0].ready && w[0].warmup_ok == Some(true) && w[0].alive);
    for (i, needle) in [
        (1, "told to fail its boot"),
        (2, "told to fail its warm-up"),
    ] {
        assert!(!w[i].ready && !w[i].alive, "{:?}", w[i]);
        assert_eq!(w[i].phase, WorkerPhase::Failed);
        assert_eq!(w[i].warmup_ok, Some(false));
        let error = w[i].warmup_error.as_deref().unwrap_or_default();
        assert!(error.contains(needle), "worker {i}: {error}");
        assert_eq!(w[i].restarts, 0, "a failed first start is not retried");
    }
    // Only the good worker is ever handed out.
    let (ta, _ra) = updates();
    let a = pool.acquire("a", ta).await.unwrap();
    assert_eq!(a.worker_id(), 0);
    let (tb, _rb) = updates();
    assert!(matches!(
        pool.acquire("b", tb).await,
        Err(PoolError::AcquireTimeout(_))
    ));
    drop(a);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_worker_that_does_not_start_in_time_is_killed_and_reported() {
    let mut sub = sub_config(1, json!({"boot_ms": 30_000}));
    sub.start_timeout = Duration::from_millis(300);
    let pool = SubprocessPool::start(config(), sub).unwrap();
    assert!(!within("start timeout", pool.ready()).await);
    assert!(!pool.is_ready());
    let w = &pool.status().workers[0];
    let error = w.warmup_error.as_deref().unwrap_or_default();
    assert!(error.contains("did not boot and warm up within"), "{error}");
    assert!(error.contains("killed by signal 9"), "{error}");
    let (tx, _rx) = updates();
    assert_eq!(
        pool.acquire("s", tx).await.unwrap_err(),
        PoolError::NoWorkers
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn cancel_reaches_the_worker_within_one_step() {
    let steps_dir = tempfile::tempdir().unwrap();
    let pool = start(1, json!({"step_ms": 30, "steps_dir": steps_dir.path()})).await;
    let taken = || -> u32 {
        std::fs::read_to_string(steps_dir.path().join("steps-0"))
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let (tx, _rx) = updates();
    let mut lease = pool.acquire("s", tx).await.unwrap();
    let mut run = lease.run(sized("long", 200, 1)).unwrap();
    until_step(&mut run, 3).await;
    run.cancel();
    let at_cancel = taken();
    let rest = drain(&mut run).await;
    assert!(matches!(
        rest.last(),
        Some(RunEvent::Done(Err(GenerateError::Cancelled)))
    ));
    let after = taken();
    assert!(
        after <= at_cancel + 1,
        "worker took {after} steps, {at_cancel} when cancelled"
    );

    // Dropping the handle cancels too, and the worker is free again within a step.
    let mut run = lease.run(sized("long", 200, 1)).unwrap();
    until_step(&mut run, 2).await;
    drop(run);
    let at_drop = taken();
    within("idle after drop", lease.idle()).await;
    assert!(taken() <= at_drop + 1);
    assert!(matches!(
        drain(&mut lease.run(sized("short", 1, 1)).unwrap())
            .await
            .last(),
        Some(RunEvent::Done(Ok(_)))
    ));
    drop(lease);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_worker_that_crashes_every_run_is_given_up_after_max_restarts() {
    let mut sub = sub_config(1, json!({}));
    sub.max_restarts = 2;
    let pool = start_with(config(), sub).await;
    let (tx, _rx) = updates();
    let mut lease = pool.acquire("s", tx).await.unwrap();
    for attempt in 1..=3 {
        let mut run = within("run", lease.run_when_idle(sized("abort", 1, 1), GUARD))
            .await
            .unwrap();
        let events = drain(&mut run).await;
        assert!(
            matches!(events.last(), Some(RunEvent::Done(Err(GenerateError::Failed(m)))) if m.contains("SIGABRT")),
            "attempt {attempt}: {events:?}"
        );
    }
    within("give up", lease.idle()).await;
    let w = &pool.status().workers[0];
    assert_eq!(
        (w.phase, w.restarts, w.alive),
        (WorkerPhase::Failed, 2, false)
    );
    assert_eq!(
        lease.run(sized("x", 1, 1)).unwrap_err(),
        PoolError::WorkerDead { worker_id: 0 }
    );
    assert!(!pool.is_ready());
    drop(lease);
    pool.shutdown().await;
}

#[test]
fn dropping_the_pool_and_its_runtime_leaves_no_process() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pids = rt.block_on(async {
        let pool = start(2, json!({})).await;
        let pids: Vec<u32> = pool.status().workers.iter().filter_map(|w| w.pid).collect();
        assert_eq!(pids.len(), 2);
        pids
        // the pool is dropped here without shutdown
    });
    drop(rt);
    let deadline = Instant::now() + GUARD;
    while pids.iter().any(|&p| exists(p)) {
        assert!(
            Instant::now() < deadline,
            "workers {pids:?} outlived their pool"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test]
async fn a_missing_worker_binary_is_a_failed_start_not_a_hang() {
    let mut sub = sub_config(1, json!({}));
    sub.command = WorkerCommand::new("/nonexistent/fv-worker");
    let pool = SubprocessPool::start(config(), sub).unwrap();
    assert!(!within("start", pool.ready()).await);
    let error = pool.status().workers[0]
        .warmup_error
        .clone()
        .unwrap_or_default();
    assert!(error.contains("could not be started"), "{error}");
    pool.shutdown().await;
}

#[tokio::test]
async fn the_worker_binary_run_by_hand_refuses() {
    let out = tokio::process::Command::new(WORKER).output().await.unwrap();
    assert!(!out.status.success());
}
