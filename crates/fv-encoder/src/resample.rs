//! Any accepted [`fv_core::AudioTrack`] -> interleaved stereo at 48 kHz, the only layout the
//! AAC track has.
//!
//! Rate conversion is rubato's synchronous FFT resampler (`Fft`, whole clip via `process_all`,
//! which trims the resampler's own delay, so output sample 0 is input sample 0). It is the
//! crate's recommended choice for a fixed ratio: a windowed-sinc anti-aliasing filter applied
//! in the frequency domain, fast for whole clips. LTX-2's 24 kHz -> 48 kHz is an exact 1:2.

use crate::EncodeError;
use crate::audio::{
    AAC_CHANNELS, AAC_SAMPLE_RATE, AUDIO_INPUT_CHANNELS, AUDIO_INPUT_RATE_RANGE, MAX_AUDIO_SECONDS,
};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// Frames per FFT chunk: ~20 ms at 48 kHz keeps the filter long enough for a steep cut-off.
const CHUNK_FRAMES: usize = 1024;

fn bad(msg: String) -> EncodeError {
    EncodeError::AudioInput(msg)
}

/// Checks `track` against the documented limits: rate in [`AUDIO_INPUT_RATE_RANGE`], channels
/// in [`AUDIO_INPUT_CHANNELS`], whole frames, at most [`MAX_AUDIO_SECONDS`], finite samples.
pub(crate) fn validate(track: &fv_core::AudioTrack) -> Result<(), EncodeError> {
    if !AUDIO_INPUT_RATE_RANGE.contains(&track.sample_rate) {
        return Err(bad(format!(
            "sample rate {} Hz is outside {}..={}",
            track.sample_rate,
            AUDIO_INPUT_RATE_RANGE.start(),
            AUDIO_INPUT_RATE_RANGE.end()
        )));
    }
    if !AUDIO_INPUT_CHANNELS.contains(&track.channels) {
        return Err(bad(format!(
            "{} channels; only mono and stereo are accepted",
            track.channels
        )));
    }
    let channels = usize::from(track.channels);
    if !track.samples.len().is_multiple_of(channels) {
        return Err(bad(format!(
            "{} samples is not a whole number of {channels}-channel frames",
            track.samples.len()
        )));
    }
    let max = track.sample_rate as usize * MAX_AUDIO_SECONDS as usize * channels;
    if track.samples.len() > max {
        return Err(bad(format!(
            "{} samples is longer than {MAX_AUDIO_SECONDS} s",
            track.samples.len()
        )));
    }
    if let Some(i) = track.samples.iter().position(|s| !s.is_finite()) {
        return Err(bad(format!("sample {i} is not finite")));
    }
    Ok(())
}

/// Validates `track` and returns it as interleaved stereo at [`AAC_SAMPLE_RATE`]. Values
/// outside [-1, 1] pass through here and are clipped by the encoder.
pub(crate) fn to_aac_layout(track: &fv_core::AudioTrack) -> Result<Vec<f32>, EncodeError> {
    validate(track)?;
    let stereo: std::borrow::Cow<'_, [f32]> = match track.channels {
        1 => track.samples.iter().flat_map(|&s| [s, s]).collect(),
        _ => std::borrow::Cow::Borrowed(&track.samples),
    };
    if track.sample_rate == AAC_SAMPLE_RATE {
        return Ok(stereo.into_owned());
    }
    let channels = usize::from(AAC_CHANNELS);
    let frames = stereo.len() / channels;
    if frames == 0 {
        return Ok(Vec::new());
    }
    let rs_err = |e: &dyn std::fmt::Display| EncodeError::AudioInput(format!("resampler: {e}"));
    let mut resampler = Fft::<f32>::new(
        track.sample_rate as usize,
        AAC_SAMPLE_RATE as usize,
        CHUNK_FRAMES,
        channels,
        FixedSync::Input,
    )
    .map_err(|e| rs_err(&e))?;
    let input = InterleavedSlice::new(&stereo[..], channels, frames).map_err(|e| rs_err(&e))?;
    let out = resampler
        .process_all(&input, frames, None)
        .map_err(|e| rs_err(&e))?;
    Ok(out.take_data())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fv_core::AudioTrack;

    fn track(sample_rate: u32, channels: u16, samples: Vec<f32>) -> AudioTrack {
        AudioTrack {
            sample_rate,
            channels,
            samples,
        }
    }

    #[test]
    fn limits_are_enforced_with_clear_errors() {
        let cases = [
            (track(7_999, 2, vec![0.0; 4]), "sample rate"),
            (track(192_001, 2, vec![0.0; 4]), "sample rate"),
            (track(48_000, 0, vec![]), "channels"),
            (track(48_000, 3, vec![0.0; 6]), "channels"),
            (track(48_000, 2, vec![0.0; 3]), "whole number"),
            (track(48_000, 1, vec![0.0, f32::NAN]), "sample 1"),
            (track(8_000, 1, vec![0.0; 8_000 * 600 + 1]), "longer than"),
        ];
        for (t, want) in cases {
            let err = to_aac_layout(&t).expect_err(want);
            assert!(
                matches!(&err, EncodeError::AudioInput(m) if m.contains(want)),
                "{err}"
            );
        }
        assert!(to_aac_layout(&track(8_000, 1, vec![0.0; 8_000 * 600])).is_ok());
        assert_eq!(to_aac_layout(&track(24_000, 2, vec![])), Ok(vec![]));
    }

    #[test]
    fn mono_is_duplicated_and_48k_passes_through() {
        let out = to_aac_layout(&track(48_000, 1, vec![0.25, -0.5])).expect("ok");
        assert_eq!(out, [0.25, 0.25, -0.5, -0.5]);
        let out = to_aac_layout(&track(48_000, 2, vec![0.1, 0.2])).expect("ok");
        assert_eq!(out, [0.1, 0.2]);
    }

    #[test]
    fn resampling_keeps_length_frequency_and_level() {
        // 1 kHz at 24 kHz -> 48 kHz: twice the frames, same tone, same amplitude, no delay.
        let n = 24_000;
        let tone: Vec<f32> = (0..n)
            .flat_map(|i| {
                let s = 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 24_000.0).sin();
                [s, -s]
            })
            .collect();
        let out = to_aac_layout(&track(24_000, 2, tone)).expect("resample");
        assert_eq!(out.len(), 2 * n * 2);
        // Compare the middle against the ideal 48 kHz tone (edges carry filter ramps).
        let mut err = 0.0f64;
        let mut sig = 0.0f64;
        for i in 2_000..(2 * n - 2_000) {
            let want = 0.5 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 48_000.0).sin();
            let (l, r) = (f64::from(out[2 * i]), f64::from(out[2 * i + 1]));
            err += (l - want).powi(2) + (r + want).powi(2);
            sig += 2.0 * want * want;
        }
        let snr = 10.0 * (sig / err).log10();
        assert!(snr > 60.0, "resampled tone SNR {snr:.1} dB");
    }
}
