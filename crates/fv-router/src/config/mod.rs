//! Router configuration: FastVideo's `router:` YAML block plus a few keys of our own.
//!
//! ```yaml
//! router:
//!   host: 0.0.0.0
//!   port: 9000
//!   replicas:
//!     - {url: http://10.0.0.1:8000, name: a, primary: true, weight: 1.0}
//!     - {url: http://10.0.0.2:8000}
//!   health_check: {path: /health, interval_seconds: 5.0, timeout_seconds: 2.0,
//!                  failure_threshold: 3, recovery_threshold: 2}
//! ```
//!
//! Keys, types and unknown keys are checked by the project's one config mechanism
//! ([`fv_runtime::schema`]); the rules below are this module's own. Every FastVideo rule is enforced (replicas non-empty, each with an `http(s)://` url without
//! a path, query or fragment, no duplicate urls, at most one primary, positive interval and
//! timeout, thresholds ≥ 1). Unlike FastVideo, unknown keys and wrongly typed values are errors,
//! every problem is reported at once with its key's dotted path, and a trailing slash in a url
//! is normalized instead of producing a replica that is probed at `//health` forever.

pub use fv_runtime::config::FileError;
use fv_runtime::config::{Format, parse_str};
use fv_runtime::schema::{self, Problem};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

mod url;
use std::time::Duration;
pub use url::ReplicaUrl;

/// Largest config file accepted, in bytes; real router configs are a few hundred bytes.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Longest `client_id` used as a stickiness key; longer ids are routed without stickiness so
/// one client cannot make the table hold arbitrarily large keys.
pub const MAX_STICKY_KEY_BYTES: usize = 256;

/// Why a config could not be loaded or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading or parsing the file or string failed: unreadable, too large, a name that is
    /// not `.yaml`/`.yml`/`.json`, not UTF-8, or not valid YAML/JSON (with line and column).
    #[error(transparent)]
    File(#[from] FileError),
    /// The document parsed but breaks a rule; one entry per problem, each `dotted.path: what`.
    #[error("invalid router config ({} problem{}):\n  {}", problems.len(), if problems.len() == 1 { "" } else { "s" }, problems.join("\n  "))]
    Invalid {
        /// Every problem found, each starting with its key's dotted path.
        problems: Vec<String>,
    },
}

/// The whole router config (the contents of the `router:` block).
///
/// Build it with [`RouterConfig::load`] / [`RouterConfig::from_yaml_str`] (which apply every
/// rule) or in code with [`RouterConfig::new`]; `Router::bind` runs [`RouterConfig::validate`]
/// either way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// Address to listen on. Default `0.0.0.0`.
    pub host: String,
    /// Port to listen on; 0 picks a free one. Default 9000.
    pub port: u16,
    /// The streaming-server replicas, in config order (at least one).
    pub replicas: Vec<ReplicaConfig>,
    /// Active health checking.
    pub health_check: HealthCheckConfig,
    /// fv-router: after shutdown starts, bridged sessions get this long to end on their own
    /// before they are closed with 1001. Default 30.
    pub shutdown_grace_seconds: f64,
    /// fv-router: how long a client may take to send its first frame (the router reads it to
    /// route by `client_id`). Default 10, like the server's init timeout.
    pub first_frame_timeout_seconds: f64,
    /// fv-router: TCP connect plus WebSocket handshake to a replica. Default 5.
    pub connect_timeout_seconds: f64,
    /// fv-router: replicas tried for one session before giving up (a retry happens only while
    /// the client has seen nothing). Default 3.
    pub connect_attempts: u32,
    /// fv-router: a peer that accepts nothing for this long is dropped. Default 30, like the
    /// server's send timeout.
    pub send_timeout_seconds: f64,
    /// fv-router: largest WebSocket message relayed, either direction. Default 256 MiB, the
    /// largest `streaming.max_message_bytes` a replica accepts, so the router is never the
    /// tighter limit.
    pub max_message_bytes: usize,
    /// fv-router: most WebSocket sessions open through the router at once; more upgrades get
    /// HTTP 503. Each bridged session holds three small relay threads. Default 4096.
    pub max_sessions: usize,
    /// fv-router: `client_id` stickiness.
    pub stickiness: StickinessConfig,
}

/// One `router.replicas[]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicaConfig {
    /// `http://host[:port]` (a trailing `/` is allowed and dropped).
    pub url: String,
    /// Label in `/status`, logs and metrics; the url when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// The primary tier is tried before everyone else. At most one replica.
    #[serde(default)]
    pub primary: bool,
    /// Share of new sessions relative to the other replicas of its tier (> 0). Default 1.0.
    #[serde(default = "one")]
    pub weight: f64,
}

impl ReplicaConfig {
    /// A non-primary replica of weight 1 at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            name: None,
            primary: false,
            weight: 1.0,
        }
    }
}

fn one() -> f64 {
    1.0
}

/// `router.health_check`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Probed with `GET`; any status below 400 is a success. Default `/health`.
    pub path: String,
    /// Time between the starts of two probe rounds. Default 5.0.
    pub interval_seconds: f64,
    /// Per-probe limit. Default 2.0.
    pub timeout_seconds: f64,
    /// Consecutive failures that make a replica unhealthy. Default 3.
    pub failure_threshold: u32,
    /// Consecutive successes that bring an unhealthy replica back. Default 2.
    pub recovery_threshold: u32,
    /// fv-router: read after each successful probe for the replica's capacity
    /// (`max_sessions`/`active_sessions`, else `total_gpus`/`available_gpus`). `null` turns it
    /// off. Default `/status`.
    pub status_path: Option<String>,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            path: "/health".into(),
            interval_seconds: 5.0,
            timeout_seconds: 2.0,
            failure_threshold: 3,
            recovery_threshold: 2,
            status_path: Some("/status".into()),
        }
    }
}

impl HealthCheckConfig {
    /// `interval_seconds` as a duration (zero when the value is not usable).
    pub fn interval(&self) -> Duration {
        secs(self.interval_seconds)
    }

    /// `timeout_seconds` as a duration (zero when the value is not usable).
    pub fn timeout(&self) -> Duration {
        secs(self.timeout_seconds)
    }
}

/// `router.stickiness`: clients that reconnect with the same `client_id` go back to the same
/// replica while it is healthy and has room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StickinessConfig {
    /// Default true.
    pub enabled: bool,
    /// Most `client_id`s remembered; the least recently used is forgotten first. Default 10000.
    pub max_clients: usize,
    /// A `client_id` not seen for this long is forgotten. Default 3600.
    pub ttl_seconds: f64,
}

impl Default for StickinessConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_clients: 10_000,
            ttl_seconds: 3600.0,
        }
    }
}

/// The document as written: the `router:` block at the top level.
#[derive(Serialize)]
struct Document<'a> {
    router: &'a RouterConfig,
}

impl Default for RouterConfig {
    /// The defaults of every key, with no replica (not valid until one is added).
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

fn secs(v: f64) -> Duration {
    Duration::try_from_secs_f64(v).unwrap_or(Duration::ZERO)
}

impl RouterConfig {
    /// Defaults for everything but the replicas.
    pub fn new(replicas: Vec<ReplicaConfig>) -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 9000,
            replicas,
            health_check: HealthCheckConfig::default(),
            shutdown_grace_seconds: 30.0,
            first_frame_timeout_seconds: 10.0,
            connect_timeout_seconds: 5.0,
            connect_attempts: 3,
            send_timeout_seconds: 30.0,
            max_message_bytes: 256 * 1024 * 1024,
            max_sessions: 4096,
            stickiness: StickinessConfig::default(),
        }
    }

    /// Loads and validates a config file (`.yaml`/`.yml` as YAML, `.json` as JSON).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        from_value(fv_runtime::config::load(path, MAX_CONFIG_BYTES)?)
    }

    /// Loads and validates YAML text.
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        from_value(parse_str(text, Format::Yaml, MAX_CONFIG_BYTES)?)
    }

    /// Loads and validates JSON text.
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        from_value(parse_str(text, Format::Json, MAX_CONFIG_BYTES)?)
    }

    /// Checks every range and cross-field rule on a config that may have been built in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.check(&mut problems);
        into_result(problems)
    }

    /// The effective config as YAML, every key written out (for `--check-config`).
    pub fn to_yaml_string(&self) -> String {
        let doc = Document { router: self };
        match serde_saphyr::to_string(&doc) {
            Ok(text) => text,
            // JSON is valid YAML; only a serializer bug reaches this.
            Err(_) => serde_json::to_string_pretty(&doc).unwrap_or_default(),
        }
    }

    /// `shutdown_grace_seconds` as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        secs(self.shutdown_grace_seconds)
    }

    /// `first_frame_timeout_seconds` as a duration.
    pub fn first_frame_timeout(&self) -> Duration {
        secs(self.first_frame_timeout_seconds)
    }

    /// `connect_timeout_seconds` as a duration.
    pub fn connect_timeout(&self) -> Duration {
        secs(self.connect_timeout_seconds)
    }

    /// `send_timeout_seconds` as a duration.
    pub fn send_timeout(&self) -> Duration {
        secs(self.send_timeout_seconds)
    }

    /// Range and cross-field rules, each problem with its key's path.
    fn check(&self, problems: &mut Vec<Problem>) {
        let p = "router";
        if self.host.trim().is_empty() {
            problems.push(Problem::new(format!("{p}.host"), "must not be empty"));
        }
        if self.replicas.is_empty() {
            problems.push(Problem::new(
                format!("{p}.replicas"),
                "required: list at least one replica, each with a `url`",
            ));
        }
        let mut urls: Vec<(usize, String)> = Vec::new();
        let mut names: Vec<(usize, &str)> = Vec::new();
        let mut primary: Option<usize> = None;
        for (i, r) in self.replicas.iter().enumerate() {
            let rp = format!("{p}.replicas[{i}]");
            match ReplicaUrl::parse(&r.url) {
                Ok(url) => {
                    if let Some((j, _)) = urls.iter().find(|(_, u)| *u == url.as_str()) {
                        problems.push(Problem::new(
                            format!("{rp}.url"),
                            format!("duplicate of router.replicas[{j}].url ({})", url.as_str()),
                        ));
                    } else {
                        urls.push((i, url.as_str().to_owned()));
                    }
                }
                Err(e) => problems.push(Problem::new(format!("{rp}.url"), e)),
            }
            if let Some(name) = &r.name {
                if name.trim().is_empty() {
                    problems.push(Problem::new(
                        format!("{rp}.name"),
                        "must not be empty (leave it out to use the url)",
                    ));
                } else if let Some((j, _)) = names.iter().find(|(_, n)| *n == name) {
                    problems.push(Problem::new(
                        format!("{rp}.name"),
                        format!("duplicate of router.replicas[{j}].name ({name:?}); names label metrics and must be unique"),
                    ));
                } else {
                    names.push((i, name));
                }
            }
            if !(r.weight.is_finite() && r.weight > 0.0 && r.weight <= 1_000_000.0) {
                problems.push(Problem::new(
                    format!("{rp}.weight"),
                    format!("must be a number > 0 and <= 1000000 (got {})", r.weight),
                ));
            }
            if r.primary {
                match primary {
                    Some(j) => problems.push(Problem::new(
                        format!("{rp}.primary"),
                        format!(
                            "at most one replica may be primary (router.replicas[{j}] already is)"
                        ),
                    )),
                    None => primary = Some(i),
                }
            }
        }
        let h = &self.health_check;
        let hp = format!("{p}.health_check");
        check_path(problems, &format!("{hp}.path"), &h.path);
        if let Some(sp) = &h.status_path {
            check_path(problems, &format!("{hp}.status_path"), sp);
        }
        check_secs(
            problems,
            &format!("{hp}.interval_seconds"),
            h.interval_seconds,
            false,
            3600.0,
        );
        check_secs(
            problems,
            &format!("{hp}.timeout_seconds"),
            h.timeout_seconds,
            false,
            3600.0,
        );
        check_int(
            problems,
            &format!("{hp}.failure_threshold"),
            h.failure_threshold.into(),
            1,
            1000,
        );
        check_int(
            problems,
            &format!("{hp}.recovery_threshold"),
            h.recovery_threshold.into(),
            1,
            1000,
        );
        check_secs(
            problems,
            &format!("{p}.shutdown_grace_seconds"),
            self.shutdown_grace_seconds,
            true,
            3600.0,
        );
        check_secs(
            problems,
            &format!("{p}.first_frame_timeout_seconds"),
            self.first_frame_timeout_seconds,
            false,
            3600.0,
        );
        check_secs(
            problems,
            &format!("{p}.connect_timeout_seconds"),
            self.connect_timeout_seconds,
            false,
            600.0,
        );
        check_secs(
            problems,
            &format!("{p}.send_timeout_seconds"),
            self.send_timeout_seconds,
            false,
            3600.0,
        );
        check_int(
            problems,
            &format!("{p}.connect_attempts"),
            self.connect_attempts.into(),
            1,
            16,
        );
        check_int(
            problems,
            &format!("{p}.max_message_bytes"),
            self.max_message_bytes as u64,
            1024,
            1 << 30,
        );
        check_int(
            problems,
            &format!("{p}.max_sessions"),
            self.max_sessions as u64,
            1,
            100_000,
        );
        let s = &self.stickiness;
        check_int(
            problems,
            &format!("{p}.stickiness.max_clients"),
            s.max_clients as u64,
            1,
            10_000_000,
        );
        check_secs(
            problems,
            &format!("{p}.stickiness.ttl_seconds"),
            s.ttl_seconds,
            false,
            30.0 * 86_400.0,
        );
    }
}

fn check_path(problems: &mut Vec<Problem>, path: &str, value: &str) {
    if !value.starts_with('/') {
        problems.push(Problem::new(
            path.to_owned(),
            format!("must start with / (got {value:?})"),
        ));
    } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        problems.push(Problem::new(
            path.to_owned(),
            format!("must not contain whitespace (got {value:?})"),
        ));
    }
}

fn check_secs(problems: &mut Vec<Problem>, path: &str, v: f64, zero_ok: bool, max: f64) {
    let low_ok = if zero_ok { v >= 0.0 } else { v > 0.0 };
    if !(v.is_finite() && low_ok && v <= max) {
        let low = if zero_ok { ">= 0" } else { "> 0" };
        problems.push(Problem::new(
            path.to_owned(),
            format!("must be a number of seconds {low} and <= {max} (got {v})"),
        ));
    }
}

fn check_int(problems: &mut Vec<Problem>, path: &str, v: u64, min: u64, max: u64) {
    if v < min || v > max {
        problems.push(Problem::new(
            path.to_owned(),
            format!("must be an integer from {min} to {max} (got {v})"),
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Reading the document
// ---------------------------------------------------------------------------------------

/// The file: a `router:` block at the top level.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RouterFile {
    router: RouterConfig,
}

fn into_result(problems: Vec<Problem>) -> Result<(), ConfigError> {
    if problems.is_empty() {
        return Ok(());
    }
    // A key reported as mistyped is not reported again by a rule about its placeholder value.
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for p in &problems {
        if !seen.contains(&p.path.as_str()) {
            seen.push(&p.path);
            out.push(p.to_string());
        }
    }
    Err(ConfigError::Invalid { problems: out })
}

/// Drops `null` values: in a router file a null key means its default (except
/// `status_path`, where null turns the capacity poll off).
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, v| !v.is_null() || key == "status_path");
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn from_value(mut root: Value) -> Result<RouterConfig, ConfigError> {
    drop_nulls(&mut root);
    // An empty document is an empty mapping; then `router` is missing.
    if root.is_null() {
        root = Value::Object(Map::new());
    }
    let loaded = schema::load::<RouterFile>(root);
    let mut problems = loaded.problems;
    let Some(file) = loaded.value else {
        return into_result(problems).map(|()| RouterConfig::new(Vec::new()));
    };
    let mut config = file.router;
    let clean = problems.is_empty();
    config.check(&mut problems);
    if clean && problems.is_empty() {
        for r in &mut config.replicas {
            if let Ok(url) = ReplicaUrl::parse(&r.url) {
                r.url = url.as_str().to_owned();
            }
        }
    }
    into_result(problems).map(|()| config)
}
