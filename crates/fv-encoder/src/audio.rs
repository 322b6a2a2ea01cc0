//! Audio settings and what a segment's audio track carries.

use crate::EncodeError;

/// Sample rate of every audio track we write: AAC-LC at 48 kHz (what browsers and the
/// Dreamverse client expect); other input rates are resampled.
pub const AAC_SAMPLE_RATE: u32 = 48_000;
/// Channels of every audio track we write (stereo; mono input is duplicated).
pub const AAC_CHANNELS: u16 = 2;
/// PCM samples per channel in one AAC-LC frame (one MP4 audio sample).
pub const AAC_FRAME_SAMPLES: u32 = 1024;
/// Accepted input sample rates of an [`fv_core::AudioTrack`], Hz.
pub const AUDIO_INPUT_RATE_RANGE: std::ops::RangeInclusive<u32> = 8_000..=192_000;
/// Accepted channel counts of an [`fv_core::AudioTrack`]: mono (duplicated) or stereo.
/// Wider layouts are refused rather than guessed at: `AudioTrack` carries no channel layout.
pub const AUDIO_INPUT_CHANNELS: std::ops::RangeInclusive<u16> = 1..=2;
/// Longest accepted audio track, seconds. Far above a segment (~5 s); it bounds the memory one
/// `push_audio` can take (10 min of 48 kHz stereo f32 is 230 MB).
pub const MAX_AUDIO_SECONDS: u32 = 600;
/// Accepted [`AacMode::Cbr`] bitrates for 48 kHz stereo, bits per second.
pub const AAC_CBR_RANGE: std::ops::RangeInclusive<u32> = 32_000..=320_000;
/// Accepted [`AacMode::Vbr`] qualities (FDK's VBR modes 1..=5).
pub const AAC_VBR_RANGE: std::ops::RangeInclusive<u8> = 1..=5;

/// How the AAC encoder spends bits.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AacMode {
    /// FDK's variable-bitrate mode `quality` ([`AAC_VBR_RANGE`]; 4 ≈ 110–130 kb/s for stereo
    /// music, 5 ≈ 150–200 kb/s). Quiet passages cost few bytes.
    Vbr {
        /// 1 (lowest) ..= 5 (highest).
        quality: u8,
    },
    /// Constant bitrate ([`AAC_CBR_RANGE`]); the encoder pads quiet frames with fill bits.
    Cbr {
        /// Bits per second.
        bitrate_bps: u32,
    },
}

/// Default [`AacMode`]: VBR quality 4. Measured on the bench clip it codes at ~119 kb/s with
/// the same SNR as ffmpeg's `aac` at 128 kb/s CBR (`cargo xbench aac`).
pub const DEFAULT_AAC_MODE: AacMode = AacMode::Vbr { quality: 4 };

impl Default for AacMode {
    fn default() -> Self {
        DEFAULT_AAC_MODE
    }
}

impl AacMode {
    /// Checks the value against [`AAC_VBR_RANGE`] / [`AAC_CBR_RANGE`].
    pub fn validate(&self) -> Result<(), EncodeError> {
        match *self {
            AacMode::Vbr { quality } if !AAC_VBR_RANGE.contains(&quality) => {
                Err(EncodeError::InvalidConfig(format!(
                    "aac vbr quality {quality} is outside {}..={}",
                    AAC_VBR_RANGE.start(),
                    AAC_VBR_RANGE.end()
                )))
            }
            AacMode::Cbr { bitrate_bps } if !AAC_CBR_RANGE.contains(&bitrate_bps) => {
                Err(EncodeError::InvalidConfig(format!(
                    "aac cbr bitrate {bitrate_bps} is outside {}..={}",
                    AAC_CBR_RANGE.start(),
                    AAC_CBR_RANGE.end()
                )))
            }
            _ => Ok(()),
        }
    }
}

/// What the audio track of a segment carries; see
/// [`StreamEncoder::start_segment_with_audio`](crate::StreamEncoder::start_segment_with_audio).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentAudio {
    /// Silent AAC exactly as long as the video (rounded up to whole AAC frames). Known up front,
    /// so every fragment carries its video and the matching silence together.
    Silence,
    /// PCM that the caller hands over with
    /// [`StreamEncoder::push_audio`](crate::StreamEncoder::push_audio), at any point before
    /// `finish_segment` (typically when the generator returns). Fragments before that carry
    /// only video; the audio then goes out at once for the video already sent and with every
    /// later fragment. Fitted to the video's length: padded with silence or cut.
    Pcm,
}

/// A whole [`fv_core::AudioTrack`] coded as AAC-LC 48 kHz stereo, outside any segment (for
/// benchmarks and tools; segments use [`StreamEncoder::push_audio`](crate::StreamEncoder::push_audio)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedAudio {
    /// The AudioSpecificConfig (`11 90`).
    pub asc: Vec<u8>,
    /// Encoder delay in samples per channel: decoded sample `priming + n` is input sample `n`.
    pub priming: u32,
    /// Raw access units, 1024 samples each, enough to cover the whole input after `priming`.
    pub frames: Vec<Vec<u8>>,
}

/// Resamples `track` to 48 kHz stereo and codes it with a fresh encoder in `mode`.
pub fn encode_audio(
    track: &fv_core::AudioTrack,
    mode: AacMode,
) -> Result<EncodedAudio, EncodeError> {
    let pcm = crate::resample::to_aac_layout(track)?;
    let mut encoder = crate::aac::AacEncoder::new(mode)?;
    let samples = (pcm.len() / usize::from(AAC_CHANNELS)) as u64;
    let frames = crate::stream_audio::frames_for(samples, encoder.delay());
    let frames =
        usize::try_from(frames).map_err(|_| EncodeError::AudioInput("audio too long".into()))?;
    Ok(EncodedAudio {
        asc: encoder.asc().to_vec(),
        priming: encoder.delay(),
        frames: encoder.encode_clip(&pcm, frames)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aac_modes_are_checked_against_their_ranges() {
        for quality in AAC_VBR_RANGE {
            assert_eq!(AacMode::Vbr { quality }.validate(), Ok(()));
        }
        for quality in [0, 6] {
            let err = AacMode::Vbr { quality }
                .validate()
                .expect_err("out of range");
            assert!(err.to_string().contains("vbr quality"), "{err}");
        }
        for bitrate_bps in [*AAC_CBR_RANGE.start(), *AAC_CBR_RANGE.end()] {
            assert_eq!(AacMode::Cbr { bitrate_bps }.validate(), Ok(()));
        }
        for bitrate_bps in [31_999, 320_001] {
            let err = AacMode::Cbr { bitrate_bps }
                .validate()
                .expect_err("out of range");
            assert!(err.to_string().contains("cbr bitrate"), "{err}");
        }
        let cfg = crate::EncoderConfig {
            audio: AacMode::Vbr { quality: 9 },
            ..crate::EncoderConfig::new(64, 64, 24)
        };
        assert!(matches!(cfg.validate(), Err(EncodeError::InvalidConfig(_))));
    }

    #[test]
    fn encode_audio_covers_the_track_after_the_priming() {
        let track = fv_core::AudioTrack {
            sample_rate: 24_000,
            channels: 1,
            samples: vec![0.1; 24_000],
        };
        let coded = encode_audio(&track, AacMode::default()).expect("encode");
        assert_eq!(coded.asc, [0x11, 0x90]);
        // 48 000 samples after resampling + 2048 priming -> 49 frames.
        assert_eq!(coded.priming, 2048);
        assert_eq!(coded.frames.len(), 49);
    }
}
