//! Which sigmas a denoising stage runs.
//!
//! Stage 1 uses LTX-2's distilled schedule [`DISTILLED_SIGMAS`]: the whole schedule for 8
//! steps, and for fewer steps the subset FastVideo picks (`_distilled_subset_sigmas`): both
//! ends kept, the interior chosen to make the largest drop between neighbouring sigmas (the
//! terminal 0 included) as small as possible, ties broken by the last drop, then by the sum
//! of squared drops. 5 steps give `[1.0, 0.975, 0.909375, 0.725, 0.421875]`, FastVideo's
//! streaming preset. Beyond 8 steps the piecewise-linear curve through the distilled sigmas is
//! sampled evenly. Stage 2 (the refine after the latent upsampler) starts at
//! [`STAGE2_SIGMAS`]`[0]` = 0.909375: 3 steps are diffusers' distilled refine, 2 steps
//! FastVideo's reduced one.

use crate::scheduler::DISTILLED_SIGMAS;
use crate::{InferenceError, Result};

/// The distilled stage-2 (refine) sigmas, before the terminal 0 (diffusers' two-stage recipe
/// and FastVideo's 3-step refine).
pub const STAGE2_SIGMAS: [f32; 3] = [0.909375, 0.725, 0.421875];

/// The noise level the upsampled latents are brought back to before the refine.
pub const STAGE2_NOISE_SCALE: f32 = STAGE2_SIGMAS[0];

/// `steps` sigmas for stage 1, starting at σ = 1 (see the module docs).
pub fn sigmas_for(steps: u32) -> Vec<f32> {
    let n = DISTILLED_SIGMAS.len();
    let steps = steps as usize;
    if steps == 0 {
        return Vec::new();
    }
    if steps < n {
        return distilled_subset(steps);
    }
    if steps == n {
        return DISTILLED_SIGMAS.to_vec();
    }
    let at = |i: usize| DISTILLED_SIGMAS.get(i).copied().unwrap_or(0.0);
    (0..steps)
        .map(|k| {
            let pos = k as f32 * n as f32 / steps as f32;
            let i = pos.floor() as usize;
            let frac = pos - i as f32;
            at(i) + (at(i + 1) - at(i)) * frac
        })
        .collect()
}

/// FastVideo's subset of the distilled schedule for `steps` < 8 (see the module docs).
fn distilled_subset(steps: usize) -> Vec<f32> {
    // The schedule with its terminal 0: indices 0..=8, both ends always kept.
    let full: Vec<f32> = DISTILLED_SIGMAS.iter().copied().chain([0.0]).collect();
    let last = full.len() - 1;
    let mut best: Option<((f64, f64, f64), Vec<usize>)> = None;
    // Every choice of `steps − 1` interior indices out of 1..last, in lexicographic order
    // (as Python's `itertools.combinations`, so ties resolve the same way).
    let k = steps - 1;
    let mut pick: Vec<usize> = (1..=k).collect();
    loop {
        let idx: Vec<usize> = std::iter::once(0)
            .chain(pick.iter().copied())
            .chain([last])
            .collect();
        let gaps: Vec<f64> = idx
            .windows(2)
            .map(|w| f64::from(full[w[0]]) - f64::from(full[w[1]]))
            .collect();
        let max = gaps.iter().copied().fold(f64::MIN, f64::max);
        let tail = gaps.last().copied().unwrap_or(0.0);
        let sq: f64 = gaps.iter().map(|g| g * g).sum();
        let key = (max, tail, sq);
        if best.as_ref().is_none_or(|(b, _)| key < *b) {
            best = Some((key, idx));
        }
        // next combination of k out of 1..last
        let Some(i) = (0..k).rev().find(|&i| pick[i] < last - k + i) else {
            break;
        };
        pick[i] += 1;
        for j in i + 1..k {
            pick[j] = pick[j - 1] + 1;
        }
    }
    let idx = best.map(|(_, idx)| idx).unwrap_or_default();
    // drop the terminal 0: the scheduler appends it
    idx[..idx.len().saturating_sub(1)]
        .iter()
        .map(|&i| full[i])
        .collect()
}

/// The stage-2 sigmas for `steps` refine steps: 3 → [`STAGE2_SIGMAS`], 2 →
/// `[0.909375, 0.421875]` (FastVideo's streaming preset). Other counts are not defined by
/// either reference and are refused.
pub fn stage2_sigmas(steps: u32) -> Result<Vec<f32>> {
    match steps {
        3 => Ok(STAGE2_SIGMAS.to_vec()),
        2 => Ok(vec![STAGE2_SIGMAS[0], STAGE2_SIGMAS[2]]),
        n => Err(InferenceError::Config(format!(
            "the refine stage runs 2 or 3 steps (the distilled refine schedules), got {n}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fastvideo_subsets_keep_both_ends_and_even_drops() {
        assert_eq!(sigmas_for(8), DISTILLED_SIGMAS.to_vec());
        // FastVideo's streaming preset (ltx2-phase2-facts §4).
        assert_eq!(sigmas_for(5), vec![1.0, 0.975, 0.909375, 0.725, 0.421875]);
        assert_eq!(sigmas_for(1), vec![1.0]);
        // FastVideo's `_distilled_subset_sigmas` for every count (run in Python).
        assert_eq!(sigmas_for(2), vec![1.0, 0.421875]);
        assert_eq!(sigmas_for(3), vec![1.0, 0.725, 0.421875]);
        assert_eq!(sigmas_for(4), vec![1.0, 0.909375, 0.725, 0.421875]);
        assert_eq!(
            sigmas_for(6),
            vec![1.0, 0.9875, 0.975, 0.909375, 0.725, 0.421875]
        );
        assert_eq!(
            sigmas_for(7),
            vec![1.0, 0.99375, 0.9875, 0.975, 0.909375, 0.725, 0.421875]
        );
        for steps in 1..=8u32 {
            let s = sigmas_for(steps);
            assert_eq!(s.len(), steps as usize);
            assert_eq!(s[0], 1.0);
            assert!(s.windows(2).all(|w| w[0] > w[1]), "{steps}: {s:?}");
            if steps > 1 {
                // the last sigma before 0 is always kept: the final drop is the smallest possible
                assert_eq!(*s.last().unwrap_or(&0.0), 0.421875, "{steps}: {s:?}");
            }
        }
        // Beyond 8: the curve, resampled.
        let s = sigmas_for(16);
        assert_eq!(s.len(), 16);
        assert_eq!(s[0], 1.0);
        assert!(s.windows(2).all(|w| w[0] > w[1]));
        assert!(sigmas_for(0).is_empty());
    }

    #[test]
    fn refine_schedules() {
        assert_eq!(stage2_sigmas(3).unwrap_or_default(), STAGE2_SIGMAS.to_vec());
        assert_eq!(
            stage2_sigmas(2).unwrap_or_default(),
            vec![0.909375, 0.421875]
        );
        assert!(stage2_sigmas(4).is_err());
        assert!(stage2_sigmas(1).is_err());
    }
}
