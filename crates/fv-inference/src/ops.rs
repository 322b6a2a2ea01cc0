//! Tensor operations shared by the transformer, the Gemma encoder and the connectors: one
//! linear layer, one RMS norm, one blocked softmax attention, one `linspace`.

use crate::{InferenceError, Result};
use candle_core::{D, DType, Tensor};

/// Most elements of one attention-scores block. candle's CUDA softmax indexes rows with
/// `i32` (`row · ncols + col`), so one block must stay below 2^31 elements, and the scores
/// are the largest temporary of the forward (32 heads × 8160² at the released shape would be
/// 2.1e9); 2^28 keeps a block at 1 GiB in f32.
pub const MAX_SCORE_ELEMS: usize = 1 << 28;

/// `x[..., in] @ weight_t[in, out] (+ bias)`, any number of leading axes.
pub(crate) fn linear(x: &Tensor, weight_t: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let in_dim = dims.last().copied().unwrap_or(0);
    let rows = x.elem_count() / in_dim.max(1);
    let mut y = x.reshape((rows, in_dim))?.matmul(weight_t)?;
    if let Some(b) = bias {
        y = y.broadcast_add(b)?;
    }
    let mut out = dims;
    if let Some(last) = out.last_mut() {
        *last = weight_t.dim(1)?;
    }
    Ok(y.reshape(out)?)
}

/// RMS norm over the last axis, computed in f32 whatever the input dtype (like the
/// references, which upcast for the variance), times `scale` when given (already f32, e.g.
/// Gemma's `1 + w`, multiplied before the cast back), returned in the input dtype.
pub(crate) fn rms_norm(x: &Tensor, scale: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let var = x.sqr()?.mean_keepdim(D::Minus1)?;
    let mut y = x.broadcast_mul(&(var + eps)?.sqrt()?.recip()?)?;
    if let Some(s) = scale {
        y = y.broadcast_mul(s)?;
    }
    Ok(y.to_dtype(dtype)?)
}

/// Softmax attention of pre-scaled `q` `[B, Hq, T, D]` over `k`, `v` `[B, Hkv, S, D]`, `Hq` a
/// multiple of `Hkv` (query head `h` reads key head `h / (Hq / Hkv)`, grouped-query
/// attention), with an optional additive `bias` `[B, 1, 1, S]` (per key) or `[B, 1, T, S]`
/// (per query row and key). Scores and softmax are f32 whatever the model dtype (like
/// PyTorch's fused attention); the output `[B, Hq, T, D]` is in `q`'s dtype. Computed in
/// blocks of whole heads (and, when one head is too large, of query rows) of at most
/// `max_elems` scores each, so the scores never hold the square of the whole batch.
pub(crate) fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    max_elems: usize,
) -> Result<Tensor> {
    let (b, h, t, d) = q.dims4()?;
    let (_, hkv, s, _) = k.dims4()?;
    if hkv == 0 || !h.is_multiple_of(hkv) {
        return Err(InferenceError::Input(format!(
            "{h} query heads cannot share {hkv} key heads"
        )));
    }
    // Grouped keys: repeat each key head for its query heads (the K/V are small next to
    // the scores, so the copy costs little).
    let (k, v) = if hkv == h {
        (k.clone(), v.clone())
    } else {
        let rep = h / hkv;
        let expand = |x: &Tensor| -> Result<Tensor> {
            Ok(x.unsqueeze(2)?
                .broadcast_as((b, hkv, rep, s, d))?
                .reshape((b, h, s, d))?)
        };
        (expand(k)?, expand(v)?)
    };
    let per_row = bias.map(|m| m.dim(2)).transpose()?.is_some_and(|r| r > 1);
    let dtype = q.dtype();
    let block = |q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>| -> Result<Tensor> {
        let mut scores = q.matmul(&k.t()?)?.to_dtype(DType::F32)?;
        if let Some(bias) = bias {
            scores = scores.broadcast_add(&bias.to_dtype(DType::F32)?)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
        Ok(probs.matmul(v)?)
    };
    let per_head = t * s;
    if b * h * per_head <= max_elems {
        return block(q, &k, &v, bias);
    }
    let heads = (max_elems / per_head.max(1)).clamp(1, h);
    let rows = if per_head > max_elems {
        (max_elems / s.max(1)).max(1)
    } else {
        t
    };
    let mut per_batch = Vec::with_capacity(b);
    for bi in 0..b {
        let (qb, kb, vb) = (
            q.narrow(0, bi, 1)?,
            k.narrow(0, bi, 1)?,
            v.narrow(0, bi, 1)?,
        );
        let bias_b = bias.map(|x| x.narrow(0, bi, 1)).transpose()?;
        let mut per_head_block = Vec::new();
        for h0 in (0..h).step_by(heads) {
            let hn = heads.min(h - h0);
            let (qh, kh, vh) = (
                qb.narrow(1, h0, hn)?,
                kb.narrow(1, h0, hn)?,
                vb.narrow(1, h0, hn)?,
            );
            let mut per_rows = Vec::new();
            for t0 in (0..t).step_by(rows) {
                let n = rows.min(t - t0);
                let qr = qh.narrow(2, t0, n)?;
                let br = match &bias_b {
                    Some(m) if per_row => Some(m.narrow(2, t0, n)?),
                    other => other.clone(),
                };
                per_rows.push(block(&qr, &kh, &vh, br.as_ref())?);
            }
            per_head_block.push(Tensor::cat(&per_rows, 2)?);
        }
        per_batch.push(Tensor::cat(&per_head_block, 1)?);
    }
    Ok(Tensor::cat(&per_batch, 0)?)
}

/// `torch.linspace(0, 1, steps)` in f64, with torch's symmetric evaluation (the first half
/// counted from 0, the second from 1), which the RoPE frequency grids depend on bit for bit.
pub(crate) fn linspace_f64(steps: usize) -> Vec<f64> {
    if steps == 1 {
        return vec![0.0];
    }
    let step = 1.0 / (steps - 1) as f64;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                step * i as f64
            } else {
                1.0 - step * (steps - i - 1) as f64
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::{max_diff, seeded};

    /// Plain attention with the key heads repeated (HF's `repeat_kv`), in one block.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor) -> Tensor {
        let (b, hq, _, _) = q.dims4().unwrap();
        let (_, hkv, s, d) = k.dims4().unwrap();
        let rep = hq / hkv;
        let expand = |x: &Tensor| {
            x.unsqueeze(2)
                .unwrap()
                .broadcast_as((b, hkv, rep, s, d))
                .unwrap()
                .reshape((b, hq, s, d))
                .unwrap()
        };
        let scores = q
            .matmul(&expand(k).t().unwrap())
            .unwrap()
            .broadcast_add(bias)
            .unwrap();
        candle_nn::ops::softmax_last_dim(&scores)
            .unwrap()
            .matmul(&expand(v))
            .unwrap()
    }

    #[test]
    fn blocked_attention_equals_one_block() {
        let (b, h, t, s, d) = (2, 3, 7, 5, 4);
        let q = seeded(&[b, h, t, d], 1);
        let k = seeded(&[b, h, s, d], 2);
        let v = seeded(&[b, h, s, d], 3);
        let bias = (seeded(&[b, 1, 1, s], 4) * 3.0).unwrap();
        let whole = attend(&q, &k, &v, Some(&bias), usize::MAX).unwrap();
        assert!(max_diff(&whole, &reference(&q, &k, &v, &bias)) <= 1e-6);
        // 35 scores per head: blocks of 2 heads, of 1 head, and of 2 and 1 query rows.
        for limit in [70, 35, 12, 1] {
            let blocked = attend(&q, &k, &v, Some(&bias), limit).unwrap();
            let diff = max_diff(&whole, &blocked);
            assert!(
                diff <= 1e-6,
                "limit {limit}: blocking moved the output by {diff}"
            );
        }
        let no_bias = attend(&q, &k, &v, None, 12).unwrap();
        assert!(max_diff(&no_bias, &attend(&q, &k, &v, None, usize::MAX).unwrap()) <= 1e-6);
        assert!(max_diff(&no_bias, &whole) > 1e-3, "the bias must matter");
    }

    #[test]
    fn grouped_attention_with_row_bias_equals_repeated_heads() {
        let (b, hq, hkv, t, s, d) = (2, 4, 2, 7, 7, 3);
        let q = seeded(&[b, hq, t, d], 1);
        let k = seeded(&[b, hkv, s, d], 2);
        let v = seeded(&[b, hkv, s, d], 3);
        let bias = (seeded(&[b, 1, t, s], 4) * 2.0).unwrap();
        let want = reference(&q, &k, &v, &bias);
        // One block, blocks of 2 query rows, of 1.
        for limit in [usize::MAX, hq * s * 2, 1] {
            let got = attend(&q, &k, &v, Some(&bias), limit).unwrap();
            assert!(max_diff(&want, &got) <= 1e-6, "limit {limit}");
        }
        // Query heads must read their own key head: swapping the key heads changes the result.
        let swapped =
            Tensor::cat(&[k.narrow(1, 1, 1).unwrap(), k.narrow(1, 0, 1).unwrap()], 1).unwrap();
        let other = attend(&q, &swapped, &v, Some(&bias), usize::MAX).unwrap();
        assert!(max_diff(&want, &other) > 1e-2);
        assert!(attend(&q, &seeded(&[b, 3, s, d], 5), &v, None, 1).is_err());
    }

    #[test]
    fn masked_rows_stay_finite() {
        let q = seeded(&[1, 2, 3, 4], 5);
        let k = seeded(&[1, 1, 3, 4], 6);
        let v = seeded(&[1, 1, 3, 4], 7);
        // Row 0 sees no key at all; rows 1 and 2 see keys 1 and 2.
        let masked = -1e30f32;
        let mut m = vec![masked; 9];
        for (i, j) in [(1, 1), (2, 1), (2, 2)] {
            m[i * 3 + j] = 0.0;
        }
        let bias = Tensor::from_vec(m, (1, 1, 3, 3), &candle_core::Device::Cpu).unwrap();
        let out = attend(&q, &k, &v, Some(&bias), usize::MAX).unwrap();
        let all: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        assert!(all.iter().all(|x| x.is_finite()));
        // Row 1 sees only key 1: its output is v[1] exactly (for both query heads).
        let row1 = out.narrow(2, 1, 1).unwrap().squeeze(2).unwrap();
        let v1 = v.narrow(2, 1, 1).unwrap().squeeze(2).unwrap();
        assert!(max_diff(&row1, &v1.broadcast_as((1, 2, 4)).unwrap()) <= 1e-6);
    }

    #[test]
    fn linspace_is_symmetric_like_torch() {
        assert_eq!(linspace_f64(1), vec![0.0]);
        let l = linspace_f64(7);
        assert_eq!((l[0], l[6]), (0.0, 1.0));
        for i in 0..7 {
            assert!((l[i] + l[6 - i] - 1.0).abs() < 1e-15);
        }
    }
}
