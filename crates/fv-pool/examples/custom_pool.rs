//! Writing your own [`GpuPool`] against fv-pool's public API only: a pool of exactly one
//! generator that serves sessions one at a time, first come first served.
//!
//! It shows every piece a pool implementation provides:
//! * `acquire`: wait in a fair queue (a tokio semaphore), report queue positions, hand out a
//!   [`Lease`] built with [`Lease::new`] around the pool's own [`LeaseBackend`];
//! * the backend: `run` starts a segment on the worker thread and answers with a
//!   [`RunHandle`] built with [`RunHandle::new`]; `idle` resolves when no run is in progress;
//!   dropping it gives the worker back;
//! * `status`, `is_ready`, `ready` built with [`PoolStatus::new`] / [`WorkerStatus::new`].
//!
//! Run with `cargo run -p fv-pool --example custom_pool`.

use fv_core::{
    CancelToken, Frame, GenerationRequest, GenerationSink, Generator, MockGenerator,
    MockGeneratorConfig,
};
use fv_pool::{
    GpuPool, Lease, LeaseBackend, PoolError, PoolStatus, QueuePosition, RunEvent, RunHandle,
    WorkerStatus,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

/// One generator on its own OS thread (GPU work never runs on tokio threads).
struct SingleWorkerPool {
    slot: Arc<Semaphore>,
    waiting: AtomicUsize,
    commands: std::sync::mpsc::Sender<Run>,
    running: watch::Sender<bool>,
    generator: String,
}

/// What the worker thread is asked to do.
struct Run {
    request: GenerationRequest,
    cancel: CancelToken,
    events: mpsc::Sender<RunEvent>,
}

impl SingleWorkerPool {
    fn new(mut generator: Box<dyn Generator>) -> Arc<Self> {
        let (commands, rx) = std::sync::mpsc::channel::<Run>();
        let running = watch::Sender::new(false);
        let flag = running.clone();
        let name = generator.name().to_owned();
        std::thread::spawn(move || {
            while let Ok(run) = rx.recv() {
                let mut sink = Forward(&run.events);
                let result = generator.generate(&run.request, &mut sink, &run.cancel);
                // Idle before `Done` goes out, so a consumer that sees it can run again.
                flag.send_replace(false);
                let _ = run.events.blocking_send(RunEvent::Done(result));
            }
        });
        Arc::new(Self {
            slot: Arc::new(Semaphore::new(1)),
            waiting: AtomicUsize::new(0),
            commands,
            running,
            generator: name,
        })
    }
}

/// Forwards generator progress to the run's channel (blocking: back-pressure on the model).
struct Forward<'a>(&'a mpsc::Sender<RunEvent>);

impl GenerationSink for Forward<'_> {
    fn step(&mut self, step: u32, total: u32) {
        let _ = self.0.blocking_send(RunEvent::Step { step, total });
    }
    fn frames(&mut self, frames: Vec<Frame>) {
        let _ = self.0.blocking_send(RunEvent::Frames(frames));
    }
}

/// The lease's pool side: holding the permit is holding the worker.
struct Binding {
    _permit: OwnedSemaphorePermit,
    commands: std::sync::mpsc::Sender<Run>,
    running: watch::Sender<bool>,
}

#[async_trait::async_trait]
impl LeaseBackend for Binding {
    fn run(&mut self, request: GenerationRequest) -> Result<RunHandle, PoolError> {
        if *self.running.borrow() {
            return Err(PoolError::RunInProgress { worker_id: 0 });
        }
        let (events, rx) = mpsc::channel(16);
        let cancel = CancelToken::new();
        self.running.send_replace(true);
        self.commands
            .send(Run {
                request,
                cancel: cancel.clone(),
                events,
            })
            .map_err(|_| PoolError::WorkerDead { worker_id: 0 })?;
        Ok(RunHandle::new(0, rx, cancel))
    }

    async fn idle(&self) {
        let mut rx = self.running.subscribe();
        let _ = rx.wait_for(|running| !*running).await;
    }
}

#[async_trait::async_trait]
impl GpuPool for SingleWorkerPool {
    async fn acquire(
        &self,
        session_id: &str,
        updates: mpsc::UnboundedSender<QueuePosition>,
    ) -> Result<Lease, PoolError> {
        let ahead = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _ = updates.send(QueuePosition {
            position: ahead + usize::from(self.slot.available_permits() == 0),
            queue_depth: ahead + 1,
        });
        let permit = self.slot.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let permit = permit.map_err(|_| PoolError::Closed)?;
        let _ = updates.send(QueuePosition {
            position: 0,
            queue_depth: self.waiting.load(Ordering::SeqCst),
        });
        Ok(Lease::new(
            0,
            session_id,
            Binding {
                _permit: permit,
                commands: self.commands.clone(),
                running: self.running.clone(),
            },
        ))
    }

    fn status(&self) -> PoolStatus {
        let mut worker = WorkerStatus::new(0, self.generator.clone());
        worker.busy = self.slot.available_permits() == 0;
        worker.running = *self.running.borrow();
        PoolStatus::new(vec![worker], self.waiting.load(Ordering::SeqCst), false)
    }

    fn is_ready(&self) -> bool {
        true
    }

    async fn ready(&self) -> bool {
        true
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let generator = MockGenerator::new(MockGeneratorConfig {
        segment_time: Duration::from_millis(40),
        frame_batch: 4,
    });
    // Used through the trait object, exactly as fv-server holds its pool.
    let pool: Arc<dyn GpuPool> = SingleWorkerPool::new(Box::new(generator));
    assert!(pool.ready().await);

    let (tx_a, _positions_a) = mpsc::unbounded_channel();
    let mut first = pool.acquire("a", tx_a).await?;
    println!("a holds worker {}", first.worker_id());

    // A second session waits until the first lets go.
    let (tx_b, mut positions_b) = mpsc::unbounded_channel();
    let waiting = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire("b", tx_b).await })
    };
    let pos = positions_b.recv().await.ok_or("no queue position")?;
    println!(
        "b waits at position {} of {}",
        pos.position, pos.queue_depth
    );
    println!("status while b waits: {:?}", pool.status().queue_depth);

    let mut request = GenerationRequest::new("a lighthouse at dusk");
    request.width = 64;
    request.height = 32;
    request.num_frames = 10;
    request.num_inference_steps = 3;
    let mut run = first.run(request.clone())?;
    let (mut steps, mut frames) = (0, 0);
    while let Some(event) = run.next().await {
        match event {
            RunEvent::Step { .. } => steps += 1,
            RunEvent::Frames(batch) => frames += batch.len(),
            RunEvent::Done(result) => println!("a: done ({})", result.is_ok()),
            _ => {}
        }
    }
    println!("a: {steps} steps, {frames} frames");
    assert_eq!((steps, frames), (3, 10));

    // Cancel a run half-way: drop its handle, wait for the worker to be idle, run again.
    let run = first.run(request.clone())?;
    drop(run);
    first.idle().await;
    let mut again = first.run(request)?;
    while again.next().await.is_some() {}
    println!("a: ran again after a cancelled run");

    drop(first);
    let second = waiting.await??;
    println!("b holds worker {} now", second.worker_id());
    Ok(())
}
