//! The AAC track of the init segment: `trak{tkhd, edts{elst}?, mdia{mdhd, hdlr soun,
//! minf{smhd, dinf, stbl{stsd{mp4a{esds}}, empty tables}}}}` and its `trex`.

use crate::EncodeError;
use crate::audio::{AAC_CHANNELS, AAC_FRAME_SAMPLES, AAC_SAMPLE_RATE};
use crate::mux::{SYNC_SAMPLE_FLAGS, container, encode_box};
use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};
use mp4_atom::{
    Audio, Codec, Dinf, Dref, DrefEntry, Edts, Elst, ElstEntry, Esds, FixedPoint, Hdlr, Mdhd, Mp4a,
    Smhd, Stbl, Stco, Stsc, Stsd, Stsz, Stts, Tkhd, Trex, Url,
};

/// The audio track (the video track is 1).
pub(crate) const AUDIO_TRACK_ID: u32 = 2;
/// MPEG-4 Audio in the `esds` DecoderConfigDescriptor (ISO/IEC 14496-1 objectTypeIndication).
const OTI_MPEG4_AUDIO: u8 = 0x40;
/// AudioStream (ISO/IEC 14496-1 streamType).
const STREAM_TYPE_AUDIO: u8 = 0x05;

/// What the init segment says about the audio track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AudioInit {
    /// AudioSpecificConfig (`11 90` for AAC-LC 48 kHz stereo).
    pub asc: Vec<u8>,
    /// Encoder priming to hide with an edit list, in samples at 48 kHz (0: no edit list).
    pub priming: u32,
    /// For the `esds` bitrate fields; 0 when unknown (VBR).
    pub avg_bitrate: u32,
}

/// `trex` for the audio track: every AAC frame lasts 1024 samples and is a sync sample.
pub(crate) fn trex() -> Trex {
    Trex {
        track_id: AUDIO_TRACK_ID,
        default_sample_description_index: 1,
        default_sample_duration: AAC_FRAME_SAMPLES,
        default_sample_size: 0,
        default_sample_flags: SYNC_SAMPLE_FLAGS,
    }
}

/// The audio `trak` box. `movie_timescale` is the `mvhd` one (the edit list counts in it).
pub(crate) fn trak(audio: &AudioInit, _movie_timescale: u32) -> Result<Vec<u8>, EncodeError> {
    let [b0, b1, ..] = *audio.asc else {
        return Err(EncodeError::Mux(format!(
            "AudioSpecificConfig of {} bytes",
            audio.asc.len()
        )));
    };
    let mp4a = Mp4a {
        audio: Audio {
            data_reference_index: 1,
            channel_count: AAC_CHANNELS,
            sample_size: 16,
            sample_rate: FixedPoint::new(
                u16::try_from(AAC_SAMPLE_RATE).map_err(|_| EncodeError::Mux("rate".into()))?,
                0,
            ),
        },
        esds: Esds {
            es_desc: EsDescriptor {
                es_id: u16::try_from(AUDIO_TRACK_ID).unwrap_or(2),
                dec_config: DecoderConfig {
                    object_type_indication: OTI_MPEG4_AUDIO,
                    stream_type: STREAM_TYPE_AUDIO,
                    up_stream: 0,
                    // Largest AAC frame: 6144 bits per channel.
                    buffer_size_db: [0, 0x06, 0x00].into(),
                    max_bitrate: audio.avg_bitrate,
                    avg_bitrate: audio.avg_bitrate,
                    dec_specific: Some(DecoderSpecific {
                        profile: b0 >> 3,
                        freq_index: ((b0 & 0x07) << 1) | (b1 >> 7),
                        chan_conf: (b1 >> 3) & 0x0f,
                        raw: audio.asc.clone(),
                    }),
                },
                sl_config: SLConfig {},
                ..Default::default()
            },
        },
        btrt: None,
        taic: None,
    };
    let stbl = Stbl {
        stsd: Stsd {
            codecs: vec![Codec::Mp4a(mp4a)],
        },
        stts: Stts::default(),
        stsc: Stsc::default(),
        stsz: Stsz::default(),
        stco: Some(Stco::default()),
        ..Default::default()
    };
    let dinf = Dinf {
        dref: Dref {
            entries: vec![DrefEntry::Url(Url::default())],
        },
    };
    let minf = container(
        b"minf",
        &[
            &encode_box("smhd", &Smhd::default())?,
            &encode_box("dinf", &dinf)?,
            &encode_box("stbl", &stbl)?,
        ],
    )?;
    let mdhd = Mdhd {
        timescale: AAC_SAMPLE_RATE,
        duration: 0,
        language: "und".into(),
        ..Default::default()
    };
    let hdlr = Hdlr {
        handler: b"soun".into(),
        name: "SoundHandler".into(),
    };
    let mdia = container(
        b"mdia",
        &[
            &encode_box("mdhd", &mdhd)?,
            &encode_box("hdlr", &hdlr)?,
            &minf,
        ],
    )?;
    let tkhd = Tkhd {
        track_id: AUDIO_TRACK_ID,
        duration: 0,
        enabled: true,
        in_movie: true,
        // Audio tracks share alternate group 1 (ISO/IEC 14496-12 convention); full volume.
        alternate_group: 1,
        volume: FixedPoint::new(1, 0),
        ..Default::default()
    };
    let tkhd = encode_box("tkhd", &tkhd)?;
    if audio.priming == 0 {
        return container(b"trak", &[&tkhd, &mdia]);
    }
    // One edit: start presenting at media time `priming`, so the encoder's start-up output
    // (silence, then a fade-in) is skipped and audio sample 0 lines up with video frame 0.
    // segment_duration 0: the duration of a fragmented movie is not known up front.
    let edts = Edts {
        elst: Some(Elst {
            entries: vec![ElstEntry {
                segment_duration: 0,
                media_time: Some(u64::from(audio.priming)),
                media_rate: FixedPoint::new(1, 0),
            }],
        }),
    };
    container(b"trak", &[&tkhd, &encode_box("edts", &edts)?, &mdia])
}
