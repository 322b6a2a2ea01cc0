//! The mock-server binary itself: config errors exit 64 before binding, `--check-config` prints
//! the effective config, and SIGTERM drains sessions (close 1001) and exits 0.

use fv_testkit::Client;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mock-server");

/// Starts the binary on port 0 at log level `log`, its stderr discarded or (`closed_stderr`)
/// a pipe closed at once; returns it with the address from its `listening on` line.
fn start(log: &str, closed_stderr: bool) -> anyhow::Result<(fv_testkit::ChildGuard, String)> {
    let mut child = fv_testkit::ChildGuard::new(
        Command::new(BIN)
            .args(["--port", "0"])
            .env("RUST_LOG", log)
            .stdout(Stdio::piped())
            .stderr(if closed_stderr {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .spawn()?,
    );
    drop(child.stderr.take());
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .map(|a| a.trim_end_matches('/').to_string())
        .ok_or_else(|| anyhow::anyhow!("unexpected output {line:?}"))?;
    Ok((child, addr))
}

/// Sends SIGTERM.
fn terminate(child: &fv_testkit::ChildGuard) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill failed");
    Ok(())
}

/// The exit status within 10 s, else `None`.
async fn exit_within_10s(
    child: &mut fv_testkit::ChildGuard,
) -> anyhow::Result<Option<std::process::ExitStatus>> {
    for _ in 0..200 {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(None)
}

#[test]
fn a_bad_config_exits_64_and_names_the_key() -> anyhow::Result<()> {
    let mut file = tempfile::Builder::new().suffix(".yaml").tempfile()?;
    writeln!(
        file,
        "generator:\n  model_path: mock\nstreaming:\n  sesion_timeout_seconds: 5\n  max_sessions: 0"
    )?;
    let out = Command::new(BIN)
        .arg("--config")
        .arg(file.path())
        .arg("--port")
        .arg("0")
        .output()?;
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("streaming.sesion_timeout_seconds"),
        "{stderr}"
    );
    assert!(stderr.contains("streaming.max_sessions"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
    Ok(())
}

#[test]
fn check_config_prints_the_effective_config() -> anyhow::Result<()> {
    let out = Command::new(BIN)
        .args(["--check-config", "--port", "9123"])
        .output()?;
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("port: 9123"), "{stdout}");
    assert!(stdout.contains("width: 256"), "{stdout}");
    assert!(stdout.contains("generation_segment_cap: 6"), "{stdout}");
    Ok(())
}

#[tokio::test]
async fn sigterm_drains_sessions_and_exits_cleanly() -> anyhow::Result<()> {
    let (mut child, addr) = start("warn", false)?;
    let result = async {
        let mut c = Client::connect(&format!("ws://{addr}/v1/stream")).await?;
        c.init().await?;
        terminate(&child)?;
        let end = c.recv_until("ltx2_stream_complete").await?;
        assert_eq!(end["reason"], "stop_requested");
        let (code, reason) = c.expect_close().await?;
        assert_eq!((code, reason.as_str()), (1001, "server_shutdown"));
        anyhow::Ok(())
    }
    .await;
    let exit = exit_within_10s(&mut child).await?;
    result?;
    let exit = exit.ok_or_else(|| anyhow::anyhow!("mock-server did not exit after SIGTERM"))?;
    assert!(exit.success(), "{exit:?}");
    Ok(())
}

#[tokio::test]
async fn a_closed_stderr_neither_crashes_nor_blocks_shutdown() -> anyhow::Result<()> {
    // A log collector that went away: every log write fails with EPIPE.
    let (mut child, addr) = start("debug", true)?;
    // Serving logs at debug level: a session's worth of log writes, all failing.
    let mut c = Client::connect(&format!("ws://{addr}/v1/stream")).await?;
    c.init().await?;
    drop(c);
    terminate(&child)?;
    let exit = exit_within_10s(&mut child)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no exit within 10 s of SIGTERM"))?;
    assert!(exit.success(), "{exit:?}");
    Ok(())
}
