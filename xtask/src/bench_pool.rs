//! `cargo xtask bench pool`: how frames should cross the process boundary, and what the
//! subprocess pool costs against the in-process one (docs/ipc.md).
//!
//! 1. Transport: one segment's frames (121 of them) through a Unix socket vs through shared
//!    memory (a tmpfs ring), RGB24 and I420, at 1024x576 and 1920x1088; and the bytes an
//!    encode-in-the-worker design would send instead.
//! 2. Pools: the same mock segment through `InProcessPool` and `SubprocessPool` (worker
//!    processes: `fv-pool-worker`, release), frames as generated and as I420.
//! 3. Restart: kill -9 of a worker until it serves again.

use anyhow::{Context, Result, anyhow, bail};
use fv_core::{Frame, GenerationRequest, Generator, MockGenerator, MockGeneratorConfig};
use fv_pool::{
    GpuPool, InProcessPool, PoolConfig, RunEvent, SubprocessConfig, SubprocessPool, WorkerCommand,
    WorkerPhase,
};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames per segment (LTX-2's 121 = 8k + 1).
const FRAMES: u32 = 121;
/// Play time of one segment (121 frames at 24 fps): the generation budget per segment.
const SEGMENT_S: f64 = 5.04;
/// Share of the budget IPC may take.
const BUDGET_SHARE: f64 = 0.03;
const SIZES: [(u32, u32); 2] = [(1024, 576), (1920, 1088)];

pub fn run(root: &Path, args: &[&str]) -> Result<()> {
    let quick = args.contains(&"--quick");
    let reps = crate::flag(args, "--reps")?.unwrap_or(if quick { 3 } else { 7 });
    if reps == 0 {
        bail!("--reps must be at least 1");
    }
    let bin = crate::bench_server::build_release(root, &["fv-pool"])?.join("fv-pool-worker");
    println!(
        "bench pool: {FRAMES} frames per segment, median of {reps} reps; budget {:.0}% of a \
         {SEGMENT_S} s segment = {:.0} ms\n",
        BUDGET_SHARE * 100.0,
        budget_ms()
    );
    transport(reps)?;
    encoded(reps)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(pools(&bin, reps))?;
    runtime.block_on(restart(&bin, reps))
}

fn budget_ms() -> f64 {
    SEGMENT_S * BUDGET_SHARE * 1000.0
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn pct(ms: f64) -> f64 {
    ms / (SEGMENT_S * 1000.0) * 100.0
}

/// Four distinct frame buffers of `len` bytes (the writer cycles through them).
fn sources(len: usize) -> Vec<Vec<u8>> {
    (0..4u8)
        .map(|i| (0..len).map(|j| (j as u8).wrapping_mul(31) ^ i).collect())
        .collect()
}

/// One segment's frames through a Unix socket: the writer sends each buffer whole, the reader
/// reads each into a fresh buffer of its own (what the pool does). Returns milliseconds.
fn via_socket(frame: usize, bufs: &Arc<Vec<Vec<u8>>>) -> Result<f64> {
    let (mut tx, mut rx) = UnixStream::pair()?;
    // The buffer sizes the pool asks for on its sockets.
    fv_pool::tune_socket(&tx);
    fv_pool::tune_socket(&rx);
    let bufs = bufs.clone();
    let started = Instant::now();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        for i in 0..FRAMES as usize {
            tx.write_all(&bufs[i % bufs.len()])?;
        }
        Ok(())
    });
    let mut check = 0u64;
    for _ in 0..FRAMES {
        let mut v = Vec::with_capacity(frame);
        (&mut rx).take(frame as u64).read_to_end(&mut v)?;
        if v.len() != frame {
            bail!("short read");
        }
        check += u64::from(v[frame - 1]);
    }
    writer.join().map_err(|_| anyhow!("writer panicked"))??;
    std::hint::black_box(check);
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// One segment's frames through shared memory: a 4-slot ring in a tmpfs file (what a memfd
/// is). The writer copies each frame into a free slot and says which; the reader copies it out
/// into a fresh buffer (a `Frame` owns its pixels) and frees the slot. These are the two
/// copies an mmap'ed ring makes too.
fn via_shm(frame: usize, bufs: &Arc<Vec<Vec<u8>>>) -> Result<f64> {
    const SLOTS: usize = 4;
    let file = tempfile::tempfile_in("/dev/shm").context("a file in /dev/shm")?;
    file.set_len((frame * SLOTS) as u64)?;
    let writer_file = file.try_clone()?;
    let (full_tx, full_rx) = std::sync::mpsc::channel::<usize>();
    let (free_tx, free_rx) = std::sync::mpsc::channel::<usize>();
    for slot in 0..SLOTS {
        free_tx.send(slot)?;
    }
    // Touch every page once, as a long-lived ring would have.
    file.write_all_at(&vec![0; frame * SLOTS], 0)?;
    let bufs = bufs.clone();
    let started = Instant::now();
    let writer = std::thread::spawn(move || -> Result<()> {
        for i in 0..FRAMES as usize {
            let slot = free_rx.recv()?;
            writer_file.write_all_at(&bufs[i % bufs.len()], (slot * frame) as u64)?;
            full_tx.send(slot)?;
        }
        Ok(())
    });
    let mut reader = file;
    let mut check = 0u64;
    for _ in 0..FRAMES {
        let slot = full_rx.recv()?;
        reader.seek(SeekFrom::Start((slot * frame) as u64))?;
        let mut v = Vec::with_capacity(frame);
        (&mut reader).take(frame as u64).read_to_end(&mut v)?;
        if v.len() != frame {
            bail!("short read");
        }
        check += u64::from(v[frame - 1]);
        let _ = free_tx.send(slot);
    }
    writer.join().map_err(|_| anyhow!("writer panicked"))??;
    std::hint::black_box(check);
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

fn transport(reps: usize) -> Result<()> {
    println!("1. one segment's frames across a process boundary (transport only)");
    println!(
        "{:<10} {:<6} {:>8} {:>12} {:>12} {:>10} {:>9}",
        "size", "pixels", "MB", "socket ms", "shm ms", "shm/sock", "% budget"
    );
    for (w, h) in SIZES {
        for (format, len) in [
            ("RGB24", (w * h * 3) as usize),
            ("I420", (w * h * 3 / 2) as usize),
        ] {
            let bufs = Arc::new(sources(len));
            let mut socket = Vec::new();
            let mut shm = Vec::new();
            for _ in 0..reps {
                socket.push(via_socket(len, &bufs)?);
                shm.push(via_shm(len, &bufs)?);
            }
            let (socket, shm) = (median(socket), median(shm));
            println!(
                "{:<10} {:<6} {:>8.0} {:>12.1} {:>12.1} {:>9.2}x {:>8.2}%",
                format!("{w}x{h}"),
                format,
                (len * FRAMES as usize) as f64 / 1e6,
                socket,
                shm,
                shm / socket,
                pct(socket)
            );
        }
    }
    println!();
    Ok(())
}

/// What "encode in the worker" would send: the H.264 fMP4 of the segment.
fn encoded(reps: usize) -> Result<()> {
    let (w, h) = (1920u32, 1088u32);
    let request = GenerationRequest {
        width: w,
        height: h,
        num_frames: FRAMES,
        ..GenerationRequest::new("bench")
    };
    // The server's defaults: 24 fps, 4 Mbit/s.
    let mut encoder = fv_encoder::StreamEncoder::new(fv_encoder::EncoderConfig::new(w, h, 24))?;
    let started = Instant::now();
    let mut bytes = 0usize;
    encoder.start_segment();
    for i in 0..FRAMES {
        for chunk in encoder.push(&MockGenerator::frame(&request, i))? {
            bytes += chunk.data.len();
        }
    }
    for chunk in encoder.finish_segment()? {
        bytes += chunk.data.len();
    }
    let encode_ms = started.elapsed().as_secs_f64() * 1000.0;
    // The segment's bytes in FRAMES equal messages (one per frame, as fragments would go).
    let per = bytes.div_ceil(FRAMES as usize);
    let parts = Arc::new(sources(per));
    let mut socket = Vec::new();
    for _ in 0..reps {
        socket.push(via_socket(per, &parts)?);
    }
    let socket = median(socket);
    println!(
        "2. encoded in the worker, {w}x{h}: {:.1} MB of fMP4 per segment cross in {:.1} ms \
         ({:.2}% of budget); the encode itself ({encode_ms:.0} ms here, 1 thread) moves to the \
         worker, it does not go away",
        bytes as f64 / 1e6,
        socket,
        pct(socket)
    );
    println!();
    Ok(())
}

fn request(w: u32, h: u32) -> GenerationRequest {
    GenerationRequest {
        session_id: "bench".into(),
        width: w,
        height: h,
        num_frames: FRAMES,
        num_inference_steps: 1,
        ..GenerationRequest::new("bench")
    }
}

/// Milliseconds from `run` to `Done` for one segment, every event consumed.
async fn segment(pool: &dyn GpuPool, request: &GenerationRequest) -> Result<f64> {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let mut lease = pool.acquire("bench", tx).await?;
    let started = Instant::now();
    let mut run = lease.run(request.clone())?;
    let mut frames = 0;
    while let Some(event) = run.next().await {
        match event {
            RunEvent::Frames(batch) => frames += batch.len(),
            RunEvent::Done(result) => {
                result?;
            }
            _ => {}
        }
    }
    if frames != FRAMES as usize {
        bail!("{frames} frames, expected {FRAMES}");
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

async fn timed(pool: &dyn GpuPool, request: &GenerationRequest, reps: usize) -> Result<f64> {
    segment(pool, request).await?; // warm
    let mut samples = Vec::new();
    for _ in 0..reps {
        samples.push(segment(pool, request).await?);
    }
    Ok(median(samples))
}

fn subprocess(bin: &Path, frames_as_i420: bool) -> Result<Arc<SubprocessPool>> {
    let mut config = SubprocessConfig::new(WorkerCommand::new(bin), vec![None]);
    config.payload = br#"{"frame_batch": 12}"#.to_vec();
    config.frames_as_i420 = frames_as_i420;
    Ok(SubprocessPool::start(PoolConfig::default(), config)?)
}

async fn pools(bin: &Path, reps: usize) -> Result<()> {
    println!("3. one mock segment through each pool (run -> Done, all frames consumed), ms");
    println!(
        "{:<10} {:>11} {:>11} {:>7} {:>11} {:>7} {:>10} {:>9} {:>9}",
        "size",
        "in-process",
        "sub RGB24",
        "ratio",
        "sub I420",
        "ratio",
        "to I420",
        "IPC ms",
        "% budget"
    );
    for (w, h) in SIZES {
        let request = request(w, h);
        let generators: Vec<Box<dyn Generator>> =
            vec![Box::new(MockGenerator::new(MockGeneratorConfig {
                segment_time: Duration::ZERO,
                frame_batch: 12,
            }))];
        let local = InProcessPool::new(generators, PoolConfig::default())?;
        let in_process = timed(local.as_ref(), &request, reps).await?;
        local.shutdown().await;
        let mut sub = [0.0; 2];
        for (i, as_i420) in [false, true].into_iter().enumerate() {
            let pool = subprocess(bin, as_i420)?;
            if !pool.ready().await {
                bail!("the worker did not start: {:?}", pool.status().workers);
            }
            sub[i] = timed(pool.as_ref(), &request, reps).await?;
            pool.shutdown().await;
        }
        // What converting the segment to I420 costs (the encoder does it in-process anyway).
        let frames: Vec<Frame> = (0..FRAMES)
            .map(|i| MockGenerator::frame(&request, i))
            .collect();
        let started = Instant::now();
        for frame in &frames {
            std::hint::black_box(frame.i420()?);
        }
        let convert = started.elapsed().as_secs_f64() * 1000.0;
        // IPC cost: the I420 subprocess segment minus the in-process one and the conversion
        // the worker did in its place.
        let ipc = sub[1] - in_process - convert;
        println!(
            "{:<10} {:>11.1} {:>11.1} {:>6.2}x {:>11.1} {:>6.2}x {:>10.1} {:>9.1} {:>8.2}%",
            format!("{w}x{h}"),
            in_process,
            sub[0],
            sub[0] / in_process,
            sub[1],
            sub[1] / in_process,
            convert,
            ipc,
            pct(ipc)
        );
    }
    println!();
    Ok(())
}

/// kill -9 of a worker until the pool hands it out again: process start, connect, boot (and
/// warm-up, when configured). The back-off is 1 ms here (default 1 s, configurable).
async fn restart(bin: &Path, reps: usize) -> Result<()> {
    println!("4. kill -9 -> the worker serves again (back-off 1 ms), ms");
    for warmup in [None, Some(request(1920, 1088))] {
        let mut config = SubprocessConfig::new(WorkerCommand::new(bin), vec![None]);
        config.restart_backoff = Duration::from_millis(1);
        config.restart_backoff_max = Duration::from_millis(1);
        config.max_restarts = u32::MAX;
        let label = if warmup.is_some() {
            "with a 1920x1088x121 warm-up"
        } else {
            "without warm-up"
        };
        let pool = SubprocessPool::start(
            PoolConfig {
                warmup,
                ..PoolConfig::default()
            },
            config,
        )?;
        if !pool.ready().await {
            bail!("the worker did not start");
        }
        let mut samples = Vec::new();
        for _ in 0..reps {
            let pid = pool.status().workers[0]
                .pid
                .ok_or_else(|| anyhow!("no pid"))?;
            let started = Instant::now();
            let killed = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()?;
            if !killed.success() {
                bail!("kill -9 {pid} failed");
            }
            loop {
                let w = &pool.status().workers[0];
                if w.phase == WorkerPhase::Ready && w.pid != Some(pid) {
                    break;
                }
                if started.elapsed() > Duration::from_secs(60) {
                    bail!("no restart within 60 s: {w:?}");
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        println!("   {label}: {:.1} ms", median(samples));
        pool.shutdown().await;
    }
    Ok(())
}
