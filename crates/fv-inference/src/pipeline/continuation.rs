//! The `ltx2.v1` continuation state (protocol-facts §10, FastVideo's `LTX2ContinuationState`
//! as its Dreamverse worker fills it): what a segment hands the next one.
//!
//! Payload fields written and read:
//! - `schema_version` (1; anything else is refused), `segment_index` (the finished segment);
//! - `video_conditioning_frame_idx` (0: the frames condition the start of the next segment),
//!   `video_conditioning_strength` (1.0: kept clean), `audio_conditioning_num_frames` (49:
//!   video frames' worth of audio the next segment starts from), `audio_conditioning_strength`
//!   (1.0), `video_position_offset_sec` (40/24: where the video starts on the audio's time
//!   axis), `audio_sample_rate`, `metadata` (what made it; not read back);
//! - `video.frames_b64`: the segment's last 9 decoded RGB frames as base64 PNG;
//! - `audio.safetensors_b64`: the final audio latents (normalised, `[1, C, T, M]` f32) as the
//!   base64 of a safetensors file with the single tensor `t`.
//!
//! The two big fields are exactly the ones the project's store moves to blobs
//! (`fv_store::payload`), so a snapshot's JSON stays small. A state this pipeline made is
//! also kept decoded in the worker ([`HotState`]): the next segment in the same worker uses it
//! without decoding PNGs again, when the incoming payload's fingerprint says it is the same.

use crate::{InferenceError, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use candle_core::{DType, Device, Tensor};
use fv_core::ContinuationState;
use serde_json::{Map, Value, json};

/// The state's kind.
pub const LTX2_STATE_KIND: &str = "ltx2.v1";
/// The payload schema this pipeline reads and writes.
pub const SCHEMA_VERSION: u64 = 1;
/// Decoded frames a segment hands over (FastVideo's `conditioning_num_frames`).
pub const CONDITIONING_FRAMES: usize = 9;
/// Video frames' worth of audio the next segment starts from (FastVideo's
/// `AUDIO_CONDITIONING_NUM_FRAMES`): 49 frames at 24 fps → 51 audio latent frames.
pub const AUDIO_CONDITIONING_FRAMES: u32 = 49;
/// Most frames a state may carry (what one VAE encode takes).
pub const MAX_STATE_FRAMES: usize = crate::vae_encoder::MAX_ENCODE_FRAMES;
/// Largest frame side a state may carry.
pub const MAX_STATE_SIDE: u32 = crate::vae_encoder::MAX_ENCODE_SIDE as u32;
/// Most RGB bytes a state's frames may decode to, all frames together (9 frames of 4096²
/// take 453 MiB): a few kilobytes of PNG can inflate to 48 MiB per frame, so the budget is
/// checked from frame 0's size before any other frame is decoded.
pub const MAX_STATE_RGB_BYTES: usize = 1 << 30;
/// Largest base64 string one field may hold (a 4096² RGB PNG is at most ~50 MB).
pub const MAX_FIELD_B64_BYTES: usize = 96 << 20;
/// Largest `audio_conditioning_num_frames` accepted.
pub const MAX_AUDIO_CONDITIONING_FRAMES: u32 = 1024;
/// Largest `video_position_offset_sec` accepted.
pub const MAX_POSITION_OFFSET_SEC: f64 = 60.0;

/// A decoded `ltx2.v1` state.
#[derive(Debug, Clone)]
pub struct Continuation {
    /// The segment that made it.
    pub segment_index: u64,
    /// RGB24 frames, oldest first, each `width·height·3` bytes.
    pub frames: Vec<Vec<u8>>,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// How strongly the frames are kept (1 = exactly).
    pub video_strength: f32,
    /// Normalised audio latents `[1, C, T, M]` f32, if the state has audio.
    pub audio: Option<Tensor>,
    /// Video frames' worth of audio the next segment starts from.
    pub audio_frames: u32,
    /// How strongly the audio prefix is kept.
    pub audio_strength: f32,
    /// Where the next segment's video starts on its audio's time axis (seconds); `None`:
    /// `(audio_frames − frames) / fps`.
    pub offset_sec: Option<f32>,
}

/// A state this worker made, decoded, with the fingerprint of the payload it was sent as.
#[derive(Debug, Clone)]
pub(crate) struct HotState {
    pub(crate) fingerprint: u64,
    pub(crate) state: Continuation,
}

/// Why a state cannot be used: the client's (or another generator's), so `InvalidRequest`.
fn bad(msg: impl std::fmt::Display) -> InferenceError {
    InferenceError::Input(format!("continuation state: {msg}"))
}

/// 64-bit FNV-1a over `bytes`, folded into `h` (a fixed hash: std's may change).
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Fingerprint of a payload: every field this module reads, the frames and audio strings
/// included (a state edited by a client is not mistaken for the one this worker made).
pub(crate) fn fingerprint(payload: &Map<String, Value>) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325;
    for key in [
        "schema_version",
        "segment_index",
        "video_conditioning_frame_idx",
        "video_conditioning_strength",
        "audio_conditioning_num_frames",
        "audio_conditioning_strength",
        "video_position_offset_sec",
    ] {
        h = fnv(h, key.as_bytes());
        h = fnv(
            h,
            payload
                .get(key)
                .map(Value::to_string)
                .unwrap_or_default()
                .as_bytes(),
        );
    }
    let frames = payload
        .get("video")
        .and_then(|v| v.get("frames_b64"))
        .and_then(Value::as_array);
    for f in frames.into_iter().flatten() {
        h = fnv(h, f.as_str().unwrap_or_default().as_bytes());
        h = fnv(h, b"|");
    }
    let audio = payload
        .get("audio")
        .and_then(|a| a.get("safetensors_b64"))
        .and_then(Value::as_str);
    fnv(h, audio.unwrap_or_default().as_bytes())
}

fn number(payload: &Map<String, Value>, key: &str) -> Result<Option<f64>> {
    match payload.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| bad(format!("`{key}` must be a number, got {v}"))),
    }
}

fn strength(payload: &Map<String, Value>, key: &str) -> Result<f32> {
    let s = number(payload, key)?.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&s) {
        return Err(bad(format!("`{key}` must be in [0, 1], got {s}")));
    }
    Ok(s as f32)
}

/// Checks the kind and the scalar fields; returns the payload.
pub(crate) fn check_envelope(state: &ContinuationState) -> Result<&Map<String, Value>> {
    if state.kind != LTX2_STATE_KIND {
        return Err(bad(format!(
            "kind {:?} is not {LTX2_STATE_KIND:?} (this generator continues only LTX-2 segments)",
            state.kind
        )));
    }
    let p = &state.payload;
    match p.get("schema_version").and_then(Value::as_u64) {
        Some(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(bad(format!(
                "schema_version {v} is not supported (this generator reads {SCHEMA_VERSION})"
            )));
        }
        None => return Err(bad("`schema_version` is missing or not an integer")),
    }
    Ok(p)
}

/// Decodes a payload (after [`check_envelope`]) for a model whose audio latents are
/// `[1, channels, T, mel]`.
pub(crate) fn decode(
    p: &Map<String, Value>,
    channels: usize,
    mel: usize,
    device: &Device,
) -> Result<Continuation> {
    let segment_index = match p.get("segment_index") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().ok_or_else(|| {
            bad(format!(
                "`segment_index` must be a non-negative integer, got {v}"
            ))
        })?,
    };
    if let Some(idx) = number(p, "video_conditioning_frame_idx")?
        && idx != 0.0
    {
        return Err(bad(format!(
            "video_conditioning_frame_idx {idx}: only 0 (the start of the next segment) is \
             supported"
        )));
    }
    let video_strength = strength(p, "video_conditioning_strength")?;
    let audio_strength = strength(p, "audio_conditioning_strength")?;
    let audio_frames = match number(p, "audio_conditioning_num_frames")? {
        None => AUDIO_CONDITIONING_FRAMES,
        Some(n)
            if n.fract() == 0.0
                && (1.0..=f64::from(MAX_AUDIO_CONDITIONING_FRAMES)).contains(&n) =>
        {
            n as u32
        }
        Some(n) => {
            return Err(bad(format!(
                "audio_conditioning_num_frames must be an integer 1..={MAX_AUDIO_CONDITIONING_FRAMES}, \
                 got {n}"
            )));
        }
    };
    let offset_sec = match number(p, "video_position_offset_sec")? {
        None => None,
        Some(s) if (0.0..=MAX_POSITION_OFFSET_SEC).contains(&s) => Some(s as f32),
        Some(s) => {
            return Err(bad(format!(
                "video_position_offset_sec must be in [0, {MAX_POSITION_OFFSET_SEC}], got {s}"
            )));
        }
    };

    let video = p
        .get("video")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("`video` is missing (no frames to continue from)"))?;
    if video.contains_key("blob_id") && !video.contains_key("frames_b64") {
        return Err(bad(
            "video.blob_id: the frames are in a blob store the server did not fill in",
        ));
    }
    let list = video
        .get("frames_b64")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("video.frames_b64 must be an array of base64 PNG frames"))?;
    if list.is_empty() || list.len() > MAX_STATE_FRAMES {
        return Err(bad(format!(
            "video.frames_b64 holds {} frames; 1 to {MAX_STATE_FRAMES} are accepted",
            list.len()
        )));
    }
    let mut frames = Vec::with_capacity(list.len());
    let mut size = None;
    for (i, f) in list.iter().enumerate() {
        let what = format!("video.frames_b64[{i}]");
        let png = b64(f.as_str(), &what)?;
        let (w, h, rgb) = decode_png(&png, size).map_err(|e| bad(format!("{what}: {e}")))?;
        if size.is_none() {
            let total = list.len() * rgb.len();
            if total > MAX_STATE_RGB_BYTES {
                return Err(bad(format!(
                    "video.frames_b64: {} frames of {w}x{h} decode to {total} bytes, at most \
                     {MAX_STATE_RGB_BYTES}",
                    list.len()
                )));
            }
            size = Some((w, h));
        }
        frames.push(rgb);
    }
    let (width, height) = size.unwrap_or_default();

    let audio = match p.get("audio") {
        None | Some(Value::Null) => None,
        Some(Value::Object(a)) => {
            if a.contains_key("blob_id") && !a.contains_key("safetensors_b64") {
                return Err(bad(
                    "audio.blob_id: the latents are in a blob store the server did not fill in",
                ));
            }
            let bytes = b64(
                a.get("safetensors_b64").and_then(Value::as_str),
                "audio.safetensors_b64",
            )?;
            Some(decode_audio(&bytes, channels, mel, device)?)
        }
        Some(v) => return Err(bad(format!("`audio` must be an object, got {v}"))),
    };
    Ok(Continuation {
        segment_index,
        frames,
        width,
        height,
        video_strength,
        audio,
        audio_frames,
        audio_strength,
        offset_sec,
    })
}

fn b64(s: Option<&str>, what: &str) -> Result<Vec<u8>> {
    let s = s.ok_or_else(|| bad(format!("{what} must be a base64 string")))?;
    if s.len() > MAX_FIELD_B64_BYTES {
        return Err(bad(format!(
            "{what} is {} bytes of base64, at most {MAX_FIELD_B64_BYTES}",
            s.len()
        )));
    }
    B64.decode(s)
        .map_err(|e| bad(format!("{what} is not base64: {e}")))
}

/// PNG → (width, height, RGB24). 8-bit RGB or RGBA (alpha dropped), at most
/// [`MAX_STATE_SIDE`] per side, and `expect`'s size when given (checked before the pixels
/// are decoded).
fn decode_png(
    bytes: &[u8],
    expect: Option<(u32, u32)>,
) -> std::result::Result<(u32, u32, Vec<u8>), String> {
    let limits = png::Limits {
        bytes: (MAX_STATE_SIDE as usize).pow(2) * 4,
    };
    let decoder = png::Decoder::new_with_limits(std::io::Cursor::new(bytes), limits);
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("not a PNG ({e})"))?;
    let info = reader.info();
    let (w, h) = (info.width, info.height);
    if w == 0 || h == 0 || w > MAX_STATE_SIDE || h > MAX_STATE_SIDE {
        return Err(format!(
            "{w}x{h} frame; sides of 1 to {MAX_STATE_SIDE} are accepted"
        ));
    }
    if let Some((ew, eh)) = expect
        && (ew, eh) != (w, h)
    {
        return Err(format!(
            "is {w}x{h}, frame 0 is {ew}x{eh}; the frames must share one size"
        ));
    }
    let (color, depth) = reader.output_color_type();
    if depth != png::BitDepth::Eight || !matches!(color, png::ColorType::Rgb | png::ColorType::Rgba)
    {
        return Err(format!(
            "a {color:?} {depth:?}-bit PNG; 8-bit RGB or RGBA is accepted"
        ));
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| "frame too large".to_string())?;
    let mut buf = vec![0u8; size];
    let out = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("corrupt PNG ({e})"))?;
    buf.truncate(out.buffer_size());
    let rgb = if color == png::ColorType::Rgba {
        buf.chunks_exact(4)
            .flat_map(|px| [px[0], px[1], px[2]])
            .collect()
    } else {
        buf
    };
    Ok((w, h, rgb))
}

/// RGB24 → PNG (fast compression: it runs after every segment).
fn encode_png(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let io = |e: png::EncodingError| InferenceError::Io(format!("PNG encoding failed: {e}"));
    let mut writer = enc.write_header().map_err(io)?;
    writer.write_image_data(rgb).map_err(io)?;
    writer.finish().map_err(io)?;
    Ok(out)
}

/// The safetensors bytes of one tensor `t`.
fn decode_audio(bytes: &[u8], channels: usize, mel: usize, device: &Device) -> Result<Tensor> {
    let mut map = candle_core::safetensors::load_buffer(bytes, device).map_err(|e| {
        bad(format!(
            "audio.safetensors_b64 is not a safetensors file: {e}"
        ))
    })?;
    let t = map
        .remove("t")
        .ok_or_else(|| bad("audio.safetensors_b64 holds no tensor `t`"))?;
    if !t.dtype().is_float() {
        return Err(bad(format!(
            "audio latents are {:?}, not floats",
            t.dtype()
        )));
    }
    let t = match t.rank() {
        3 => t.unsqueeze(0)?,
        _ => t,
    };
    let frames = crate::audio_vae::MAX_AUDIO_LATENT_FRAMES;
    match t.dims() {
        &[1, c, l, m] if c == channels && m == mel && l >= 1 && l <= frames => {}
        d => {
            return Err(bad(format!(
                "audio latents are {d:?}; this model's are [1, {channels}, T, {mel}] with T \
                 1..={frames}"
            )));
        }
    }
    let t = t.to_dtype(DType::F32)?;
    // Every value (a max would skip NaN); at most 1 × C × 2048 × M floats.
    let finite = t
        .flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .all(|v| v.is_finite());
    if !finite {
        return Err(bad("audio latents are not finite"));
    }
    Ok(t)
}

impl Continuation {
    /// Reads an `ltx2.v1` state for a model whose audio latents are `[1, channels, T, mel]`
    /// (see the module docs for the fields). A state of another kind or schema, or a
    /// malformed one, is an [`InferenceError::Input`] naming the field.
    pub fn from_state(
        state: &ContinuationState,
        channels: usize,
        mel: usize,
        device: &Device,
    ) -> Result<Self> {
        decode(check_envelope(state)?, channels, mel, device)
    }

    /// The `ltx2.v1` state carrying this continuation, with `metadata` (any JSON value) and
    /// the audio's `sample_rate`.
    pub fn to_state(&self, metadata: Value, sample_rate: u32) -> Result<ContinuationState> {
        Ok(ContinuationState {
            kind: LTX2_STATE_KIND.into(),
            payload: self.to_payload(metadata, sample_rate)?,
        })
    }

    /// The payload this state is sent as (see the module docs), with `metadata`.
    pub(crate) fn to_payload(
        &self,
        metadata: Value,
        sample_rate: u32,
    ) -> Result<Map<String, Value>> {
        // PNG encoding is the slow part (9 frames of up to 1920×1088): one thread per frame.
        let pngs: Vec<Result<Vec<u8>>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .frames
                .iter()
                .map(|f| s.spawn(move || encode_png(self.width, self.height, f)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(InferenceError::Io("PNG encoder thread panicked".into()))
                    })
                })
                .collect()
        });
        let frames_b64 = pngs
            .into_iter()
            .map(|p| p.map(|p| Value::String(B64.encode(p))))
            .collect::<Result<Vec<_>>>()?;
        let mut payload = Map::new();
        payload.insert("schema_version".into(), json!(SCHEMA_VERSION));
        payload.insert("segment_index".into(), json!(self.segment_index));
        payload.insert("video_conditioning_frame_idx".into(), json!(0));
        payload.insert(
            "video_conditioning_strength".into(),
            json!(f64::from(self.video_strength)),
        );
        payload.insert(
            "audio_conditioning_num_frames".into(),
            json!(self.audio_frames),
        );
        payload.insert(
            "audio_conditioning_strength".into(),
            json!(f64::from(self.audio_strength)),
        );
        if let Some(o) = self.offset_sec {
            payload.insert("video_position_offset_sec".into(), json!(f64::from(o)));
        }
        payload.insert("audio_sample_rate".into(), json!(sample_rate));
        payload.insert("metadata".into(), metadata);
        payload.insert("video".into(), json!({ "frames_b64": frames_b64 }));
        if let Some(a) = &self.audio {
            let bytes = safetensors::serialize([("t", a)], None)
                .map_err(|e| InferenceError::Io(format!("audio latents: {e}")))?;
            payload.insert(
                "audio".into(),
                json!({ "safetensors_b64": B64.encode(bytes) }),
            );
        }
        Ok(payload)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Continuation {
        let (w, h) = (6u32, 4u32);
        let frames = (0..3u8)
            .map(|k| {
                (0..w * h * 3)
                    .map(|i| (i as u8).wrapping_mul(7).wrapping_add(k))
                    .collect()
            })
            .collect();
        let audio = Tensor::arange(0f32, 2.0 * 5.0 * 4.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 2, 5, 4))
            .unwrap();
        Continuation {
            segment_index: 3,
            frames,
            width: w,
            height: h,
            video_strength: 1.0,
            audio: Some(audio),
            audio_frames: 49,
            audio_strength: 0.5,
            offset_sec: Some(40.0 / 24.0),
        }
    }

    fn state(payload: Map<String, Value>) -> ContinuationState {
        ContinuationState {
            kind: LTX2_STATE_KIND.into(),
            payload,
        }
    }

    #[test]
    fn a_state_round_trips_through_its_payload() {
        let c = sample();
        let payload = c.to_payload(json!({"by": "test"}), 24_000).unwrap();
        let s = state(payload);
        let p = check_envelope(&s).unwrap();
        let back = decode(p, 2, 4, &Device::Cpu).unwrap();
        assert_eq!(back.frames, c.frames);
        assert_eq!((back.width, back.height, back.segment_index), (6, 4, 3));
        assert_eq!((back.audio_frames, back.audio_strength), (49, 0.5));
        assert_eq!(back.offset_sec, c.offset_sec);
        let a: Vec<f32> = back
            .audio
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = c.audio.unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b);
        // the fingerprint sees the frames
        let mut other = s.payload.clone();
        assert_eq!(fingerprint(&other), fingerprint(&s.payload));
        other["video"]["frames_b64"][1] = other["video"]["frames_b64"][0].clone();
        assert_ne!(fingerprint(&other), fingerprint(&s.payload));
    }

    #[test]
    fn malformed_or_foreign_states_are_clear_errors() {
        let good = sample().to_payload(json!({}), 24_000).unwrap();
        let err = |payload: Map<String, Value>, kind: &str| -> String {
            let s = ContinuationState {
                kind: kind.into(),
                payload,
            };
            match check_envelope(&s).and_then(|p| decode(p, 2, 4, &Device::Cpu)) {
                Ok(_) => panic!("accepted"),
                Err(e) => e.to_string(),
            }
        };
        assert!(err(good.clone(), "mock.v1").contains("\"mock.v1\" is not \"ltx2.v1\""));
        let edit = |f: &dyn Fn(&mut Map<String, Value>)| {
            let mut p = good.clone();
            f(&mut p);
            err(p, LTX2_STATE_KIND)
        };
        let cases: Vec<(String, &str)> = vec![
            (
                edit(&|p| {
                    p.insert("schema_version".into(), json!(2));
                }),
                "schema_version 2",
            ),
            (
                edit(&|p| {
                    p.remove("schema_version");
                }),
                "schema_version",
            ),
            (
                edit(&|p| {
                    p.remove("video");
                }),
                "`video` is missing",
            ),
            (
                edit(&|p| {
                    p["video"] = json!({"blob_id": "b1"});
                }),
                "blob store",
            ),
            (
                edit(&|p| {
                    p["video"]["frames_b64"] = json!([]);
                }),
                "0 frames",
            ),
            (
                edit(&|p| {
                    p["video"]["frames_b64"][0] = json!("@@@");
                }),
                "not base64",
            ),
            (
                edit(&|p| {
                    p["video"]["frames_b64"][0] = json!(B64.encode(b"hello"));
                }),
                "not a PNG",
            ),
            (
                edit(&|p| {
                    let small = encode_png(2, 2, &[0; 12]).unwrap();
                    p["video"]["frames_b64"][1] = json!(B64.encode(small));
                }),
                "share one size",
            ),
            (
                edit(&|p| {
                    p["video_conditioning_strength"] = json!(1.5);
                }),
                "[0, 1]",
            ),
            (
                edit(&|p| {
                    p["video_conditioning_frame_idx"] = json!(3);
                }),
                "only 0",
            ),
            (
                edit(&|p| {
                    p["audio_conditioning_num_frames"] = json!(0);
                }),
                "audio_conditioning_num_frames",
            ),
            (
                edit(&|p| {
                    p["video_position_offset_sec"] = json!(-1.0);
                }),
                "video_position_offset_sec",
            ),
            (
                edit(&|p| {
                    p["segment_index"] = json!("x");
                }),
                "segment_index",
            ),
            (
                edit(&|p| {
                    p["audio"] = json!({"safetensors_b64": B64.encode(b"nope")});
                }),
                "not a safetensors",
            ),
            (
                edit(&|p| {
                    p["audio"] = json!(3);
                }),
                "must be an object",
            ),
        ];
        for (msg, want) in cases {
            assert!(msg.contains(want), "{want:?} not in {msg:?}");
            assert!(
                msg.starts_with("invalid input: continuation state"),
                "{msg}"
            );
        }
        // A decompression bomb: 22 copies of one 0.25 MB PNG of 4096² black pixels would
        // decode to 1.1 GB; refused after the first frame.
        let black = encode_png(4096, 4096, &vec![0; 4096 * 4096 * 3]).unwrap();
        assert!(black.len() < 1 << 20, "{}", black.len());
        let bomb = edit(&|p| {
            p["video"]["frames_b64"] = json!(vec![B64.encode(&black); 22]);
        });
        assert!(bomb.contains("22 frames of 4096x4096"), "{bomb}");
        // NaN audio latents (not the first value)
        let mut c = sample();
        let mut v: Vec<f32> = (0..40).map(|i| i as f32).collect();
        v[7] = f32::NAN;
        c.audio = Some(Tensor::from_vec(v, (1, 2, 5, 4), &Device::Cpu).unwrap());
        let nan = err(c.to_payload(json!({}), 24_000).unwrap(), LTX2_STATE_KIND);
        assert!(nan.contains("not finite"), "{nan}");
        // audio latents of another model's shape
        let s = state(good);
        let e = decode(check_envelope(&s).unwrap(), 8, 16, &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("[1, 8, T, 16]"), "{e}");
    }
}
