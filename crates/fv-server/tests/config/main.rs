//! Serve-config loading: the shipped files, FastVideo's parser rules, every range limit,
//! error reporting, and the generated reference in docs/config.md. Parser rules and ranges are in
//! `rules.rs`, file formats and file errors in `files.rs`.
#![allow(clippy::unwrap_used)]

use fv_server::config::FileError;
use fv_server::config::{
    ConfigError, LoadedConfig, MAX_CONFIG_BYTES, ServeConfig, StreamMode, StreamingConfig,
    reference_markdown,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

mod files;
mod rules;

fn repo_root() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../..")
}

/// A file under the system temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("fv-config-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The problems of an `Invalid` error; panics (failing the test) on anything else.
fn problems(result: Result<LoadedConfig, ConfigError>) -> Vec<String> {
    match result {
        Err(ConfigError::Invalid { problems }) => problems,
        Err(other) => panic!("expected Invalid, got {other:?}"),
        Ok(loaded) => panic!("expected Invalid, got a config: {loaded:?}"),
    }
}

fn yaml(text: &str) -> Result<LoadedConfig, ConfigError> {
    ServeConfig::from_yaml_str(text)
}

fn yaml_ok(text: &str) -> LoadedConfig {
    yaml(text).unwrap_or_else(|e| panic!("{text}\n=> {e}"))
}

/// A minimal valid document with one dotted path set (created on the way).
fn doc_with(path: &str, value: Value) -> Value {
    let mut doc = json!({"generator": {"model_path": "m"}});
    set(&mut doc, path, value);
    doc
}

fn set(doc: &mut Value, path: &str, value: Value) {
    let mut node = doc;
    let parts: Vec<&str> = path.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        node = node
            .as_object_mut()
            .unwrap()
            .entry(part.to_string())
            .or_insert_with(|| json!({}));
    }
    node.as_object_mut()
        .unwrap()
        .insert(parts[parts.len() - 1].to_string(), value);
}

fn load_value(doc: &Value) -> Result<LoadedConfig, ConfigError> {
    ServeConfig::from_json_str(&doc.to_string())
}

// ----- shipped files -------------------------------------------------------------------

#[test]
fn every_file_in_configs_loads_and_validates() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo_root().join("configs")).unwrap() {
        let path = entry.unwrap().path();
        // Router configs have their own schema and their own test (crates/fv-router); the
        // Dreamverse presets file is data (tested by fv_server::presets).
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("router") || n.starts_with("dreamverse-presets"))
        {
            continue;
        }
        let loaded = ServeConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        loaded.config.validate().unwrap();
        assert!(
            loaded.warnings.is_empty(),
            "{}: {:?}",
            path.display(),
            loaded.warnings
        );
        // The effective config printout loads back to the same config.
        let again = yaml_ok(&loaded.config.to_yaml_string());
        assert_eq!(again.config, loaded.config, "{}", path.display());
        seen += 1;
    }
    assert!(
        seen >= 3,
        "configs/ should hold mock, serve and the FastVideo demo"
    );
}

#[test]
fn mock_yaml_is_the_mock_defaults() {
    let loaded = ServeConfig::load(&repo_root().join("configs/mock.yaml")).unwrap();
    assert_eq!(loaded.config, ServeConfig::mock_defaults());
    assert!(loaded.ignored.is_empty(), "{:?}", loaded.ignored);
    let c = ServeConfig::mock_defaults();
    assert_eq!(c.generator.model_path, "mock");
    assert_eq!((c.server.host.as_str(), c.server.port), ("127.0.0.1", 8000));
    let s = &c.default_request.sampling;
    assert_eq!(
        (
            s.width,
            s.height,
            s.num_frames,
            s.fps,
            s.num_inference_steps,
            s.seed,
            s.guidance_scale
        ),
        (256, 256, 24, 24, 1, 1024, 1.0)
    );
    assert_eq!(
        (
            c.streaming.generation_segment_cap,
            c.streaming.session_timeout_seconds,
            c.streaming.max_sessions
        ),
        (6, 120, 8)
    );
}

#[test]
fn serve_yaml_sets_only_keys_the_server_uses() {
    let loaded = ServeConfig::load(&repo_root().join("configs/serve.yaml")).unwrap();
    assert!(loaded.ignored.is_empty(), "{:?}", loaded.ignored);
    let st = &loaded.config.streaming;
    // The initial-image limit is reachable: base64 of 32 MiB fits in one message.
    assert!(st.max_message_bytes >= st.max_init_image_bytes / 3 * 4 + 4096);
    assert_eq!(loaded.config.server.port, 8009);
}

#[test]
fn fastvideo_demo_loads_with_its_values() {
    let loaded =
        ServeConfig::load(&repo_root().join("configs/fastvideo_streaming_demo.yaml")).unwrap();
    let c = &loaded.config;
    assert_eq!(c.generator.model_path, "FastVideo/LTX2-Distilled-Diffusers");
    assert_eq!(
        (
            c.server.host.as_str(),
            c.server.port,
            c.server.output_dir.as_str()
        ),
        ("0.0.0.0", 8009, "outputs/")
    );
    let s = &c.default_request.sampling;
    assert_eq!(
        (
            s.num_frames,
            s.height,
            s.width,
            s.num_inference_steps,
            s.fps
        ),
        (121, 1088, 1920, 5, 24)
    );
    let st = &c.streaming;
    assert_eq!(
        (
            st.session_timeout_seconds,
            st.generation_segment_cap,
            st.stream_mode
        ),
        (300, 6, StreamMode::AvFmp4)
    );
    assert!(st.warmup.enabled);
    assert_eq!(st.warmup.timeout_seconds, 2400);
    assert_eq!(st.pool.num_workers, Some(1));
    assert!(st.prompt.enabled);
    assert_eq!(st.prompt.provider, fv_prompt::ProviderKind::Cerebras);
    // Unused FastVideo keys are carried, typed.
    let e = &c.generator.engine;
    assert!(e.compile.enabled && e.compile.fullgraph == Some(true));
    assert_eq!(
        e.compile.mode.as_deref(),
        Some("max-autotune-no-cudagraphs")
    );
    assert!(!e.offload.dit && e.offload.pin_cpu_memory && e.offload.image_encoder);
    assert_eq!(
        e.quantization
            .as_ref()
            .unwrap()
            .transformer_quant
            .as_deref(),
        Some("NVFP4")
    );
    assert_eq!(
        c.generator.pipeline.preset_overrides["refine"],
        json!({"enabled": true, "num_inference_steps": 2, "guidance_scale": 1.0, "add_noise": true})
    );
    // Our additions keep their defaults.
    assert_eq!(st.max_sessions, StreamingConfig::default().max_sessions);

    for path in [
        "generator.engine.compile.enabled",
        "generator.engine.offload.dit",
        "generator.engine.quantization.transformer_quant",
        "server.output_dir",
        "streaming.pool.enable_audio_reencode",
    ] {
        assert!(
            loaded.ignored.iter().any(|p| p == path),
            "{path} not in {:?}",
            loaded.ignored
        );
    }
    // The refine override selects the two-stage preset (streaming-server).
    assert_eq!(c.generator.refine_steps(), 2);
    for used in [
        "generator.model_path",
        "generator.pipeline.preset_overrides",
        "server.port",
        "streaming.pool.num_workers",
        "streaming.warmup.prompt",
    ] {
        assert!(!loaded.ignored.iter().any(|p| p == used), "{used} is used");
    }
}

// ----- streaming block -----------------------------------------------------------------

#[test]
fn absent_or_null_streaming_block_gives_defaults_and_a_warning() {
    for text in [
        "generator: {model_path: m}\n",
        "generator: {model_path: m}\nstreaming: null\n",
        "generator: {model_path: m}\nstreaming:\n",
    ] {
        let loaded = yaml_ok(text);
        assert_eq!(loaded.config.streaming, StreamingConfig::default());
        assert_eq!(loaded.warnings.len(), 1, "{text}");
        assert!(
            loaded.warnings[0].contains("REST server"),
            "{:?}",
            loaded.warnings
        );
    }
    let loaded = yaml_ok("generator: {model_path: m}\nstreaming: {}\n");
    assert!(loaded.warnings.is_empty());
    assert_eq!(loaded.config.streaming, StreamingConfig::default());
}

// ----- documentation -------------------------------------------------------------------

const BEGIN: &str = "<!-- BEGIN GENERATED: config reference (cargo test -p fv-server --test config; FV_BLESS=1 rewrites) -->\n";
const END: &str = "<!-- END GENERATED -->";

/// docs/config.md embeds `reference_markdown()`; `FV_BLESS=1` rewrites it (the project's one
/// bless switch, as for the protocol schema).
#[test]
fn docs_reference_table_is_current() {
    let path = repo_root().join("docs/config.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let start = doc.find(BEGIN).expect("begin marker in docs/config.md") + BEGIN.len();
    let end = doc[start..]
        .find(END)
        .expect("end marker in docs/config.md")
        + start;
    let table = reference_markdown();
    if doc[start..end] != table {
        if std::env::var_os("FV_BLESS").is_some_and(|v| v == "1") {
            std::fs::write(&path, format!("{}{table}{}", &doc[..start], &doc[end..])).unwrap();
        } else {
            panic!("docs/config.md reference is stale; rerun with FV_BLESS=1");
        }
    }
    // Every key of our own is explained in the prose as well.
    for key in [
        "max_sessions",
        "max_queue",
        "init_timeout_seconds",
        "acquire_timeout_seconds",
        "max_message_bytes",
        "max_init_image_bytes",
        "fragment_frames",
        "video_bitrate_bps",
        "shutdown_grace_seconds",
        "session_log_dir",
        "reaper_interval_ms",
        "store.kind",
        "store.ttl_seconds",
        "store.sessions.capacity",
        "store.blobs.max_total_bytes",
        "store.blobs.max_blob_bytes",
    ] {
        assert!(
            doc[..start].contains(&format!("`{key}`")),
            "{key} not explained in docs/config.md"
        );
    }
}
