//! Choosing a replica for a new session: the [`Selector`] trait and the default
//! [`CapacityWeighted`] policy. (`client_id` stickiness is applied before a selector runs, by
//! the registry, from an `fv_lru::LruTtlMap`.)

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How much room a replica has for new sessions, as far as the router knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Free {
    /// Free session slots: the replica's reported `max_sessions` minus its sessions (reported
    /// ones plus those this router opened since the report). At least 1 for a candidate.
    Slots(u32),
    /// The replica does not report its capacity; `routed` is how many sessions this router
    /// has open on it.
    Unknown {
        /// Sessions open through this router.
        routed: u32,
    },
}

/// What a [`Selector`] sees of one replica. Every candidate is healthy and has room.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Position of the replica in `router.replicas`.
    pub index: usize,
    /// In the primary tier.
    pub primary: bool,
    /// `router.replicas[].weight` (> 0).
    pub weight: f64,
    /// Room for new sessions.
    pub free: Free,
}

/// A selection policy. The registry filters out unhealthy and full replicas and applies
/// stickiness first; a selector only ranks what is left.
pub trait Selector: Send + Sync + fmt::Debug + 'static {
    /// Picks the replica for one new session among `candidates` (never empty) and returns its
    /// [`Candidate::index`]. Called once per connection attempt.
    fn pick(&self, candidates: &[Candidate]) -> usize;
}

/// The default policy: the primary tier first; within the tier the most free capacity times
/// `weight`; ties go round-robin.
///
/// A replica that reports its capacity scores `weight × free slots`; one that does not scores
/// `weight / (2 + sessions routed to it)`: replicas of unknown capacity share sessions by
/// fewest routed, and score below any replica of the same weight known to have a free slot.
#[derive(Debug, Default)]
pub struct CapacityWeighted {
    next: AtomicUsize,
}

impl CapacityWeighted {
    /// A fresh policy (its round-robin counter starts at zero).
    pub fn new() -> Self {
        Self::default()
    }

    fn score(c: &Candidate) -> f64 {
        match c.free {
            Free::Slots(n) => c.weight * f64::from(n),
            Free::Unknown { routed } => c.weight / (2.0 + f64::from(routed)),
        }
    }
}

impl Selector for CapacityWeighted {
    fn pick(&self, candidates: &[Candidate]) -> usize {
        let primary_tier = candidates.iter().any(|c| c.primary);
        let tier: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| c.primary == primary_tier)
            .collect();
        let best = tier
            .iter()
            .map(|c| Self::score(c))
            .fold(f64::NEG_INFINITY, f64::max);
        // Relative tolerance: weights like 0.1 make "equal" scores differ in the last bits.
        let tied: Vec<&Candidate> = tier
            .into_iter()
            .filter(|c| (Self::score(c) - best).abs() <= best.abs() * 1e-9)
            .collect();
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        match tied.get(turn % tied.len().max(1)) {
            Some(c) => c.index,
            // Unreachable for a non-empty slice; the first candidate is a safe answer.
            None => candidates.first().map_or(0, |c| c.index),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(index: usize, primary: bool, weight: f64, free: Free) -> Candidate {
        Candidate {
            index,
            primary,
            weight,
            free,
        }
    }

    #[test]
    fn primary_tier_wins_even_with_less_room() {
        let s = CapacityWeighted::new();
        let cands = [
            c(0, false, 1.0, Free::Slots(8)),
            c(1, true, 1.0, Free::Slots(1)),
        ];
        for _ in 0..4 {
            assert_eq!(s.pick(&cands), 1);
        }
    }

    #[test]
    fn most_weighted_free_capacity_wins() {
        let s = CapacityWeighted::new();
        let cands = [
            c(0, false, 1.0, Free::Slots(3)),
            c(1, false, 1.0, Free::Slots(5)),
        ];
        assert_eq!(s.pick(&cands), 1);
        let cands = [
            c(0, false, 2.0, Free::Slots(3)),
            c(1, false, 1.0, Free::Slots(5)),
        ];
        assert_eq!(s.pick(&cands), 0);
    }

    #[test]
    fn ties_go_round_robin() {
        let s = CapacityWeighted::new();
        let cands = [
            c(0, false, 1.0, Free::Slots(4)),
            c(1, false, 1.0, Free::Slots(4)),
            c(2, false, 1.0, Free::Slots(4)),
        ];
        let picks: Vec<usize> = (0..6).map(|_| s.pick(&cands)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn known_room_beats_unknown_capacity() {
        let s = CapacityWeighted::new();
        let cands = [
            c(0, false, 1.0, Free::Unknown { routed: 0 }),
            c(1, false, 1.0, Free::Slots(1)),
        ];
        assert_eq!(s.pick(&cands), 1);
        // Among unknowns, fewer routed sessions wins.
        let cands = [
            c(0, false, 1.0, Free::Unknown { routed: 3 }),
            c(1, false, 1.0, Free::Unknown { routed: 1 }),
        ];
        assert_eq!(s.pick(&cands), 1);
    }
}
