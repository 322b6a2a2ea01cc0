//! Segments with an AAC track: box structure, timing, decoding back, fitting the audio to the
//! video, A/V alignment, and errors.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use fv_core::AudioTrack;
use fv_encoder::inspect::{self, parse_segment};
use fv_encoder::{
    AAC_FRAME_SAMPLES, Chunk, ChunkKind, EncodeError, EncoderConfig, SegmentAudio, StreamEncoder,
};

#[test]
fn silent_segment_has_two_tracks_and_two_trafs_per_fragment() {
    let cfg = EncoderConfig {
        fragment_frames: 8,
        ..EncoderConfig::new(64, 48, 24)
    };
    let mut enc = StreamEncoder::new(cfg.clone()).unwrap();
    let chunks = encode(&mut enc, &frames(64, 48, 30), SegmentAudio::Silence, None);
    let mime = enc.mime().unwrap();
    assert!(mime.starts_with("video/mp4; codecs=\"avc1.42c0"), "{mime}");
    assert!(mime.ends_with(", mp4a.40.2\""), "{mime}");

    // Init: both tracks, the audio one without an edit list (silence has no priming).
    let tree = inspect::tree(&chunks[0].data).unwrap();
    let moov = &tree[1];
    assert_eq!(moov.child_kinds(), ["mvhd", "trak", "trak", "mvex"]);
    assert_eq!(moov.find("mvex").unwrap().child_kinds(), ["trex", "trex"]);
    let audio_trak = &moov.children[2];
    assert_eq!(audio_trak.child_kinds(), ["tkhd", "mdia"]);
    assert_eq!(
        audio_trak.find("mdia/minf").unwrap().child_kinds(),
        ["smhd", "dinf", "stbl"]
    );
    let mp4a = audio_trak.find("mdia/minf/stbl/stsd/mp4a").unwrap();
    assert_eq!(mp4a.child_kinds(), ["esds"]);

    // 4 fragments of 8, 8, 8, 6 frames, each with its silence in a second traf.
    assert_eq!(chunks.len(), 5);
    for c in &chunks[1..] {
        assert_eq!(c.kind, ChunkKind::Fragment);
        let t = inspect::tree(&c.data).unwrap();
        assert_eq!(t[0].child_kinds(), ["mfhd", "traf", "traf"]);
    }
    let seg = parse_segment(&concat(&chunks)).unwrap();
    let audio = seg.audio.as_ref().unwrap();
    assert_eq!(audio.asc, [0x11, 0x90]);
    assert_eq!(audio.object_type_indication, 0x40);
    assert_eq!((audio.channel_count, audio.sample_rate), (2, 48_000));
    assert_eq!(audio.timescale, 48_000);
    assert_eq!(audio.edit_media_time, None);
    assert_eq!(seg.sample_count(), 30);
    check_audio_timeline(&cfg, &seg, 0);
    // 30 frames = 1.25 s = 60 000 samples -> 59 AAC frames (60 416 samples).
    assert_eq!(seg.audio_sample_count(), 59);
    // Every silent frame is the same few bytes.
    let silent = fv_encoder::silent_frame().unwrap();
    assert!(seg.audio_samples().all(|s| s.data == silent));
    // The video still decodes.
    assert_eq!(inspect::decode_segment(&seg).unwrap().len(), 30);
}

#[test]
fn silence_decodes_to_digital_silence() {
    let cfg = EncoderConfig::new(64, 48, 30);
    let mut enc = StreamEncoder::new(cfg.clone()).unwrap();
    let chunks = encode(&mut enc, &frames(64, 48, 45), SegmentAudio::Silence, None);
    let seg = parse_segment(&concat(&chunks)).unwrap();
    let pcm = inspect::decode_audio(&seg).unwrap();
    assert_eq!((pcm.sample_rate, pcm.channels), (48_000, 2));
    // 1.5 s of video: at least 72 000 samples per channel, less than one AAC frame more.
    let per_channel = pcm.samples.len() / 2;
    assert!(
        (72_000..72_000 + 1024).contains(&per_channel),
        "{per_channel}"
    );
    assert!(
        pcm.samples.iter().all(|&s| s == 0.0),
        "silence is exact zeros"
    );
}

#[test]
fn pcm_sine_at_24k_comes_back_at_48k_with_the_same_frequency_and_level() {
    let cfg = EncoderConfig::new(64, 48, 24);
    let mut enc = StreamEncoder::new(cfg.clone()).unwrap();
    // 2 s: left 1 kHz at -6 dBFS, right 440 Hz at -12 dBFS, 24 kHz like LTX-2.
    let track = two_tones(24_000, 48_000, 1000.0, 0.5, 440.0, 0.25);
    let chunks = encode(
        &mut enc,
        &frames(64, 48, 48),
        SegmentAudio::Pcm,
        Some((&track, 0)),
    );
    let seg = parse_segment(&concat(&chunks)).unwrap();
    let audio = seg.audio.as_ref().unwrap();
    // The encoder's priming is hidden by the edit list.
    let priming = audio.edit_media_time.unwrap();
    assert_eq!(priming, 2048);
    check_audio_timeline(&cfg, &seg, priming);
    let pcm = inspect::decode_audio(&seg).unwrap();
    assert_eq!(pcm.skipped, priming);
    let (left, right) = split(&pcm.samples);
    // Skip the first and last 100 ms (resampler and codec edges).
    let (a, b) = (4_800, 2 * 48_000 - 4_800);
    let fl = frequency(&left[a..b], 48_000.0);
    let fr = frequency(&right[a..b], 48_000.0);
    assert!((fl - 1000.0).abs() < 2.0, "left {fl} Hz");
    assert!((fr - 440.0).abs() < 2.0, "right {fr} Hz");
    let (ll, lr) = (dbfs(&left[a..b]), dbfs(&right[a..b]));
    // A full-scale sine is -3.01 dBFS RMS.
    assert!((ll - (-6.02 - 3.01)).abs() < 0.5, "left level {ll:.2} dBFS");
    assert!(
        (lr - (-12.04 - 3.01)).abs() < 0.5,
        "right level {lr:.2} dBFS"
    );
    // Presentation sample n is input sample n: the best lag against the ideal tone is 0 (a
    // tone only pins the lag to within half its 48-sample period; the flash test pins it
    // absolutely).
    let ideal: Vec<f32> = (0..b)
        .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 48_000.0).sin())
        .collect();
    assert_eq!(best_lag(&ideal[a..b], &left, a, 20), 0);
    assert!(snr_db(&ideal[a..b], &left[a..b]) > 25.0);
}

#[test]
fn a_flash_and_a_click_stay_together_in_the_decoded_segment() {
    // Frame 30 of 72 (1.25 s at 24 fps) is white; the audio starts a 1 kHz burst at 1.25 s.
    let cfg = EncoderConfig {
        fragment_frames: 12,
        ..EncoderConfig::new(64, 48, 24)
    };
    let mut enc = StreamEncoder::new(cfg.clone()).unwrap();
    let (video, track) = flash_and_burst(64, 48, 24, 72, 30, 24_000);
    let chunks = encode(&mut enc, &video, SegmentAudio::Pcm, Some((&track, 40)));
    let seg = parse_segment(&concat(&chunks)).unwrap();
    let offset_ms = av_offset_ms(&seg, 24);
    println!("A/V offset in the decoded segment: {offset_ms:+.2} ms");
    assert!(
        offset_ms.abs() < 2.0,
        "audio onset vs flash: {offset_ms} ms"
    );
}

#[test]
fn pcm_arriving_after_the_video_goes_out_as_audio_only_fragments() {
    let cfg = EncoderConfig {
        fragment_frames: 10,
        ..EncoderConfig::new(64, 48, 25)
    };
    let mut enc = StreamEncoder::new(cfg.clone()).unwrap();
    enc.start_segment_with_audio(SegmentAudio::Pcm).unwrap();
    let mut chunks = Vec::new();
    for f in frames(64, 48, 35) {
        chunks.extend(enc.push(&f).unwrap());
    }
    // Init + 3 video-only fragments went out without waiting for audio.
    assert_eq!(chunks.len(), 4);
    assert!(enc.mime().unwrap().contains("mp4a.40.2"));
    for c in &chunks[1..] {
        let t = inspect::tree(&c.data).unwrap();
        assert_eq!(t[0].child_kinds(), ["mfhd", "traf"]);
    }
    let track = two_tones(24_000, 24_000 * 2, 300.0, 0.3, 300.0, 0.3);
    let caught_up = enc.push_audio(&track).unwrap();
    assert_eq!(
        caught_up.len(),
        1,
        "one audio-only fragment for the video sent"
    );
    assert_eq!(caught_up[0].frames, 0);
    chunks.extend(caught_up);
    let last = enc.finish_segment().unwrap();
    assert_eq!(last.len(), 1);
    let t = inspect::tree(&last[0].data).unwrap();
    assert_eq!(t[0].child_kinds(), ["mfhd", "traf", "traf"]);
    chunks.extend(last);

    let seg = parse_segment(&concat(&chunks)).unwrap();
    assert_eq!(seg.sample_count(), 35);
    let kinds: Vec<(bool, bool)> = seg
        .fragments
        .iter()
        .map(|f| (f.has_video, f.audio.is_some()))
        .collect();
    assert_eq!(
        kinds,
        [
            (true, false),
            (true, false),
            (true, false),
            (false, true),
            (true, true)
        ]
    );
    let seqs: Vec<u32> = seg.fragments.iter().map(|f| f.sequence_number).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    // 2 s of audio for 1.4 s of video: cut to the video.
    check_audio_timeline(&cfg, &seg, 2048);
    let pcm = inspect::decode_audio(&seg).unwrap();
    let per_channel = pcm.samples.len() / 2;
    assert!(
        (67_200..67_200 + 1024).contains(&per_channel),
        "{per_channel}"
    );
}

#[test]
fn short_pcm_is_padded_with_silence_and_missing_pcm_is_silence() {
    let cfg = EncoderConfig::new(64, 48, 24);
    let mut enc = StreamEncoder::new(cfg.clone()).unwrap();
    // 0.5 s of tone for 1 s of video.
    let track = two_tones(48_000, 24_000, 500.0, 0.5, 500.0, 0.5);
    let chunks = encode(
        &mut enc,
        &frames(64, 48, 24),
        SegmentAudio::Pcm,
        Some((&track, 5)),
    );
    let seg = parse_segment(&concat(&chunks)).unwrap();
    check_audio_timeline(&cfg, &seg, 2048);
    let pcm = inspect::decode_audio(&seg).unwrap();
    let (left, _) = split(&pcm.samples);
    assert!(left.len() >= 48_000);
    assert!(dbfs(&left[2_000..22_000]) > -12.0, "tone in the first half");
    let tail = &left[26_000..48_000];
    assert!(
        tail.iter().all(|s| s.abs() < 1e-3),
        "silence after the PCM ends"
    );

    // Declared PCM that never came: the track is silent, as long as the video.
    let chunks = encode(&mut enc, &frames(64, 48, 24), SegmentAudio::Pcm, None);
    let seg = parse_segment(&concat(&chunks)).unwrap();
    check_audio_timeline(&cfg, &seg, 2048);
    let pcm = inspect::decode_audio(&seg).unwrap();
    assert!(pcm.samples.len() / 2 >= 48_000);
    assert!(pcm.samples.iter().all(|&s| s == 0.0));
}

#[test]
fn mono_and_other_rates_are_accepted() {
    let cfg = EncoderConfig::new(64, 48, 24);
    let mut enc = StreamEncoder::new(cfg.clone()).unwrap();
    for rate in [16_000, 22_050, 44_100, 48_000, 96_000] {
        let n = rate as usize;
        let mono = AudioTrack {
            sample_rate: rate,
            channels: 1,
            samples: (0..n)
                .map(|i| 0.4 * (2.0 * std::f32::consts::PI * 700.0 * i as f32 / rate as f32).sin())
                .collect(),
        };
        let chunks = encode(
            &mut enc,
            &frames(64, 48, 24),
            SegmentAudio::Pcm,
            Some((&mono, 0)),
        );
        let seg = parse_segment(&concat(&chunks)).unwrap();
        let pcm = inspect::decode_audio(&seg).unwrap();
        let (l, r) = split(&pcm.samples);
        let f = frequency(&l[4_800..43_200], 48_000.0);
        assert!((f - 700.0).abs() < 2.0, "{rate} Hz input: {f} Hz");
        assert!(
            snr_db(&l[4_800..43_200], &r[4_800..43_200]) > 30.0,
            "mono -> both channels"
        );
    }
}

#[test]
fn audio_misuse_and_bad_pcm_are_clear_errors() {
    let cfg = EncoderConfig::new(64, 48, 24);
    let mut enc = StreamEncoder::new(cfg).unwrap();
    let good = two_tones(24_000, 2_400, 440.0, 0.1, 440.0, 0.1);
    assert_eq!(enc.push_audio(&good).unwrap_err(), EncodeError::NoSegment);

    enc.start_segment();
    let err = enc.push_audio(&good).unwrap_err();
    assert!(
        matches!(&err, EncodeError::AudioState(m) if m.contains("no audio track")),
        "{err}"
    );

    enc.start_segment_with_audio(SegmentAudio::Silence).unwrap();
    let err = enc.push_audio(&good).unwrap_err();
    assert!(
        matches!(&err, EncodeError::AudioState(m) if m.contains("Silence")),
        "{err}"
    );

    enc.start_segment_with_audio(SegmentAudio::Pcm).unwrap();
    let bad = AudioTrack {
        sample_rate: 24_000,
        channels: 2,
        samples: vec![0.0, f32::INFINITY],
    };
    let err = enc.push_audio(&bad).unwrap_err();
    assert!(
        matches!(&err, EncodeError::AudioInput(m) if m.contains("sample 1")),
        "{err}"
    );
    assert!(err.to_string().contains("invalid audio"), "{err}");
    // The segment survives a bad track and takes a good one; a second one is refused.
    assert_eq!(enc.push_audio(&good).unwrap(), Vec::<Chunk>::new());
    let err = enc.push_audio(&good).unwrap_err();
    assert!(
        matches!(&err, EncodeError::AudioState(m) if m.contains("already")),
        "{err}"
    );
    let mut chunks = enc.push(&frames(64, 48, 1)[0]).unwrap();
    chunks.extend(enc.finish_segment().unwrap());
    let seg = parse_segment(&concat(&chunks)).unwrap();
    assert_eq!(seg.sample_count(), 1);
    // One frame at 24 fps = 2000 samples + 2048 priming -> 4 AAC frames.
    assert_eq!(seg.audio_sample_count(), 4);

    // A segment with no frames produces nothing, audio or not.
    enc.start_segment_with_audio(SegmentAudio::Silence).unwrap();
    assert_eq!(enc.finish_segment().unwrap(), Vec::<Chunk>::new());
}

#[test]
fn video_only_segments_after_audio_ones_have_no_audio_trace() {
    let cfg = EncoderConfig::new(64, 48, 24);
    let mut enc = StreamEncoder::new(cfg.clone()).unwrap();
    encode(&mut enc, &frames(64, 48, 5), SegmentAudio::Silence, None);
    let mut seg = enc.begin_segment();
    let mut chunks = Vec::new();
    for f in frames(64, 48, 5) {
        chunks.extend(seg.push(&f).unwrap());
    }
    chunks.extend(seg.finish().unwrap());
    assert!(!enc.mime().unwrap().contains("mp4a"));
    let tree = inspect::tree(&chunks[0].data).unwrap();
    assert_eq!(tree[1].child_kinds(), ["mvhd", "trak", "mvex"]);
    let seg = parse_segment(&concat(&chunks)).unwrap();
    assert!(seg.audio.is_none());
    assert_eq!(seg.audio_sample_count(), 0);
}

/// Audio fragments continue each other, every AAC frame lasts 1024 ticks, and the presented
/// audio covers the video to within one AAC frame (never shorter).
fn check_audio_timeline(cfg: &EncoderConfig, seg: &inspect::SegmentInfo, priming: u64) {
    let mut t = 0u64;
    for f in &seg.fragments {
        if let Some(a) = &f.audio {
            assert_eq!(a.base_media_decode_time, t, "audio tfdt");
            for s in &a.samples {
                assert_eq!(s.duration, AAC_FRAME_SAMPLES);
                assert!(s.is_sync());
            }
            t += a.samples.len() as u64 * u64::from(AAC_FRAME_SAMPLES);
        }
        if f.has_video {
            // Audio sent so far reaches at least to the end of this fragment's video.
            let video_end =
                f.base_media_decode_time + f.samples.len() as u64 * u64::from(cfg.frame_duration());
            let video_end_48k = video_end * 48_000 / u64::from(cfg.timescale());
            if f.audio.is_some() {
                assert!(t - priming >= video_end_48k, "audio behind video");
            }
        }
    }
    let video = seg.sample_count() as u64 * u64::from(cfg.frame_duration()) * 48_000
        / u64::from(cfg.timescale());
    let presented = t - priming;
    assert!(
        presented >= video && presented < video + 1024,
        "audio {presented} vs video {video} samples"
    );
}
