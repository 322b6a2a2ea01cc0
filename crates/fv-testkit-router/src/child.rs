//! [`ChildGuard`]: a child process that never outlives its test, and [`spawn_listening`] for
//! the project's server binaries.

/// A child process that is killed (and reaped) when dropped, so a test that fails half-way
/// leaves no server running. Derefs to the [`std::process::Child`].
#[derive(Debug)]
pub struct ChildGuard(std::process::Child);

impl ChildGuard {
    /// Takes ownership of `child`.
    pub fn new(child: std::process::Child) -> Self {
        Self(child)
    }
}

impl std::ops::Deref for ChildGuard {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Spawns a server binary (mock-server, streaming-server, stream-router) started with
/// `--port 0` and stdout piped, and reads the address from its first stdout line,
/// `listening on http://ADDR/`. The child is killed on drop, also when the line is wrong.
pub fn spawn_listening(
    command: &mut std::process::Command,
) -> anyhow::Result<(ChildGuard, std::net::SocketAddr)> {
    use std::io::BufRead;
    let mut child = ChildGuard::new(command.stdout(std::process::Stdio::piped()).spawn()?);
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .and_then(|a| a.trim_end_matches('/').parse().ok())
        .ok_or_else(|| anyhow::anyhow!("unexpected first line {line:?}"))?;
    Ok((child, addr))
}
