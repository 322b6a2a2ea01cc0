//! Reading our own output back, for tests, benchmarks and debugging tools.
//!
//! * [`tree`] / [`top_level`]: a small, independent ISO-BMFF box walker listing box types,
//!   offsets and sizes without trusting the muxer that wrote them.
//! * [`parse_segment`]: init + fragments -> parameter sets and per-fragment sample tables,
//!   checking that every `trun` data offset and sample size lands exactly inside its `mdat`.
//! * [`decode_segment`]: decodes a parsed segment with openh264's decoder back to RGB24.
//! * [`decode_audio`]: decodes a parsed segment's AAC track with FDK's decoder, applying the
//!   edit list, back to 48 kHz stereo f32.

use crate::{EncodeError, codec_string};
use mp4_atom::{Codec, Decode, Moof, Moov};

use crate::inspect_audio::audio_info;
pub use crate::inspect_audio::{DecodedAudio, decode_audio};

/// Boxes whose body is nothing but child boxes.
const CONTAINERS: [&str; 10] = [
    "moov", "trak", "mdia", "minf", "dinf", "stbl", "mvex", "moof", "traf", "edts",
];

/// One box and, for container boxes the walker knows, its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxInfo {
    /// The four-character type, e.g. `moov` (non-ASCII bytes become `?`).
    pub kind: String,
    /// Offset of the box's first header byte in the walked buffer.
    pub offset: usize,
    /// Whole box size, header included.
    pub size: usize,
    /// Header length: 8, or 16 with a 64-bit size.
    pub header_len: usize,
    /// Child boxes (empty for leaf boxes).
    pub children: Vec<BoxInfo>,
}

impl BoxInfo {
    /// The box body (after the header) within `data`, the buffer that was walked.
    pub fn body<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        data.get(self.offset + self.header_len..self.offset + self.size)
            .unwrap_or_default()
    }

    /// The first descendant reached by a `/`-separated path of types, e.g. `trak/mdia/mdhd`.
    pub fn find(&self, path: &str) -> Option<&BoxInfo> {
        let mut node = self;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            node = node.children.iter().find(|c| c.kind == part)?;
        }
        Some(node)
    }

    /// Types of the direct children, in order.
    pub fn child_kinds(&self) -> Vec<&str> {
        self.children.iter().map(|c| c.kind.as_str()).collect()
    }
}

/// The top-level boxes of `data` (no recursion). Fails if a size runs past the end.
pub fn top_level(data: &[u8]) -> Result<Vec<BoxInfo>, EncodeError> {
    walk_level(data, 0, data.len(), false)
}

/// The full tree of `data`, descending into `moov`/`trak`/`mdia`/`minf`/`dinf`/`stbl`/`mvex`/
/// `moof`/`traf`/`edts` and into the sample-entry boxes `stsd`, `dref` and `avc1`.
pub fn tree(data: &[u8]) -> Result<Vec<BoxInfo>, EncodeError> {
    walk_level(data, 0, data.len(), true)
}

/// Top-level box types joined for quick assertions, e.g. `["ftyp", "moov"]`.
pub fn top_level_kinds(data: &[u8]) -> Result<Vec<String>, EncodeError> {
    Ok(top_level(data)?.into_iter().map(|b| b.kind).collect())
}

fn malformed(msg: String) -> EncodeError {
    EncodeError::MalformedBox(msg)
}

fn walk_level(
    data: &[u8],
    start: usize,
    end: usize,
    recurse: bool,
) -> Result<Vec<BoxInfo>, EncodeError> {
    let mut boxes = Vec::new();
    let mut pos = start;
    while pos < end {
        let header = data
            .get(pos..pos + 8)
            .filter(|_| pos + 8 <= end)
            .ok_or_else(|| malformed(format!("truncated box header at offset {pos}")))?;
        let size32 = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let kind: String = header[4..8]
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '?'
                }
            })
            .collect();
        let (size, header_len) = match size32 {
            0 => (end - pos, 8),
            1 => {
                let large = data
                    .get(pos + 8..pos + 16)
                    .filter(|_| pos + 16 <= end)
                    .ok_or_else(|| {
                        malformed(format!("truncated 64-bit size of {kind} at {pos}"))
                    })?;
                let mut b = [0u8; 8];
                b.copy_from_slice(large);
                let size = usize::try_from(u64::from_be_bytes(b))
                    .map_err(|_| malformed(format!("{kind} at {pos} is too large")))?;
                (size, 16)
            }
            n => (n as usize, 8),
        };
        if size < header_len || pos.checked_add(size).is_none_or(|e| e > end) {
            return Err(malformed(format!(
                "box {kind} at offset {pos} claims {size} bytes, {} available",
                end - pos
            )));
        }
        let body_start = pos + header_len;
        let body_end = pos + size;
        let children = if !recurse {
            Vec::new()
        } else if CONTAINERS.contains(&kind.as_str()) {
            walk_level(data, body_start, body_end, true)?
        } else {
            // Boxes that hold children after a fixed prefix: full-box header + entry count for
            // stsd/dref, the 78-byte VisualSampleEntry fields for avc1.
            let prefix = match kind.as_str() {
                "stsd" | "dref" => Some(8),
                "avc1" => Some(78),
                "mp4a" => Some(28),
                _ => None,
            };
            match prefix {
                Some(p) if body_start + p <= body_end => {
                    walk_level(data, body_start + p, body_end, true)?
                }
                Some(_) => return Err(malformed(format!("{kind} at {pos} is too short"))),
                None => Vec::new(),
            }
        };
        boxes.push(BoxInfo {
            kind,
            offset: pos,
            size,
            header_len,
            children,
        });
        pos = body_end;
    }
    Ok(boxes)
}

/// One sample of a fragment, as [`parse_segment`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleInfo {
    /// Duration in track timescale ticks.
    pub duration: u32,
    /// ISO-BMFF sample flags (`0x02000000` sync, `0x01010000` non-sync).
    pub flags: u32,
    /// The sample bytes: length-prefixed NAL units.
    pub data: Vec<u8>,
}

impl SampleInfo {
    /// Whether the flags mark a sync sample (random access point).
    pub fn is_sync(&self) -> bool {
        self.flags & 0x0001_0000 == 0
    }
}

/// One `moof`+`mdat` pair. The top-level fields describe the video `traf`; a fragment
/// without one (audio only) has `has_video == false`, no samples and zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentInfo {
    /// `mfhd` sequence number.
    pub sequence_number: u32,
    /// `tfdt` base media decode time, in timescale ticks.
    pub base_media_decode_time: u64,
    /// `trun` data offset (from the start of the `moof`).
    pub data_offset: i32,
    /// The `trun` samples with their bytes.
    pub samples: Vec<SampleInfo>,
    /// Whether the `moof` has a video `traf`.
    pub has_video: bool,
    /// The audio `traf`, if the `moof` has one.
    pub audio: Option<RunInfo>,
}

/// One track's run in a fragment (used for the audio track).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// `tfdt` base media decode time, in the track's timescale.
    pub base_media_decode_time: u64,
    /// `trun` data offset (from the start of the `moof`).
    pub data_offset: i32,
    /// The samples with their bytes.
    pub samples: Vec<SampleInfo>,
}

/// The audio track of an init segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioInfo {
    /// `tkhd` track id.
    pub track_id: u32,
    /// `mdhd` timescale.
    pub timescale: u32,
    /// `mp4a` channel count.
    pub channel_count: u16,
    /// `mp4a` sample rate (integer part).
    pub sample_rate: u16,
    /// The `esds` DecoderSpecificInfo: the AudioSpecificConfig.
    pub asc: Vec<u8>,
    /// `esds` objectTypeIndication (0x40: MPEG-4 audio).
    pub object_type_indication: u8,
    /// `elst` media time of the single edit (the priming to skip), if there is an edit list.
    pub edit_media_time: Option<u64>,
    /// `trex` default sample duration.
    pub default_sample_duration: u32,
}

/// A parsed segment: the init's track description plus every fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Top-level box types in order, e.g. `ftyp, moov, moof, mdat, ...`.
    pub box_kinds: Vec<String>,
    /// `ftyp` major brand.
    pub major_brand: String,
    /// `avc1` sample entry width.
    pub width: u16,
    /// `avc1` sample entry height.
    pub height: u16,
    /// `mdhd` timescale (ticks per second).
    pub timescale: u32,
    /// `trex` default sample duration.
    pub default_sample_duration: u32,
    /// The SPS NAL unit from `avcC`.
    pub sps: Vec<u8>,
    /// The PPS NAL unit from `avcC`.
    pub pps: Vec<u8>,
    /// Codec string derived from `avcC`'s profile/compatibility/level bytes.
    pub avcc_codec: String,
    /// Every `moof`+`mdat` pair, in order.
    pub fragments: Vec<FragmentInfo>,
    /// The audio track, if the init has one.
    pub audio: Option<AudioInfo>,
}

impl SegmentInfo {
    /// Total video samples over all fragments.
    pub fn sample_count(&self) -> usize {
        self.fragments.iter().map(|f| f.samples.len()).sum()
    }

    /// Total audio samples (AAC frames) over all fragments.
    pub fn audio_sample_count(&self) -> usize {
        self.audio_samples().count()
    }

    /// The audio samples of every fragment, in order.
    pub fn audio_samples(&self) -> impl Iterator<Item = &SampleInfo> {
        self.fragments
            .iter()
            .filter_map(|f| f.audio.as_ref())
            .flat_map(|r| &r.samples)
    }
}

/// Parses one segment (init chunk followed by its fragments, concatenated) and checks its
/// structure: `ftyp`, `moov` with `mvex/trex` and one `avc1/avcC` track, then `moof`+`mdat`
/// pairs whose `trun` data offset points at the `mdat` payload and whose sample sizes add up
/// to exactly that payload. Anything else is [`EncodeError::MalformedBox`].
pub fn parse_segment(data: &[u8]) -> Result<SegmentInfo, EncodeError> {
    let boxes = tree(data)?;
    let box_kinds: Vec<String> = boxes.iter().map(|b| b.kind.clone()).collect();
    let bad = |m: String| EncodeError::MalformedBox(m);
    let decode_err = |what: &str, e: mp4_atom::Error| bad(format!("{what}: {e}"));

    let [ftyp_box, moov_box, rest @ ..] = boxes.as_slice() else {
        return Err(bad(format!("expected ftyp, moov first; got {box_kinds:?}")));
    };
    if ftyp_box.kind != "ftyp" || moov_box.kind != "moov" {
        return Err(bad(format!("expected ftyp, moov first; got {box_kinds:?}")));
    }
    let ftyp = mp4_atom::Ftyp::decode(&mut &data[ftyp_box.offset..ftyp_box.offset + ftyp_box.size])
        .map_err(|e| decode_err("ftyp", e))?;
    let moov = Moov::decode(&mut &data[moov_box.offset..moov_box.offset + moov_box.size])
        .map_err(|e| decode_err("moov", e))?;
    let mvex = moov
        .mvex
        .as_ref()
        .ok_or_else(|| bad("moov has no mvex/trex".into()))?;
    let (trak, audio_trak) = match moov.trak.as_slice() {
        [v] => (v, None),
        [v, a] => (v, Some(a)),
        other => {
            return Err(bad(format!(
                "expected one or two traks, got {}",
                other.len()
            )));
        }
    };
    if trak.mdia.hdlr.handler != b"vide".into() {
        return Err(bad(format!(
            "handler is {:?}, not vide",
            trak.mdia.hdlr.handler
        )));
    }
    let trex_of = |id: u32| {
        mvex.trex
            .iter()
            .find(|t| t.track_id == id)
            .ok_or_else(|| bad(format!("no trex for track {id}")))
    };
    let trex = trex_of(trak.tkhd.track_id)?;
    let audio = match audio_trak {
        Some(a) => Some(audio_info(a, trex_of(a.tkhd.track_id)?)?),
        None => None,
    };
    let [Codec::Avc1(avc1)] = trak.mdia.minf.stbl.stsd.codecs.as_slice() else {
        return Err(bad("stsd does not hold exactly one avc1 entry".into()));
    };
    let avcc = &avc1.avcc;
    let (Some(sps), Some(pps)) = (
        avcc.sequence_parameter_sets.first(),
        avcc.picture_parameter_sets.first(),
    ) else {
        return Err(bad("avcC lacks an SPS or a PPS".into()));
    };
    if avcc.length_size != 4 {
        return Err(bad(format!(
            "avcC length size {} (expected 4)",
            avcc.length_size
        )));
    }
    let avcc_codec = format!(
        "avc1.{:02x}{:02x}{:02x}",
        avcc.avc_profile_indication, avcc.profile_compatibility, avcc.avc_level_indication
    );

    if rest.len() % 2 != 0 {
        return Err(bad(format!(
            "fragments are not moof+mdat pairs: {box_kinds:?}"
        )));
    }
    let mut fragments = Vec::with_capacity(rest.len() / 2);
    for pair in rest.chunks_exact(2) {
        let (moof_box, mdat_box) = (&pair[0], &pair[1]);
        if moof_box.kind != "moof" || mdat_box.kind != "mdat" {
            return Err(bad(format!(
                "expected moof+mdat at offset {}, got {}+{}",
                moof_box.offset, moof_box.kind, mdat_box.kind
            )));
        }
        let moof = Moof::decode(&mut &data[moof_box.offset..moof_box.offset + moof_box.size])
            .map_err(|e| decode_err("moof", e))?;
        let payload_start = mdat_box.offset + mdat_box.header_len;
        let payload_end = mdat_box.offset + mdat_box.size;
        if moof.traf.is_empty() || moof.traf.len() > 2 {
            return Err(bad(format!(
                "expected one or two trafs, got {}",
                moof.traf.len()
            )));
        }
        // Runs follow each other in the mdat in traf order and cover it exactly.
        let mut pos = payload_start;
        let mut video = None;
        let mut audio_run = None;
        for traf in &moof.traf {
            let id = traf.tfhd.track_id;
            let (is_video, defaults) = if id == trak.tkhd.track_id {
                (true, trex)
            } else if audio.as_ref().is_some_and(|a| a.track_id == id) {
                (false, trex_of(id)?)
            } else {
                return Err(bad(format!("traf for unknown track {id}")));
            };
            let run = parse_run(data, traf, defaults, moof_box.offset, pos, payload_end)?;
            pos += run.samples.iter().map(|s| s.data.len()).sum::<usize>();
            let slot = if is_video { &mut video } else { &mut audio_run };
            if slot.replace(run).is_some() {
                return Err(bad(format!("two trafs for track {id}")));
            }
        }
        if pos != payload_end {
            return Err(bad(format!(
                "samples cover {} of {} mdat payload bytes",
                pos - payload_start,
                payload_end - payload_start
            )));
        }
        let has_video = video.is_some();
        let video = video.unwrap_or(RunInfo {
            base_media_decode_time: 0,
            data_offset: 0,
            samples: Vec::new(),
        });
        fragments.push(FragmentInfo {
            sequence_number: moof.mfhd.sequence_number,
            base_media_decode_time: video.base_media_decode_time,
            data_offset: video.data_offset,
            samples: video.samples,
            has_video,
            audio: audio_run,
        });
    }

    Ok(SegmentInfo {
        box_kinds,
        major_brand: ftyp.major_brand.to_string(),
        width: avc1.visual.width,
        height: avc1.visual.height,
        timescale: trak.mdia.mdhd.timescale,
        default_sample_duration: trex.default_sample_duration,
        sps: sps.clone(),
        pps: pps.clone(),
        avcc_codec,
        fragments,
        audio,
    })
}

/// One `traf`'s run: its data offset must point at `pos` (where the previous run ended) and
/// its samples must fit before `payload_end`.
fn parse_run(
    data: &[u8],
    traf: &mp4_atom::Traf,
    trex: &mp4_atom::Trex,
    moof_offset: usize,
    pos: usize,
    payload_end: usize,
) -> Result<RunInfo, EncodeError> {
    let bad = |m: String| EncodeError::MalformedBox(m);
    if !traf.tfhd.default_base_is_moof {
        return Err(bad("tfhd lacks default-base-is-moof".into()));
    }
    let tfdt = traf
        .tfdt
        .as_ref()
        .ok_or_else(|| bad("traf has no tfdt".into()))?;
    let [trun] = traf.trun.as_slice() else {
        return Err(bad(format!("expected one trun, got {}", traf.trun.len())));
    };
    let data_offset = trun
        .data_offset
        .ok_or_else(|| bad("trun has no data offset".into()))?;
    if usize::try_from(data_offset).ok() != Some(pos - moof_offset) {
        return Err(bad(format!(
            "trun data offset {data_offset} does not point at its data ({})",
            pos - moof_offset
        )));
    }
    let mut pos = pos;
    let mut samples = Vec::with_capacity(trun.samples.len());
    for entry in trun.samples.iter() {
        let size = entry.size.unwrap_or(trex.default_sample_size) as usize;
        let end = pos + size;
        if end > payload_end {
            return Err(bad(format!(
                "sample sizes overrun the mdat at offset {pos}"
            )));
        }
        samples.push(SampleInfo {
            duration: entry.duration.unwrap_or(trex.default_sample_duration),
            flags: entry.flags.unwrap_or(trex.default_sample_flags),
            data: data[pos..end].to_vec(),
        });
        pos = end;
    }
    Ok(RunInfo {
        base_media_decode_time: tfdt.base_media_decode_time,
        data_offset,
        samples,
    })
}

/// Splits a length-prefixed sample into its NAL units.
pub fn sample_nal_units(sample: &[u8]) -> Result<Vec<&[u8]>, EncodeError> {
    let mut nals = Vec::new();
    let mut rest = sample;
    while !rest.is_empty() {
        let [a, b, c, d, tail @ ..] = rest else {
            return Err(EncodeError::MalformedBox(
                "truncated NAL length prefix".into(),
            ));
        };
        let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
        if len == 0 || len > tail.len() {
            return Err(EncodeError::MalformedBox(format!(
                "NAL length {len} with {} bytes left in the sample",
                tail.len()
            )));
        }
        nals.push(&tail[..len]);
        rest = &tail[len..];
    }
    Ok(nals)
}

/// Decodes every sample of a parsed segment with openh264's decoder and returns the frames
/// as RGB24 (`width * height * 3` bytes each), in order. Fails if a sample does not decode
/// to exactly one picture of the track's size.
pub fn decode_segment(segment: &SegmentInfo) -> Result<Vec<Vec<u8>>, EncodeError> {
    let dec_err = |e: openh264::Error| EncodeError::Bitstream(format!("decoder: {e}"));
    // Validates the SPS header as a side effect.
    codec_string(&segment.sps)?;
    let mut decoder = openh264::decoder::Decoder::new().map_err(dec_err)?;
    let (w, h) = (usize::from(segment.width), usize::from(segment.height));
    let mut frames = Vec::with_capacity(segment.sample_count());
    let mut annex_b = Vec::new();
    let mut first = true;
    for sample in segment.fragments.iter().flat_map(|f| &f.samples) {
        annex_b.clear();
        if first {
            for ps in [&segment.sps, &segment.pps] {
                annex_b.extend_from_slice(&[0, 0, 0, 1]);
                annex_b.extend_from_slice(ps);
            }
            first = false;
        }
        for nal in sample_nal_units(&sample.data)? {
            annex_b.extend_from_slice(&[0, 0, 0, 1]);
            annex_b.extend_from_slice(nal);
        }
        let picture = decoder.decode(&annex_b).map_err(dec_err)?.ok_or_else(|| {
            EncodeError::Bitstream(format!("sample {} gave no picture", frames.len()))
        })?;
        frames.push(to_rgb(&picture, w, h, frames.len())?);
    }
    for picture in decoder.flush_remaining().map_err(dec_err)? {
        frames.push(to_rgb(&picture, w, h, frames.len())?);
    }
    if frames.len() != segment.sample_count() {
        return Err(EncodeError::Bitstream(format!(
            "{} samples decoded to {} pictures",
            segment.sample_count(),
            frames.len()
        )));
    }
    Ok(frames)
}

fn to_rgb(
    picture: &openh264::decoder::DecodedYUV<'_>,
    w: usize,
    h: usize,
    index: usize,
) -> Result<Vec<u8>, EncodeError> {
    use openh264::formats::YUVSource;
    if picture.dimensions() != (w, h) {
        return Err(EncodeError::Bitstream(format!(
            "picture {index} is {:?}, the track says {w}x{h}",
            picture.dimensions()
        )));
    }
    let mut rgb = vec![0; w * h * 3];
    picture.write_rgb8(&mut rgb);
    Ok(rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_nested_and_rejects_overruns() -> Result<(), EncodeError> {
        // moov{ mvex{ trex(empty body) } } + free
        let mut data = Vec::new();
        data.extend_from_slice(&24u32.to_be_bytes());
        data.extend_from_slice(b"moov");
        data.extend_from_slice(&16u32.to_be_bytes());
        data.extend_from_slice(b"mvex");
        data.extend_from_slice(&8u32.to_be_bytes());
        data.extend_from_slice(b"trex");
        data.extend_from_slice(&9u32.to_be_bytes());
        data.extend_from_slice(b"free");
        data.push(7);

        let t = tree(&data)?;
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].kind.as_str(), t[0].size), ("moov", 24));
        assert_eq!(t[0].find("mvex/trex").map(|b| b.offset), Some(16));
        assert_eq!(t[1].body(&data), &[7]);
        assert_eq!(top_level_kinds(&data)?, ["moov", "free"]);
        assert!(top_level(&data)?.iter().all(|b| b.children.is_empty()));

        let mut short = data.clone();
        short.pop();
        assert!(matches!(tree(&short), Err(EncodeError::MalformedBox(m)) if m.contains("free")));
        assert!(matches!(
            tree(&data[..5]),
            Err(EncodeError::MalformedBox(_))
        ));
        // Size smaller than its header.
        assert!(tree(&[0, 0, 0, 4, b'a', b'b', b'c', b'd']).is_err());
        Ok(())
    }
}
