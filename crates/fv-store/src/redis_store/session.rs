//! [`RedisSessionStore`]: `state:<session>` JSON strings with a TTL, plus a `states:order`
//! zset of put times for the capacity bound (and `states:clock`, which keeps put times
//! strictly increasing).

use super::RedisConnection;
use crate::ids::check_session_id;
use crate::limits::{SessionLimits, ttl_ms};
use crate::{ContinuationState, SessionStore, StoreError};
use async_trait::async_trait;
use redis::{AsyncCommands, Script};

/// Puts a state, first forgetting expired order entries and evicting the least recently put
/// sessions while a new session would exceed the capacity. Atomic (one script).
/// KEYS: order zset, state key, clock key. ARGV: session id, JSON, ttl ms, capacity, state key
/// prefix.
const PUT: &str = r"
local CLOCK = KEYS[3]
local t = redis.call('TIME')
-- Scores are microseconds, forced strictly increasing so equal clock readings keep put order.
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', CLOCK) or '0')
if now <= last then now = last + 1 end
local ttl = tonumber(ARGV[3])
local capacity = tonumber(ARGV[4])
redis.call('SET', CLOCK, string.format('%.0f', now), 'PX', ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - ttl * 1000))
local evicted = 0
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  while redis.call('ZCARD', KEYS[1]) >= capacity do
    local oldest = redis.call('ZPOPMIN', KEYS[1])
    redis.call('DEL', ARGV[5] .. oldest[1])
    evicted = evicted + 1
  end
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return evicted
";

/// Redis [`SessionStore`]: the memory store's semantics (capacity, least recently put evicted
/// first, TTL from the last put) shared by every server on the same Redis and prefix, plus a
/// cap on the encoded state size. See the [module docs](crate::redis_store).
#[derive(Debug)]
pub struct RedisSessionStore {
    conn: RedisConnection,
    limits: SessionLimits,
    put: Script,
}

impl RedisSessionStore {
    /// A store on `conn` with `limits` (validated).
    pub fn new(conn: RedisConnection, limits: SessionLimits) -> Result<Self, StoreError> {
        limits.validate()?;
        Ok(Self {
            conn,
            limits,
            put: Script::new(PUT),
        })
    }

    pub fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    fn state_key(&self, session_id: &str) -> String {
        self.conn.key(&format!("state:{session_id}"))
    }

    fn order_key(&self) -> String {
        self.conn.key("states:order")
    }
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn put_state(
        &self,
        session_id: &str,
        state: ContinuationState,
    ) -> Result<(), StoreError> {
        check_session_id(session_id)?;
        let body = serde_json::to_vec(&state)
            .map_err(|e| StoreError::Backend(format!("cannot encode state: {e}")))?;
        let max = self.limits.max_state_bytes;
        if body.len() > max {
            return Err(StoreError::StateTooLarge {
                size: body.len(),
                max,
            });
        }
        let mut call = self.put.prepare_invoke();
        call.key(self.order_key())
            .key(self.state_key(session_id))
            .key(self.conn.key("states:clock"))
            .arg(session_id)
            .arg(body)
            .arg(ttl_ms(self.limits.ttl))
            .arg(self.limits.capacity)
            .arg(self.conn.key("state:"));
        let evicted: u64 = self
            .conn
            .run("put_state", |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        if evicted > 0 {
            tracing::debug!(evicted, "session store full: evicted the oldest states");
        }
        Ok(())
    }

    async fn get_state(&self, session_id: &str) -> Result<Option<ContinuationState>, StoreError> {
        check_session_id(session_id)?;
        let key = self.state_key(session_id);
        let body: Option<Vec<u8>> = self
            .conn
            .run("get_state", |mut c| async move { c.get(&key).await })
            .await?;
        body.map(|b| {
            serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
                what: format!("state of session {session_id}"),
                reason: e.to_string(),
            })
        })
        .transpose()
    }

    async fn drop_session(&self, session_id: &str) -> Result<(), StoreError> {
        check_session_id(session_id)?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(self.state_key(session_id))
            .ignore()
            .zrem(self.order_key(), session_id)
            .ignore();
        self.conn
            .run("drop_session", |mut c| async move {
                pipe.query_async::<()>(&mut c).await
            })
            .await
    }
}
