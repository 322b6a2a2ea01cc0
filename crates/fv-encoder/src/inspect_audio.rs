//! The audio side of [`crate::inspect`]: the AAC track's description and decoding it back.

use crate::EncodeError;
use crate::inspect::{AudioInfo, SegmentInfo};
use mp4_atom::Codec;

/// The audio track's description from its `trak` and `trex`.
pub(crate) fn audio_info(
    trak: &mp4_atom::Trak,
    trex: &mp4_atom::Trex,
) -> Result<AudioInfo, EncodeError> {
    let bad = |m: String| EncodeError::MalformedBox(m);
    if trak.mdia.hdlr.handler != b"soun".into() {
        return Err(bad(format!(
            "second track's handler is {:?}, not soun",
            trak.mdia.hdlr.handler
        )));
    }
    let [Codec::Mp4a(mp4a)] = trak.mdia.minf.stbl.stsd.codecs.as_slice() else {
        return Err(bad("audio stsd does not hold exactly one mp4a entry".into()));
    };
    let dec = &mp4a.esds.es_desc.dec_config;
    let asc = dec
        .dec_specific
        .as_ref()
        .map(|d| d.raw.clone())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| bad("esds has no AudioSpecificConfig".into()))?;
    let edit_media_time = match trak.edts.as_ref().and_then(|e| e.elst.as_ref()) {
        None => None,
        Some(elst) => match elst.entries.as_slice() {
            [entry] => entry.media_time,
            other => return Err(bad(format!("elst with {} entries", other.len()))),
        },
    };
    Ok(AudioInfo {
        track_id: trak.tkhd.track_id,
        timescale: trak.mdia.mdhd.timescale,
        channel_count: mp4a.audio.channel_count,
        sample_rate: mp4a.audio.sample_rate.integer(),
        asc,
        object_type_indication: dec.object_type_indication,
        edit_media_time,
        default_sample_duration: trex.default_sample_duration,
    })
}

/// PCM decoded from a segment's audio track.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    /// Output sample rate, Hz.
    pub sample_rate: u32,
    /// Output channels.
    pub channels: u16,
    /// Interleaved samples in [-1, 1], starting at presentation time 0: the edit list's
    /// media time (the encoder's priming) is already skipped.
    pub samples: Vec<f32>,
    /// Samples per channel that the edit list skipped.
    pub skipped: u64,
}

/// Decodes every audio sample of a parsed segment with symphonia's AAC-LC decoder (pure Rust,
/// independent of the FDK encoder; configured from the `esds` AudioSpecificConfig) and skips
/// the edit list's media time, as a player does.
pub fn decode_audio(segment: &SegmentInfo) -> Result<DecodedAudio, EncodeError> {
    use symphonia_core::codecs::audio::well_known::CODEC_ID_AAC;
    use symphonia_core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
    use symphonia_core::packet::PacketRef;
    use symphonia_core::units::{Duration, Timestamp};

    let audio = segment
        .audio
        .as_ref()
        .ok_or_else(|| EncodeError::MalformedBox("segment has no audio track".into()))?;
    let err = |what: &str, e: symphonia_core::errors::Error| {
        EncodeError::AacEncoder(format!("decoder {what}: {e}"))
    };
    let mut params = AudioCodecParameters::new();
    params
        .for_codec(CODEC_ID_AAC)
        .with_extra_data(audio.asc.clone().into_boxed_slice());
    let mut decoder =
        symphonia_codec_aac::AacDecoder::try_new(&params, &AudioDecoderOptions::default())
            .map_err(|e| err("config", e))?;
    let mut out = Vec::new();
    let mut frame = Vec::new();
    let (mut rate, mut channels) = (0u32, 0u16);
    let mut pts = 0i64;
    for (i, sample) in segment.audio_samples().enumerate() {
        let packet = PacketRef::new(
            audio.track_id,
            Timestamp::new(pts),
            Duration::from(u64::from(sample.duration)),
            &sample.data,
        );
        pts += i64::from(sample.duration);
        let decoded = decoder
            .decode_ref(&packet)
            .map_err(|e| err(&format!("frame {i}"), e))?;
        rate = decoded.spec().rate();
        channels = u16::try_from(decoded.spec().channels().count()).unwrap_or(0);
        decoded.copy_to_vec_interleaved(&mut frame);
        out.extend_from_slice(&frame);
    }
    let skipped = audio.edit_media_time.unwrap_or(0);
    let skip = usize::try_from(skipped)
        .unwrap_or(usize::MAX)
        .saturating_mul(usize::from(channels));
    let samples = out.get(skip..).unwrap_or_default().to_vec();
    Ok(DecodedAudio {
        sample_rate: rate,
        channels,
        samples,
        skipped,
    })
}
