//! Tensor operations shared by the Gemma encoder and the connectors.

use crate::Result;
use candle_core::{D, DType, Tensor};

/// Most f32 attention scores one block may hold (256 MiB). Long sequences run in blocks of
/// query rows so the scores never grow with the square of the whole batch.
pub(crate) const MAX_SCORE_ELEMS: usize = 1 << 26;

/// Additive bias of a masked-out key. Finite on purpose: a query row with every key masked
/// (a pad row) then gets a uniform softmax instead of NaN, and a NaN can never reach a valid
/// row through a zero attention weight.
pub(crate) const MASKED: f32 = -1e30;

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

/// RMS norm over the last axis, computed in f32, times `scale` (already in f32, e.g. Gemma's
/// `1 + w`), cast back to the input dtype. `scale = None` is the affine-free norm.
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

/// Softmax attention with grouped keys: `q` `[B, Hq, T, D]`, `k`/`v` `[B, Hkv, S, D]` with
/// `Hq` a multiple of `Hkv` (query head `h` reads key head `h / (Hq / Hkv)`), optional f32
/// additive `bias` `[B, 1, T, S]`. Scores and softmax are f32; the output `[B, Hq, T, D]` is
/// in `q`'s dtype. Runs per sample and in blocks of query rows of at most
/// [`MAX_SCORE_ELEMS`] scores.
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    scale: f64,
) -> Result<Tensor> {
    attention_in_blocks(q, k, v, bias, scale, MAX_SCORE_ELEMS)
}

/// [`attention`] with at most `max_elems` scores per block.
fn attention_in_blocks(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    scale: f64,
    max_elems: usize,
) -> Result<Tensor> {
    let (b, hq, t, d) = q.dims4()?;
    let (_, hkv, s, _) = k.dims4()?;
    let rep = hq / hkv.max(1);
    let dtype = q.dtype();
    let rows = (max_elems / (hq * s).max(1)).clamp(1, t.max(1));
    let mut per_sample = Vec::with_capacity(b);
    for bi in 0..b {
        let (qb, kb, vb) = (
            q.narrow(0, bi, 1)?,
            k.narrow(0, bi, 1)?,
            v.narrow(0, bi, 1)?,
        );
        let kt = kb.t()?;
        let bias_b = bias.map(|m| m.narrow(0, bi, 1)).transpose()?;
        let mut blocks = Vec::new();
        for t0 in (0..t).step_by(rows) {
            let n = rows.min(t - t0);
            // [1, Hq, n, D] → [1, Hkv, rep·n, D]: query heads of one key head side by side.
            let qr = qb
                .narrow(2, t0, n)?
                .reshape((1, hkv, rep * n, d))?
                .contiguous()?;
            let mut scores = (qr.matmul(&kt)?.to_dtype(DType::F32)? * scale)?;
            if let Some(m) = &bias_b {
                let m = m.narrow(2, t0, n)?.unsqueeze(1)?; // [1, 1, 1, n, S]
                scores = scores
                    .reshape((1, hkv, rep, n, s))?
                    .broadcast_add(&m)?
                    .reshape((1, hkv, rep * n, s))?;
            }
            let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
            blocks.push(probs.matmul(&vb)?.reshape((1, hq, n, d))?);
        }
        per_sample.push(Tensor::cat(&blocks, 2)?);
    }
    Ok(Tensor::cat(&per_sample, 0)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::{max_diff, seeded};

    /// Plain attention with the key heads repeated (HF's `repeat_kv`), in one block.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor, scale: f64) -> Tensor {
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
        let scores = (q.matmul(&expand(k).t().unwrap()).unwrap() * scale)
            .unwrap()
            .broadcast_add(bias)
            .unwrap();
        candle_nn::ops::softmax_last_dim(&scores)
            .unwrap()
            .matmul(&expand(v))
            .unwrap()
    }

    #[test]
    fn grouped_blocked_attention_equals_repeated_heads() {
        let (b, hq, hkv, t, s, d) = (2, 4, 2, 7, 7, 3);
        let q = seeded(&[b, hq, t, d], 1);
        let k = seeded(&[b, hkv, s, d], 2);
        let v = seeded(&[b, hkv, s, d], 3);
        let bias = (seeded(&[b, 1, t, s], 4) * 2.0).unwrap();
        let want = reference(&q, &k, &v, &bias, 0.4);
        let got = attention(&q, &k, &v, Some(&bias), 0.4).unwrap();
        assert!(max_diff(&want, &got) <= 1e-6);
        // Blocks of 2 query rows (and of 1) give the same result.
        for limit in [hq * s * 2, 1] {
            let blocked = attention_in_blocks(&q, &k, &v, Some(&bias), 0.4, limit).unwrap();
            assert!(max_diff(&want, &blocked) <= 1e-6, "limit {limit}");
        }
        // Query heads must read their own key head: swapping the key heads changes the result.
        let swapped =
            Tensor::cat(&[k.narrow(1, 1, 1).unwrap(), k.narrow(1, 0, 1).unwrap()], 1).unwrap();
        let other = attention(&q, &swapped, &v, Some(&bias), 0.4).unwrap();
        assert!(max_diff(&want, &other) > 1e-2);
    }

    #[test]
    fn masked_rows_stay_finite() {
        let q = seeded(&[1, 2, 3, 4], 5);
        let k = seeded(&[1, 1, 3, 4], 6);
        let v = seeded(&[1, 1, 3, 4], 7);
        // Row 0 sees no key at all; rows 1 and 2 see keys 1 and 2.
        let mut m = vec![MASKED; 9];
        for (i, j) in [(1, 1), (2, 1), (2, 2)] {
            m[i * 3 + j] = 0.0;
        }
        let bias = Tensor::from_vec(m, (1, 1, 3, 3), &candle_core::Device::Cpu).unwrap();
        let out = attention(&q, &k, &v, Some(&bias), 0.5).unwrap();
        let all: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        assert!(all.iter().all(|x| x.is_finite()));
        // Row 1 sees only key 1: its output is v[1] exactly (for both query heads).
        let row1 = out.narrow(2, 1, 1).unwrap().squeeze(2).unwrap();
        let v1 = v.narrow(2, 1, 1).unwrap().squeeze(2).unwrap();
        assert!(max_diff(&row1, &v1.broadcast_as((1, 2, 4)).unwrap()) <= 1e-6);
    }
}
