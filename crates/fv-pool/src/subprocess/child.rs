//! One worker process: started and reaped by a thread of its own, killed through a pidfd,
//! killed when its handle is dropped.

use super::WorkerCommand;
use crate::worker_process::{ENV_DEVICE, ENV_PARENT_PID, ENV_SOCKET, ENV_WORKER_ID};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use tokio::sync::{oneshot, watch};

/// A running (or just exited) worker process.
#[derive(Debug)]
pub(super) struct Child {
    pub(super) pid: u32,
    /// `None` on kernels without pidfds (before 5.3): signals then go by pid, only while the
    /// process has not been reaped.
    pidfd: Option<OwnedFd>,
    /// How the process ended, once it has (set by the reaper thread).
    exit: watch::Receiver<Option<String>>,
}

/// What a worker process needs to know, passed through its environment.
pub(super) struct Launch<'a> {
    pub(super) worker_id: u32,
    pub(super) socket: &'a Path,
    pub(super) device: Option<u32>,
    /// `CUDA_VISIBLE_DEVICES` for the process (the device, mapped through the server's own
    /// `CUDA_VISIBLE_DEVICES` when it has one).
    pub(super) visible_device: Option<String>,
}

impl Child {
    /// Starts the worker. A dedicated thread forks it and then waits for it: the worker asks
    /// the kernel for `PR_SET_PDEATHSIG`, which fires when the *thread* that forked it exits,
    /// so that thread must outlive the process (it does: it exits only after reaping it).
    pub(super) async fn spawn(
        command: &WorkerCommand,
        launch: Launch<'_>,
    ) -> std::io::Result<Self> {
        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args)
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .env(ENV_SOCKET, launch.socket)
            .env(ENV_WORKER_ID, launch.worker_id.to_string())
            .env(ENV_PARENT_PID, std::process::id().to_string())
            .stdin(Stdio::null())
            // The server's stdout is for its own announcements; a worker's prints join its logs.
            .stdout(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?));
        match (launch.device, launch.visible_device) {
            (Some(device), Some(visible)) => {
                cmd.env(ENV_DEVICE, device.to_string())
                    .env("CUDA_VISIBLE_DEVICES", visible);
            }
            _ => {
                cmd.env_remove(ENV_DEVICE);
            }
        }
        let (started_tx, started_rx) = oneshot::channel();
        let (exit_tx, exit) = watch::channel(None);
        std::thread::Builder::new()
            .name(format!("fv-pool-reaper-{}", launch.worker_id))
            .spawn(move || {
                let mut child = match cmd.spawn() {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                let pid = child.id();
                let pidfd = rustix::process::Pid::from_raw(pid as i32).and_then(|p| {
                    rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
                });
                let _ = started_tx.send(Ok((pid, pidfd)));
                let ended = match child.wait() {
                    Ok(status) => describe(status),
                    Err(e) => format!("could not be waited for: {e}"),
                };
                exit_tx.send_replace(Some(ended));
            })?;
        let (pid, pidfd) = started_rx
            .await
            .map_err(|_| std::io::Error::other("the reaper thread ended before the spawn"))??;
        Ok(Self { pid, pidfd, exit })
    }

    /// Resolves with how the process ended.
    pub(super) async fn exited(&self) -> String {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(ended) => ended.clone().unwrap_or_default(),
            // The reaper thread is gone without a word: only if it panicked.
            Err(_) => "ended (the reaper thread stopped)".to_owned(),
        }
    }

    pub(super) fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Sends SIGKILL (no-op once the process has ended).
    pub(super) fn kill(&self) {
        if self.has_exited() {
            return;
        }
        let sent = match &self.pidfd {
            Some(fd) => rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL),
            None => match rustix::process::Pid::from_raw(self.pid as i32) {
                Some(pid) => rustix::process::kill_process(pid, rustix::process::Signal::KILL),
                None => Ok(()),
            },
        };
        if let Err(e) = sent
            && !self.has_exited()
        {
            tracing::warn!(pid = self.pid, error = %e, "cannot kill worker process");
        }
    }

    /// Kills the process and waits until it has been reaped.
    pub(super) async fn kill_and_wait(&self) -> String {
        self.kill();
        self.exited().await
    }
}

impl Drop for Child {
    /// A supervisor that is dropped (its runtime shut down) takes its process with it.
    fn drop(&mut self) {
        self.kill();
    }
}

/// `exited with status 3`, `killed by signal 9 (SIGKILL)`.
pub(super) fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(signal) => {
            let name = match signal {
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            format!("killed by signal {signal}{name}")
        }
        None => format!("ended ({status})"),
    }
}

/// The `CUDA_VISIBLE_DEVICES` value for device `index`: the index itself, or the server's own
/// `CUDA_VISIBLE_DEVICES` entry at that index when the server was given one (its device `i`
/// is then the `i`-th device that list names).
pub(super) fn visible_device(index: u32, server_visible: Option<&str>) -> String {
    server_visible
        .map(|list| list.split(',').map(str::trim).collect::<Vec<_>>())
        .and_then(|list| list.get(index as usize).map(|s| (*s).to_owned()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| index.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_map_through_the_servers_own_list() {
        assert_eq!(visible_device(1, None), "1");
        assert_eq!(visible_device(1, Some("4,5,6")), "5");
        assert_eq!(visible_device(0, Some("GPU-abc, GPU-def")), "GPU-abc");
        // Past the end of the list (or an empty entry): the index itself.
        assert_eq!(visible_device(3, Some("4,5")), "3");
        assert_eq!(visible_device(0, Some("")), "0");
    }

    #[test]
    fn exit_statuses_read_like_an_operator_expects() {
        assert_eq!(
            describe(ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
        assert_eq!(
            describe(ExitStatus::from_raw(9)),
            "killed by signal 9 (SIGKILL)"
        );
    }
}
