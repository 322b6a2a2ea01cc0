//! I420 input: `fv_core::rgb_to_i420` matches openh264's own conversion bit for bit, and
//! I420 frames encode to exactly the bytes their RGB24 originals do.
#![allow(clippy::unwrap_used)]

use fv_core::{Frame, PixelFormat, rgb_to_i420};
use fv_encoder::testing::test_pattern;
use fv_encoder::{Chunk, EncodeError, EncoderConfig, StreamEncoder};
use openh264::formats::{RgbSliceU8, YUVBuffer, YUVSource};

/// Seeded xorshift64*, so the test needs no rand dependency and every run sees the same data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next_u64() >> 56) as u8).collect()
    }
}

/// What openh264 itself feeds the encoder for an RGB24 frame: `YUVBuffer::read_rgb8`, the
/// call the RGB path of `fv-encoder` makes (its SIMD path where the CPU has AVX2 and the
/// frame is at least 64 wide, its scalar one otherwise).
fn openh264_i420(w: usize, h: usize, rgb: &[u8]) -> Vec<u8> {
    let mut yuv = YUVBuffer::new(w, h);
    yuv.read_rgb8(RgbSliceU8::new(rgb, (w, h)));
    [yuv.y(), yuv.u(), yuv.v()].concat()
}

#[test]
fn rgb_to_i420_matches_openh264_read_rgb8_bit_for_bit() {
    let mut rng = Rng(0x5eed_0ff1_ce00);
    // Below 64 wide openh264 runs its scalar code; from 64 on its AVX2 code with a scalar tail
    // for widths that are not a multiple of 16 (74, 130, 200).
    let sizes = [
        (2, 2),
        (4, 6),
        (16, 2),
        (62, 4),
        (64, 2),
        (74, 4),
        (96, 8),
        (130, 10),
        (200, 120),
        (1024, 16),
    ];
    for (w, h) in sizes {
        let n = w * h * 3;
        let mut inputs = vec![vec![0u8; n], vec![255u8; n]];
        // Alternating extremes stress the rounded 2x2 mean.
        inputs.push(
            (0..n)
                .map(|i| {
                    if (i / 3 + i / (3 * w)) % 2 == 0 {
                        0
                    } else {
                        255
                    }
                })
                .collect(),
        );
        for _ in 0..8 {
            inputs.push(rng.bytes(n));
        }
        for (k, rgb) in inputs.iter().enumerate() {
            let ours = rgb_to_i420(w as u32, h as u32, rgb).unwrap();
            assert_eq!(ours, openh264_i420(w, h, rgb), "{w}x{h} input {k}");
        }
    }
}

#[test]
fn rgb_to_i420_matches_openh264_on_a_full_size_clip() {
    for i in 0..3 {
        let frame = test_pattern(1024, 576, i).unwrap();
        let ours = frame.i420().unwrap();
        assert_eq!(
            *ours,
            openh264_i420(1024, 576, frame.data())[..],
            "frame {i}"
        );
    }
}

fn as_i420(frame: &Frame) -> Frame {
    let planes = rgb_to_i420(frame.width(), frame.height(), frame.data()).unwrap();
    Frame::from_i420(frame.width(), frame.height(), planes).unwrap()
}

/// Smooth moving content plus a few noise frames (hard to code: many bits, intra blocks).
fn clip(w: u32, h: u32, n: u32) -> Vec<Frame> {
    let mut rng = Rng(42);
    (0..n)
        .map(|i| {
            if i % 5 == 3 {
                Frame::from_rgb(w, h, rng.bytes(w as usize * h as usize * 3)).unwrap()
            } else {
                test_pattern(w, h, i).unwrap()
            }
        })
        .collect()
}

/// Encodes `segments` through the public API with one encoder; every chunk in order.
fn encode(cfg: &EncoderConfig, segments: &[Vec<Frame>]) -> Vec<Chunk> {
    let mut enc = StreamEncoder::new(cfg.clone()).unwrap();
    let mut chunks = Vec::new();
    for frames in segments {
        let mut seg = enc.begin_segment();
        for f in frames {
            chunks.extend(seg.push(f).unwrap());
        }
        chunks.extend(seg.finish().unwrap());
    }
    chunks
}

#[test]
fn i420_frames_encode_to_the_same_bytes_as_rgb() {
    // 200x120 is not a multiple of 16; idr_interval puts an IDR inside each segment too.
    let cfg = EncoderConfig {
        fragment_frames: 4,
        idr_interval: 7,
        ..EncoderConfig::new(200, 120, 24)
    };
    let rgb_segments = vec![clip(200, 120, 10), clip(200, 120, 9)];
    let i420_segments: Vec<Vec<Frame>> = rgb_segments
        .iter()
        .map(|s| s.iter().map(as_i420).collect())
        .collect();
    assert!(
        i420_segments
            .iter()
            .flatten()
            .all(|f| f.format() == PixelFormat::I420)
    );

    let from_rgb = encode(&cfg, &rgb_segments);
    let from_i420 = encode(&cfg, &i420_segments);
    // Init + 3 fragments, then init + 3 fragments.
    assert_eq!(from_rgb.len(), 8);
    assert_eq!(from_rgb.len(), from_i420.len());
    for (i, (a, b)) in from_rgb.iter().zip(&from_i420).enumerate() {
        assert_eq!(a, b, "chunk {i} ({:?}) differs", a.kind);
    }
}

#[test]
fn formats_can_mix_within_a_segment() {
    let cfg = EncoderConfig {
        fragment_frames: 3,
        ..EncoderConfig::new(64, 48, 30)
    };
    let rgb = clip(64, 48, 8);
    let mixed: Vec<Frame> = rgb
        .iter()
        .enumerate()
        .map(|(i, f)| if i % 2 == 0 { as_i420(f) } else { f.clone() })
        .collect();
    assert_eq!(mixed[0].format(), PixelFormat::I420);
    assert_eq!(mixed[1].format(), PixelFormat::Rgb24);
    let expected = encode(&cfg, &[rgb]);
    let got = encode(&cfg, &[mixed]);
    assert_eq!(got, expected);
    // And the stream decodes to the clip.
    let bytes: Vec<u8> = got.iter().flat_map(|c| c.data.iter().copied()).collect();
    let seg = fv_encoder::inspect::parse_segment(&bytes).unwrap();
    assert_eq!(fv_encoder::inspect::decode_segment(&seg).unwrap().len(), 8);
}

#[test]
fn wrong_sized_i420_frame_is_an_error_and_the_segment_goes_on() {
    let mut enc = StreamEncoder::new(EncoderConfig::new(64, 48, 24)).unwrap();
    let mut seg = enc.begin_segment();
    let good = as_i420(&test_pattern(64, 48, 0).unwrap());
    let small = as_i420(&test_pattern(32, 48, 0).unwrap());
    let err = seg.push(&small).unwrap_err();
    assert_eq!(
        err,
        EncodeError::FrameSize {
            expected_width: 64,
            expected_height: 48,
            width: 32,
            height: 48,
        }
    );
    assert!(err.to_string().contains("32x48"), "{err}");
    // Same for a larger frame of the same pixel count in another shape.
    assert!(matches!(
        seg.push(&as_i420(&test_pattern(48, 64, 0).unwrap())),
        Err(EncodeError::FrameSize { .. })
    ));
    // The segment is still usable.
    assert_eq!(seg.push(&good).unwrap().len(), 1, "init chunk");
    let last = seg.finish().unwrap();
    assert_eq!(last[0].frames, 1);
}
