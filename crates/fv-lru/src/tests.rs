#![allow(clippy::unwrap_used)]

use super::*;

fn cap(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn full_map_evicts_the_least_recently_used() {
    let t0 = Instant::now();
    let mut m = LruTtlMap::new(cap(2), secs(100));
    assert!(m.insert("a", 1, t0).evicted.is_empty());
    assert!(m.insert("b", 2, t0).evicted.is_empty());
    // Reading does not count as a use: "a" is still the oldest.
    assert_eq!(m.get("a", t0), Some(&1));
    let out = m.insert("c", 3, t0);
    assert_eq!(out.evicted, vec![("a", 1)]);
    assert_eq!(out.replaced, None);
    assert_eq!(m.len(), 2);
    // Re-inserting "b" makes it the most recent; "c" goes next.
    let out = m.insert("b", 20, t0);
    assert_eq!(out.replaced, Some(2));
    assert!(out.evicted.is_empty(), "a replacement never evicts");
    assert_eq!(m.insert("d", 4, t0).evicted, vec![("c", 3)]);
    let live: Vec<_> = m.iter(t0).map(|(k, v)| (*k, *v)).collect();
    assert_eq!(live, vec![("b", 20), ("d", 4)]);
}

#[test]
fn touch_counts_as_a_use() {
    let t0 = Instant::now();
    let mut m = LruTtlMap::new(cap(2), secs(10));
    m.insert("a", 1, t0);
    m.insert("b", 2, t0);
    assert!(m.touch("a", t0 + secs(5)));
    assert_eq!(m.insert("c", 3, t0 + secs(5)).evicted, vec![("b", 2)]);
    // The touch restarted a's TTL: alive at t0 + 14, gone at t0 + 15.
    assert_eq!(m.get("a", t0 + secs(14)), Some(&1));
    assert_eq!(m.get("a", t0 + secs(15)), None);
    assert!(
        !m.touch("a", t0 + secs(15)),
        "an expired entry cannot be touched"
    );
    assert_eq!(m.len(), 1, "and it was removed");
    assert!(!m.touch("zzz", t0));
}

#[test]
fn entries_expire_exactly_ttl_after_their_last_use() {
    let t0 = Instant::now();
    let ttl = secs(60);
    let mut m = LruTtlMap::new(cap(8), ttl);
    m.insert("a".to_owned(), 1, t0);
    let just_before = t0 + ttl - Duration::from_nanos(1);
    assert_eq!(m.get("a", just_before), Some(&1));
    assert!(m.contains_key("a", just_before));
    assert_eq!(m.get("a", t0 + ttl), None);
    assert!(!m.contains_key("a", t0 + ttl));
    assert_eq!(m.get_mut("a", t0 + ttl), None);
    // Invisible but still held until something purges it.
    assert_eq!(m.len(), 1);
    assert_eq!(m.purge_expired(t0 + ttl), vec![("a".to_owned(), 1)]);
    assert!(m.is_empty());
}

#[test]
fn insert_purges_expired_entries_and_reports_them() {
    let t0 = Instant::now();
    let mut m = LruTtlMap::new(cap(3), secs(10));
    m.insert(1, "one", t0);
    m.insert(2, "two", t0 + secs(5));
    m.insert(3, "three", t0 + secs(6));
    // At t0 + 10 only key 1 is expired; the map is then not full, so nothing else goes.
    let out = m.insert(4, "four", t0 + secs(10));
    assert_eq!(out.evicted, vec![(1, "one")]);
    assert_eq!(m.len(), 3);
    // At t0 + 15 key 2 is expired, key 3 (used at t0 + 6) is not.
    let out = m.insert(5, "five", t0 + secs(15));
    assert_eq!(out.evicted, vec![(2, "two")]);
    // Nothing expired and the map is full: the least recently used live entry goes.
    let out = m.insert(6, "six", t0 + secs(15));
    assert_eq!(out.evicted, vec![(3, "three")]);
    // Several expired at once come out oldest first.
    let out = m.insert(7, "seven", t0 + secs(25));
    assert_eq!(out.evicted, vec![(4, "four"), (5, "five"), (6, "six")]);
    assert_eq!(m.len(), 1);
}

#[test]
fn replacing_an_expired_key_does_not_report_the_stale_value() {
    let t0 = Instant::now();
    let mut m = LruTtlMap::new(cap(2), secs(1));
    m.insert("k", 1, t0);
    let out = m.insert("k", 2, t0 + secs(1));
    assert_eq!(out.replaced, None);
    assert_eq!(out.evicted, vec![("k", 1)]);
    assert_eq!(m.get("k", t0 + secs(1)), Some(&2));
}

#[test]
fn get_mut_remove_and_pop() {
    let t0 = Instant::now();
    let mut m = LruTtlMap::new(cap(4), secs(10));
    m.insert("a", vec![1], t0);
    m.insert("b", vec![2], t0);
    m.get_mut("a", t0).unwrap().push(10);
    assert_eq!(m.get("a", t0), Some(&vec![1, 10]));
    assert_eq!(m.remove("a"), Some(vec![1, 10]));
    assert_eq!(m.remove("a"), None);
    assert_eq!(m.pop_lru(), Some(("b", vec![2])));
    assert_eq!(m.pop_lru(), None);
    assert!(m.is_empty());
}

#[test]
fn zero_ttl_expires_at_once_and_capacity_one_holds_one() {
    let t0 = Instant::now();
    let mut m = LruTtlMap::new(cap(1), Duration::ZERO);
    m.insert("a", 1, t0);
    assert_eq!(m.get("a", t0), None);
    let mut m = LruTtlMap::new(cap(1), secs(5));
    m.insert("a", 1, t0);
    assert_eq!(m.insert("b", 2, t0).evicted, vec![("a", 1)]);
    assert_eq!((m.len(), m.capacity().get(), m.ttl()), (1, 1, secs(5)));
}

#[test]
fn time_going_backwards_is_harmless() {
    let t0 = Instant::now() + secs(100);
    let mut m = LruTtlMap::new(cap(2), secs(10));
    m.insert("late", 1, t0);
    m.insert("early", 2, t0 - secs(50));
    assert_eq!(
        m.get("late", t0 - secs(60)),
        Some(&1),
        "used 'in the future'"
    );
    // "early" is expired at t0 but queued behind the live "late": a later purge gets it.
    assert_eq!(m.get("early", t0), None);
    assert!(m.purge_expired(t0).is_empty());
    assert_eq!(m.purge_expired(t0 + secs(10)).len(), 2);
}

/// A slow, obviously correct model: a Vec in use order.
#[derive(Default)]
struct Model {
    items: Vec<(u8, u32, Instant)>,
}

impl Model {
    fn live(&self, now: Instant, ttl: Duration) -> Vec<(u8, u32)> {
        self.items
            .iter()
            .filter(|(_, _, at)| now.saturating_duration_since(*at) < ttl)
            .map(|(k, v, _)| (*k, *v))
            .collect()
    }
}

#[test]
fn matches_a_simple_model_over_random_operations() {
    let ttl = secs(20);
    let capacity = 5;
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut now = Instant::now();
    let mut m = LruTtlMap::new(cap(capacity), ttl);
    let mut model = Model::default();
    for step in 0..20_000u32 {
        now += Duration::from_secs(rand(4));
        let key = rand(9) as u8;
        match rand(5) {
            0 | 1 => {
                m.insert(key, step, now);
                model
                    .items
                    .retain(|(k, _, at)| *k != key && now.saturating_duration_since(*at) < ttl);
                if model.items.len() >= capacity {
                    model.items.remove(0);
                }
                model.items.push((key, step, now));
            }
            2 => {
                let hit = m.touch(&key, now);
                let pos = model.items.iter().position(|(k, _, _)| *k == key);
                let live = pos
                    .and_then(|p| model.items.get(p))
                    .is_some_and(|(_, _, at)| now.saturating_duration_since(*at) < ttl);
                assert_eq!(hit, live, "touch {key} at step {step}");
                if let Some(p) = pos {
                    let (k, v, _) = model.items.remove(p);
                    if live {
                        model.items.push((k, v, now));
                    }
                }
            }
            3 => {
                let got = m.remove(&key);
                let pos = model.items.iter().position(|(k, _, _)| *k == key);
                let want = pos.map(|p| model.items.remove(p).1);
                assert_eq!(got, want, "remove {key} at step {step}");
            }
            _ => {
                let want = model
                    .live(now, ttl)
                    .into_iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v);
                assert_eq!(m.get(&key, now).copied(), want, "get {key} at step {step}");
            }
        }
        let live: Vec<(u8, u32)> = m.iter(now).map(|(k, v)| (*k, *v)).collect();
        assert_eq!(live, model.live(now, ttl), "live entries at step {step}");
        assert!(m.len() <= capacity);
    }
}
