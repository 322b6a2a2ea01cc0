//! [`StoreConfig`]: the `store:` section of a server config, and [`StoreConfig::build`], which
//! turns it into instrumented stores.
//!
//! ```yaml
//! store:
//!   kind: redis                 # memory (default) | filesystem | redis
//!   ttl_seconds: 3600           # states and blobs, from their last put
//!   inline_max_bytes: 2097152   # payload fields above this move to the blob store
//!   sessions: { capacity: 1024, max_state_bytes: 8388608 }
//!   blobs: { max_total_bytes: 268435456, max_blob_bytes: 67108864, max_blobs: 65536 }
//!   filesystem: { path: /var/lib/fv-stream/store, fsync: true, sweep_interval_seconds: 60 }
//!   redis: { url: "redis://127.0.0.1:6379/0", key_prefix: "fv:", op_timeout_ms: 5000, connect_timeout_ms: 2000 }
//! ```
//! `filesystem:` is required when `kind` is `filesystem`, `redis:` when it is `redis`; the
//! other sections may be present and are then unused.

use crate::fs::{FsBlobStore, FsOptions, FsSessionStore, Sweeper};
use crate::limits::{BlobLimits, MAX_ITEM_BYTES, SessionLimits};
use crate::payload::DEFAULT_INLINE_MAX_BYTES;
use crate::{
    BlobStore, ContinuationStore, Instrumented, MemoryBlobConfig, MemoryBlobStore,
    MemorySessionStore, MemoryStoreConfig, SessionStore, StoreError,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Which backend holds the stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StoreKind {
    /// In this process; lost on restart. Bounded like the others.
    #[default]
    Memory,
    /// Files under `filesystem.path`; survives restarts, one process per directory.
    Filesystem,
    /// A Redis server shared by every replica (needs fv-store's `redis` feature).
    Redis,
}

impl StoreKind {
    /// The name used in configs and as the metrics `backend` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Filesystem => "filesystem",
            Self::Redis => "redis",
        }
    }
}

/// The `store:` section. Build it with [`StoreConfig::default`] (memory) or
/// [`StoreConfig::from_value`]; check it with [`StoreConfig::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Backend. Default `memory`.
    pub kind: StoreKind,
    /// Lifetime of states and blobs from their last put, seconds, 1..=2592000 (30 days).
    /// Default 3600.
    #[schemars(range(min = 1, max = 2_592_000))]
    pub ttl_seconds: u64,
    /// Continuation payload fields whose decoded bytes exceed this move to the blob store,
    /// 0..=536870912 and below `blobs.max_blob_bytes`. Default 2097152 (2 MiB).
    #[schemars(range(min = 0, max = 536_870_912))]
    pub inline_max_bytes: usize,
    /// Session-state bounds.
    pub sessions: SessionsSection,
    /// Blob bounds.
    pub blobs: BlobsSection,
    /// Required when `kind` is `filesystem`.
    pub filesystem: Option<FilesystemSection>,
    /// Required when `kind` is `redis`.
    pub redis: Option<RedisSection>,
}

/// `store.sessions:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsSection {
    /// Most sessions kept (least recently put evicted first), 1..=1000000. Default 1024.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub capacity: usize,
    /// Largest encoded state, bytes, 1..=536870912. Default 8388608 (8 MiB). Not enforced by
    /// the memory backend, which stores states unencoded.
    #[schemars(range(min = 1, max = 536_870_912))]
    pub max_state_bytes: usize,
}

/// `store.blobs:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BlobsSection {
    /// All blobs together, bytes, 1..=1099511627776 (1 TiB). Default 268435456 (256 MiB).
    #[schemars(range(min = 1, max = 1_099_511_627_776_u64))]
    pub max_total_bytes: usize,
    /// One blob, bytes, 1..=536870912 and at most `max_total_bytes`. Default 67108864.
    #[schemars(range(min = 1, max = 536_870_912))]
    pub max_blob_bytes: usize,
    /// Most blobs, 1..=10000000. Default 65536.
    #[schemars(range(min = 1, max = 10_000_000))]
    pub max_blobs: usize,
}

/// `store.filesystem:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesystemSection {
    /// Root directory (created if missing). Required, not blank.
    pub path: String,
    /// fsync files and directories on write. Default true.
    #[serde(default = "yes")]
    pub fsync: bool,
    /// How often expired files are deleted, seconds, 1..=86400. Default 60.
    #[serde(default = "default_sweep")]
    #[schemars(range(min = 1, max = 86_400))]
    pub sweep_interval_seconds: u64,
}

/// `store.redis:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// `redis://[user:password@]host[:port][/db]`. Required.
    pub url: String,
    /// Prefix of every key, 1..=64 bytes. Default `fv:`.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Bound on each store call, ms, 1..=600000. Default 5000.
    #[serde(default = "default_op_timeout")]
    #[schemars(range(min = 1, max = 600_000))]
    pub op_timeout_ms: u64,
    /// Bound on each connection attempt, ms, 1..=600000. Default 2000.
    #[serde(default = "default_connect_timeout")]
    #[schemars(range(min = 1, max = 600_000))]
    pub connect_timeout_ms: u64,
}

fn yes() -> bool {
    true
}
fn default_sweep() -> u64 {
    crate::fs::DEFAULT_SWEEP_INTERVAL.as_secs()
}
fn default_prefix() -> String {
    "fv:".to_string()
}
fn default_op_timeout() -> u64 {
    5000
}
fn default_connect_timeout() -> u64 {
    2000
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Memory,
            ttl_seconds: 3600,
            inline_max_bytes: DEFAULT_INLINE_MAX_BYTES,
            sessions: SessionsSection::default(),
            blobs: BlobsSection::default(),
            filesystem: None,
            redis: None,
        }
    }
}

impl Default for SessionsSection {
    fn default() -> Self {
        let d = SessionLimits::default();
        Self {
            capacity: d.capacity,
            max_state_bytes: d.max_state_bytes,
        }
    }
}

impl Default for BlobsSection {
    fn default() -> Self {
        let d = BlobLimits::default();
        Self {
            max_total_bytes: d.max_total_bytes,
            max_blob_bytes: d.max_blob_bytes,
            max_blobs: d.max_blobs,
        }
    }
}

impl FilesystemSection {
    /// A section for `path` with the defaults.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            fsync: true,
            sweep_interval_seconds: default_sweep(),
        }
    }
}

impl RedisSection {
    /// A section for `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: default_prefix(),
            op_timeout_ms: default_op_timeout(),
            connect_timeout_ms: default_connect_timeout(),
        }
    }
}

/// One problem in a store config: the dotted key path and what is wrong (the project's one
/// config problem type, from `fv-config`).
pub use fv_config::Problem as ConfigProblem;

/// Every problem found in a store config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid store config:\n  {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
pub struct StoreConfigError {
    pub problems: Vec<ConfigProblem>,
}

/// The built stores: hand `sessions`/`blobs` (or `continuation`) to the server and keep the
/// whole value alive, since dropping it stops the filesystem sweeper.
pub struct Stores {
    /// Instrumented session store.
    pub sessions: Arc<dyn SessionStore>,
    /// Instrumented blob store.
    pub blobs: Arc<dyn BlobStore>,
    /// Both, with payload offloading at the configured `inline_max_bytes`.
    pub continuation: ContinuationStore,
    /// Deletes expired files periodically (filesystem only); stops when dropped.
    pub sweeper: Option<Sweeper>,
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stores")
            .field("continuation", &self.continuation)
            .field("sweeper", &self.sweeper)
            .finish_non_exhaustive()
    }
}

struct Problems {
    prefix: String,
    list: Vec<ConfigProblem>,
}

impl Problems {
    fn push(&mut self, key: &str, message: impl Into<String>) {
        self.list.push(ConfigProblem::new(
            format!("{}.{key}", self.prefix),
            message,
        ));
    }

    fn range(&mut self, key: &str, value: u64, min: u64, max: u64) {
        if !(min..=max).contains(&value) {
            // The same words as the serve config's schema check (fv_runtime::schema).
            self.push(key, format!("must be in {min}..={max} (got {value})"));
        }
    }
}

impl StoreConfig {
    /// Deserializes a `store:` section (YAML/JSON already turned into a value), naming the
    /// key path of a type error or unknown key, then validates it. `prefix` is where the
    /// section sits in the file, e.g. `store`.
    pub fn from_value(value: serde_json::Value, prefix: &str) -> Result<Self, StoreConfigError> {
        // The one config mechanism: key paths, unknown keys, types and ranges from the schema,
        // then this section's own cross-field rules (a key reported once).
        let loaded = fv_config::load::<Self>(value);
        let mut problems: Vec<ConfigProblem> = loaded
            .problems
            .into_iter()
            .map(|p| p.under(prefix))
            .collect();
        if let Some(config) = loaded.value {
            for p in config.problems(prefix) {
                if !problems.iter().any(|q| q.path == p.path) {
                    problems.push(p);
                }
            }
            if problems.is_empty() {
                return Ok(config);
            }
        }
        Err(StoreConfigError { problems })
    }

    /// Checks every range and cross-field rule, reporting all problems with key paths under
    /// `store.`.
    pub fn validate(&self) -> Result<(), StoreConfigError> {
        self.validate_at("store")
    }

    /// [`validate`](Self::validate) with the section mounted at `prefix`.
    pub fn validate_at(&self, prefix: &str) -> Result<(), StoreConfigError> {
        let problems = self.problems(prefix);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(StoreConfigError { problems })
        }
    }

    /// Every problem, with key paths under `prefix`.
    pub fn problems(&self, prefix: &str) -> Vec<ConfigProblem> {
        let mut p = Problems {
            prefix: prefix.to_string(),
            list: Vec::new(),
        };
        let item_max = MAX_ITEM_BYTES as u64;
        p.range("ttl_seconds", self.ttl_seconds, 1, 2_592_000);
        p.range(
            "inline_max_bytes",
            self.inline_max_bytes as u64,
            0,
            item_max,
        );
        p.range(
            "sessions.capacity",
            self.sessions.capacity as u64,
            1,
            1_000_000,
        );
        p.range(
            "sessions.max_state_bytes",
            self.sessions.max_state_bytes as u64,
            1,
            item_max,
        );
        let b = &self.blobs;
        p.range(
            "blobs.max_total_bytes",
            b.max_total_bytes as u64,
            1,
            1 << 40,
        );
        p.range("blobs.max_blob_bytes", b.max_blob_bytes as u64, 1, item_max);
        p.range("blobs.max_blobs", b.max_blobs as u64, 1, 10_000_000);
        if b.max_blob_bytes > b.max_total_bytes {
            p.push(
                "blobs.max_blob_bytes",
                format!(
                    "must not exceed {prefix}.blobs.max_total_bytes ({} > {})",
                    b.max_blob_bytes, b.max_total_bytes
                ),
            );
        }
        if self.inline_max_bytes >= b.max_blob_bytes {
            p.push(
                "inline_max_bytes",
                format!(
                    "must be below {prefix}.blobs.max_blob_bytes ({} >= {}), or no field could ever move",
                    self.inline_max_bytes, b.max_blob_bytes
                ),
            );
        }
        match (&self.filesystem, self.kind) {
            (None, StoreKind::Filesystem) => {
                p.push("filesystem", "required when store kind is filesystem");
            }
            (Some(fs), _) => {
                if fs.path.trim().is_empty() {
                    p.push("filesystem.path", "must not be blank");
                }
                p.range(
                    "filesystem.sweep_interval_seconds",
                    fs.sweep_interval_seconds,
                    1,
                    86_400,
                );
            }
            (None, _) => {}
        }
        match (&self.redis, self.kind) {
            (None, StoreKind::Redis) => p.push("redis", "required when store kind is redis"),
            (Some(r), _) => {
                let len = r.key_prefix.len() as u64;
                if !(1..=64).contains(&len) {
                    p.push(
                        "redis.key_prefix",
                        format!("must be 1..=64 bytes (got {len})"),
                    );
                }
                p.range("redis.op_timeout_ms", r.op_timeout_ms, 1, 600_000);
                p.range("redis.connect_timeout_ms", r.connect_timeout_ms, 1, 600_000);
                redis_url_problem(&mut p, &r.url);
            }
            (None, _) => {}
        }
        if self.kind == StoreKind::Redis && !cfg!(feature = "redis") {
            p.push(
                "kind",
                "redis needs fv-store built with its `redis` feature",
            );
        }
        p.list
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_seconds)
    }

    fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            capacity: self.sessions.capacity,
            ttl: self.ttl(),
            max_state_bytes: self.sessions.max_state_bytes,
        }
    }

    fn blob_limits(&self) -> BlobLimits {
        BlobLimits {
            max_total_bytes: self.blobs.max_total_bytes,
            max_blob_bytes: self.blobs.max_blob_bytes,
            max_blobs: self.blobs.max_blobs,
            ttl: self.ttl(),
        }
    }

    /// Validates, then builds the configured stores, each wrapped in [`Instrumented`]. For
    /// `filesystem` it opens (scans) the directory and starts the sweeper; for `redis` it
    /// connects and pings (an unreachable Redis is an error here). Needs a tokio runtime.
    pub async fn build(&self) -> Result<Stores, StoreError> {
        self.validate().map_err(|e| StoreError::InvalidConfig {
            field: "store",
            reason: e.to_string(),
        })?;
        let backend = self.kind.as_str();
        let (sessions, blobs, sweeper): (Arc<dyn SessionStore>, Arc<dyn BlobStore>, _) =
            match self.kind {
                StoreKind::Memory => {
                    let s = MemorySessionStore::new(MemoryStoreConfig {
                        capacity: self.sessions.capacity,
                        ttl: self.ttl(),
                    })?;
                    let l = self.blob_limits();
                    let b = MemoryBlobStore::new(MemoryBlobConfig {
                        max_total_bytes: l.max_total_bytes,
                        max_blob_bytes: l.max_blob_bytes,
                        max_blobs: l.max_blobs,
                        ttl: l.ttl,
                    })?;
                    (
                        Arc::new(Instrumented::new(backend, s)),
                        Arc::new(Instrumented::new(backend, b)),
                        None,
                    )
                }
                StoreKind::Filesystem => self.build_fs(backend).await?,
                StoreKind::Redis => self.build_redis(backend).await?,
            };
        let continuation = ContinuationStore::new(Arc::clone(&sessions), Arc::clone(&blobs))
            .with_inline_max_bytes(self.inline_max_bytes);
        Ok(Stores {
            sessions,
            blobs,
            continuation,
            sweeper,
        })
    }

    async fn build_fs(
        &self,
        backend: &'static str,
    ) -> Result<(Arc<dyn SessionStore>, Arc<dyn BlobStore>, Option<Sweeper>), StoreError> {
        let Some(section) = self.filesystem.clone() else {
            return Err(missing("filesystem"));
        };
        let (session_limits, blob_limits) = (self.session_limits(), self.blob_limits());
        let mut options = FsOptions::new(&section.path);
        options.fsync = section.fsync;
        let (s, b) = tokio::task::spawn_blocking(move || {
            Ok::<_, StoreError>((
                FsSessionStore::open(session_limits, options.clone())?,
                FsBlobStore::open(blob_limits, options)?,
            ))
        })
        .await
        .map_err(|e| StoreError::Io(format!("opening the store failed: {e}")))??;
        let sweeper = Sweeper::spawn(
            Duration::from_secs(section.sweep_interval_seconds),
            Some(&b),
            Some(&s),
        );
        Ok((
            Arc::new(Instrumented::new(backend, s)),
            Arc::new(Instrumented::new(backend, b)),
            Some(sweeper),
        ))
    }

    #[cfg(feature = "redis")]
    async fn build_redis(
        &self,
        backend: &'static str,
    ) -> Result<(Arc<dyn SessionStore>, Arc<dyn BlobStore>, Option<Sweeper>), StoreError> {
        use crate::redis_store::{
            RedisBlobStore, RedisConnection, RedisOptions, RedisSessionStore,
        };
        let Some(section) = &self.redis else {
            return Err(missing("redis"));
        };
        let conn = RedisConnection::connect(&RedisOptions {
            url: section.url.clone(),
            key_prefix: section.key_prefix.clone(),
            op_timeout: Duration::from_millis(section.op_timeout_ms),
            connect_timeout: Duration::from_millis(section.connect_timeout_ms),
        })
        .await?;
        let s = RedisSessionStore::new(conn.clone(), self.session_limits())?;
        let b = RedisBlobStore::new(conn, self.blob_limits())?;
        Ok((
            Arc::new(Instrumented::new(backend, s)),
            Arc::new(Instrumented::new(backend, b)),
            None,
        ))
    }

    #[cfg(not(feature = "redis"))]
    async fn build_redis(
        &self,
        _backend: &'static str,
    ) -> Result<(Arc<dyn SessionStore>, Arc<dyn BlobStore>, Option<Sweeper>), StoreError> {
        Err(StoreError::InvalidConfig {
            field: "kind",
            reason: "redis needs fv-store built with its `redis` feature".to_string(),
        })
    }
}

fn missing(section: &'static str) -> StoreError {
    StoreError::InvalidConfig {
        field: section,
        reason: "section missing".to_string(),
    }
}

#[cfg(feature = "redis")]
fn redis_url_problem(p: &mut Problems, url: &str) {
    let options = crate::redis_store::RedisOptions::new(url);
    if let Err(StoreError::InvalidConfig { reason, .. }) = options.validate() {
        p.push("redis.url", reason);
    }
}

#[cfg(not(feature = "redis"))]
fn redis_url_problem(p: &mut Problems, url: &str) {
    if url.trim().is_empty() {
        p.push("redis.url", "must not be blank");
    }
}
