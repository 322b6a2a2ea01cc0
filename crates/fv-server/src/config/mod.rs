//! Serve configuration: FastVideo's serve schema (`generator`, `server`, `default_request`,
//! `streaming`) plus this server's own keys under `streaming:`.
//!
//! A config that `fastvideo serve --config` accepts loads here too. Loading is strict in
//! the same ways FastVideo is (unknown keys, wrong types and bad enum values are errors) and
//! stricter where FastVideo is lax: every value this server uses is range-checked, and every
//! problem is reported at once, each with the dotted path of its key.
//!
//! Loading runs in two passes through the project's one config mechanism
//! ([`fv_runtime::schema`]): the raw document (YAML or JSON turned into a
//! [`serde_json::Value`]) is checked against the JSON schema derived from the typed structs
//! below — names, types, ranges, and which keys the user set that this server accepts but does
//! not use ([`LoadedConfig::ignored`]) — and only a document that passes is deserialized; then
//! the cross-field rules run. [`ServeConfig::validate`] runs the same checks on a config built
//! in code, and `docs/config.md` is generated from the same schema, so the structs and their
//! doc comments are the single description of every key.
//!
//! The structs are split by concern: [`generator`], [`request`] (`default_request:`),
//! [`streaming`].

mod generator;
mod request;
mod streaming;
#[cfg(test)]
mod tests;

pub use fv_runtime::config::FileError;
pub use generator::*;
pub use request::*;
pub use streaming::*;

use fv_runtime::config::{Format, parse_str};
use fv_runtime::schema::{self, Problem};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// Free-form mapping (`dict[str, Any]` in FastVideo's schema).
pub type Mapping = serde_json::Map<String, Value>;

/// Largest config file (or string) accepted, in bytes. Real configs are a few KiB; the cap
/// keeps a wrong path (a video, a log) from being read into memory whole.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// FastVideo's default warm-up prompt.
pub const DEFAULT_WARMUP_PROMPT: &str = "A cinematic drone shot over coastal cliffs at sunrise, golden light, gentle ocean waves, ultra detailed";

/// Why a config could not be loaded or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading or parsing the file or string failed: unreadable, too large, a name that is
    /// not `.yaml`/`.yml`/`.json`, not UTF-8, or not valid YAML/JSON (with line and column).
    #[error(transparent)]
    File(#[from] FileError),
    /// The document parsed but breaks the schema or a range rule. One entry per problem,
    /// each `dotted.path: what is wrong`.
    #[error("invalid config ({} problem{}):\n  {}", problems.len(), if problems.len() == 1 { "" } else { "s" }, problems.join("\n  "))]
    Invalid {
        /// Every problem found, each starting with its key's dotted path.
        problems: Vec<String>,
    },
}

/// A loaded, validated config plus what the server should log once at startup.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    /// The effective config: file values over defaults.
    pub config: ServeConfig,
    /// Dotted paths of keys the file set (to a non-null value) that are valid in FastVideo's
    /// schema but that this server does not use, e.g. `generator.engine.compile.enabled`.
    pub ignored: Vec<String>,
    /// Things worth a warning that are not errors, e.g. a missing `streaming:` block.
    pub warnings: Vec<String>,
}

/// The whole serve config.
///
/// Build it with [`ServeConfig::load`] / [`ServeConfig::from_yaml_str`] /
/// [`ServeConfig::from_json_str`], which apply the strict rules; the `Deserialize` impl alone
/// does not (it would take `yes` as a bool from some YAML parsers and skips the ranges).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Which model to load and how.
    pub generator: GeneratorConfig,
    /// Where to listen.
    #[serde(default)]
    pub server: ServerSection,
    /// Request values every segment starts from.
    #[serde(default)]
    pub default_request: DefaultRequest,
    /// Streaming settings. Defaults when the block is absent or null (FastVideo would start
    /// its REST server then; this binary only streams).
    #[serde(default)]
    pub streaming: StreamingConfig,
    /// fv-stream addition: where session snapshots (continuation state and its blobs) live:
    /// `memory` (default), `filesystem` or `redis`; a shared Redis lets a session resume on
    /// another replica. See fv-store's README for every key.
    #[serde(default)]
    pub store: fv_store::StoreConfig,
}

/// `server:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Address to bind (not empty).
    pub host: String,
    /// Port to bind; 0 picks a free port.
    pub port: u16,
    /// FastVideo's output directory.
    #[schemars(extend("x-unused" = true))]
    pub output_dir: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".to_owned(),
            port: 8000,
            output_dir: "outputs/".to_owned(),
        }
    }
}

impl ServeConfig {
    /// FastVideo's defaults with the given model.
    pub fn new(model_path: impl Into<String>) -> Self {
        Self {
            generator: GeneratorConfig::new(model_path),
            server: ServerSection::default(),
            default_request: DefaultRequest::default(),
            streaming: StreamingConfig::default(),
            store: fv_store::StoreConfig::default(),
        }
    }

    /// The mock server's defaults: model `mock`, 24 frames of 256×256 at 24 fps, 1 step,
    /// seed 1024, guidance 1.0, cap 6 segments, 120 s session timeout, 8 sessions,
    /// listening on 127.0.0.1:8000; silent audio, service `ltx2-streaming-mock-server`,
    /// prompts from the offline template provider.
    pub fn mock_defaults() -> ServeConfig {
        let mut config = ServeConfig::new("mock");
        config.server.host = "127.0.0.1".to_owned();
        config.server.port = 8000;
        let sampling = &mut config.default_request.sampling;
        sampling.num_frames = 24;
        sampling.height = 256;
        sampling.width = 256;
        sampling.fps = 24;
        sampling.num_inference_steps = 1;
        sampling.seed = 1024;
        sampling.guidance_scale = 1.0;
        config.streaming.generation_segment_cap = 6;
        config.streaming.session_timeout_seconds = 120;
        config.streaming.max_sessions = 8;
        // Several sessions generate at once (FastVideo's mock serves one at a time).
        config.streaming.pool.num_workers = Some(4);
        // Clients that need an audio track (the Dreamverse web app) work with the
        // video-only mock generator.
        config.streaming.audio = AudioMode::Silent;
        config.streaming.service_name = MOCK_SERVICE_NAME.to_owned();
        // Enhancement, auto-extension and rewrites offline and deterministic: no keys, no
        // network.
        config.streaming.prompt.enabled = true;
        config.streaming.prompt.provider = fv_prompt::ProviderKind::Template;
        config
    }

    /// Loads and validates a config file; `.yaml`/`.yml` is YAML, `.json` is JSON
    /// (case-insensitive). Nothing is bound or started.
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        from_value(fv_runtime::config::load(path, MAX_CONFIG_BYTES)?)
    }

    /// Loads and validates YAML text.
    pub fn from_yaml_str(text: &str) -> Result<LoadedConfig, ConfigError> {
        from_value(parse_str(text, Format::Yaml, MAX_CONFIG_BYTES)?)
    }

    /// Loads and validates JSON text.
    pub fn from_json_str(text: &str) -> Result<LoadedConfig, ConfigError> {
        from_value(parse_str(text, Format::Json, MAX_CONFIG_BYTES)?)
    }

    /// Checks every rule `load` applies (types, ranges, cross-field rules) on a config that
    /// may have been built or changed in code. Reports every problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.check_semantics(&mut problems);
        match serde_json::to_value(self) {
            Ok(value) => {
                for problem in schema::check::<ServeConfig>(&value).problems {
                    // A NaN serializes as null; its cross-field message already names it.
                    if !problems.iter().any(|p: &Problem| p.path == problem.path) {
                        problems.push(problem);
                    }
                }
            }
            Err(e) => problems.push(Problem::new("", format!("cannot be represented: {e}"))),
        }
        into_result(problems)
    }

    /// The effective config as YAML, every key written out (for `--check-config`).
    pub fn to_yaml_string(&self) -> String {
        match serde_saphyr::to_string(self) {
            Ok(text) => text,
            // JSON is valid YAML; this fallback is only reachable through a serializer bug.
            Err(_) => serde_json::to_string_pretty(self).unwrap_or_default(),
        }
    }

    /// Where each generator worker runs: one entry per worker, `Some(n)` for `cuda:n`.
    ///
    /// With `generator.device: cuda[:N]` the workers go on `generator.engine.num_gpus` GPUs
    /// starting at N, one per GPU by default (`streaming.pool.num_workers: null`) and
    /// round-robin when more workers are asked for. On the CPU (or with no device, as for the
    /// mock generator) it is `streaming.pool.num_workers` workers (default 1) without a device.
    pub fn worker_devices(&self) -> Vec<Option<u32>> {
        let pool = &self.streaming.pool;
        match self.generator.model_device() {
            Some(ModelDevice::Cuda(base)) => {
                // `num_gpus` is range-checked to 1..=1024 and the ordinal to 3 digits.
                let gpus = self.generator.engine.num_gpus.clamp(1, 1024) as u32;
                let workers = pool.num_workers.unwrap_or(gpus);
                (0..workers).map(|i| Some(base as u32 + i % gpus)).collect()
            }
            None | Some(ModelDevice::Cpu) => vec![None; pool.num_workers.unwrap_or(1) as usize],
        }
    }

    /// Rules that involve more than one key, or float values the schema walker cannot see.
    fn check_semantics(&self, problems: &mut Vec<Problem>) {
        if self.generator.model_path.trim().is_empty() {
            problems.push(Problem::new("generator.model_path", "must not be empty"));
        }
        for (key, device) in [
            ("generator.device", &self.generator.device),
            (
                "generator.text_encoder_device",
                &self.generator.text_encoder_device,
            ),
        ] {
            if let Some(device) = device
                && ModelDevice::parse(device).is_none()
            {
                problems.push(Problem::new(
                    key,
                    format!("must be cpu, cuda or cuda:N, got {device:?}"),
                ));
            }
        }
        if let Err(refine) = RefineSettings::parse(&self.generator.pipeline.preset_overrides) {
            for (key, message) in refine {
                let path = match key.as_str() {
                    "" => "generator.pipeline.preset_overrides.refine".to_owned(),
                    key => format!("generator.pipeline.preset_overrides.refine.{key}"),
                };
                problems.push(Problem::new(path, message));
            }
        }
        if self.server.host.trim().is_empty() {
            problems.push(Problem::new("server.host", "must not be empty".to_owned()));
        }
        let s = &self.default_request.sampling;
        let p = "default_request.sampling";
        let floats = [
            ("guidance_scale", Some(s.guidance_scale)),
            ("guidance_scale_2", s.guidance_scale_2),
            ("cfg_truncation", s.cfg_truncation),
            ("guidance_rescale", Some(s.guidance_rescale)),
            ("true_cfg_scale", s.true_cfg_scale),
            ("boundary_ratio", s.boundary_ratio),
        ];
        for (name, value) in floats {
            if let Some(v) = value
                && !v.is_finite()
            {
                problems.push(Problem::new(
                    format!("{p}.{name}"),
                    format!("must be a finite number (got {v})"),
                ));
            }
        }
        if let Some(sigmas) = &s.sigmas {
            for (i, v) in sigmas.iter().enumerate() {
                if !v.is_finite() {
                    problems.push(Problem::new(
                        format!("{p}.sigmas[{i}]"),
                        format!("must be a finite number (got {v})"),
                    ));
                }
            }
        }
        let st = &self.streaming;
        if st.warmup.enabled && st.warmup.prompt.trim().is_empty() {
            problems.push(Problem::new(
                "streaming.warmup.prompt",
                "must not be blank while streaming.warmup.enabled is true".to_owned(),
            ));
        }
        if let Some(dir) = &st.session_log_dir
            && dir.trim().is_empty()
        {
            problems.push(Problem::new(
                "streaming.session_log_dir",
                "must not be empty (use null to turn session logs off)".to_owned(),
            ));
        }
        if st.pool.restart_backoff_ms > st.pool.restart_backoff_max_ms {
            problems.push(Problem::new(
                "streaming.pool.restart_backoff_ms",
                format!(
                    "must not exceed streaming.pool.restart_backoff_max_ms ({} > {})",
                    st.pool.restart_backoff_ms, st.pool.restart_backoff_max_ms
                ),
            ));
        }
        if st.service_name.trim().is_empty() {
            problems.push(Problem::new(
                "streaming.service_name",
                "must not be blank".to_owned(),
            ));
        }
        if let Some(file) = &st.dreamverse.presets_file
            && file.trim().is_empty()
        {
            problems.push(Problem::new(
                "streaming.dreamverse.presets_file",
                "must not be empty (use null for the built-in presets)".to_owned(),
            ));
        }
        let prompt = st.prompt.problems_at("streaming.prompt");
        let safety = st.safety.problems_at("streaming.safety");
        for p in prompt.into_iter().chain(safety) {
            problems.push(Problem::new(p.path, p.message));
        }
        for p in self.store.problems("store") {
            problems.push(Problem::new(p.path, p.message));
        }
    }
}

fn from_value(root: Value) -> Result<LoadedConfig, ConfigError> {
    // An empty document is an empty mapping (then `generator` is missing), as in FastVideo.
    let mut root = match root {
        Value::Null => Mapping::new(),
        Value::Object(map) => map,
        other => {
            return Err(invalid(vec![Problem::new(
                "",
                format!(
                    "expected a mapping at the top level, got {}",
                    schema::describe(&other)
                ),
            )]));
        }
    };
    let mut warnings = Vec::new();
    if matches!(root.get("streaming"), None | Some(Value::Null)) {
        root.remove("streaming");
        warnings.push(
            "streaming: block absent or null; `fastvideo serve` would start its REST server \
             instead, this server streams with the default streaming settings"
                .to_owned(),
        );
    }
    let loaded = schema::load::<ServeConfig>(Value::Object(root));
    let mut problems = loaded.problems;
    let Some(config) = loaded.value else {
        return Err(invalid(problems));
    };
    // Cross-field rules run even when some keys were wrong (those fell back to defaults), so
    // one run reports everything; a key already reported is not reported twice.
    let mut semantic = Vec::new();
    config.check_semantics(&mut semantic);
    for problem in semantic {
        if !problems.iter().any(|p| p.path == problem.path) {
            problems.push(problem);
        }
    }
    into_result(problems)?;
    Ok(LoadedConfig {
        config,
        ignored: loaded.ignored,
        warnings,
    })
}

fn invalid(problems: Vec<Problem>) -> ConfigError {
    ConfigError::Invalid {
        problems: problems.iter().map(Problem::to_string).collect(),
    }
}

fn into_result(problems: Vec<Problem>) -> Result<(), ConfigError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(invalid(problems))
    }
}

/// A Markdown table of every key: type, default, allowed values, whether this server uses
/// it, and what it does. Generated from the same schema the loader checks against;
/// `docs/config.md` embeds it and a test keeps the two equal.
pub fn reference_markdown() -> String {
    schema::reference_markdown(&ServeConfig::new(""))
}
