//! Caption embeddings per distinct prompt, so the text encoder (Gemma-3-12B + connectors,
//! seconds on a CPU) runs once per prompt, not once per segment.
//!
//! Keyed by the prompt's token ids (two prompts that tokenize alike, e.g. differing only in
//! surrounding whitespace, share an entry). Bounded: at most `capacity` entries, least
//! recently used evicted first, each entry dropped after [`CACHE_TTL`] without use. Shared by
//! the clones of a pipeline (the workers of one server), so a prompt one worker encoded is a
//! hit for the others. The encoder runs outside the lock; two workers that miss on the same
//! prompt at once both encode it, which costs time but never a wrong result.

use crate::text::CaptionEmbeddings;
use fv_lru::LruTtlMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Default number of prompts whose embeddings are kept (15.7 MB each at the released size
/// in bf16: video and audio `[1, 1024, 3840]`).
pub const DEFAULT_TEXT_CACHE_PROMPTS: usize = 16;

/// How long an unused entry stays.
pub const CACHE_TTL: Duration = Duration::from_secs(3600);

/// Hits and misses since the pipeline was loaded (for tests and logs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextCacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that ran the text encoder.
    pub misses: u64,
}

#[derive(Debug)]
struct Inner {
    map: LruTtlMap<Vec<u32>, CaptionEmbeddings>,
    stats: TextCacheStats,
}

/// The shared, bounded cache (see the module docs). Cloning shares it.
#[derive(Debug, Clone)]
pub(crate) struct TextCache {
    inner: Arc<Mutex<Inner>>,
}

impl TextCache {
    /// A cache of `capacity` prompts (0 is taken as 1: the current prompt is always kept).
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            inner: Arc::new(Mutex::new(Inner {
                map: LruTtlMap::new(capacity, CACHE_TTL),
                stats: TextCacheStats::default(),
            })),
        }
    }

    /// The embeddings for `ids`, from the cache or from `encode` (then kept).
    pub(crate) fn get_or_encode<E>(
        &self,
        ids: Vec<u32>,
        encode: impl FnOnce() -> Result<CaptionEmbeddings, E>,
    ) -> Result<CaptionEmbeddings, E> {
        {
            // A worker that panicked while holding the lock left a consistent map (every
            // operation on it is a single call), so a poisoned lock is still usable.
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            if inner.map.touch(&ids, now)
                && let Some(hit) = inner.map.get(&ids, now).cloned()
            {
                inner.stats.hits += 1;
                return Ok(hit);
            }
            inner.stats.misses += 1;
        }
        let value = encode()?;
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.map.insert(ids, value.clone(), Instant::now());
        Ok(value)
    }

    /// Hits and misses so far.
    pub(crate) fn stats(&self) -> TextCacheStats {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stats
    }

    /// Entries held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn caps(v: f32) -> CaptionEmbeddings {
        let t = Tensor::full(v, (1, 2, 3), &Device::Cpu).unwrap();
        CaptionEmbeddings {
            video: t.clone(),
            audio: t,
            mask: Tensor::ones((1, 2), candle_core::DType::F32, &Device::Cpu).unwrap(),
        }
    }

    fn value(c: &CaptionEmbeddings) -> f32 {
        c.video.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0]
    }

    #[test]
    fn encodes_once_per_prompt_and_stays_bounded() {
        let cache = TextCache::new(2);
        let mut runs = 0;
        let mut get = |ids: Vec<u32>, v: f32| {
            cache
                .get_or_encode(ids, || {
                    runs += 1;
                    Ok::<_, ()>(caps(v))
                })
                .unwrap()
        };
        assert_eq!(value(&get(vec![2, 5], 1.0)), 1.0);
        assert_eq!(
            value(&get(vec![2, 5], 9.0)),
            1.0,
            "a hit returns the cached value"
        );
        get(vec![2, 6], 2.0);
        get(vec![2, 7], 3.0); // evicts [2, 5], the least recently used
        assert_eq!(
            value(&get(vec![2, 5], 4.0)),
            4.0,
            "evicted, so encoded again"
        );
        assert_eq!(runs, 4);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.stats(), TextCacheStats { hits: 1, misses: 4 });
        // A failed encode keeps nothing.
        assert!(
            cache
                .get_or_encode(vec![9], || Err::<CaptionEmbeddings, _>("no"))
                .is_err()
        );
        assert_eq!(cache.len(), 2);
        // Clones share the cache.
        let other = cache.clone();
        assert_eq!(
            value(&other.get_or_encode(vec![2, 5], || Err("x")).unwrap()),
            4.0
        );
    }
}
