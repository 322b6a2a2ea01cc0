//! Bounds shared by the filesystem and Redis stores (the memory stores keep their own config
//! types, with the same meaning).

use crate::StoreError;
use crate::memory::{
    DEFAULT_BLOB_TTL, DEFAULT_MAX_BLOB_BYTES, DEFAULT_MAX_BLOBS, DEFAULT_MAX_TOTAL_BYTES,
    DEFAULT_SESSION_CAPACITY, DEFAULT_STATE_TTL,
};
use std::time::Duration;

/// Default [`SessionLimits::max_state_bytes`]: 8 MiB, room for a video and an audio blob
/// inlined at the 2 MiB threshold as base64 plus the rest of the payload.
pub const DEFAULT_MAX_STATE_BYTES: usize = 8 * 1024 * 1024;

/// Largest value Redis stores in one string (its `proto-max-bulk-len` default): the ceiling of
/// every per-item cap.
pub const MAX_ITEM_BYTES: usize = 512 * 1024 * 1024;

/// Bounds of a persistent session store ([`crate::FsSessionStore`],
/// `RedisSessionStore`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Most sessions kept; a new session in a full store evicts the least recently put one.
    /// At least 1. Default [`DEFAULT_SESSION_CAPACITY`].
    pub capacity: usize,
    /// Lifetime of a state from its last put. Greater than 0 and a whole number of
    /// milliseconds is used. Default [`DEFAULT_STATE_TTL`].
    pub ttl: Duration,
    /// Largest encoded (JSON) state; a bigger one fails with
    /// [`StoreError::StateTooLarge`]. 1..=[`MAX_ITEM_BYTES`]. Default
    /// [`DEFAULT_MAX_STATE_BYTES`].
    pub max_state_bytes: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            capacity: DEFAULT_SESSION_CAPACITY,
            ttl: DEFAULT_STATE_TTL,
            max_state_bytes: DEFAULT_MAX_STATE_BYTES,
        }
    }
}

impl SessionLimits {
    /// Checks every bound; the error names the field.
    pub fn validate(&self) -> Result<(), StoreError> {
        at_least_one("capacity", self.capacity)?;
        check_ttl(self.ttl)?;
        check_item_cap("max_state_bytes", self.max_state_bytes)
    }
}

/// Bounds of a persistent blob store ([`crate::FsBlobStore`], `RedisBlobStore`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLimits {
    /// Sum of all blob sizes; a put that would exceed it evicts the oldest blobs first.
    /// Default [`DEFAULT_MAX_TOTAL_BYTES`].
    pub max_total_bytes: usize,
    /// Largest single blob; a bigger one fails with [`StoreError::TooLarge`].
    /// 1..=[`MAX_ITEM_BYTES`] and at most `max_total_bytes`. Default
    /// [`DEFAULT_MAX_BLOB_BYTES`].
    pub max_blob_bytes: usize,
    /// Most blobs held regardless of size; the oldest is evicted first. At least 1. Default
    /// [`DEFAULT_MAX_BLOBS`].
    pub max_blobs: usize,
    /// Lifetime of a blob from its put. Greater than 0. Default [`DEFAULT_BLOB_TTL`].
    pub ttl: Duration,
}

impl Default for BlobLimits {
    fn default() -> Self {
        Self {
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            max_blob_bytes: DEFAULT_MAX_BLOB_BYTES,
            max_blobs: DEFAULT_MAX_BLOBS,
            ttl: DEFAULT_BLOB_TTL,
        }
    }
}

impl BlobLimits {
    /// Checks every bound; the error names the field.
    pub fn validate(&self) -> Result<(), StoreError> {
        check_item_cap("max_blob_bytes", self.max_blob_bytes)?;
        if self.max_blob_bytes > self.max_total_bytes {
            return Err(StoreError::InvalidConfig {
                field: "max_blob_bytes",
                reason: format!(
                    "({}) must not exceed max_total_bytes ({})",
                    self.max_blob_bytes, self.max_total_bytes
                ),
            });
        }
        at_least_one("max_blobs", self.max_blobs)?;
        check_ttl(self.ttl)
    }
}

fn at_least_one(field: &'static str, value: usize) -> Result<(), StoreError> {
    if value == 0 {
        return Err(StoreError::InvalidConfig {
            field,
            reason: "must be at least 1".to_string(),
        });
    }
    Ok(())
}

fn check_item_cap(field: &'static str, value: usize) -> Result<(), StoreError> {
    at_least_one(field, value)?;
    if value > MAX_ITEM_BYTES {
        return Err(StoreError::InvalidConfig {
            field,
            reason: format!("({value}) must be at most {MAX_ITEM_BYTES}"),
        });
    }
    Ok(())
}

/// TTLs are kept in whole milliseconds (Redis `PX`, file timestamps), so at least 1 ms.
fn check_ttl(ttl: Duration) -> Result<(), StoreError> {
    if ttl.as_millis() == 0 {
        return Err(StoreError::InvalidConfig {
            field: "ttl",
            reason: "must be at least 1 ms".to_string(),
        });
    }
    Ok(())
}

/// A TTL in whole milliseconds, saturating (validated TTLs are ≥ 1 ms).
pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}
