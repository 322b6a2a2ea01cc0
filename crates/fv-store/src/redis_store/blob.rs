//! [`RedisBlobStore`]: `blob:<id>` strings (data) and `blob:<id>:meta` hashes (owner, mime)
//! with a TTL, indexed for the total-bytes and count
//! bounds and for dropping a session's blobs.

use super::RedisConnection;
use crate::fs::MAX_MIME_BYTES;
use crate::ids::{check_blob_id, check_session_id, new_blob_id};
use crate::limits::{BlobLimits, ttl_ms};
use crate::{BlobInfo, BlobStore, StoreError};
use async_trait::async_trait;
use redis::{AsyncCommands, Script};

/// Shared by the scripts. KEYS[1..4]: `blobs:order` zset, `blobs:size` hash, `blobs:owner`
/// hash, `blobs:total` counter. ARGV[1]: blob key prefix, ARGV[2]: session-set key prefix.
/// `forget` removes one blob from every index, its data and meta keys and its session's set.
const PRELUDE: &str = r"
local function forget(id)
  local size = tonumber(redis.call('HGET', KEYS[2], id) or '0')
  local owner = redis.call('HGET', KEYS[3], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('DEL', ARGV[1] .. id, ARGV[1] .. id .. ':meta')
  if owner then redis.call('SREM', ARGV[2] .. owner, id) end
  if size > 0 then redis.call('DECRBY', KEYS[4], size) end
end
";

/// Makes room for and indexes a new blob; the blob's data and meta keys are written by the
/// commands that follow in the same `MULTI`/`EXEC` (passing megabytes through a Lua argument costs
/// ~10x a plain write). KEYS[5]: the owner's session set, KEYS[6]: clock. ARGV[3..8]: id,
/// size, owner, ttl ms, max total bytes, max blobs. Forgets expired entries (bounded per
/// call; expired ones are the oldest, so the eviction below takes any left first), evicts the
/// oldest until the new blob fits. Returns the number evicted.
const RESERVE: &str = r"
local CLOCK = KEYS[6]
local t = redis.call('TIME')
-- Scores are microseconds, forced strictly increasing so equal clock readings keep put order.
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', CLOCK) or '0')
if now <= last then now = last + 1 end
local size = tonumber(ARGV[4])
local ttl = tonumber(ARGV[6])
local max_total = tonumber(ARGV[7])
local max_blobs = tonumber(ARGV[8])
redis.call('SET', CLOCK, string.format('%.0f', now), 'PX', ttl)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - ttl * 1000), 'LIMIT', 0, 1000)
for _, id in ipairs(expired) do forget(id) end
local evicted = 0
while true do
  local count = redis.call('ZCARD', KEYS[1])
  local total = tonumber(redis.call('GET', KEYS[4]) or '0')
  if count == 0 then
    if total ~= 0 then redis.call('SET', KEYS[4], 0) end
    break
  end
  if total + size <= max_total and count < max_blobs then break end
  forget(redis.call('ZRANGE', KEYS[1], 0, 0)[1])
  evicted = evicted + 1
end
redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], size)
redis.call('HSET', KEYS[3], ARGV[3], ARGV[5])
redis.call('INCRBY', KEYS[4], size)
redis.call('SADD', KEYS[5], ARGV[3])
redis.call('PEXPIRE', KEYS[5], ttl)
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
return evicted
";

/// ARGV[3]: id.
const DROP_BLOB: &str = r"
forget(ARGV[3])
return 0
";

/// KEYS[5]: the session's set.
const DROP_SESSION: &str = r"
local ids = redis.call('SMEMBERS', KEYS[5])
for _, id in ipairs(ids) do forget(id) end
redis.call('DEL', KEYS[5])
return #ids
";

/// Redis [`BlobStore`] with the memory store's bounds (total bytes, blob size, blob count, TTL
/// from put, oldest evicted first), shared by every server on the same Redis and prefix. See
/// the [module docs](crate::redis_store).
#[derive(Debug)]
pub struct RedisBlobStore {
    conn: RedisConnection,
    limits: BlobLimits,
    reserve: String,
    drop_blob: Script,
    drop_session: Script,
}

impl RedisBlobStore {
    /// A store on `conn` with `limits` (validated).
    pub fn new(conn: RedisConnection, limits: BlobLimits) -> Result<Self, StoreError> {
        limits.validate()?;
        Ok(Self {
            conn,
            limits,
            reserve: format!("{PRELUDE}{RESERVE}"),
            drop_blob: Script::new(&format!("{PRELUDE}{DROP_BLOB}")),
            drop_session: Script::new(&format!("{PRELUDE}{DROP_SESSION}")),
        })
    }

    pub fn limits(&self) -> &BlobLimits {
        &self.limits
    }

    fn blob_key(&self, id: &str) -> String {
        self.conn.key(&format!("blob:{id}"))
    }

    fn session_key(&self, session_id: &str) -> String {
        self.conn.key(&format!("session-blobs:{session_id}"))
    }

    /// A script call with the four index keys and the two key prefixes in place.
    fn invocation<'a>(&self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut call = script.prepare_invoke();
        for name in ["blobs:order", "blobs:size", "blobs:owner", "blobs:total"] {
            call.key(self.conn.key(name));
        }
        call.arg(self.conn.key("blob:"))
            .arg(self.conn.key("session-blobs:"));
        call
    }

    /// Owner, mime and size of a live blob.
    pub async fn blob_info(&self, blob_id: &str) -> Result<Option<BlobInfo>, StoreError> {
        check_blob_id(blob_id)?;
        let key = self.blob_key(blob_id);
        let meta = format!("{key}:meta");
        let (owner, mime, len): (Option<String>, Option<String>, usize) = self
            .conn
            .run("blob_info", |mut c| async move {
                redis::pipe()
                    .hget(&meta, "o")
                    .hget(&meta, "m")
                    .strlen(&key)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(owner.zip(mime).map(|(session_id, mime)| BlobInfo {
            session_id,
            mime,
            len,
        }))
    }
}

#[async_trait]
impl BlobStore for RedisBlobStore {
    async fn put(&self, session_id: &str, data: Vec<u8>, mime: &str) -> Result<String, StoreError> {
        check_session_id(session_id)?;
        if mime.len() > MAX_MIME_BYTES {
            return Err(StoreError::InvalidInput {
                field: "mime".to_string(),
                reason: format!("must be at most {MAX_MIME_BYTES} bytes"),
            });
        }
        if data.len() > self.limits.max_blob_bytes {
            return Err(StoreError::TooLarge {
                size: data.len(),
                max: self.limits.max_blob_bytes,
            });
        }
        let id = new_blob_id();
        let key = self.blob_key(&id);
        let meta = format!("{key}:meta");
        let ttl = ttl_ms(self.limits.ttl);
        let mut reserve = redis::cmd("EVAL");
        reserve.arg(&self.reserve).arg(6);
        for name in ["blobs:order", "blobs:size", "blobs:owner", "blobs:total"] {
            reserve.arg(self.conn.key(name));
        }
        reserve
            .arg(self.session_key(session_id))
            .arg(self.conn.key("blobs:clock"))
            .arg(self.conn.key("blob:"))
            .arg(self.conn.key("session-blobs:"))
            .arg(&id)
            .arg(data.len())
            .arg(session_id)
            .arg(ttl)
            .arg(self.limits.max_total_bytes)
            .arg(self.limits.max_blobs);
        // One transaction: no other client sees the index without the data or the reverse.
        // EVAL (not EVALSHA) because a NOSCRIPT inside MULTI would not stop the HSET.
        let mut pipe = redis::pipe();
        pipe.atomic()
            .add_command(reserve)
            .pset_ex(&key, data, ttl)
            .ignore()
            .hset_multiple(&meta, &[("o", session_id), ("m", mime)])
            .ignore()
            .pexpire(&meta, i64::try_from(ttl).unwrap_or(i64::MAX))
            .ignore();
        let (evicted,): (u64,) = self
            .conn
            .run(
                "put_blob",
                |mut c| async move { pipe.query_async(&mut c).await },
            )
            .await?;
        if evicted > 0 {
            tracing::debug!(evicted, "blob store full: evicted the oldest blobs");
        }
        Ok(id)
    }

    async fn get(&self, blob_id: &str) -> Result<Vec<u8>, StoreError> {
        check_blob_id(blob_id)?;
        let key = self.blob_key(blob_id);
        let data: Option<Vec<u8>> = self
            .conn
            .run("get_blob", |mut c| async move { c.get(&key).await })
            .await?;
        data.ok_or_else(|| StoreError::NotFound {
            blob_id: blob_id.to_string(),
        })
    }

    async fn drop_blob(&self, blob_id: &str) -> Result<(), StoreError> {
        check_blob_id(blob_id)?;
        let mut call = self.invocation(&self.drop_blob);
        call.arg(blob_id);
        self.conn
            .run("drop_blob", |mut c| async move {
                call.invoke_async::<i64>(&mut c).await
            })
            .await
            .map(drop)
    }

    async fn drop_session(&self, session_id: &str) -> Result<(), StoreError> {
        check_session_id(session_id)?;
        let mut call = self.invocation(&self.drop_session);
        call.key(self.session_key(session_id));
        self.conn
            .run("drop_blob_session", |mut c| async move {
                call.invoke_async::<i64>(&mut c).await
            })
            .await
            .map(drop)
    }
}
