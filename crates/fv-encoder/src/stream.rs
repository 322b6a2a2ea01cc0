//! [`StreamEncoder`]: one encoder per session, turning frames (and optional audio) into
//! self-contained fMP4 segments, chunk by chunk as frames arrive.

use crate::h264::H264Encoder;
use crate::mux::{self, Run, Sample};
use crate::mux_audio::AUDIO_TRACK_ID;
use crate::stream_audio::AudioState;
use crate::{Chunk, ChunkKind, EncodeError, EncoderConfig, SegmentAudio, codec_string};
use bytes::Bytes;

/// RFC 6381 codec string of the AAC-LC track.
pub const AAC_CODEC: &str = "mp4a.40.2";

/// A session's H.264 + fMP4 encoder, reused for every segment of that session.
///
/// Each segment is a self-contained fMP4 stream: its own init chunk (`ftyp`+`moov`), decode
/// times restarting at 0, fragment sequence numbers restarting at 1, and an IDR first frame.
/// Reusing one `StreamEncoder` across segments keeps the openh264 instance (and its rate
/// control) alive instead of rebuilding it per segment.
///
/// Blocking and CPU-bound (about 2.6 ms per 1024x576 frame on one core): call it from a
/// dedicated thread or `spawn_blocking`, never on an async runtime thread. It is `Send`, so it
/// can move between such threads.
///
/// Two ways to drive it:
/// * borrowed: [`begin_segment`](Self::begin_segment) returns a [`SegmentEncoder`] that
///   finishes the segment when you call [`SegmentEncoder::finish`];
/// * owned (e.g. across several `spawn_blocking` calls): [`start_segment`](Self::start_segment),
///   then [`push`](Self::push) frames, then [`finish_segment`](Self::finish_segment).
///
/// Audio: a segment opened with [`start_segment`](Self::start_segment) is video only, byte for
/// byte what this encoder wrote before it knew audio. One opened with
/// [`start_segment_with_audio`](Self::start_segment_with_audio) gets a second track (AAC-LC,
/// 48 kHz stereo, `mp4a.40.2`) in its init and its audio in the fragments; see that method.
#[derive(Debug)]
pub struct StreamEncoder {
    config: EncoderConfig,
    h264: H264Encoder,
    segment: Option<SegmentState>,
    /// Codec string of the latest init chunk.
    codec: Option<String>,
}

/// Bookkeeping of the open segment.
#[derive(Debug)]
struct SegmentState {
    /// Frames encoded so far in this segment.
    frames: u64,
    /// SPS/PPS of this segment's init chunk, once written.
    params: Option<(Vec<u8>, Vec<u8>)>,
    /// Encoded frames not yet written out as a fragment.
    pending: Vec<Sample>,
    /// Decode time (in timescale ticks) of the first pending sample.
    pending_start: u64,
    /// `mfhd` sequence number of the next fragment.
    next_sequence: u32,
    /// The audio track, if this segment has one.
    audio: Option<AudioState>,
}

impl StreamEncoder {
    /// Validates `config` and creates the openh264 encoder. No segment is open yet.
    pub fn new(config: EncoderConfig) -> Result<Self, EncodeError> {
        config.validate()?;
        let h264 = H264Encoder::new(&config)?;
        Ok(Self {
            config,
            h264,
            segment: None,
            codec: None,
        })
    }

    /// The validated config.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Opens a new segment: the next frame becomes an IDR, the next chunk an init chunk,
    /// decode time restarts at 0.
    ///
    /// A segment still open is abandoned: frames it buffered but had not yet returned as a
    /// fragment are dropped (that is what a cancelled segment needs). Call
    /// [`finish_segment`](Self::finish_segment) first to keep them.
    pub fn start_segment(&mut self) {
        self.open_segment(None);
    }

    /// Like [`start_segment`](Self::start_segment), with an AAC-LC 48 kHz stereo track beside
    /// the video: the init chunk has both tracks, [`mime`](Self::mime) lists
    /// `mp4a.40.2`, and the audio is as long as the video (to within one AAC frame, never
    /// shorter), both starting at 0.
    ///
    /// * [`SegmentAudio::Silence`]: every fragment carries its frames and the silence that
    ///   covers them, in one `moof` with a `traf` per track.
    /// * [`SegmentAudio::Pcm`]: give the PCM with [`push_audio`](Self::push_audio) whenever it
    ///   is ready. Video fragments never wait for it: until then they carry only video (a
    ///   `moof` with one `traf`); `push_audio` returns at once an audio-only fragment for the
    ///   video already sent, and later fragments carry both. A player can start the segment
    ///   only once its audio is there, so audio that arrives at the end of generation delays
    ///   the segment's start by that much, but no video byte waits for it. If no PCM has
    ///   arrived by [`finish_segment`](Self::finish_segment), the track is silent.
    ///
    /// The encoder's start-up delay (FDK: 2048 samples) is hidden by an edit list
    /// (`elst` media time = the delay), the standard MP4 way: players that honour it (ffmpeg,
    /// Chromium) present audio sample 0 with video frame 0. Silence needs none.
    ///
    /// Errors: [`EncodeError::AacEncoder`] if the AAC encoder cannot be opened; the previous
    /// segment is abandoned either way and none is open after an error.
    pub fn start_segment_with_audio(&mut self, audio: SegmentAudio) -> Result<(), EncodeError> {
        self.segment = None;
        let state = AudioState::new(audio, self.config.audio)?;
        self.open_segment(Some(state));
        Ok(())
    }

    fn open_segment(&mut self, audio: Option<AudioState>) {
        self.h264.force_idr();
        self.codec = None;
        self.segment = Some(SegmentState {
            frames: 0,
            params: None,
            pending: Vec::with_capacity(self.config.fragment_frames as usize),
            pending_start: 0,
            next_sequence: 1,
            audio,
        });
    }

    /// Hands over the PCM of a segment opened with [`SegmentAudio::Pcm`] (any accepted rate,
    /// mono or stereo; see [`crate::AUDIO_INPUT_RATE_RANGE`]). It is resampled to 48 kHz stereo
    /// and encoded now; the returned chunk (if any) is an audio-only fragment covering the
    /// video fragments already returned. Audio longer than the video is cut at the end,
    /// shorter is padded with silence, when the segment finishes.
    ///
    /// Errors: [`EncodeError::NoSegment`], [`EncodeError::AudioState`] (segment without a
    /// PCM track, or PCM already given), [`EncodeError::AudioInput`] (limits, non-finite
    /// samples), encoder/mux failures. After an `AudioInput` error the segment stays usable
    /// and may get `push_audio` again.
    pub fn push_audio(&mut self, track: &fv_core::AudioTrack) -> Result<Vec<Chunk>, EncodeError> {
        let Some(segment) = self.segment.as_mut() else {
            return Err(EncodeError::NoSegment);
        };
        let Some(audio) = segment.audio.as_mut() else {
            return Err(EncodeError::AudioState(
                "this segment has no audio track; open it with start_segment_with_audio".into(),
            ));
        };
        audio.set_pcm(track)?;
        // Before the init chunk nothing may go out; the first fragment will carry the audio.
        if segment.params.is_none() || segment.pending_start == 0 {
            return Ok(Vec::new());
        }
        Ok(flush_audio_only(segment, &self.config)?
            .into_iter()
            .collect())
    }

    /// [`start_segment`](Self::start_segment) and a handle that pushes into that segment.
    pub fn begin_segment(&mut self) -> SegmentEncoder<'_> {
        self.start_segment();
        SegmentEncoder { stream: self }
    }

    /// [`start_segment_with_audio`](Self::start_segment_with_audio) and a handle for it.
    pub fn begin_segment_with_audio(
        &mut self,
        audio: SegmentAudio,
    ) -> Result<SegmentEncoder<'_>, EncodeError> {
        self.start_segment_with_audio(audio)?;
        Ok(SegmentEncoder { stream: self })
    }

    /// Whether a segment is open (started and not yet finished).
    pub fn segment_open(&self) -> bool {
        self.segment.is_some()
    }

    /// Encodes one frame into the open segment and returns the chunks that became ready: the
    /// init chunk after the segment's first frame, and a fragment chunk after every
    /// [`EncoderConfig::fragment_frames`] frames. Often empty.
    ///
    /// Errors: [`EncodeError::NoSegment`] without an open segment, [`EncodeError::FrameSize`] if
    /// the frame is not the configured size (the segment stays usable), encoder/mux failures.
    pub fn push(&mut self, frame: &fv_core::Frame) -> Result<Vec<Chunk>, EncodeError> {
        let Some(segment) = self.segment.as_mut() else {
            return Err(EncodeError::NoSegment);
        };
        let idr_interval = u64::from(self.config.idr_interval);
        if segment.frames > 0 && idr_interval > 0 && segment.frames % idr_interval == 0 {
            self.h264.force_idr();
        }
        let encoded = self.h264.encode(frame)?;
        let mut chunks = Vec::new();

        match &segment.params {
            None => {
                let (Some(sps), Some(pps), true) = (encoded.sps, encoded.pps, encoded.is_idr)
                else {
                    // Let the next push try again to open the segment with an IDR.
                    self.h264.force_idr();
                    return Err(EncodeError::Bitstream(
                        "the first frame of a segment is not an IDR with SPS and PPS".into(),
                    ));
                };
                let mut codec = codec_string(&sps)?;
                let audio_init = segment.audio.as_ref().map(|a| a.init(self.config.audio));
                let init = mux::init_segment(&self.config, &sps, &pps, audio_init.as_ref())?;
                if audio_init.is_some() {
                    codec = format!("{codec}, {AAC_CODEC}");
                }

                chunks.push(Chunk {
                    kind: ChunkKind::Init,
                    data: Bytes::from(init),
                    frames: 0,
                });
                self.codec = Some(codec);
                segment.params = Some((sps, pps));
            }
            Some((sps, pps)) => {
                // Samples carry no parameter sets (they live in avcC), so a change would make
                // later frames undecodable. openh264 repeats identical ones with a fixed config.
                let changed = encoded.sps.as_ref().is_some_and(|s| s != sps)
                    || encoded.pps.as_ref().is_some_and(|p| p != pps);
                if changed {
                    return Err(EncodeError::Bitstream(
                        "SPS/PPS changed inside a segment".into(),
                    ));
                }
            }
        }

        segment.frames += 1;
        segment.pending.push(Sample {
            data: encoded.sample,
            is_sync: encoded.is_idr,
        });
        if segment.pending.len() >= self.config.fragment_frames as usize {
            chunks.push(flush_with(segment, &self.config, false)?);
        }
        Ok(chunks)
    }

    /// Closes the open segment, returning the last, partial fragment if frames are pending.
    /// A segment that got no frames produces nothing (not even an init chunk).
    /// Without an open segment this returns [`EncodeError::NoSegment`].
    pub fn finish_segment(&mut self) -> Result<Vec<Chunk>, EncodeError> {
        let Some(mut segment) = self.segment.take() else {
            return Err(EncodeError::NoSegment);
        };
        if segment.params.is_none() {
            // No frame, no init: nothing to finish.
            return Ok(Vec::new());
        }
        if segment.pending.is_empty() {
            return Ok(flush_audio_only_last(&mut segment, &self.config)?
                .into_iter()
                .collect());
        }
        Ok(vec![flush_with(&mut segment, &self.config, true)?])
    }

    /// The MSE type of the current (or last finished) segment, e.g.
    /// `video/mp4; codecs="avc1.42c01f"`, built from that segment's SPS, or
    /// `video/mp4; codecs="avc1.42c01f, mp4a.40.2"` when it has an audio track. `None` from
    /// the segment's start until its init chunk was returned.
    pub fn mime(&self) -> Option<String> {
        self.codec
            .as_ref()
            .map(|codec| format!("video/mp4; codecs=\"{codec}\""))
    }

    /// The RFC 6381 codec list behind [`mime`](Self::mime): `avc1.PPCCLL`, plus
    /// `, mp4a.40.2` with audio.
    pub fn codec(&self) -> Option<&str> {
        self.codec.as_deref()
    }
}

/// Writes the pending video samples as one fragment, with the audio that covers them (all of
/// the remaining audio when `last`).
fn flush_with(
    segment: &mut SegmentState,
    config: &EncoderConfig,
    last: bool,
) -> Result<Chunk, EncodeError> {
    let duration = config.frame_duration();
    let frames = segment.pending.len();
    let video_end = segment.pending_start + frames as u64 * u64::from(duration);
    let (audio_start, audio) = match segment.audio.as_mut() {
        Some(a) => (
            a.decode_time(),
            a.take_until(video_end, config.timescale(), last)?,
        ),
        None => (0, Vec::new()),
    };
    let mut runs = vec![Run {
        track_id: mux::TRACK_ID,
        base_media_decode_time: segment.pending_start,
        sample_duration: duration,
        samples: &segment.pending,
        explicit_flags: true,
    }];
    if !audio.is_empty() {
        runs.push(audio_run(audio_start, &audio));
    }
    let data = mux::fragment(segment.next_sequence, &runs)?;
    segment.pending_start = video_end;
    segment.next_sequence = segment.next_sequence.wrapping_add(1);
    segment.pending.clear();
    Ok(Chunk {
        kind: ChunkKind::Fragment,
        data: Bytes::from(data),
        frames: u32::try_from(frames).unwrap_or(u32::MAX),
    })
}

fn audio_run(start: u64, samples: &[Sample]) -> Run<'_> {
    Run {
        track_id: AUDIO_TRACK_ID,
        base_media_decode_time: start,
        sample_duration: crate::AAC_FRAME_SAMPLES,
        samples,
        explicit_flags: false,
    }
}

/// An audio-only fragment catching the audio up with the video already written, if any is due.
fn flush_audio_only(
    segment: &mut SegmentState,
    config: &EncoderConfig,
) -> Result<Option<Chunk>, EncodeError> {
    audio_only(segment, config, false)
}

/// The rest of the audio after the last video fragment, if any.
fn flush_audio_only_last(
    segment: &mut SegmentState,
    config: &EncoderConfig,
) -> Result<Option<Chunk>, EncodeError> {
    audio_only(segment, config, true)
}

fn audio_only(
    segment: &mut SegmentState,
    config: &EncoderConfig,
    last: bool,
) -> Result<Option<Chunk>, EncodeError> {
    let Some(audio) = segment.audio.as_mut() else {
        return Ok(None);
    };
    let start = audio.decode_time();
    let samples = audio.take_until(segment.pending_start, config.timescale(), last)?;
    if samples.is_empty() {
        return Ok(None);
    }
    let data = mux::fragment(segment.next_sequence, &[audio_run(start, &samples)])?;
    segment.next_sequence = segment.next_sequence.wrapping_add(1);
    Ok(Some(Chunk {
        kind: ChunkKind::Fragment,
        data: Bytes::from(data),
        frames: 0,
    }))
}

/// One segment of a [`StreamEncoder`], from [`StreamEncoder::begin_segment`].
///
/// Push frames with [`push`](Self::push), then call [`finish`](Self::finish) to get the last
/// fragment. Dropping it without `finish` abandons the segment (its unreturned frames are lost),
/// which is what a cancelled segment wants.
#[derive(Debug)]
pub struct SegmentEncoder<'a> {
    stream: &'a mut StreamEncoder,
}

impl SegmentEncoder<'_> {
    /// See [`StreamEncoder::push`].
    pub fn push(&mut self, frame: &fv_core::Frame) -> Result<Vec<Chunk>, EncodeError> {
        self.stream.push(frame)
    }

    /// Ends the segment; see [`StreamEncoder::finish_segment`].
    pub fn finish(self) -> Result<Vec<Chunk>, EncodeError> {
        self.stream.finish_segment()
    }

    /// See [`StreamEncoder::push_audio`].
    pub fn push_audio(&mut self, track: &fv_core::AudioTrack) -> Result<Vec<Chunk>, EncodeError> {
        self.stream.push_audio(track)
    }

    /// See [`StreamEncoder::mime`]; `Some` once this segment's init chunk was returned.
    pub fn mime(&self) -> Option<String> {
        self.stream.mime()
    }

    /// The encoder's config.
    pub fn config(&self) -> &EncoderConfig {
        self.stream.config()
    }
}

impl Drop for SegmentEncoder<'_> {
    fn drop(&mut self) {
        // Abandon the segment so a later push cannot silently continue it.
        self.stream.segment = None;
    }
}
