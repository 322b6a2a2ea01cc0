//! The FDK AAC side: 48 kHz stereo f32 PCM -> raw AAC-LC access units, plus the one silent
//! frame that silent tracks repeat.

use crate::EncodeError;
use crate::audio::{AAC_CHANNELS, AAC_FRAME_SAMPLES, AAC_SAMPLE_RATE, AacMode};
use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};
use std::sync::OnceLock;

/// Interleaved samples in one stereo AAC frame.
const FRAME_VALUES: usize = AAC_FRAME_SAMPLES as usize * AAC_CHANNELS as usize;

/// One FDK encoder, used for one segment: every segment starts from a fresh encoder state so
/// its audio decodes on its own (opening one costs 20–100 µs).
pub(crate) struct AacEncoder {
    encoder: Encoder,
    /// Codec delay in samples per channel: decoded output sample `n + delay` is input sample `n`.
    delay: u32,
    /// The AudioSpecificConfig the encoder reports (`11 90`: AAC-LC, 48 kHz, 2 channels).
    asc: Vec<u8>,
    out: Vec<u8>,
}

impl std::fmt::Debug for AacEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AacEncoder")
            .field("delay", &self.delay)
            .field("asc", &self.asc)
            .finish_non_exhaustive()
    }
}

fn fdk_err(what: &str, e: impl std::fmt::Display) -> EncodeError {
    EncodeError::AacEncoder(format!("{what}: {e}"))
}

impl AacEncoder {
    /// An AAC-LC 48 kHz stereo encoder writing raw access units (no ADTS headers).
    pub fn new(mode: AacMode) -> Result<Self, EncodeError> {
        mode.validate()?;
        let bit_rate = match mode {
            AacMode::Cbr { bitrate_bps } => BitRate::Cbr(bitrate_bps),
            AacMode::Vbr { quality: 1 } => BitRate::VbrVeryLow,
            AacMode::Vbr { quality: 2 } => BitRate::VbrLow,
            AacMode::Vbr { quality: 3 } => BitRate::VbrMedium,
            AacMode::Vbr { quality: 4 } => BitRate::VbrHigh,
            AacMode::Vbr { .. } => BitRate::VbrVeryHigh,
        };
        let encoder = Encoder::new(EncoderParams {
            bit_rate,
            sample_rate: AAC_SAMPLE_RATE,
            transport: Transport::Raw,
            channels: ChannelMode::Stereo,
            audio_object_type: AudioObjectType::Mpeg4LowComplexity,
        })
        .map_err(|e| fdk_err("open", e))?;
        let info = encoder.info().map_err(|e| fdk_err("info", e))?;
        if info.frameLength != AAC_FRAME_SAMPLES {
            return Err(EncodeError::AacEncoder(format!(
                "frame length {} (expected {AAC_FRAME_SAMPLES})",
                info.frameLength
            )));
        }
        let conf_len = (info.confSize as usize).min(info.confBuf.len());
        let asc = info.confBuf[..conf_len].to_vec();
        Ok(Self {
            encoder,
            delay: info.nDelay,
            asc,
            out: vec![0; (info.maxOutBufBytes as usize).max(2048)],
        })
    }

    /// Codec delay (priming) in samples per channel.
    pub fn delay(&self) -> u32 {
        self.delay
    }

    /// The AudioSpecificConfig for the `esds`.
    pub fn asc(&self) -> &[u8] {
        &self.asc
    }

    /// Encodes a whole clip of interleaved stereo 48 kHz samples (values in [-1, 1]) and
    /// returns exactly `frames` access units: the clip, then zeros, so that the last frame's
    /// decoded output reaches past the clip's end once [`delay`](Self::delay) is skipped.
    pub fn encode_clip(&mut self, pcm: &[f32], frames: usize) -> Result<Vec<Vec<u8>>, EncodeError> {
        let mut units = Vec::with_capacity(frames);
        let mut input = vec![0i16; FRAME_VALUES];
        let mut pos = 0usize;
        // FDK consumes one frame of input per call and emits one access unit per call from
        // the first call on (its delay is internal); the bound catches a library that stops
        // producing.
        let max_calls = frames * 2 + 8;
        for _ in 0..max_calls {
            if units.len() >= frames {
                return Ok(units);
            }
            let end = (pos + FRAME_VALUES).min(pcm.len());
            let chunk = pcm.get(pos..end).unwrap_or_default();
            for (dst, &src) in input.iter_mut().zip(chunk) {
                *dst = to_i16(src);
            }
            input[chunk.len()..].fill(0);
            let r = self
                .encoder
                .encode(&input, &mut self.out)
                .map_err(|e| fdk_err("encode", e))?;
            if r.input_consumed < input.len() {
                // FDK buffers internally and always takes a whole frame here; anything else
                // would shift the timeline.
                return Err(EncodeError::AacEncoder(format!(
                    "encoder took {} of {} input samples",
                    r.input_consumed,
                    input.len()
                )));
            }
            pos = end;
            if r.output_size > 0 {
                let unit = self.out.get(..r.output_size).ok_or_else(|| {
                    EncodeError::AacEncoder(format!("frame of {} bytes", r.output_size))
                })?;
                units.push(unit.to_vec());
            }
        }
        Err(EncodeError::AacEncoder(format!(
            "encoder produced {} of {frames} frames in {max_calls} calls",
            units.len()
        )))
    }
}

/// f32 in [-1, 1] -> 16-bit PCM, the input FDK takes. Out-of-range values are clipped.
fn to_i16(x: f32) -> i16 {
    (x.clamp(-1.0, 1.0) * 32767.0).round() as i16
}

/// One AAC-LC 48 kHz stereo access unit that decodes to 1024 samples of digital silence, and
/// can be repeated any number of times: AAC-LC frames carry no inter-frame prediction, and a
/// frame with no spectral data overlaps with its silent neighbours to zero.
///
/// Made once per process by encoding zeros with FDK in VBR mode (8 bytes; CBR would pad every
/// frame with fill bits to the bitrate) and taking a frame past the encoder's start-up, checked
/// to repeat bit for bit. Repeating it costs a copy per frame instead of an MDCT, psychoacoustic
/// model and quantisation loop (`cargo xbench aac` prints both).
pub fn silent_frame() -> Result<&'static [u8], EncodeError> {
    static FRAME: OnceLock<Result<Vec<u8>, EncodeError>> = OnceLock::new();
    FRAME
        .get_or_init(|| {
            let mut encoder = AacEncoder::new(AacMode::Vbr { quality: 1 })?;
            let zeros = vec![0.0f32; 8 * FRAME_VALUES];
            let units = encoder.encode_clip(&zeros, 8)?;
            // The encoder settles after its delay; the last frames must agree.
            let [.., a, b, c] = units.as_slice() else {
                return Err(EncodeError::AacEncoder("no silent frames".into()));
            };
            if a != b || b != c {
                return Err(EncodeError::AacEncoder(
                    "silent frames do not repeat; cannot make a silent track".into(),
                ));
            }
            Ok(c.clone())
        })
        .as_ref()
        .map(Vec::as_slice)
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_reports_lc_48k_stereo_and_whole_frame_delay() {
        let enc = AacEncoder::new(AacMode::default()).expect("open");
        // AAC-LC (2), 48 kHz (index 3), 2 channels.
        assert_eq!(enc.asc(), [0x11, 0x90]);
        assert_eq!(enc.delay() % AAC_FRAME_SAMPLES, 0, "delay {}", enc.delay());
        assert!(enc.delay() > 0);
    }

    #[test]
    fn encode_clip_returns_exactly_the_frames_asked_for() {
        let mut enc = AacEncoder::new(AacMode::Cbr {
            bitrate_bps: 96_000,
        })
        .expect("open");
        let pcm: Vec<f32> = (0..5000 * 2)
            .map(|i| ((i / 2) as f32 * 0.05).sin() * 0.5)
            .collect();
        let units = enc.encode_clip(&pcm, 7).expect("encode");
        assert_eq!(units.len(), 7);
        assert!(units.iter().all(|u| !u.is_empty()));
        assert_eq!(
            enc.encode_clip(&[], 0).expect("empty"),
            Vec::<Vec<u8>>::new()
        );
    }

    #[test]
    fn silent_frame_is_small_and_stable() {
        let a = silent_frame().expect("silent frame");
        let b = silent_frame().expect("silent frame");
        assert!(std::ptr::eq(a, b), "made once");
        assert!(!a.is_empty() && a.len() <= 16, "{} bytes", a.len());
    }
}
