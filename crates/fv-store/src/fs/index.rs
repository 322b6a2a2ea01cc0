//! In-memory index of the files a filesystem store holds: put order (for oldest-first
//! eviction) and put time (wall clock, milliseconds, so it survives a restart).

use std::collections::{BTreeMap, HashMap};

#[derive(Debug)]
pub(crate) struct Entry<M> {
    pub(crate) put_ms: u64,
    pub(crate) meta: M,
    seq: u64,
}

impl<M> Entry<M> {
    /// Expired once `ttl_ms` has fully elapsed since the put. A clock that went backwards
    /// reads as "just put".
    pub(crate) fn is_expired(&self, now_ms: u64, ttl_ms: u64) -> bool {
        now_ms.saturating_sub(self.put_ms) >= ttl_ms
    }
}

#[derive(Debug)]
pub(crate) struct Index<M> {
    map: HashMap<String, Entry<M>>,
    /// seq → key; the first entry is the least recently put.
    order: BTreeMap<u64, String>,
    next_seq: u64,
}

impl<M> Default for Index<M> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
        }
    }
}

impl<M> Index<M> {
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Entry<M>> {
        self.map.get(key)
    }

    /// Inserts or replaces `key` as the most recently put; returns the old metadata.
    pub(crate) fn insert(&mut self, key: String, put_ms: u64, meta: M) -> Option<M> {
        let old = self.remove(&key);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        self.map.insert(key, Entry { put_ms, meta, seq });
        old
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<M> {
        let entry = self.map.remove(key)?;
        self.order.remove(&entry.seq);
        Some(entry.meta)
    }

    /// Removes and returns the least recently put entry.
    pub(crate) fn pop_oldest(&mut self) -> Option<(String, M)> {
        let (_, key) = self.order.pop_first()?;
        let entry = self.map.remove(&key)?;
        Some((key, entry.meta))
    }

    /// Keys of every expired entry (a full scan: used by puts and the sweep, never by reads).
    pub(crate) fn expired(&self, now_ms: u64, ttl_ms: u64) -> Vec<String> {
        self.map
            .iter()
            .filter(|(_, e)| e.is_expired(now_ms, ttl_ms))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_expiry() {
        let mut ix = Index::default();
        ix.insert("a".into(), 10, 1);
        ix.insert("b".into(), 20, 2);
        ix.insert("a".into(), 30, 3);
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.expired(45, 25), vec!["b".to_string()]);
        assert!(ix.get("a").is_some_and(|e| !e.is_expired(40, 25)));
        assert_eq!(ix.pop_oldest(), Some(("b".to_string(), 2)));
        assert_eq!(ix.remove("a"), Some(3));
        assert_eq!(ix.pop_oldest(), None);
        // A clock that went backwards never expires an entry early.
        ix.insert("c".into(), 100, 4);
        assert!(ix.get("c").is_some_and(|e| !e.is_expired(50, 1)));
    }
}
