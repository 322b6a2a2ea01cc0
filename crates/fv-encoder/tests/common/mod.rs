//! Helpers shared by the audio tests: segment encoding, test signals, measurements.
#![allow(dead_code, clippy::unwrap_used)]

use fv_core::{AudioTrack, Frame};
use fv_encoder::testing::test_pattern;
use fv_encoder::{Chunk, SegmentAudio, StreamEncoder, inspect};

pub fn frames(w: u32, h: u32, n: u32) -> Vec<Frame> {
    (0..n).map(|i| test_pattern(w, h, i).unwrap()).collect()
}

pub fn concat(chunks: &[Chunk]) -> Vec<u8> {
    chunks.iter().flat_map(|c| c.data.iter().copied()).collect()
}

/// Encodes one segment with `audio`; for [`SegmentAudio::Pcm`] the track (if any) is pushed
/// after `at` frames (clamped to the frame count).
pub fn encode(
    enc: &mut StreamEncoder,
    frames: &[Frame],
    audio: SegmentAudio,
    pcm: Option<(&AudioTrack, usize)>,
) -> Vec<Chunk> {
    enc.start_segment_with_audio(audio).unwrap();
    let mut chunks = Vec::new();
    let at = pcm.map_or(usize::MAX, |(_, at)| at.min(frames.len()));
    for (i, f) in frames.iter().enumerate() {
        if i == at {
            chunks.extend(enc.push_audio(pcm.unwrap().0).unwrap());
        }
        chunks.extend(enc.push(f).unwrap());
    }
    if at == frames.len() {
        chunks.extend(enc.push_audio(pcm.unwrap().0).unwrap());
    }
    chunks.extend(enc.finish_segment().unwrap());
    chunks
}

/// Stereo track of `frames` frames at `rate`: a sine per channel.
pub fn two_tones(rate: u32, frames: usize, fl: f32, al: f32, fr: f32, ar: f32) -> AudioTrack {
    let w = 2.0 * std::f32::consts::PI / rate as f32;
    AudioTrack {
        sample_rate: rate,
        channels: 2,
        samples: (0..frames)
            .flat_map(|i| {
                let t = i as f32 * w;
                [al * (fl * t).sin(), ar * (fr * t).sin()]
            })
            .collect(),
    }
}

pub fn split(interleaved: &[f32]) -> (Vec<f32>, Vec<f32>) {
    interleaved.chunks_exact(2).map(|p| (p[0], p[1])).unzip()
}

/// Frequency from the mean period between rising zero crossings (linear interpolation).
pub fn frequency(x: &[f32], rate: f64) -> f64 {
    let mut crossings = Vec::new();
    for i in 1..x.len() {
        if x[i - 1] < 0.0 && x[i] >= 0.0 {
            let frac = f64::from(-x[i - 1]) / f64::from(x[i] - x[i - 1]);
            crossings.push((i - 1) as f64 + frac);
        }
    }
    let n = crossings.len();
    assert!(n > 2, "no tone");
    rate * (n - 1) as f64 / (crossings[n - 1] - crossings[0])
}

/// RMS level in dBFS.
pub fn dbfs(x: &[f32]) -> f64 {
    let ms = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64;
    10.0 * ms.log10()
}

pub fn snr_db(reference: &[f32], test: &[f32]) -> f64 {
    let (mut s, mut e) = (0.0f64, 0.0f64);
    for (&a, &b) in reference.iter().zip(test) {
        s += f64::from(a).powi(2);
        e += f64::from(a - b).powi(2);
    }
    10.0 * (s / e.max(1e-30)).log10()
}

/// The lag in `-range..=range` (samples) at which `test[start + lag..]` best matches
/// `reference` (which starts at `start`).
pub fn best_lag(reference: &[f32], test: &[f32], start: usize, range: i64) -> i64 {
    let mut best = (0i64, f64::MIN);
    for lag in -range..=range {
        let from = start as i64 + lag;
        if from < 0 || from as usize + reference.len() > test.len() {
            continue;
        }
        let c: f64 = reference
            .iter()
            .zip(&test[from as usize..])
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum();
        if c > best.1 {
            best = (lag, c);
        }
    }
    best.0
}

/// `n` frames of dark grey with frame `flash` white, and a stereo track at `rate` that is
/// silent until `flash / fps` seconds and then a 1 kHz burst at -6 dBFS for 0.25 s.
pub fn flash_and_burst(
    w: u32,
    h: u32,
    fps: u32,
    n: u32,
    flash: u32,
    rate: u32,
) -> (Vec<Frame>, AudioTrack) {
    let video = (0..n)
        .map(|i| {
            let v = if i == flash { 255 } else { 32 };
            Frame::from_rgb(w, h, vec![v; (w * h * 3) as usize]).unwrap()
        })
        .collect();
    let total = (u64::from(n) * u64::from(rate) / u64::from(fps)) as usize;
    let onset = (u64::from(flash) * u64::from(rate) / u64::from(fps)) as usize;
    let burst = rate as usize / 4;
    let samples = (0..total)
        .flat_map(|i| {
            let s = if (onset..onset + burst).contains(&i) {
                0.5 * (2.0 * std::f32::consts::PI * 1000.0 * (i - onset) as f32 / rate as f32).sin()
            } else {
                0.0
            };
            [s, s]
        })
        .collect();
    let track = AudioTrack {
        sample_rate: rate,
        channels: 2,
        samples,
    };
    (video, track)
}

/// Index of the brightest frame of decoded RGB frames.
pub fn brightest(frames: &[Vec<u8>]) -> usize {
    let mean = |f: &Vec<u8>| f.iter().map(|&v| u64::from(v)).sum::<u64>() / f.len() as u64;
    (0..frames.len()).max_by_key(|&i| mean(&frames[i])).unwrap()
}

/// First sample (per channel) where the decoded left channel's 1 ms moving RMS passes half the
/// burst's RMS: the burst's onset (pre-echo before it stays far below).
pub fn onset(left: &[f32], rate: usize) -> usize {
    let win = rate / 1000;
    let threshold = 0.5 * 0.5 / std::f32::consts::SQRT_2;
    let mut acc = 0.0f32;
    for i in 0..left.len() {
        acc += left[i] * left[i];
        if i >= win {
            acc -= left[i - win] * left[i - win];
        }
        if i >= win && (acc / win as f32).sqrt() > threshold {
            // The window ends here; its midpoint is where the level crossed.
            return i - win / 2;
        }
    }
    panic!("no burst found");
}

/// Decodes a flash-and-burst segment in process (openh264 + FDK with the edit list) and
/// returns audio onset minus flash time in ms.
pub fn av_offset_ms(seg: &inspect::SegmentInfo, fps: u32) -> f64 {
    let video = inspect::decode_segment(seg).unwrap();
    let flash_s = brightest(&video) as f64 / f64::from(fps);
    let pcm = inspect::decode_audio(seg).unwrap();
    let (left, _) = split(&pcm.samples);
    let onset_s = onset(&left, 48_000) as f64 / 48_000.0;
    (onset_s - flash_s) * 1000.0
}
