//! A map that remembers insertion ("last put") order, for TTL purging and oldest-first
//! eviction in O(log n).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Slot<V> {
    pub(crate) value: V,
    seq: u64,
    put_at: Instant,
}

impl<V> Slot<V> {
    /// Expired once `ttl` has fully elapsed since the last put.
    pub(crate) fn is_expired(&self, now: Instant, ttl: Duration) -> bool {
        now.saturating_duration_since(self.put_at) >= ttl
    }
}

#[derive(Debug)]
pub(crate) struct PutOrdered<V> {
    map: HashMap<String, Slot<V>>,
    /// seq → key; the first entry is the least recently put.
    order: BTreeMap<u64, String>,
    next_seq: u64,
}

impl<V> Default for PutOrdered<V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
        }
    }
}

impl<V> PutOrdered<V> {
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Slot<V>> {
        self.map.get(key)
    }

    /// Inserts or replaces `key`, making it the most recently put. Returns the old value.
    /// `now` must not go backwards between calls (callers read it under their lock).
    pub(crate) fn insert(&mut self, key: String, value: V, now: Instant) -> Option<V> {
        let old = self.remove(&key);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        self.map.insert(
            key,
            Slot {
                value,
                seq,
                put_at: now,
            },
        );
        old
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        let slot = self.map.remove(key)?;
        self.order.remove(&slot.seq);
        Some(slot.value)
    }

    /// Removes and returns the least recently put entry.
    pub(crate) fn pop_oldest(&mut self) -> Option<(String, V)> {
        let (_, key) = self.order.pop_first()?;
        let slot = self.map.remove(&key)?;
        Some((key, slot.value))
    }

    /// Removes every expired entry. Put times grow with put order, so expired entries are
    /// exactly a prefix of the order and the scan stops at the first live one.
    pub(crate) fn purge_expired(&mut self, now: Instant, ttl: Duration) -> Vec<(String, V)> {
        let mut purged = Vec::new();
        while let Some((_, key)) = self.order.first_key_value() {
            let expired = self
                .map
                .get(key)
                .is_none_or(|slot| slot.is_expired(now, ttl));
            if !expired {
                break;
            }
            if let Some((key, value)) = self.pop_oldest() {
                purged.push((key, value));
            }
        }
        purged
    }
}
