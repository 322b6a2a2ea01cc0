//! Fragmented-MP4 writer on mp4-atom boxes: one init segment (ftyp+moov) and any number of
//! moof+mdat fragments per segment.

use crate::{EncodeError, EncoderConfig};
use mp4_atom::{
    Atom, Avc1, Avcc, Codec, Dinf, Dref, DrefEntry, Encode, FixedPoint, Ftyp, Hdlr, Header, Mdat,
    Mdhd, Mfhd, Moof, Mvex, Mvhd, Stbl, Stco, Stsc, Stsd, Stsz, Stts, Tfdt, Tfhd, Tkhd, Traf, Trex,
    Trun, TrunEntry, TrunSamples, Url, Visual, Vmhd,
};

/// The video track.
pub(crate) const TRACK_ID: u32 = 1;
/// `sample_depends_on = 2` (depends on no other sample): an IDR, a random access point.
pub(crate) const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_depends_on = 1` plus `sample_is_non_sync_sample`.
pub(crate) const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// One coded frame waiting for its fragment.
#[derive(Debug)]
pub(crate) struct Sample {
    /// Length-prefixed NAL units.
    pub data: Vec<u8>,
    pub is_sync: bool,
}

pub(crate) fn mux_err(what: &str, e: mp4_atom::Error) -> EncodeError {
    EncodeError::Mux(format!("{what}: {e}"))
}

/// Encodes one mp4-atom box.
pub(crate) fn encode_box<T: Encode>(what: &str, atom: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(128);
    atom.encode(&mut out).map_err(|e| mux_err(what, e))?;
    Ok(out)
}

/// A plain container box around already-encoded children. mp4-atom would order some children
/// its own way (e.g. `minf` as dinf, stbl, vmhd); players scan children, but writing the
/// containers ourselves keeps the conventional ISO/IEC 14496-12 order.
pub(crate) fn container(kind: &[u8; 4], children: &[&[u8]]) -> Result<Vec<u8>, EncodeError> {
    let len: usize = 8 + children.iter().map(|c| c.len()).sum::<usize>();
    let len32 = u32::try_from(len).map_err(|_| {
        EncodeError::Mux(format!(
            "{} box of {len} bytes",
            String::from_utf8_lossy(kind)
        ))
    })?;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&len32.to_be_bytes());
    out.extend_from_slice(kind);
    for c in children {
        out.extend_from_slice(c);
    }
    Ok(out)
}

/// `ftyp` + `moov` for one H.264 video track without samples (they all live in fragments):
/// `moov{mvhd, trak{tkhd, mdia{mdhd, hdlr, minf{vmhd, dinf{dref{url}}, stbl{stsd{avc1{avcC}},
/// stts, stsc, stsz, stco}}}}, mvex{trex}}`, all sample tables empty.
pub(crate) fn init_segment(
    config: &EncoderConfig,
    sps: &[u8],
    pps: &[u8],
    audio: Option<&crate::mux_audio::AudioInit>,
) -> Result<Vec<u8>, EncodeError> {
    let width = u16::try_from(config.width)
        .map_err(|_| EncodeError::InvalidConfig(format!("width {}", config.width)))?;
    let height = u16::try_from(config.height)
        .map_err(|_| EncodeError::InvalidConfig(format!("height {}", config.height)))?;
    let timescale = config.timescale();

    let ftyp = Ftyp {
        major_brand: b"iso5".into(),
        minor_version: 512,
        compatible_brands: vec![
            b"iso5".into(),
            b"iso6".into(),
            b"mp41".into(),
            b"avc1".into(),
        ],
    };
    let avcc = Avcc::new(sps, pps).map_err(|e| mux_err("avcC", e))?;
    let avc1 = Avc1 {
        visual: Visual {
            data_reference_index: 1,
            width,
            height,
            compressor: "".into(),
            ..Default::default()
        },
        avcc,
        btrt: None,
        colr: None,
        pasp: None,
        taic: None,
        fiel: None,
        spatial: None,
    };
    let stbl = Stbl {
        stsd: Stsd {
            codecs: vec![Codec::Avc1(avc1)],
        },
        stts: Stts::default(),
        stsc: Stsc::default(),
        stsz: Stsz::default(),
        stco: Some(Stco::default()),
        ..Default::default()
    };
    let dinf = Dinf {
        dref: Dref {
            // Empty location + the "self-contained" flag: the data is in this file.
            entries: vec![DrefEntry::Url(Url::default())],
        },
    };
    let minf = container(
        b"minf",
        &[
            &encode_box("vmhd", &Vmhd::default())?,
            &encode_box("dinf", &dinf)?,
            &encode_box("stbl", &stbl)?,
        ],
    )?;
    let mdhd = Mdhd {
        timescale,
        duration: 0,
        language: "und".into(),
        ..Default::default()
    };
    let hdlr = Hdlr {
        handler: b"vide".into(),
        name: "VideoHandler".into(),
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
        track_id: TRACK_ID,
        duration: 0,
        enabled: true,
        in_movie: true,
        width: FixedPoint::new(width, 0),
        height: FixedPoint::new(height, 0),
        ..Default::default()
    };
    let trak = container(b"trak", &[&encode_box("tkhd", &tkhd)?, &mdia])?;
    let mvhd = Mvhd {
        timescale,
        duration: 0,
        rate: FixedPoint::new(1, 0),
        volume: FixedPoint::new(1, 0),
        next_track_id: if audio.is_some() {
            crate::mux_audio::AUDIO_TRACK_ID + 1
        } else {
            TRACK_ID + 1
        },
        ..Default::default()
    };
    let mut trex = vec![Trex {
        track_id: TRACK_ID,
        default_sample_description_index: 1,
        default_sample_duration: config.frame_duration(),
        default_sample_size: 0,
        default_sample_flags: NON_SYNC_SAMPLE_FLAGS,
    }];
    let audio_trak = match audio {
        Some(a) => {
            trex.push(crate::mux_audio::trex());
            Some(crate::mux_audio::trak(a, timescale)?)
        }
        None => None,
    };
    let mvex = Mvex { mehd: None, trex };
    let mvhd = encode_box("mvhd", &mvhd)?;
    let mvex = encode_box("mvex", &mvex)?;
    let mut children: Vec<&[u8]> = vec![&mvhd, &trak];
    if let Some(a) = &audio_trak {
        children.push(a);
    }
    children.push(&mvex);
    let moov = container(b"moov", &children)?;

    let mut out = encode_box("ftyp", &ftyp)?;
    out.extend_from_slice(&moov);
    Ok(out)
}

/// One track's samples in a fragment.
#[derive(Debug)]
pub(crate) struct Run<'a> {
    pub track_id: u32,
    pub base_media_decode_time: u64,
    pub sample_duration: u32,
    pub samples: &'a [Sample],
    /// Write each sample's flags (video: sync or not); audio leaves them to `trex` (all sync).
    pub explicit_flags: bool,
}

/// `moof` + `mdat` holding one `traf` per run, in order, and the runs' samples in the same
/// order in the `mdat`. Every run must be non-empty.
pub(crate) fn fragment(sequence_number: u32, runs: &[Run<'_>]) -> Result<Vec<u8>, EncodeError> {
    let mut mdat_len = 0usize;
    let mut trafs = Vec::with_capacity(runs.len());
    let mut run_lens = Vec::with_capacity(runs.len());
    for run in runs {
        let mut entries = Vec::with_capacity(run.samples.len());
        let mut run_len = 0usize;
        for s in run.samples {
            let size = u32::try_from(s.data.len())
                .map_err(|_| EncodeError::Mux(format!("sample of {} bytes", s.data.len())))?;
            run_len += s.data.len();
            entries.push(TrunEntry {
                duration: Some(run.sample_duration),
                size: Some(size),
                flags: run.explicit_flags.then_some(if s.is_sync {
                    SYNC_SAMPLE_FLAGS
                } else {
                    NON_SYNC_SAMPLE_FLAGS
                }),
                cts: None,
            });
        }
        mdat_len += run_len;
        run_lens.push(run_len);
        // Writing every video sample's flags explicitly keeps mp4-atom from switching to the
        // first-sample-flags form, which would leave later samples with the trex default.
        trafs.push(Traf {
            tfhd: Tfhd {
                track_id: run.track_id,
                default_base_is_moof: true,
                ..Default::default()
            },
            tfdt: Some(Tfdt {
                base_media_decode_time: run.base_media_decode_time,
            }),
            trun: vec![Trun {
                data_offset: Some(0),
                samples: TrunSamples::Explicit(entries),
            }],
            ..Default::default()
        });
    }
    let mut moof = Moof {
        mfhd: Mfhd { sequence_number },
        traf: trafs,
    };
    // The data offsets count from the start of the moof (default-base-is-moof) to each run's
    // first sample byte, so they depend on the moof's own size: encode once to measure, then
    // again.
    let mut probe =
        Vec::with_capacity(256 + 12 * runs.iter().map(|r| r.samples.len()).sum::<usize>());
    moof.encode(&mut probe).map_err(|e| mux_err("moof", e))?;
    let mut mdat_header = Vec::with_capacity(16);
    Header {
        kind: Mdat::KIND,
        size: Some(mdat_len),
    }
    .encode(&mut mdat_header)
    .map_err(|e| mux_err("mdat header", e))?;
    let mut offset = probe.len() + mdat_header.len();
    for (traf, len) in moof.traf.iter_mut().zip(&run_lens) {
        let data_offset =
            i32::try_from(offset).map_err(|_| EncodeError::Mux(format!("data offset {offset}")))?;
        if let Some(trun) = traf.trun.first_mut() {
            trun.data_offset = Some(data_offset);
        }
        offset += len;
    }

    let mut out = Vec::with_capacity(probe.len() + mdat_header.len() + mdat_len);
    moof.encode(&mut out).map_err(|e| mux_err("moof", e))?;
    if out.len() != probe.len() {
        return Err(EncodeError::Mux(format!(
            "moof size changed between passes ({} then {})",
            probe.len(),
            out.len()
        )));
    }
    out.extend_from_slice(&mdat_header);
    for run in runs {
        for s in run.samples {
            out.extend_from_slice(&s.data);
        }
    }
    Ok(out)
}
