//! The stream-router binary: the built-in config, `--check-config`, overrides, exit codes,
//! SIGTERM.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stream-router"))
}

fn shipped_config() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../configs/router.yaml")
}

#[test]
fn without_config_the_built_in_router_yaml_runs_and_says_so() {
    let out = bin()
        .arg("--check-config")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The effective config is configs/router.yaml's, as compiled in.
    let printed =
        fv_router::config::RouterConfig::from_yaml_str(&String::from_utf8(out.stdout).unwrap())
            .unwrap();
    let shipped = fv_router::config::RouterConfig::load(&shipped_config()).unwrap();
    assert_eq!(printed, shipped);
    assert!(
        stderr.contains("built-in configs/router.yaml") && stderr.contains("--config FILE"),
        "the log says which config runs and how to pass another: {stderr}"
    );
    assert!(stderr.contains("http://127.0.0.1:8001"), "{stderr}");

    // And it serves: no arguments but a free port (the built-in one is 9000).
    let (_child, addr) = fv_testkit_router::spawn_listening(
        bin()
            .args(["--port", "0"])
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null()),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (code, body) = rt
        .block_on(fv_testkit_router::http_get(addr, "/status"))
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = status["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mock-a", "mock-b"]);
}

#[test]
fn check_config_prints_the_effective_config_with_overrides() {
    let out = bin()
        .arg("--config")
        .arg(shipped_config())
        .args(["--port", "9100", "--host", "127.0.0.2", "--check-config"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let printed = fv_router::config::RouterConfig::from_yaml_str(&text).unwrap();
    assert_eq!((printed.host.as_str(), printed.port), ("127.0.0.2", 9100));
    assert_eq!(printed.replicas.len(), 2);
    assert!(text.contains("recovery_threshold: 2"), "{text}");
}

#[test]
fn a_bad_config_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.yaml");
    std::fs::write(
        &path,
        "router:\n  replicas:\n    - url: http://a\n      wieght: 2\n",
    )
    .unwrap();
    let out = bin().arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("router.replicas[0].wieght: unknown field (did you mean weight?)"),
        "{err}"
    );
    // A missing file is a usage error too.
    let out = bin()
        .arg("--config")
        .arg(dir.path().join("nope.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("router.yaml");
    // A listener that never answers: the replica's probes time out, so it never becomes
    // healthy (a fixed "unused" port can be taken by anything on the machine).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let replica = silent.local_addr().unwrap();
    std::fs::write(
        &config,
        format!("router:\n  replicas:\n    - url: http://{replica}\n"),
    )
    .unwrap();
    let (mut child, addr) = fv_testkit_router::spawn_listening(
        bin()
            .arg("--config")
            .arg(&config)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null()),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (code, body) = rt
        .block_on(fv_testkit_router::http_get(addr, "/healthz"))
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let (code, _) = rt
        .block_on(fv_testkit_router::http_get(addr, "/readyz"))
        .unwrap();
    assert_eq!(code, 503);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    drop(silent);
}
