//! Redis stores (feature `redis`): [`RedisSessionStore`] and [`RedisBlobStore`] over one
//! shared [`RedisConnection`].
//!
//! * **Connection:** a `redis` crate `ConnectionManager` (one multiplexed connection that
//!   reconnects by itself after Redis restarts or the network drops). Every call is bounded by
//!   [`RedisOptions::op_timeout`]: a stopped or hung Redis gives [`StoreError::Timeout`] or
//!   [`StoreError::Unavailable`] (both retryable), never a hang.
//! * **Keys** (all under [`RedisOptions::key_prefix`], default `fv:`), every one with a TTL:
//!   `state:<session>` (JSON), `states:order` (zset, put time in µs), `states:clock`,
//!   `blob:<id>` (data), `blob:<id>:meta` (hash: `o` owner, `m` mime), `blobs:order` (zset),
//!   `blobs:size` / `blobs:owner` (hashes), `blobs:total` (bytes), `blobs:clock`,
//!   `session-blobs:<session>` (set).
//! * **Bounds:** capacity, total bytes and blob count are enforced atomically by Lua scripts
//!   (a blob's bytes go in by a plain `SET` in the same `MULTI`, not through Lua) that evict
//!   the oldest entries, shared by every server using the same prefix. Put times
//!   come from the Redis clock (`TIME`, forced strictly increasing so puts in the same
//!   microsecond keep their order), so replicas with skewed clocks agree.
//! * **Requirements:** Redis ≥ 5 standalone (scripts touch keys they compute). With Redis
//!   Cluster, put a hash tag in the prefix (e.g. `{fv}:`) so every key lands in one slot. All
//!   servers sharing a prefix must use the same limits. Configure Redis' `maxmemory-policy`
//!   to a `volatile-*` policy or `noeviction`: every key here has a TTL.

mod blob;
mod session;

pub use blob::RedisBlobStore;
pub use session::RedisSessionStore;

use crate::StoreError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, RetryMethod};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Default [`RedisOptions::key_prefix`].
pub const DEFAULT_KEY_PREFIX: &str = "fv:";
/// Default [`RedisOptions::op_timeout`]: 5 s, enough to move a 64 MiB blob over a slow LAN.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`RedisOptions::connect_timeout`]: 2 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest accepted key prefix, in bytes.
pub const MAX_KEY_PREFIX_BYTES: usize = 64;

/// Where the Redis stores connect and how long they wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://[user:password@]host[:port][/db]` (or `rediss://` / `unix://`, if the `redis`
    /// crate was built with them).
    pub url: String,
    /// Prepended to every key; lets several deployments share one Redis. 1..=64 bytes.
    pub key_prefix: String,
    /// Bound on every store call, including waiting for a reconnect. ≥ 1 ms.
    pub op_timeout: Duration,
    /// Bound on each connection attempt. ≥ 1 ms.
    pub connect_timeout: Duration,
}

impl RedisOptions {
    /// Options for `url` with the default prefix and timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: DEFAULT_KEY_PREFIX.to_string(),
            op_timeout: DEFAULT_OP_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Checks the prefix, the timeouts and that the URL parses.
    pub fn validate(&self) -> Result<(), StoreError> {
        let invalid = |field, reason: String| Err(StoreError::InvalidConfig { field, reason });
        if self.key_prefix.is_empty() || self.key_prefix.len() > MAX_KEY_PREFIX_BYTES {
            return invalid(
                "key_prefix",
                format!("must be 1..={MAX_KEY_PREFIX_BYTES} bytes"),
            );
        }
        if self.op_timeout.as_millis() == 0 {
            return invalid("op_timeout", "must be at least 1 ms".into());
        }
        if self.connect_timeout.as_millis() == 0 {
            return invalid("connect_timeout", "must be at least 1 ms".into());
        }
        if let Err(e) = redis::Client::open(self.url.as_str()) {
            return invalid(
                "url",
                format!("is not a usable Redis URL: {}", redact(&e.to_string())),
            );
        }
        Ok(())
    }
}

/// Keeps passwords out of error messages that quote a URL.
fn redact(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &text[..scheme], &text[at..])
        }
        _ => text.to_string(),
    }
}

/// One auto-reconnecting connection shared by the Redis stores (cheap to clone).
#[derive(Clone)]
pub struct RedisConnection {
    manager: ConnectionManager,
    prefix: Arc<str>,
    op_timeout: Duration,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("prefix", &self.prefix)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Connects and checks the server answers `PING`, within `connect_timeout` +
    /// `op_timeout`. A Redis that is down at startup is an error here (a wrong URL should stop
    /// a deployment early); once connected, outages are survived by reconnecting.
    pub async fn connect(options: &RedisOptions) -> Result<Self, StoreError> {
        options.validate()?;
        let client = redis::Client::open(options.url.as_str())
            .map_err(|e| StoreError::Backend(redact(&e.to_string())))?;
        // Few, short reconnect retries: a call waiting on a reconnect is bounded by
        // op_timeout anyway, and the next call starts a fresh attempt.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.op_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let budget = options.connect_timeout + options.op_timeout;
        let manager =
            match tokio::time::timeout(budget, ConnectionManager::new_with_config(client, config))
                .await
            {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    return Err(StoreError::Unavailable(format!(
                        "cannot connect to Redis: {}",
                        redact(&e.to_string())
                    )));
                }
                Err(_) => {
                    return Err(StoreError::Timeout {
                        op: "connect",
                        after_ms: millis(budget),
                    });
                }
            };
        let conn = Self {
            manager,
            prefix: Arc::from(options.key_prefix.as_str()),
            op_timeout: options.op_timeout,
        };
        let pong: String = conn
            .run("ping", |mut c| async move {
                redis::cmd("PING").query_async(&mut c).await
            })
            .await?;
        if pong != "PONG" {
            return Err(StoreError::Backend(format!("PING answered {pong:?}")));
        }
        Ok(conn)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Runs one call on a clone of the manager, bounded by the op timeout, mapping errors.
    pub(crate) async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        match tokio::time::timeout(self.op_timeout, f(self.manager.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(map_error(op, self.op_timeout, &e)),
            Err(_) => Err(StoreError::Timeout {
                op,
                after_ms: millis(self.op_timeout),
            }),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Sorts a Redis error into retryable (`Timeout`, `Unavailable`) or not (`Backend`).
fn map_error(op: &'static str, op_timeout: Duration, e: &RedisError) -> StoreError {
    if e.is_timeout() {
        return StoreError::Timeout {
            op,
            after_ms: millis(op_timeout),
        };
    }
    let message = format!("{op}: {}", redact(&e.to_string()));
    if e.is_io_error() || !matches!(e.retry_method(), RetryMethod::NoRetry) {
        StoreError::Unavailable(message)
    } else {
        StoreError::Backend(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_validation() {
        assert!(
            RedisOptions::new("redis://127.0.0.1:6379/0")
                .validate()
                .is_ok()
        );
        let bad = |o: RedisOptions| o.validate().expect_err("invalid").to_string();
        let base = RedisOptions::new("redis://127.0.0.1:6379");
        assert_eq!(
            bad(RedisOptions {
                key_prefix: String::new(),
                ..base.clone()
            }),
            "invalid store config: key_prefix must be 1..=64 bytes"
        );
        assert_eq!(
            bad(RedisOptions {
                op_timeout: Duration::ZERO,
                ..base.clone()
            }),
            "invalid store config: op_timeout must be at least 1 ms"
        );
        let msg = bad(RedisOptions::new("http://user:secret@host"));
        assert!(
            msg.starts_with("invalid store config: url is not a usable Redis URL"),
            "{msg}"
        );
        assert!(!msg.contains("secret"), "{msg}");
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact("redis://u:pw@h:1/0 refused"),
            "redis://***@h:1/0 refused"
        );
        assert_eq!(redact("no url here"), "no url here");
    }
}
