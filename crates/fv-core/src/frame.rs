//! [`Frame`]: one video frame, RGB24 or I420, with its buffer length checked against its
//! size; [`rgb_to_i420`] converts exactly as the H.264 encoder would.

use std::borrow::Cow;

/// How a [`Frame`]'s buffer lays out its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PixelFormat {
    /// Packed `R, G, B` bytes per pixel, rows top to bottom, no padding:
    /// `width * height * 3` bytes.
    Rgb24,
    /// Planar YUV 4:2:0 (BT.601, limited range), no padding: the Y plane (`width * height`
    /// bytes), then U and then V (`width / 2 * height / 2` bytes each). Width and height are
    /// even.
    I420,
}

impl PixelFormat {
    /// Buffer length of a `width` x `height` frame in this format (even sizes for I420).
    /// Saturates instead of overflowing: `usize::MAX` never matches a real buffer.
    fn buffer_len(self, width: u32, height: u32) -> usize {
        let pixels = (width as usize).saturating_mul(height as usize);
        match self {
            Self::Rgb24 => pixels.saturating_mul(3),
            Self::I420 => pixels.saturating_add(pixels / 2),
        }
    }
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rgb24 => "RGB24",
            Self::I420 => "I420",
        })
    }
}

/// One video frame: its size and one tightly packed buffer in an RGB24 or I420
/// [`PixelFormat`]. The buffer length always matches the size and format.
///
/// Generators that have RGB pixels use [`Frame::from_rgb`]; those that already produce
/// 4:2:0 planes (e.g. a GPU colour-conversion kernel) use [`Frame::from_i420`], which the H.264
/// encoder takes without converting. Two frames are equal only if their formats are too.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    width: u32,
    height: u32,
    format: PixelFormat,
    data: Vec<u8>,
}

/// A frame whose buffer does not match its size, or a size the format cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Width or height is zero.
    #[error("frame size {width}x{height} is empty")]
    Empty {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
    },
    /// The buffer is not exactly as long as the size and format need.
    #[error("{format} frame {width}x{height} needs {expected} bytes, got {actual}")]
    BadLength {
        /// The format the buffer was given as.
        format: PixelFormat,
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
        /// Bytes the size and format need.
        expected: usize,
        /// Bytes the buffer has.
        actual: usize,
    },
    /// I420 (4:2:0) needs an even width and height: each chroma sample covers 2x2 pixels.
    #[error("frame size {width}x{height} is odd; I420 (4:2:0) needs an even width and height")]
    OddDimensions {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
    },
}

/// Checks what every frame of `format` needs; I420 also needs even sizes.
fn check(format: PixelFormat, width: u32, height: u32, len: usize) -> Result<(), FrameError> {
    if width == 0 || height == 0 {
        return Err(FrameError::Empty { width, height });
    }
    if format == PixelFormat::I420 && (!width.is_multiple_of(2) || !height.is_multiple_of(2)) {
        return Err(FrameError::OddDimensions { width, height });
    }
    let expected = format.buffer_len(width, height);
    if len != expected {
        return Err(FrameError::BadLength {
            format,
            width,
            height,
            expected,
            actual: len,
        });
    }
    Ok(())
}

impl Frame {
    /// Wraps an RGB24 buffer of exactly `width * height * 3` bytes.
    pub fn from_rgb(width: u32, height: u32, rgb: Vec<u8>) -> Result<Self, FrameError> {
        check(PixelFormat::Rgb24, width, height, rgb.len())?;
        Ok(Self {
            width,
            height,
            format: PixelFormat::Rgb24,
            data: rgb,
        })
    }

    /// Wraps an I420 buffer: the Y plane (`width * height` bytes), then U, then V
    /// (`width / 2 * height / 2` bytes each), no row padding, BT.601 limited range. Width and
    /// height must be even. Planes made with [`rgb_to_i420`]'s arithmetic encode to exactly
    /// the bytes the RGB24 frame would.
    pub fn from_i420(width: u32, height: u32, data: Vec<u8>) -> Result<Self, FrameError> {
        check(PixelFormat::I420, width, height, data.len())?;
        Ok(Self {
            width,
            height,
            format: PixelFormat::I420,
            data,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The layout of [`data`](Self::data).
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// The raw buffer in the frame's own [`format`](Self::format).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// RGB24 bytes, `width * height * 3` long: borrowed for an RGB24 frame, converted for an
    /// I420 one (BT.601 limited range, chroma repeated over its 2x2 block). The conversion is
    /// only an approximate inverse of [`rgb_to_i420`]: colours constant over each 2x2 block
    /// come back within 2 levels per channel (measured), finer colour detail is lost to chroma
    /// subsampling. Use it for previews and checks; encode I420 frames as they are.
    pub fn rgb(&self) -> Cow<'_, [u8]> {
        match self.format {
            PixelFormat::Rgb24 => Cow::Borrowed(&self.data),
            PixelFormat::I420 => Cow::Owned(i420_to_rgb(
                self.width as usize,
                self.height as usize,
                &self.data,
            )),
        }
    }

    /// I420 planes (Y, U, V, packed as [`Frame::from_i420`] takes them): borrowed for an I420
    /// frame, converted with [`rgb_to_i420`] for an RGB24 one, which fails for odd sizes.
    pub fn i420(&self) -> Result<Cow<'_, [u8]>, FrameError> {
        match self.format {
            PixelFormat::I420 => Ok(Cow::Borrowed(&self.data)),
            PixelFormat::Rgb24 => rgb_to_i420(self.width, self.height, &self.data).map(Cow::Owned),
        }
    }

    /// The RGB24 bytes by value: the buffer itself for an RGB24 frame, converted as
    /// [`rgb`](Self::rgb) does for an I420 one.
    pub fn into_rgb(self) -> Vec<u8> {
        match self.format {
            PixelFormat::Rgb24 => self.data,
            PixelFormat::I420 => self.rgb().into_owned(),
        }
    }
}

impl std::fmt::Debug for Frame {
    // Never dump megabytes of pixels into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// Converts RGB24 (`width * height * 3` bytes) to I420 (Y, then U, then V), bit for bit as
/// openh264 0.9.9's `YUVBuffer::read_rgb8` does, so that an encoder fed these planes writes
/// the same bitstream as one fed the RGB frame (`fv-encoder`'s `tests/i420.rs` checks this
/// against openh264 itself). Width and height must be even.
///
/// The integer arithmetic (BT.601, limited range), for a GPU kernel to reproduce exactly:
///
/// * per pixel: `Y = ((66 R + 129 G + 25 B) >> 8) + 16`;
/// * per 2x2 block, with `r`, `g`, `b` each `(sum of the four samples + 2) / 4` (rounded
///   mean): `U = ((112 b - 38 r - 74 g) >> 8) + 128` and `V = ((112 r - 94 g - 18 b) >> 8) + 128`,
///   where `>>` is an arithmetic shift (floor division by 256, also for negative values).
pub fn rgb_to_i420(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, FrameError> {
    if width == 0 || height == 0 {
        return Err(FrameError::Empty { width, height });
    }
    if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(FrameError::OddDimensions { width, height });
    }
    check(PixelFormat::Rgb24, width, height, rgb.len())?;
    let (w, h) = (width as usize, height as usize);
    let half_w = w / 2;
    let mut out = vec![0u8; PixelFormat::I420.buffer_len(width, height)];
    let (y_plane, chroma) = out.split_at_mut(w * h);
    let (u_plane, v_plane) = chroma.split_at_mut(half_w * (h / 2));

    // Luma per pixel, then chroma per row pair: iterator loops without index arithmetic, so
    // there are no per-pixel bounds checks. Measured at 1024x576 in release: ~1.3-1.8 ms,
    // against ~2 ms for one fused pass over both.
    for (y, px) in y_plane.iter_mut().zip(rgb.chunks_exact(3)) {
        *y = luma(px[0], px[1], px[2]);
    }
    let rows = rgb.chunks_exact(2 * w * 3).zip(
        u_plane
            .chunks_exact_mut(half_w)
            .zip(v_plane.chunks_exact_mut(half_w)),
    );
    for (src, (u_row, v_row)) in rows {
        let (top, bottom) = src.split_at(w * 3);
        let blocks = top.chunks_exact(6).zip(bottom.chunks_exact(6));
        for ((a, b), (u, v)) in blocks.zip(u_row.iter_mut().zip(v_row.iter_mut())) {
            // Rounded mean of the block; sums are non-negative, so `>> 2` is the division.
            let mean = |c: usize| {
                (i32::from(a[c]) + i32::from(a[c + 3]) + i32::from(b[c]) + i32::from(b[c + 3]) + 2)
                    >> 2
            };
            let (r, g, b) = (mean(0), mean(1), mean(2));
            // Both results lie in 16..=239, so the casts never truncate.
            *u = (((112 * b - 38 * r - 74 * g) >> 8) + 128) as u8;
            *v = (((112 * r - 94 * g - 18 * b) >> 8) + 128) as u8;
        }
    }
    Ok(out)
}

/// BT.601 limited-range luma of one pixel; at most 235, so the cast never truncates.
/// The weighted sum peaks at 220 * 255 = 56100, so u16 holds it (and packs more SIMD lanes).
fn luma(r: u8, g: u8, b: u8) -> u8 {
    (((66 * u16::from(r) + 129 * u16::from(g) + 25 * u16::from(b)) >> 8) + 16) as u8
}

/// I420 -> RGB24 with the usual BT.601 limited-range integer matrix (x 256), corrected for
/// the flooring in [`rgb_to_i420`]; each chroma sample covers its 2x2 block. `data` has the
/// length [`check`] guarantees for even sizes.
fn i420_to_rgb(w: usize, h: usize, data: &[u8]) -> Vec<u8> {
    let half_w = w / 2;
    let (y_plane, chroma) = data.split_at(w * h);
    let (u_plane, v_plane) = chroma.split_at(half_w * (h / 2));
    let mut rgb = vec![0u8; w * h * 3];
    let rows = rgb
        .chunks_exact_mut(2 * w * 3)
        .zip(y_plane.chunks_exact(2 * w))
        .zip(
            u_plane
                .chunks_exact(half_w)
                .zip(v_plane.chunks_exact(half_w)),
        );
    for ((dst, ys), (u_row, v_row)) in rows {
        for (dst_row, y_row) in dst.chunks_exact_mut(w * 3).zip(ys.chunks_exact(w)) {
            let pairs = dst_row.chunks_exact_mut(6).zip(y_row.chunks_exact(2));
            for ((px, y), (&u, &v)) in pairs.zip(u_row.iter().zip(v_row)) {
                let d = i32::from(u) - 128;
                let e = i32::from(v) - 128;
                // `+ 128` rounds the final `>> 8`; the other constants add back half a step of
                // U and V, which [`rgb_to_i420`] floors, so the error is centred.
                let dr = 409 * e + 204 + 128;
                let dg = -100 * d - 208 * e - 154 + 128;
                let db = 516 * d + 258 + 128;
                for (out, &luma) in px.chunks_exact_mut(3).zip(y) {
                    // `+ 149`: half a step of the floored Y.
                    let c = 298 * (i32::from(luma) - 16) + 149;
                    out[0] = clamp_u8((c + dr) >> 8);
                    out[1] = clamp_u8((c + dg) >> 8);
                    out[2] = clamp_u8((c + db) >> 8);
                }
            }
        }
    }
    rgb
}

fn clamp_u8(x: i32) -> u8 {
    x.clamp(0, 255) as u8
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A tiny deterministic generator (xorshift64*), so tests need no rand dependency.
    struct Rng(u64);

    impl Rng {
        fn next_u8(&mut self) -> u8 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        }
    }

    #[test]
    fn rejects_wrong_lengths_and_empty_sizes() {
        assert!(Frame::from_rgb(2, 2, vec![0; 12]).is_ok());
        assert_eq!(
            Frame::from_rgb(2, 2, vec![0; 11]),
            Err(FrameError::BadLength {
                format: PixelFormat::Rgb24,
                width: 2,
                height: 2,
                expected: 12,
                actual: 11
            })
        );
        assert!(matches!(
            Frame::from_rgb(0, 2, vec![]),
            Err(FrameError::Empty { .. })
        ));
        // Odd sizes are fine for RGB24.
        assert!(Frame::from_rgb(3, 1, vec![0; 9]).is_ok());
        // A size whose byte count overflows usize is a length error, not a panic.
        assert!(matches!(
            Frame::from_rgb(u32::MAX, u32::MAX, vec![0; 3]),
            Err(FrameError::BadLength {
                expected: usize::MAX,
                ..
            })
        ));
    }

    #[test]
    fn from_i420_checks_length_evenness_and_emptiness() {
        // 4x2: Y 8 + U 2 + V 2.
        let f = Frame::from_i420(4, 2, vec![16; 12]).unwrap();
        assert_eq!(f.format(), PixelFormat::I420);
        assert_eq!(f.data().len(), 12);
        let err = Frame::from_i420(4, 2, vec![16; 13]).unwrap_err();
        assert_eq!(
            err,
            FrameError::BadLength {
                format: PixelFormat::I420,
                width: 4,
                height: 2,
                expected: 12,
                actual: 13
            }
        );
        assert_eq!(err.to_string(), "I420 frame 4x2 needs 12 bytes, got 13");
        // An RGB-sized buffer is rejected as I420.
        assert!(matches!(
            Frame::from_i420(4, 2, vec![0; 24]),
            Err(FrameError::BadLength {
                expected: 12,
                actual: 24,
                ..
            })
        ));
        for (w, h) in [(3, 2), (4, 3), (1, 1)] {
            let err = Frame::from_i420(w, h, vec![0; 64]).unwrap_err();
            assert_eq!(
                err,
                FrameError::OddDimensions {
                    width: w,
                    height: h
                }
            );
            assert!(err.to_string().contains("even"), "{err}");
        }
        assert_eq!(
            Frame::from_i420(0, 2, vec![]),
            Err(FrameError::Empty {
                width: 0,
                height: 2
            })
        );
        assert!(matches!(
            Frame::from_i420(u32::MAX - 1, u32::MAX - 1, vec![0; 6]),
            Err(FrameError::BadLength { .. })
        ));
    }

    #[test]
    fn rgb_to_i420_rejects_bad_input() {
        assert_eq!(
            rgb_to_i420(3, 2, &[0; 18]),
            Err(FrameError::OddDimensions {
                width: 3,
                height: 2
            })
        );
        assert_eq!(
            rgb_to_i420(0, 0, &[]),
            Err(FrameError::Empty {
                width: 0,
                height: 0
            })
        );
        assert_eq!(
            rgb_to_i420(2, 2, &[0; 6]).unwrap_err().to_string(),
            "RGB24 frame 2x2 needs 12 bytes, got 6"
        );
        // An odd RGB frame exists but has no I420 form.
        let odd = Frame::from_rgb(3, 3, vec![0; 27]).unwrap();
        assert!(matches!(odd.i420(), Err(FrameError::OddDimensions { .. })));
    }

    #[test]
    fn rgb_to_i420_known_values() {
        // 2x2 block of one colour: Y from the per-pixel formula, U/V from the block mean.
        let cases: [([u8; 3], [u8; 3]); 5] = [
            ([0, 0, 0], [16, 128, 128]),
            ([255, 255, 255], [235, 128, 128]),
            ([255, 0, 0], [81, 90, 239]),
            ([0, 255, 0], [144, 54, 34]),
            ([0, 0, 255], [40, 239, 110]),
        ];
        for (rgb, yuv) in cases {
            let buf: Vec<u8> = rgb.iter().copied().cycle().take(12).collect();
            let out = rgb_to_i420(2, 2, &buf).unwrap();
            assert_eq!(
                out,
                [yuv[0], yuv[0], yuv[0], yuv[0], yuv[1], yuv[2]],
                "{rgb:?}"
            );
        }
        // The chroma mean rounds: R samples 0, 0, 0, 2 average to (2 + 2) / 4 = 1.
        let mut buf = vec![0u8; 12];
        buf[9] = 2;
        let out = rgb_to_i420(2, 2, &buf).unwrap();
        // U = ((-38) >> 8) + 128 = 127 (arithmetic shift floors), V = (112 >> 8) + 128 = 128.
        assert_eq!(&out[4..], [127, 128]);
    }

    #[test]
    fn layout_of_planes_for_a_non_square_frame() {
        // 4x2: left 2x2 block red, right block blue. U and V each get one sample per block.
        let mut rgb = Vec::new();
        for _ in 0..2 {
            rgb.extend_from_slice(&[255, 0, 0, 255, 0, 0, 0, 0, 255, 0, 0, 255]);
        }
        let i420 = rgb_to_i420(4, 2, &rgb).unwrap();
        assert_eq!(i420, [81, 81, 40, 40, 81, 81, 40, 40, 90, 239, 239, 110]);
    }

    #[test]
    fn accessors_borrow_in_their_own_format_and_convert_otherwise() {
        let rgb: Vec<u8> = (0..4 * 2 * 3).map(|i| (i * 10) as u8).collect();
        let frame = Frame::from_rgb(4, 2, rgb.clone()).unwrap();
        assert_eq!(frame.format(), PixelFormat::Rgb24);
        assert!(matches!(frame.rgb(), Cow::Borrowed(_)));
        assert_eq!(frame.data(), &rgb[..]);
        let planes = frame.i420().unwrap();
        assert!(matches!(planes, Cow::Owned(_)));
        assert_eq!(*planes, rgb_to_i420(4, 2, &rgb).unwrap()[..]);

        let yuv = Frame::from_i420(4, 2, planes.into_owned()).unwrap();
        assert!(matches!(yuv.i420().unwrap(), Cow::Borrowed(_)));
        assert!(matches!(yuv.rgb(), Cow::Owned(_)));
        assert_eq!(yuv.rgb().len(), rgb.len());
        assert_eq!(yuv.clone().into_rgb(), yuv.rgb().into_owned());
        assert_eq!(frame.clone().into_rgb(), rgb);
        // Same pixels in different formats are different frames.
        assert_ne!(
            Frame::from_rgb(2, 2, vec![16; 12]).unwrap(),
            Frame::from_i420(2, 2, vec![16; 6]).unwrap()
        );
    }

    #[test]
    fn i420_round_trip_is_close_for_block_constant_content() {
        // With every 2x2 block one colour, subsampling loses nothing and only rounding is left.
        // Measured worst case over these ~5000 random colours: 2 levels per channel.
        // (Without the half-step correction in `i420_to_rgb` it was 4.)
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut worst = 0u8;
        for (w, h) in [(2u32, 2u32), (16, 8), (74, 4), (64, 36), (128, 96)] {
            let (wu, hu) = (w as usize, h as usize);
            let blocks: Vec<[u8; 3]> = (0..wu / 2 * hu / 2)
                .map(|_| [rng.next_u8(), rng.next_u8(), rng.next_u8()])
                .collect();
            let mut rgb = Vec::with_capacity(wu * hu * 3);
            for y in 0..hu {
                for x in 0..wu {
                    rgb.extend_from_slice(&blocks[(y / 2) * (wu / 2) + x / 2]);
                }
            }
            let frame = Frame::from_i420(w, h, rgb_to_i420(w, h, &rgb).unwrap()).unwrap();
            let back = frame.rgb();
            for (a, b) in rgb.iter().zip(back.iter()) {
                worst = worst.max(a.abs_diff(*b));
            }
        }
        assert!(worst <= 2, "worst channel difference {worst}");
    }

    #[test]
    fn i420_round_trip_of_a_smooth_gradient_is_close() {
        // Smooth content (what generators make): subsampling costs little.
        // Measured worst case: 4 levels per channel, where R steps 4 per pixel inside a block.
        let (w, h) = (64usize, 48usize);
        let mut rgb = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                rgb.extend_from_slice(&[(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8]);
            }
        }
        let planes = rgb_to_i420(w as u32, h as u32, &rgb).unwrap();
        let back = Frame::from_i420(w as u32, h as u32, planes)
            .unwrap()
            .into_rgb();
        let worst = rgb
            .iter()
            .zip(&back)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst <= 4, "worst channel difference {worst}");
    }

    #[test]
    fn debug_prints_size_and_format_but_no_pixels() {
        let f = Frame::from_i420(2, 2, vec![200, 201, 202, 203, 204, 205]).unwrap();
        let s = format!("{f:?}");
        assert!(s.contains("width: 2") && s.contains("I420"), "{s}");
        assert!(!s.contains("200") && !s.contains("205"), "{s}");
        let f = Frame::from_rgb(2, 2, vec![123; 12]).unwrap();
        assert!(!format!("{f:?}").contains("123"));
    }
}
