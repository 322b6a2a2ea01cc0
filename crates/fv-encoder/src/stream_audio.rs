//! A segment's audio track inside [`StreamEncoder`](crate::StreamEncoder): which AAC frames
//! exist, which went out, and how many the video sent so far calls for.

use crate::aac::{AacEncoder, silent_frame};
use crate::audio::{AAC_FRAME_SAMPLES, AAC_SAMPLE_RATE, AacMode, SegmentAudio};
use crate::mux::Sample;
use crate::mux_audio::AudioInit;
use crate::{EncodeError, resample};

/// AudioSpecificConfig of every track we write: AAC-LC (2), 48 kHz (index 3), 2 channels.
pub(crate) const ASC_LC_48K_STEREO: [u8; 2] = [0x11, 0x90];

/// The audio half of an open segment.
#[derive(Debug)]
pub(crate) struct AudioState {
    kind: SegmentAudio,
    /// Opened at segment start for [`SegmentAudio::Pcm`]: its delay goes into the init's edit
    /// list, which is written before the PCM arrives.
    encoder: Option<AacEncoder>,
    /// Samples at 48 kHz before presentation starts (the edit list's media time).
    priming: u32,
    /// Encoded frames of the whole track once the PCM arrived ([`SegmentAudio::Pcm`]).
    frames: Option<Vec<Vec<u8>>>,
    /// Frames already written into fragments.
    emitted: u64,
}

impl AudioState {
    pub fn new(kind: SegmentAudio, mode: AacMode) -> Result<Self, EncodeError> {
        let encoder = match kind {
            SegmentAudio::Pcm => Some(AacEncoder::new(mode)?),
            // Fail at segment start, not halfway through it, if silence cannot be made.
            SegmentAudio::Silence => {
                silent_frame()?;
                None
            }
        };
        let priming = encoder.as_ref().map_or(0, AacEncoder::delay);
        Ok(Self {
            kind,
            encoder,
            priming,
            frames: None,
            emitted: 0,
        })
    }

    /// What the init segment says about this track.
    pub fn init(&self, mode: AacMode) -> AudioInit {
        let asc = self
            .encoder
            .as_ref()
            .map_or(ASC_LC_48K_STEREO.to_vec(), |e| e.asc().to_vec());
        AudioInit {
            asc,
            priming: self.priming,
            avg_bitrate: match (self.kind, mode) {
                (SegmentAudio::Pcm, AacMode::Cbr { bitrate_bps }) => bitrate_bps,
                _ => 0,
            },
        }
    }

    /// Frames written so far, as the audio track's decode time in 48 kHz ticks.
    pub fn decode_time(&self) -> u64 {
        self.emitted * u64::from(AAC_FRAME_SAMPLES)
    }

    /// Resamples and encodes the segment's PCM. Only for [`SegmentAudio::Pcm`], once.
    pub fn set_pcm(&mut self, track: &fv_core::AudioTrack) -> Result<(), EncodeError> {
        if self.kind != SegmentAudio::Pcm {
            return Err(EncodeError::AudioState(format!(
                "this segment's audio is {:?}; push_audio needs SegmentAudio::Pcm",
                self.kind
            )));
        }
        if self.frames.is_some() {
            return Err(EncodeError::AudioState(
                "push_audio was already called for this segment".into(),
            ));
        }
        let pcm = resample::to_aac_layout(track)?;
        let encoder = self
            .encoder
            .as_mut()
            .ok_or_else(|| EncodeError::AudioState("no AAC encoder for this segment".into()))?;
        let samples = (pcm.len() / 2) as u64;
        let frames = usize::try_from(frames_for(samples, self.priming))
            .map_err(|_| EncodeError::AudioInput("audio too long".into()))?;
        self.frames = Some(encoder.encode_clip(&pcm, frames)?);
        Ok(())
    }

    /// The frames not yet written that the video up to `video_ticks` (of `video_timescale`)
    /// calls for: all frames whose presentation starts before the video's end. `None` while
    /// PCM is still awaited, unless `last` (then the track is fitted: missing PCM becomes
    /// silence, surplus is cut).
    pub fn take_until(
        &mut self,
        video_ticks: u64,
        video_timescale: u32,
        last: bool,
    ) -> Result<Vec<Sample>, EncodeError> {
        let samples = (u128::from(video_ticks) * u128::from(AAC_SAMPLE_RATE))
            .div_ceil(u128::from(video_timescale.max(1)));
        let want = frames_for(u64::try_from(samples).unwrap_or(u64::MAX), self.priming);
        let from = self.emitted;
        let to = match (&self.frames, self.kind) {
            (Some(frames), _) if !last => want.min(frames.len() as u64),
            (None, SegmentAudio::Pcm) if !last => from,
            _ => want,
        };
        if to <= from {
            return Ok(Vec::new());
        }
        let silent = silent_frame()?;
        let mut out = Vec::with_capacity((to - from) as usize);
        for i in from..to {
            let data = self
                .frames
                .as_ref()
                .and_then(|f| f.get(i as usize))
                .map_or_else(|| silent.to_vec(), Clone::clone);
            out.push(Sample {
                data,
                is_sync: true,
            });
        }
        self.emitted = to;
        Ok(out)
    }
}

/// AAC frames whose decoded output covers `samples` samples after `priming` samples of
/// encoder delay.
pub(crate) fn frames_for(samples: u64, priming: u32) -> u64 {
    (samples + u64::from(priming)).div_ceil(u64::from(AAC_FRAME_SAMPLES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_counts_cover_the_video() {
        // 121 frames at 24 fps (90 kHz ticks) = 242_000 samples -> 237 frames (242_688).
        assert_eq!(frames_for(242_000, 0), 237);
        assert_eq!(frames_for(242_000, 2048), 239);
        assert_eq!(frames_for(1024, 0), 1);
        assert_eq!(frames_for(1025, 0), 2);
        assert_eq!(frames_for(0, 0), 0);
    }

    #[test]
    fn fdk_reports_the_asc_silent_tracks_use() {
        let enc = AacEncoder::new(AacMode::default()).expect("open");
        assert_eq!(enc.asc(), ASC_LC_48K_STEREO);
    }
}
