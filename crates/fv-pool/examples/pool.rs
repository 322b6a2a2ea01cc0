//! A tour of the GPU pool with two GPU-free `MockGenerator` workers.
//!
//! Three sessions arrive at nearly the same time: two get a worker at once, the third waits
//! in the queue and is served when one of the first two releases its lease. Each session runs
//! one segment and prints its step events and frame batches. Then a fourth session shows
//! cancellation: it drops its `RunHandle` mid-run, waits for the worker to come back, and
//! cancels a second run explicitly. `status()` snapshots are printed along the way.
//!
//! Run with `cargo run -p fv-pool --example pool`; it finishes in about a second.

use fv_core::{GenerationRequest, Generator, MockGenerator, MockGeneratorConfig};
use fv_pool::{GpuPool, InProcessPool, PoolConfig, PoolError, PoolStatus, QueuePosition, RunEvent};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Simulated model time per segment, spread over the denoising steps.
const SEGMENT_TIME: Duration = Duration::from_millis(200);
const STEPS: u32 = 4;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let start = Instant::now();

    // One generator per worker; each runs on its own OS thread owned by the pool.
    let generators: Vec<Box<dyn Generator>> = (0..2)
        .map(|_| {
            Box::new(MockGenerator::new(MockGeneratorConfig {
                segment_time: SEGMENT_TIME,
                frame_batch: 8,
            })) as Box<dyn Generator>
        })
        .collect();
    let pool = InProcessPool::new(
        generators,
        PoolConfig {
            acquire_timeout: Duration::from_secs(10),
            max_queue: 4,
            ..PoolConfig::default()
        },
    )?;
    // No warm-up is configured, so this returns at once.
    let ready = pool.ready().await;
    println!("pool ready: {ready}");
    print_status("at start", &pool.status());

    // Three sessions, staggered by a few milliseconds so the queue order is predictable.
    let mut sessions = Vec::new();
    for (i, name) in ["alice", "bob", "carol"].into_iter().enumerate() {
        let pool = Arc::clone(&pool);
        sessions.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10 * i as u64)).await;
            one_segment(pool, name, start).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    print_status(
        "while alice and bob generate and carol waits",
        &pool.status(),
    );
    for session in sessions {
        session.await??;
    }
    print_status("after three sessions", &pool.status());

    cancellation(&pool, start).await?;

    // Closes the pool (new acquires fail with `Closed`) and joins the worker threads.
    pool.shutdown().await;
    print_status("after shutdown", &pool.status());
    match pool.acquire("late", mpsc::unbounded_channel().0).await {
        Err(e) => println!("acquire after shutdown: {e}"),
        Ok(lease) => println!("unexpected lease on worker {}", lease.worker_id()),
    }
    Ok(())
}

/// One session: queue for a worker, run one segment, release.
async fn one_segment(
    pool: Arc<InProcessPool>,
    name: &'static str,
    start: Instant,
) -> Result<(), BoxError> {
    // Queue positions arrive on this channel while `acquire` waits; print them as they come.
    let (updates, mut positions) = mpsc::unbounded_channel::<QueuePosition>();
    let printer = tokio::spawn(async move {
        while let Some(p) = positions.recv().await {
            if p.position == 0 {
                println!(
                    "{} [{name}] got a worker ({} still waiting)",
                    at(start),
                    p.queue_depth
                );
            } else {
                println!(
                    "{} [{name}] queued at position {} of {}",
                    at(start),
                    p.position,
                    p.queue_depth
                );
            }
        }
    });
    let mut lease = pool.acquire(name, updates).await?;
    // The pool drops its copy of `updates` once the worker is granted, so this ends.
    printer.await?;
    println!(
        "{} [{name}] bound to worker {}",
        at(start),
        lease.worker_id()
    );

    let mut run = lease.run(request(name, 0))?;
    let mut frames = 0;
    while let Some(event) = run.next().await {
        match event {
            RunEvent::Step { step, total } => {
                println!("{} [{name}] step {step}/{total}", at(start));
            }
            RunEvent::Frames(batch) => {
                frames += batch.len();
                let size = batch
                    .first()
                    .map(|f| format!("{}x{}", f.width(), f.height()))
                    .unwrap_or_default();
                println!(
                    "{} [{name}] {} frames ({size}), {frames} so far",
                    at(start),
                    batch.len(),
                );
            }
            RunEvent::Done(Ok(result)) => {
                let kind = result.state.as_ref().map_or("none", |s| s.kind.as_str());
                println!(
                    "{} [{name}] done: {frames} frames, continuation state {kind}",
                    at(start)
                );
            }
            RunEvent::Done(Err(e)) => println!("{} [{name}] failed: {e}", at(start)),
            // RunEvent is non-exhaustive: newer pools may report more.
            _ => {}
        }
    }
    // Dropping the lease does the same; the next waiter (carol) gets this worker now.
    lease.release();
    println!("{} [{name}] released", at(start));
    Ok(())
}

/// Dropping a `RunHandle` mid-run, then cancelling explicitly with `RunHandle::cancel`.
async fn cancellation(pool: &InProcessPool, start: Instant) -> Result<(), BoxError> {
    let name = "dave";
    println!("--- cancellation ---");
    let mut lease = pool.acquire(name, mpsc::unbounded_channel().0).await?;
    let worker = lease.worker_id();

    let mut run = lease.run(request(name, 0))?;
    while let Some(event) = run.next().await {
        if let RunEvent::Step { step: 2, total } = event {
            println!(
                "{} [{name}] step 2/{total}: dropping the run handle",
                at(start)
            );
            break;
        }
    }
    drop(run);

    // The generator stops at its next step boundary; until then the worker is still running
    // and the lease cannot start another segment.
    match lease.run(request(name, 1)) {
        Err(e @ PoolError::RunInProgress { .. }) => {
            println!("{} [{name}] immediate rerun refused: {e}", at(start));
        }
        Err(e) => return Err(e.into()),
        Ok(_) => println!("{} [{name}] the generator had already stopped", at(start)),
    }
    print_status("right after the drop", &pool.status());
    wait_until_returned(pool, worker).await?;
    print_status("once the cancelled generator returned", &pool.status());

    // The same lease serves the next segment. This time cancel without dropping the handle,
    // so the run reports how it ended.
    let mut run = lease.run(request(name, 1))?;
    while let Some(event) = run.next().await {
        match event {
            RunEvent::Step { step: 1, .. } => {
                println!("{} [{name}] step 1: cancel()", at(start));
                run.cancel();
            }
            RunEvent::Done(outcome) => {
                println!(
                    "{} [{name}] run ended with {:?}",
                    at(start),
                    outcome.map(|r| r.state.map(|s| s.kind))
                );
            }
            _ => {}
        }
    }
    // `Done` was read, so the generator has returned: the worker is free the moment the
    // lease goes.
    drop(lease);
    print_status("after dave released", &pool.status());
    Ok(())
}

/// Polls `status()` until the generator on `worker` has returned. A caller that still reads
/// the run's events would simply wait for `Done` instead.
async fn wait_until_returned(pool: &InProcessPool, worker: u32) -> Result<(), BoxError> {
    for _ in 0..500 {
        let running = pool
            .status()
            .workers
            .iter()
            .any(|w| w.id == worker && w.running);
        if !running {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(format!("worker {worker} did not stop within 2.5 s").into())
}

fn request(session: &str, segment_idx: u32) -> GenerationRequest {
    GenerationRequest {
        session_id: session.to_owned(),
        segment_idx,
        seed: 7,
        num_inference_steps: STEPS,
        width: 64,
        height: 32,
        num_frames: 20,
        ..GenerationRequest::new(format!("{session}'s cat, segment {segment_idx}"))
    }
}

fn print_status(label: &str, status: &PoolStatus) {
    println!(
        "status ({label}): {}/{} workers available, {} waiting",
        status.available_workers, status.total_workers, status.queue_depth
    );
    for w in &status.workers {
        println!(
            "  worker {} [{}] ready={} busy={} running={} session={} segments_run={} alive={}",
            w.id,
            w.generator,
            w.ready,
            w.busy,
            w.running,
            w.session_id.as_deref().unwrap_or("-"),
            w.segments_run,
            w.alive
        );
    }
}

fn at(start: Instant) -> String {
    format!("t+{:>4}ms", start.elapsed().as_millis())
}
