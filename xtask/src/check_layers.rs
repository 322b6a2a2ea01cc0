//! `cargo xtask check-layers`: fails when a crate depends on something its layer forbids
//! (ARCHITECTURE.md, "Who may depend on whom"). Reads `cargo metadata`; dev-dependencies are
//! exempt, so tests may use fv-testkit anywhere.

use anyhow::{Context, bail};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

/// Internal crates each package may depend on (normal and build dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("fv-protocol", &[]),
    ("fv-core", &[]),
    ("fv-session", &["fv-protocol", "fv-core"]),
    ("fv-encoder", &["fv-core"]),
    ("fv-store", &["fv-core"]),
    ("fv-pool", &["fv-core", "fv-store"]),
    ("fv-prompt", &["fv-core"]),
    ("fv-inference", &["fv-core"]),
    // Process glue (signals, config files, logging, exit codes) for the app crates and bins.
    ("fv-runtime", &[]),
    (
        "fv-server",
        &[
            "fv-protocol",
            "fv-core",
            "fv-session",
            "fv-store",
            "fv-pool",
            "fv-encoder",
            "fv-prompt",
            "fv-runtime",
        ],
    ),
    ("fv-router", &["fv-protocol", "fv-runtime"]),
    (
        "fv-testkit",
        &[
            "fv-server",
            "fv-protocol",
            "fv-core",
            "fv-encoder",
            "fv-router",
        ],
    ),
    ("mock-server", &["fv-server", "fv-core", "fv-runtime"]),
    ("stream-router", &["fv-router", "fv-runtime"]),
    (
        "streaming-server",
        &["fv-server", "fv-core", "fv-inference", "fv-runtime"],
    ),
    ("xtask", &["*"]),
];

/// External crates a package must never use directly, whatever its layer allows.
const FORBIDDEN_EXTERNAL: &[(&str, &[&str])] = &[
    ("fv-protocol", &["tokio", "axum", "candle-core"]),
    ("fv-core", &["tokio", "axum", "candle-core"]),
    ("fv-session", &["axum"]),
    ("fv-encoder", &["tokio", "axum"]),
    ("fv-inference", &["tokio", "axum"]),
    // LLM calls and safety only: no web framework (its fake LLM server is a dev-dependency),
    // no model runtime, no video.
    ("fv-prompt", &["axum", "candle-core", "openh264"]),
    ("fv-router", &["candle-core", "openh264"]),
    ("fv-runtime", &["axum", "candle-core", "openh264"]),
];

pub fn run() -> anyhow::Result<()> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: Value = serde_json::from_slice(&out.stdout)?;
    let packages = meta["packages"].as_array().cloned().unwrap_or_default();
    let internal: Vec<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let forbidden: BTreeMap<&str, &[&str]> = FORBIDDEN_EXTERNAL.iter().copied().collect();
    let mut problems = Vec::new();
    for p in &packages {
        let name = p["name"].as_str().unwrap_or("?");
        let Some(may) = allowed.get(name) else {
            problems.push(format!(
                "{name}: not in the layer table of xtask/src/check_layers.rs; add it"
            ));
            continue;
        };
        for dep in p["dependencies"].as_array().into_iter().flatten() {
            if dep["kind"].as_str() == Some("dev") {
                continue;
            }
            let dep_name = dep["name"].as_str().unwrap_or("?");
            if internal.iter().any(|i| i == dep_name) {
                if !may.contains(&"*") && !may.contains(&dep_name) {
                    problems.push(format!("{name} -> {dep_name}: not allowed by its layer"));
                }
            } else if forbidden.get(name).is_some_and(|f| f.contains(&dep_name)) {
                problems.push(format!(
                    "{name} -> {dep_name}: forbidden external dependency"
                ));
            }
        }
    }
    if problems.is_empty() {
        println!(
            "check-layers: {} packages, every edge allowed",
            packages.len()
        );
        Ok(())
    } else {
        for p in &problems {
            eprintln!("check-layers: {p}");
        }
        bail!("{} layering violation(s)", problems.len())
    }
}
