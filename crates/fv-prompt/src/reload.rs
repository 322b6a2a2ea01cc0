//! Re-reading system prompts: on demand, and on file change by polling modification times.

use crate::enhancer::{PromptEnhancer, PromptError, PromptState, write};
use crate::metrics as m;
use crate::system_prompts::{SystemPrompts, fingerprint};
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::watch;

/// Shortest polling interval [`PromptEnhancer::watch_system_prompts`] accepts.
pub const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(10);

/// Polls the system-prompt files while it lives; dropping it stops the polling.
#[derive(Debug)]
pub struct SystemPromptWatcher {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SystemPromptWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PromptEnhancer {
    /// Re-reads the system-prompt directory now (FastVideo's `reload_system_prompts`). On an
    /// error (an unreadable, oversized or non-UTF-8 file) the prompts in force stay. Without a
    /// directory there is nothing to re-read and the prompts stay as they are. Blocking file
    /// IO: call it from a blocking context or accept a few small reads.
    pub fn reload_system_prompts(&self) -> Result<(), PromptError> {
        let Some(dir) = self.inner.dir.clone() else {
            return Ok(());
        };
        let mut files = self
            .inner
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let seen = fingerprint(&dir);
        let result = SystemPrompts::load_dir(&dir);
        *files = seen;
        self.apply_reload(result)
    }

    /// Re-reads the directory if any file's modification time or length changed since the
    /// last read; returns whether it re-read. The watcher calls this once per interval.
    pub fn check_system_prompts(&self) -> Result<bool, PromptError> {
        let Some(dir) = self.inner.dir.clone() else {
            return Ok(false);
        };
        let mut files = self
            .inner
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let seen = fingerprint(&dir);
        if seen == *files {
            return Ok(false);
        }
        // Remember the new state even when the read fails, so a broken file is reported
        // once, not at every poll; fixing it changes the fingerprint again.
        *files = seen;
        let result = SystemPrompts::load_dir(&dir);
        self.apply_reload(result).map(|()| true)
    }

    fn apply_reload(
        &self,
        result: Result<SystemPrompts, crate::SystemPromptError>,
    ) -> Result<(), PromptError> {
        match result {
            Ok(prompts) => {
                let mut state = write(&self.inner.state);
                let next = PromptState {
                    prompts,
                    ..(**state).clone()
                };
                *state = Arc::new(next);
                drop(state);
                self.inner.reloads.send_modify(|n| *n += 1);
                m::reload(true);
                tracing::info!("system prompts reloaded");
                Ok(())
            }
            Err(e) => {
                m::reload(false);
                tracing::warn!(error = %e, "system prompts not reloaded; keeping the previous ones");
                Err(e.into())
            }
        }
    }

    /// A receiver whose value counts the successful reloads and edits of the system prompts;
    /// `changed().await` wakes after the next one.
    pub fn subscribe_reloads(&self) -> watch::Receiver<u64> {
        self.inner.reloads.subscribe()
    }

    /// Polls the system-prompt files every `interval` and re-reads them when one changed
    /// (created, edited, deleted). Needs a system-prompt directory and a tokio runtime;
    /// `interval` must be at least [`MIN_WATCH_INTERVAL`]. Read errors are logged and counted
    /// and the previous prompts stay. The watcher does not keep the enhancer alive.
    pub fn watch_system_prompts(
        &self,
        interval: Duration,
    ) -> Result<SystemPromptWatcher, PromptError> {
        if self.inner.dir.is_none() {
            return Err(PromptError::Watch("no system prompt directory".into()));
        }
        if interval < MIN_WATCH_INTERVAL {
            return Err(PromptError::Watch(format!(
                "interval {} ms is below the minimum of {} ms",
                interval.as_millis(),
                MIN_WATCH_INTERVAL.as_millis()
            )));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| PromptError::Watch("no tokio runtime".into()))?;
        let weak: Weak<_> = Arc::downgrade(&self.inner);
        let task = runtime.spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let enhancer = PromptEnhancer { inner };
                // stat + small reads: off the async threads.
                let checked =
                    tokio::task::spawn_blocking(move || enhancer.check_system_prompts()).await;
                if let Ok(Err(e)) = checked {
                    tracing::debug!(error = %e, "system prompt poll");
                }
            }
        });
        Ok(SystemPromptWatcher { task })
    }

    /// The reload counter's current value (see [`subscribe_reloads`](Self::subscribe_reloads)).
    pub fn reload_count(&self) -> u64 {
        *self.inner.reloads.borrow()
    }

    pub(crate) fn bump_reloads(&self) {
        self.inner.reloads.send_modify(|n| *n += 1);
    }
}
