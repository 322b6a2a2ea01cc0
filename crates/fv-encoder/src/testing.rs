//! Synthetic content and quality metrics shared by tests and the encoder benchmark.

use fv_core::{Frame, FrameError};

/// Frame `index` of a deterministic test clip: smooth colour gradients (one ramp across the
/// frame per channel) panning (2, 1) pixels per frame, plus a white 64x64 box moving
/// (8, 4) pixels per frame, like the synthetic content in the stack notes.
/// The box sits on even coordinates so 4:2:0 chroma blocks never straddle its edges: the PSNR
/// of a round trip then measures the codec, not chroma subsampling. Fails only for a zero size.
pub fn test_pattern(width: u32, height: u32, index: u32) -> Result<Frame, FrameError> {
    if width == 0 || height == 0 {
        return Err(FrameError::Empty { width, height });
    }
    let (w, h) = (width as usize, height as usize);
    let t = index as usize;
    let mut rgb = vec![0u8; w * h * 3];
    let box_size = 64.min(w).min(h) & !1;
    // Positions 0, 2, 4, ... that keep the box inside the frame.
    let box_x = 2 * ((t * 4) % ((w - box_size) / 2 + 1));
    let box_y = 2 * ((t * 2) % ((h - box_size) / 2 + 1));
    for (y, row) in rgb.chunks_exact_mut(w * 3).enumerate() {
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let inside = x >= box_x && x < box_x + box_size && y >= box_y && y < box_y + box_size;
            if inside {
                px.copy_from_slice(&[255, 255, 255]);
            } else {
                // The whole colour field slides by (2, 1) pixels per frame, as a camera pan
                // would move it: every channel moves the same way.
                let (u, v) = (x + 2 * t, y + t);
                px[0] = triangle(u * 255 / w);
                px[1] = triangle(v * 255 / h);
                px[2] = triangle((u + v) * 255 / (w + h) + 128);
            }
        }
    }
    Frame::from_rgb(width, height, rgb)
}

/// A triangle wave over 0..=255 with period 510: smooth, no wrap-around edge.
fn triangle(n: usize) -> u8 {
    let m = n % 510;
    if m < 256 { m as u8 } else { (509 - m) as u8 }
}

/// PSNR in dB between two equally long 8-bit buffers; `f64::INFINITY` when identical,
/// `None` when the lengths differ or are zero.
pub fn psnr(a: &[u8], b: &[u8]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let sse: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = i64::from(x) - i64::from(y);
            (d * d) as u64
        })
        .sum();
    if sse == 0 {
        return Some(f64::INFINITY);
    }
    let mse = sse as f64 / a.len() as f64;
    Some(10.0 * (255.0 * 255.0 / mse).log10())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_moves_and_psnr_behaves() -> Result<(), FrameError> {
        let a = test_pattern(128, 96, 0)?;
        let b = test_pattern(128, 96, 1)?;
        assert!(test_pattern(0, 96, 0).is_err());
        assert_eq!((a.width(), a.height()), (128, 96));
        assert_ne!(a.rgb(), b.rgb());
        assert_eq!(psnr(&a.rgb(), &a.rgb()), Some(f64::INFINITY));
        assert_eq!(psnr(&[0, 0], &[0]), None);
        // Every byte off by 1 -> MSE 1 -> 48.13 dB.
        let p = psnr(&[10, 20], &[11, 21]).expect("same length");
        assert!((p - 48.1308).abs() < 1e-3, "{p}");
        Ok(())
    }
}
