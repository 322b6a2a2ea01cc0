//! H.264 encoding and fragmented-MP4 muxing for the stream server.
//!
//! [`fv_core::Frame`]s go in (RGB24 or I420); out come [`Chunk`]s ready to send as WebSocket
//! binary frames: per segment one init chunk (`ftyp`+`moov`) and then `moof`+`mdat` fragments
//! of [`EncoderConfig::fragment_frames`] frames each. Every chunk is box-aligned, so a client
//! can `appendBuffer` each one as it arrives.
//!
//! * Encoder: openh264 built from source (BSD-2), Constrained Baseline (CAVLC),
//!   `Complexity::Low`, one thread, bitrate rate control that never skips frames with a
//!   quantiser floor ([`EncoderConfig::min_qp`]), IDRs at segment start and every
//!   [`EncoderConfig::idr_interval`] frames. openh264's scene-change, background and
//!   adaptive-quantisation passes are off (slower, and no better on generated content).
//!   openh264 prints one warning line to stderr per encoder ("bitrate can't be controlled ...
//!   without enabling skip frame"): expected, frames are never skipped on purpose.
//! * Input: RGB24 frames are converted with openh264's `YUVBuffer::read_rgb8`; I420 frames
//!   ([`fv_core::Frame::from_i420`]) go to openh264 as they are, with no conversion or copy.
//!   Planes made with [`fv_core::rgb_to_i420`]'s arithmetic (bit-identical to `read_rgb8`) give
//!   exactly the bytes the RGB24 frame would, and a segment may mix both formats. A frame of
//!   another size than configured is an [`EncodeError::FrameSize`] in either format.
//! * Muxer: our own writer on mp4-atom boxes ([`StreamEncoder`] docs list the layout).
//! * The MSE mime comes from the real SPS ([`codec_string`]), e.g.
//!   `video/mp4; codecs="avc1.42c01f"`.
//! * **Audio** (optional, per segment): AAC-LC 48 kHz stereo from the Fraunhofer FDK AAC
//!   encoder (crate `fdk-aac`, built from bundled source; licence in the crate README), input
//!   of any accepted rate resampled with rubato. A segment opened with
//!   [`StreamEncoder::start_segment_with_audio`] has a second track (`mp4a`, `esds`) in its init
//!   and `mp4a.40.2` in its mime; [`SegmentAudio::Silence`] repeats one pre-encoded silent frame
//!   ([`silent_frame`]). Segments opened with [`StreamEncoder::start_segment`] are video only,
//!   byte for byte as before, and their mime never lists `mp4a` (Chromium rejects a codecs
//!   list naming a track the init does not have).
//!
//! ```
//! use fv_encoder::{ChunkKind, EncoderConfig, StreamEncoder};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut encoder = StreamEncoder::new(EncoderConfig::new(64, 64, 24))?;
//! let mut segment = encoder.begin_segment();
//! let frame = fv_core::Frame::from_rgb(64, 64, vec![128; 64 * 64 * 3])?;
//! let chunks = segment.push(&frame)?;
//! assert_eq!(chunks[0].kind, ChunkKind::Init);
//! assert_eq!(segment.mime().as_deref(), Some("video/mp4; codecs=\"avc1.42c015\""));
//! let last = segment.finish()?;
//! assert_eq!((last[0].kind, last[0].frames), (ChunkKind::Fragment, 1));
//! # Ok(()) }
//! ```

mod aac;
mod audio;
mod config;
mod h264;
pub mod inspect;
mod inspect_audio;
mod mux;
mod mux_audio;
mod resample;
mod stream;
mod stream_audio;
pub mod testing;

pub use aac::silent_frame;
pub use audio::{
    AAC_CBR_RANGE, AAC_CHANNELS, AAC_FRAME_SAMPLES, AAC_SAMPLE_RATE, AAC_VBR_RANGE,
    AUDIO_INPUT_CHANNELS, AUDIO_INPUT_RATE_RANGE, AacMode, DEFAULT_AAC_MODE, EncodedAudio,
    MAX_AUDIO_SECONDS, SegmentAudio, encode_audio,
};
pub use config::{
    BITRATE_RANGE, DEFAULT_BITRATE_BPS, DEFAULT_FRAGMENT_FRAMES, DEFAULT_MIN_QP, EncoderConfig,
    FPS_RANGE, FRAGMENT_FRAMES_RANGE, MAX_IDR_INTERVAL, MAX_LONG_SIDE, MAX_QP, MAX_SHORT_SIDE,
    MIN_DIMENSION,
};
pub use stream::{AAC_CODEC, SegmentEncoder, StreamEncoder};

use bytes::Bytes;

/// What a [`Chunk`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkKind {
    /// `ftyp` + `moov`: the first chunk of every segment.
    Init,
    /// `moof` + `mdat`: [`Chunk::frames`] coded frames, and the audio that covers them when
    /// the segment has an audio track.
    Fragment,
}

/// A box-aligned piece of a segment's fMP4 byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Init (`ftyp`+`moov`) or fragment (`moof`+`mdat`).
    pub kind: ChunkKind,
    /// The bytes to send; cheap to clone.
    pub data: Bytes,
    /// Video frames in this chunk: 0 for [`ChunkKind::Init`] and for an audio-only fragment
    /// (see [`StreamEncoder::push_audio`]).
    pub frames: u32,
}

/// Everything that can go wrong in this crate.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Width or height is odd; H.264 4:2:0 needs even sizes and this encoder neither pads nor crops.
    #[error("frame size {width}x{height} is odd; width and height must both be even")]
    OddDimensions {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
    },
    /// Width or height outside 16..=3840 (long side) / 16..=2160 (short side).
    #[error(
        "frame size {width}x{height} is out of range: each side must be at least {MIN_DIMENSION}, \
         the long side at most {MAX_LONG_SIDE} and the short side at most {MAX_SHORT_SIDE}"
    )]
    DimensionsOutOfRange {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
    },
    /// Another config field is out of its range; the message names it.
    #[error("invalid encoder config: {0}")]
    InvalidConfig(String),
    /// A pushed frame does not have the configured size.
    #[error(
        "frame is {width}x{height}, the encoder is configured for {expected_width}x{expected_height}"
    )]
    FrameSize {
        /// Configured width.
        expected_width: u32,
        /// Configured height.
        expected_height: u32,
        /// Width of the pushed frame.
        width: u32,
        /// Height of the pushed frame.
        height: u32,
    },
    /// `push` or `finish_segment` without an open segment.
    #[error("no segment is open; call start_segment first")]
    NoSegment,
    /// An SPS passed to [`codec_string`] is malformed.
    #[error("invalid SPS: {0}")]
    InvalidSps(String),
    /// openh264 reported an error.
    #[error("openh264: {0}")]
    Encoder(String),
    /// openh264 produced a bitstream we cannot mux.
    #[error("unexpected H.264 bitstream: {0}")]
    Bitstream(String),
    /// Writing MP4 boxes failed.
    #[error("mp4 mux: {0}")]
    Mux(String),
    /// [`inspect`] found a box whose size does not fit its parent.
    #[error("malformed MP4 box: {0}")]
    MalformedBox(String),
    /// An [`fv_core::AudioTrack`] is outside the accepted limits (rate, channels, length,
    /// non-finite samples); the message names the limit.
    #[error("invalid audio: {0}")]
    AudioInput(String),
    /// An audio call does not fit the segment (no audio track, PCM given twice, ...).
    #[error("audio: {0}")]
    AudioState(String),
    /// The FDK AAC encoder (or decoder, in [`inspect`]) reported an error.
    #[error("aac: {0}")]
    AacEncoder(String),
}

/// The RFC 6381 codec string of an H.264 SPS NAL unit (no start code, first byte the NAL
/// header): `avc1.` + lowercase hex of `profile_idc`, the constraint-flags byte and
/// `level_idc`, e.g. `avc1.42c01f` (Constrained Baseline, level 3.1).
pub fn codec_string(sps: &[u8]) -> Result<String, EncodeError> {
    let [header, profile, constraints, level, ..] = *sps else {
        return Err(EncodeError::InvalidSps(format!(
            "{} bytes, need at least 4",
            sps.len()
        )));
    };
    if header & 0x1f != h264::NAL_SPS {
        return Err(EncodeError::InvalidSps(format!(
            "NAL type {} is not an SPS (7); pass the NAL unit without its start code",
            header & 0x1f
        )));
    }
    if header & 0x80 != 0 {
        return Err(EncodeError::InvalidSps("forbidden_zero_bit is set".into()));
    }
    Ok(format!("avc1.{profile:02x}{constraints:02x}{level:02x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_string_reads_profile_constraints_level() {
        assert_eq!(
            codec_string(&[0x67, 0x42, 0xc0, 0x1f, 0xda]).as_deref(),
            Ok("avc1.42c01f")
        );
        assert_eq!(
            codec_string(&[0x27, 0x64, 0x00, 0x28]).as_deref(),
            Ok("avc1.640028")
        );
        assert!(matches!(
            codec_string(&[0x67, 0x42]),
            Err(EncodeError::InvalidSps(_))
        ));
        assert!(matches!(
            codec_string(&[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f]),
            Err(EncodeError::InvalidSps(m)) if m.contains("start code")
        ));
        assert!(matches!(
            codec_string(&[0x68, 0xce, 0x3c, 0x80]),
            Err(EncodeError::InvalidSps(_))
        ));
        assert!(matches!(
            codec_string(&[0xe7, 0x42, 0xc0, 0x1f]),
            Err(EncodeError::InvalidSps(_))
        ));
    }

    #[test]
    fn stream_encoder_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<StreamEncoder>();
        assert_send::<Chunk>();
    }
}
