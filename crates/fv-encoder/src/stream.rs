use crate::h264::H264Encoder;
use crate::mux::{self, Sample};
use crate::{Chunk, ChunkKind, EncodeError, EncoderConfig, codec_string};
use bytes::Bytes;

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
/// Audio is not muxed: a [`fv_core::GenerationResult::audio`] track is ignored, the init has a
/// single video track and [`mime`](Self::mime) never lists `mp4a`.
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
        self.h264.force_idr();
        self.codec = None;
        self.segment = Some(SegmentState {
            frames: 0,
            params: None,
            pending: Vec::with_capacity(self.config.fragment_frames as usize),
            pending_start: 0,
            next_sequence: 1,
        });
    }

    /// [`start_segment`](Self::start_segment) and a handle that pushes into that segment.
    pub fn begin_segment(&mut self) -> SegmentEncoder<'_> {
        self.start_segment();
        SegmentEncoder { stream: self }
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
                let codec = codec_string(&sps)?;
                let init = mux::init_segment(&self.config, &sps, &pps)?;
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
            chunks.push(flush(segment, &self.config)?);
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
        if segment.pending.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![flush(&mut segment, &self.config)?])
    }

    /// The MSE type of the current (or last finished) segment, e.g.
    /// `video/mp4; codecs="avc1.42c01f"`, built from that segment's SPS. `None` from
    /// [`start_segment`](Self::start_segment) until the segment's init chunk was returned.
    /// Video only: audio is never muxed, so `mp4a` never appears.
    pub fn mime(&self) -> Option<String> {
        self.codec
            .as_ref()
            .map(|codec| format!("video/mp4; codecs=\"{codec}\""))
    }

    /// The RFC 6381 codec string (`avc1.PPCCLL`) behind [`mime`](Self::mime).
    pub fn codec(&self) -> Option<&str> {
        self.codec.as_deref()
    }
}

/// Writes the pending samples as one fragment.
fn flush(segment: &mut SegmentState, config: &EncoderConfig) -> Result<Chunk, EncodeError> {
    let duration = config.frame_duration();
    let data = mux::fragment(
        segment.next_sequence,
        segment.pending_start,
        duration,
        &segment.pending,
    )?;
    let frames = segment.pending.len();
    segment.pending_start += frames as u64 * u64::from(duration);
    segment.next_sequence = segment.next_sequence.wrapping_add(1);
    segment.pending.clear();
    Ok(Chunk {
        kind: ChunkKind::Fragment,
        data: Bytes::from(data),
        frames: u32::try_from(frames).unwrap_or(u32::MAX),
    })
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
