//! One bounded map with least-recently-used eviction and a time to live, shared by
//! fv-store's in-memory stores and fv-router's `client_id` sticky table.
//!
//! * **Bounded**: at most [`LruTtlMap::capacity`] entries; inserting a new key into a full
//!   map evicts the least recently used entry.
//! * **LRU**: an entry is "used" when it is inserted (or replaced) and when it is
//!   [`touch`](LruTtlMap::touch)ed; [`get`](LruTtlMap::get) only reads and changes nothing.
//! * **TTL**: an entry expires once `ttl` has fully elapsed since its last use. Expired
//!   entries are invisible at once and removed lazily, by [`insert`](LruTtlMap::insert),
//!   [`touch`](LruTtlMap::touch) and [`purge_expired`](LruTtlMap::purge_expired).
//!
//! Time is passed in by the caller (`now`), so the map has no clock of its own: tests drive
//! it with made-up instants, and a tokio user with a paused clock passes
//! `tokio::time::Instant::now().into_std()`. Every operation is O(log n).
//!
//! ```
//! use fv_lru::LruTtlMap;
//! use std::num::NonZeroUsize;
//! use std::time::{Duration, Instant};
//!
//! let t0 = Instant::now();
//! let mut m = LruTtlMap::new(NonZeroUsize::new(2).unwrap(), Duration::from_secs(10));
//! m.insert("a", 1, t0);
//! m.insert("b", 2, t0);
//! let out = m.insert("c", 3, t0); // full: "a", the least recently used, goes
//! assert_eq!(out.evicted, vec![("a", 1)]);
//! assert_eq!(m.get("b", t0 + Duration::from_secs(9)), Some(&2));
//! assert_eq!(m.get("b", t0 + Duration::from_secs(10)), None); // expired
//! ```

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

/// A bounded map with least-recently-used eviction and a time to live (see the crate docs).
///
/// `now` should not go backwards from one call to the next (callers read the clock under the
/// same lock that guards the map). If it does, nothing breaks: an entry used "in the future"
/// counts as fresh, and an expired entry queued behind it is removed a little later.
pub struct LruTtlMap<K, V> {
    entries: HashMap<K, Entry<V>>,
    /// Use order: sequence number → key; the first entry is the least recently used.
    order: BTreeMap<u64, K>,
    next_seq: u64,
    capacity: NonZeroUsize,
    ttl: Duration,
}

struct Entry<V> {
    value: V,
    seq: u64,
    used_at: Instant,
}

/// What an [`LruTtlMap::insert`] displaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted<K, V> {
    /// The previous value of the inserted key, when it was present and live.
    pub replaced: Option<V>,
    /// Other entries that left the map, oldest first: the expired ones, or (when none had
    /// expired and the map was full) the least recently used one, evicted to make room.
    /// Callers that keep totals (bytes, owners) beside the map settle them from here.
    pub evicted: Vec<(K, V)>,
}

impl<K: fmt::Debug, V> fmt::Debug for LruTtlMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LruTtlMap")
            .field("len", &self.entries.len())
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash + Clone, V> LruTtlMap<K, V> {
    /// An empty map holding at most `capacity` entries, each for `ttl` after its last use. A
    /// zero `ttl` makes every entry expire at once.
    pub fn new(capacity: NonZeroUsize, ttl: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            capacity,
            ttl,
        }
    }

    /// Most entries held.
    pub fn capacity(&self) -> NonZeroUsize {
        self.capacity
    }

    /// Lifetime of an entry after its last use.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Entries held, expired ones not yet removed included (call
    /// [`purge_expired`](Self::purge_expired) first for the live count).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn expired(&self, used_at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(used_at) >= self.ttl
    }

    /// The live value of `key`, without counting as a use.
    pub fn get<Q>(&self, key: &Q, now: Instant) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let e = self.entries.get(key)?;
        (!self.expired(e.used_at, now)).then_some(&e.value)
    }

    /// The live value of `key`, mutably, without counting as a use.
    pub fn get_mut<Q>(&mut self, key: &Q, now: Instant) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let ttl = self.ttl;
        let e = self.entries.get_mut(key)?;
        (now.saturating_duration_since(e.used_at) < ttl).then_some(&mut e.value)
    }

    /// Whether `key` has a live value.
    pub fn contains_key<Q>(&self, key: &Q, now: Instant) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key, now).is_some()
    }

    /// Counts a use of `key`: it becomes the most recently used and its TTL starts again.
    /// `false` when `key` has no live value (an expired one is removed).
    pub fn touch<Q>(&mut self, key: &Q, now: Instant) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let seq = self.next_seq;
        let ttl = self.ttl;
        let Some(e) = self.entries.get_mut(key) else {
            return false;
        };
        let old_seq = e.seq;
        if now.saturating_duration_since(e.used_at) >= ttl {
            self.remove(key);
            return false;
        }
        e.seq = seq;
        e.used_at = now;
        self.next_seq += 1;
        if let Some(k) = self.order.remove(&old_seq) {
            self.order.insert(seq, k);
        }
        true
    }

    /// Inserts or replaces `key`, which becomes the most recently used. Expired entries are
    /// removed first; then, when `key` is new and the map is full, the least recently used
    /// entries until there is room.
    pub fn insert(&mut self, key: K, value: V, now: Instant) -> Inserted<K, V> {
        let mut evicted = self.purge_expired(now);
        let replaced = self.remove(&key);
        if self.entries.len() >= self.capacity.get()
            && let Some(kv) = self.pop_lru()
        {
            evicted.push(kv);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        self.entries.insert(
            key,
            Entry {
                value,
                seq,
                used_at: now,
            },
        );
        Inserted { replaced, evicted }
    }

    /// Removes `key` (live or expired) and returns its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let e = self.entries.remove(key)?;
        self.order.remove(&e.seq);
        Some(e.value)
    }

    /// Removes and returns the least recently used entry (live or expired).
    pub fn pop_lru(&mut self) -> Option<(K, V)> {
        let (_, key) = self.order.pop_first()?;
        let e = self.entries.remove(&key)?;
        Some((key, e.value))
    }

    /// Removes every expired entry and returns them, oldest first. Use times grow with use
    /// order, so the expired entries are a prefix of it and the scan stops at the first live
    /// one.
    pub fn purge_expired(&mut self, now: Instant) -> Vec<(K, V)> {
        let mut purged = Vec::new();
        while let Some((_, key)) = self.order.first_key_value() {
            let expired = self
                .entries
                .get(key)
                .is_none_or(|e| self.expired(e.used_at, now));
            if !expired {
                break;
            }
            if let Some(kv) = self.pop_lru() {
                purged.push(kv);
            }
        }
        purged
    }

    /// Live entries from the least to the most recently used.
    pub fn iter(&self, now: Instant) -> impl Iterator<Item = (&K, &V)> {
        self.order.values().filter_map(move |k| {
            let e = self.entries.get(k)?;
            (!self.expired(e.used_at, now)).then_some((k, &e.value))
        })
    }
}

#[cfg(test)]
mod tests;
