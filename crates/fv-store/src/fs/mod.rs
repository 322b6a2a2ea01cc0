//! Filesystem stores: one file per state or blob under a root directory.
//!
//! Layout under `root`: `sessions/<hex(session id)>.state`, `blobs/<blob id>.blob`, and one
//! temp directory per store (`tmp-sessions/`, `tmp-blobs/`) on the same filesystem. Writes go
//! to the temp directory, are fsynced (when [`FsOptions::fsync`] is on) and renamed into place,
//! so a crash never leaves a half-written file under a live name; leftover temp files are
//! removed when a store opens. File names are built only from hex digits (session ids are
//! hex-encoded; blob ids must be the 32-hex-digit ids the store made), so no id can reach a
//! path outside the root.
//!
//! Each store keeps an in-memory index (rebuilt from the file headers at open) for its caps,
//! put order and TTL: expired entries are invisible at once and their files are deleted by
//! [`FsBlobStore::sweep`] / [`FsSessionStore::sweep`] (run periodically by a [`Sweeper`]) or
//! by the next put. One process owns a root at a time; two processes sharing one would each
//! see only their own index.

mod blob;
mod index;
mod record;
mod session;

pub use blob::FsBlobStore;
pub use record::MAX_MIME_BYTES;
pub use session::FsSessionStore;

use crate::StoreError;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default interval of the [`Sweeper`] that [`crate::StoreConfig::build`] starts: 60 s.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Wall-clock milliseconds since the Unix epoch. File stores keep put times on disk, so they
/// need a clock that survives a restart; tests swap in a [`ManualClock`].
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since 1970-01-01 UTC.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        Self(AtomicU64::new(start_ms))
    }

    /// Moves the clock forward by `by` (whole milliseconds).
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Where and how a filesystem store writes.
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// Root directory; created if missing. Session and blob stores may share one.
    pub root: PathBuf,
    /// fsync each file before its rename and the directory after it, so that a power loss
    /// cannot surface an empty or torn file under a live name. Default on.
    pub fsync: bool,
    /// Time source for put times and TTLs. Default [`SystemClock`].
    pub clock: Arc<dyn Clock>,
}

impl FsOptions {
    /// Options for `root` with fsync on and the system clock.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            fsync: true,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Something a [`Sweeper`] can sweep.
trait Sweep: Send + Sync + 'static {
    fn sweep_blocking(&self) -> Result<usize, StoreError>;
}

/// Runs the sweep of filesystem stores every `interval` on a tokio task; the task ends when
/// the handle is dropped or every store it sweeps is gone.
#[derive(Debug)]
pub struct Sweeper {
    task: tokio::task::JoinHandle<()>,
}

impl Sweeper {
    /// Starts sweeping `blobs` and `sessions` (either may be `None`). Needs a tokio runtime.
    pub fn spawn(
        interval: Duration,
        blobs: Option<&FsBlobStore>,
        sessions: Option<&FsSessionStore>,
    ) -> Self {
        let mut targets: Vec<Weak<dyn Sweep>> = Vec::new();
        if let Some(b) = blobs {
            targets.push(b.sweep_target());
        }
        if let Some(s) = sessions {
            targets.push(s.sweep_target());
        }
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let live: Vec<Arc<dyn Sweep>> = targets.iter().filter_map(Weak::upgrade).collect();
                if live.is_empty() {
                    return;
                }
                for target in live {
                    match tokio::task::spawn_blocking(move || target.sweep_blocking()).await {
                        Ok(Ok(n)) if n > 0 => tracing::debug!(removed = n, "store sweep"),
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::warn!(error = %e, "store sweep failed"),
                        Err(e) => tracing::warn!(error = %e, "store sweep task failed"),
                    }
                }
            }
        });
        Self { task }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(format!("file task failed: {e}")))?
}
