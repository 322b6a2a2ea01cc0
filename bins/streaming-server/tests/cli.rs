//! The binary with no arguments: it makes the tiny model in its cache directory on first use,
//! says so, and serves it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_streaming-server");

#[test]
fn starts_with_no_arguments_on_the_embedded_tiny_model() -> anyhow::Result<()> {
    let cache = tempfile::tempdir()?;
    // An older tiny model (the video-only layout of an earlier release) is replaced.
    let model = cache.path().join("fv-stream/tiny-ltx2");
    std::fs::create_dir_all(model.join("transformer"))?;
    std::fs::write(model.join("transformer/config.json"), "{}")?;
    for run in [
        "first start replaces the old model",
        "second start reuses it",
    ] {
        let mut child = fv_testkit::ChildGuard::new(
            Command::new(BIN)
                .args(["--port", "0"])
                .env("XDG_CACHE_HOME", cache.path())
                .env("RUST_LOG", "info")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?,
        );
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .map(|a| a.trim_end_matches('/').to_owned())
            .ok_or_else(|| anyhow::anyhow!("{run}: unexpected output {line:?}"))?;
        assert!(
            fv_inference::tiny::is_current(&model) && model.join("audio_vae/config.json").is_file(),
            "{run}: no current model in {}",
            model.display()
        );
        let rt = tokio::runtime::Runtime::new()?;
        let (status, body) = rt.block_on(fv_testkit::http_get(addr.parse()?, "/healthz"))?;
        assert_eq!(status, 200, "{run}: {body}");
        drop(child); // killed and reaped
        // The log says what runs and how to serve real weights instead.
        let mut log = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut log)?;
        assert!(
            log.contains("no --config: serving the tiny random-weight LTX-2 model")
                && log.contains("generator.model_path"),
            "{run}: {log}"
        );
    }
    Ok(())
}
