//! Encoding and decoding of single messages (no IO). See the module docs of `ipc` for the
//! layout.

use super::{
    FromWorker, Init, IpcError, MAX_DIMENSION, MAX_MESSAGE_BYTES, MAX_TEXT_BYTES, ToWorker,
};
use crate::ipc::Finished;
use fv_core::{
    AudioTrack, ContinuationState, Frame, GenerateError, GenerationRequest, PixelFormat,
};
use std::path::PathBuf;

// Tags. The two directions use disjoint ranges, so a message sent the wrong way is caught.
const INIT: u8 = 0x01;
const RUN: u8 = 0x02;
const CANCEL: u8 = 0x03;
const SHUTDOWN: u8 = 0x04;
const HELLO: u8 = 0x41;
const BOOTED: u8 = 0x42;
const BOOT_FAILED: u8 = 0x43;
const WARMED: u8 = 0x44;
const STEP: u8 = 0x45;
pub(super) const FRAME: u8 = 0x46;
const DONE: u8 = 0x47;

/// Bytes after a frame's pixels: run id (8), end-of-batch (1), width (4), height (4), format (1).
pub(super) const FRAME_TRAILER: usize = 18;

const FORMAT_RGB24: u8 = 0;
const FORMAT_I420: u8 = 1;

/// Length of the `[u32 length][u8 tag]` header.
pub(super) const HEADER: usize = 5;

/// A whole message (header included) for the pool-to-worker direction.
pub(crate) fn encode_to_worker(message: &ToWorker) -> Result<Vec<u8>, IpcError> {
    let mut e = Enc::new();
    let tag = match message {
        ToWorker::Init(init) => {
            e.u32(init.worker_id);
            e.bool(init.frames_as_i420);
            match &init.warmup {
                Some(request) => {
                    e.u8(1);
                    e.request(request)?;
                }
                None => e.u8(0),
            }
            e.bytes(&init.payload)?;
            INIT
        }
        ToWorker::Run { run_id, request } => {
            e.u64(*run_id);
            e.request(request)?;
            RUN
        }
        ToWorker::Cancel { run_id } => {
            e.u64(*run_id);
            CANCEL
        }
        ToWorker::Shutdown => SHUTDOWN,
    };
    e.finish(tag)
}

/// A whole message (header included) for the worker-to-pool direction. Frames are copied
/// into the message here; [`super::write_frame_sync`] writes the same bytes without copying.
pub(crate) fn encode_from_worker(message: &FromWorker) -> Result<Vec<u8>, IpcError> {
    let mut e = Enc::new();
    let tag = match message {
        FromWorker::Hello { version, pid } => {
            e.u32(*version);
            e.u32(*pid);
            HELLO
        }
        FromWorker::Booted { generator } => {
            e.text(generator)?;
            BOOTED
        }
        FromWorker::BootFailed { error } => {
            e.text(error)?;
            BOOT_FAILED
        }
        FromWorker::Warmed { error } => {
            e.opt_text(error.as_deref())?;
            WARMED
        }
        FromWorker::Step {
            run_id,
            step,
            total,
        } => {
            e.u64(*run_id);
            e.u32(*step);
            e.u32(*total);
            STEP
        }
        FromWorker::Frame {
            run_id,
            end_of_batch,
            frame,
        } => {
            let (format, pixels) = frame_wire(frame);
            e.0.extend_from_slice(&pixels);
            e.0.extend_from_slice(&frame_trailer(*run_id, *end_of_batch, frame, format));
            FRAME
        }
        FromWorker::Done { run_id, result } => {
            e.u64(*run_id);
            match result {
                Ok(finished) => {
                    e.u8(0);
                    e.opt_state(finished.state.as_ref())?;
                    match &finished.audio {
                        Some(audio) => {
                            e.u8(1);
                            e.u32(audio.sample_rate);
                            e.0.extend_from_slice(&audio.channels.to_le_bytes());
                            e.len(audio.samples.len())?;
                            for sample in &audio.samples {
                                e.0.extend_from_slice(&sample.to_le_bytes());
                            }
                        }
                        None => e.u8(0),
                    }
                }
                Err(GenerateError::Cancelled) => e.u8(1),
                Err(GenerateError::InvalidRequest(m)) => {
                    e.u8(2);
                    e.text(m)?;
                }
                Err(GenerateError::Failed(m)) => {
                    e.u8(3);
                    e.text(m)?;
                }
            }
            DONE
        }
    };
    e.finish(tag)
}

/// The format byte and pixels a frame travels with: RGB24 and I420 as they are, any format
/// fv-core adds later as its RGB view.
pub(super) fn frame_wire(frame: &Frame) -> (u8, std::borrow::Cow<'_, [u8]>) {
    match frame.format() {
        PixelFormat::I420 => (FORMAT_I420, std::borrow::Cow::Borrowed(frame.data())),
        PixelFormat::Rgb24 => (FORMAT_RGB24, std::borrow::Cow::Borrowed(frame.data())),
        _ => (FORMAT_RGB24, frame.rgb()),
    }
}

pub(super) fn frame_trailer(
    run_id: u64,
    end_of_batch: bool,
    frame: &Frame,
    format: u8,
) -> [u8; FRAME_TRAILER] {
    let mut t = [0u8; FRAME_TRAILER];
    t[..8].copy_from_slice(&run_id.to_le_bytes());
    t[8] = u8::from(end_of_batch);
    t[9..13].copy_from_slice(&frame.width().to_le_bytes());
    t[13..17].copy_from_slice(&frame.height().to_le_bytes());
    t[17] = format;
    t
}

/// Decodes a pool-to-worker message from its tag and body.
pub(crate) fn decode_to_worker(tag: u8, body: &[u8]) -> Result<ToWorker, IpcError> {
    let mut d = Dec::new(body);
    let message = match tag {
        INIT => {
            let worker_id = d.u32()?;
            let frames_as_i420 = d.bool()?;
            let warmup = match d.bool()? {
                true => Some(d.request()?),
                false => None,
            };
            let payload = d.bytes()?.to_vec();
            ToWorker::Init(Box::new(Init {
                worker_id,
                frames_as_i420,
                warmup,
                payload,
            }))
        }
        RUN => ToWorker::Run {
            run_id: d.u64()?,
            request: Box::new(d.request()?),
        },
        CANCEL => ToWorker::Cancel { run_id: d.u64()? },
        SHUTDOWN => ToWorker::Shutdown,
        other => return Err(IpcError::malformed(format!("unknown tag {other:#04x}"))),
    };
    d.finish()?;
    Ok(message)
}

/// Decodes a worker-to-pool message from its tag and body. A frame keeps `body`'s buffer as
/// its pixels (no copy).
pub(crate) fn decode_from_worker(tag: u8, mut body: Vec<u8>) -> Result<FromWorker, IpcError> {
    if tag == FRAME {
        let Some(split) = body.len().checked_sub(FRAME_TRAILER) else {
            return Err(IpcError::malformed(
                "frame message shorter than its trailer",
            ));
        };
        let mut d = Dec::new(&body[split..]);
        let run_id = d.u64()?;
        let end_of_batch = d.bool()?;
        let width = d.u32()?;
        let height = d.u32()?;
        let format = d.u8()?;
        if width > MAX_DIMENSION || height > MAX_DIMENSION {
            return Err(IpcError::malformed(format!(
                "frame {width}x{height} is larger than {MAX_DIMENSION} in a dimension"
            )));
        }
        body.truncate(split);
        let frame = match format {
            FORMAT_RGB24 => Frame::from_rgb(width, height, body),
            FORMAT_I420 => Frame::from_i420(width, height, body),
            other => return Err(IpcError::malformed(format!("unknown pixel format {other}"))),
        }
        .map_err(|e| IpcError::malformed(format!("bad frame: {e}")))?;
        return Ok(FromWorker::Frame {
            run_id,
            end_of_batch,
            frame,
        });
    }
    let mut d = Dec::new(&body);
    let message = match tag {
        HELLO => FromWorker::Hello {
            version: d.u32()?,
            pid: d.u32()?,
        },
        BOOTED => FromWorker::Booted {
            generator: d.text()?,
        },
        BOOT_FAILED => FromWorker::BootFailed { error: d.text()? },
        WARMED => FromWorker::Warmed {
            error: d.opt_text()?,
        },
        STEP => FromWorker::Step {
            run_id: d.u64()?,
            step: d.u32()?,
            total: d.u32()?,
        },
        DONE => {
            let run_id = d.u64()?;
            let result = match d.u8()? {
                0 => {
                    let state = d.opt_state()?;
                    let audio = match d.bool()? {
                        true => Some(d.audio()?),
                        false => None,
                    };
                    Ok(Finished { state, audio })
                }
                1 => Err(GenerateError::Cancelled),
                2 => Err(GenerateError::InvalidRequest(d.text()?)),
                3 => Err(GenerateError::Failed(d.text()?)),
                other => return Err(IpcError::malformed(format!("unknown result kind {other}"))),
            };
            FromWorker::Done { run_id, result }
        }
        other => return Err(IpcError::malformed(format!("unknown tag {other:#04x}"))),
    };
    d.finish()?;
    Ok(message)
}

/// Message body under construction (starts with room for the header).
struct Enc(Vec<u8>);

impl Enc {
    fn new() -> Self {
        Self(vec![0; HEADER])
    }

    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }

    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn len(&mut self, n: usize) -> Result<(), IpcError> {
        let n = u32::try_from(n).map_err(|_| IpcError::TooLarge {
            len: n,
            max: MAX_MESSAGE_BYTES,
        })?;
        self.u32(n);
        Ok(())
    }

    fn bytes(&mut self, v: &[u8]) -> Result<(), IpcError> {
        self.len(v.len())?;
        self.0.extend_from_slice(v);
        Ok(())
    }

    fn text(&mut self, v: &str) -> Result<(), IpcError> {
        if v.len() > MAX_TEXT_BYTES {
            return Err(IpcError::TooLarge {
                len: v.len(),
                max: MAX_TEXT_BYTES,
            });
        }
        self.bytes(v.as_bytes())
    }

    fn opt_text(&mut self, v: Option<&str>) -> Result<(), IpcError> {
        match v {
            Some(v) => {
                self.u8(1);
                self.text(v)
            }
            None => {
                self.u8(0);
                Ok(())
            }
        }
    }

    fn opt_state(&mut self, state: Option<&ContinuationState>) -> Result<(), IpcError> {
        match state {
            Some(state) => {
                self.u8(1);
                self.text(&state.kind)?;
                let json = serde_json::to_vec(&state.payload)
                    .map_err(|e| IpcError::malformed(format!("state payload: {e}")))?;
                self.bytes(&json)
            }
            None => {
                self.u8(0);
                Ok(())
            }
        }
    }

    fn request(&mut self, r: &GenerationRequest) -> Result<(), IpcError> {
        self.text(&r.session_id)?;
        self.u32(r.segment_idx);
        self.text(&r.prompt)?;
        self.opt_text(r.negative_prompt.as_deref())?;
        self.0.extend_from_slice(&r.seed.to_le_bytes());
        self.u32(r.num_inference_steps);
        self.0.extend_from_slice(&r.guidance_scale.to_le_bytes());
        self.u32(r.width);
        self.u32(r.height);
        self.u32(r.num_frames);
        self.u32(r.fps);
        match &r.image_path {
            Some(path) => {
                self.u8(1);
                self.bytes(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))?;
            }
            None => self.u8(0),
        }
        self.opt_state(r.state.as_ref())
    }

    /// Fills in the header; fails when the message is over [`MAX_MESSAGE_BYTES`].
    fn finish(mut self, tag: u8) -> Result<Vec<u8>, IpcError> {
        let len = self.0.len() - HEADER + 1;
        if len > MAX_MESSAGE_BYTES {
            return Err(IpcError::TooLarge {
                len,
                max: MAX_MESSAGE_BYTES,
            });
        }
        // `len` fits: MAX_MESSAGE_BYTES < u32::MAX.
        self.0[..4].copy_from_slice(&(len as u32).to_le_bytes());
        self.0[4] = tag;
        Ok(self.0)
    }
}

/// A cursor over a message body; every read is checked against what is left.
struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], IpcError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| {
                IpcError::malformed(format!(
                    "needs {n} more bytes at offset {}, has {}",
                    self.pos,
                    self.buf.len() - self.pos
                ))
            })?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], IpcError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, IpcError> {
        Ok(self.array::<1>()?[0])
    }

    fn bool(&mut self) -> Result<bool, IpcError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(IpcError::malformed(format!("{other} is not a boolean"))),
        }
    }

    fn u16(&mut self) -> Result<u16, IpcError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, IpcError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, IpcError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, IpcError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn f64(&mut self) -> Result<f64, IpcError> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], IpcError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn text(&mut self) -> Result<String, IpcError> {
        let bytes = self.bytes()?;
        if bytes.len() > MAX_TEXT_BYTES {
            return Err(IpcError::TooLarge {
                len: bytes.len(),
                max: MAX_TEXT_BYTES,
            });
        }
        String::from_utf8(bytes.to_vec())
            .map_err(|_| IpcError::malformed("string is not valid UTF-8"))
    }

    fn opt_text(&mut self) -> Result<Option<String>, IpcError> {
        match self.bool()? {
            true => Ok(Some(self.text()?)),
            false => Ok(None),
        }
    }

    fn opt_state(&mut self) -> Result<Option<ContinuationState>, IpcError> {
        if !self.bool()? {
            return Ok(None);
        }
        let kind = self.text()?;
        let payload = serde_json::from_slice(self.bytes()?)
            .map_err(|e| IpcError::malformed(format!("state payload: {e}")))?;
        Ok(Some(ContinuationState { kind, payload }))
    }

    fn audio(&mut self) -> Result<AudioTrack, IpcError> {
        let sample_rate = self.u32()?;
        let channels = self.u16()?;
        let count = self.u32()? as usize;
        let bytes = self.take(count.checked_mul(4).ok_or_else(|| {
            IpcError::malformed(format!("{count} audio samples do not fit a message"))
        })?)?;
        let samples = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(AudioTrack {
            sample_rate,
            channels,
            samples,
        })
    }

    fn request(&mut self) -> Result<GenerationRequest, IpcError> {
        Ok(GenerationRequest {
            session_id: self.text()?,
            segment_idx: self.u32()?,
            prompt: self.text()?,
            negative_prompt: self.opt_text()?,
            seed: self.i64()?,
            num_inference_steps: self.u32()?,
            guidance_scale: self.f64()?,
            width: self.u32()?,
            height: self.u32()?,
            num_frames: self.u32()?,
            fps: self.u32()?,
            image_path: match self.bool()? {
                true => Some(PathBuf::from(
                    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(self.bytes()?),
                )),
                false => None,
            },
            state: self.opt_state()?,
        })
    }

    fn finish(&self) -> Result<(), IpcError> {
        let left = self.buf.len() - self.pos;
        if left > 0 {
            return Err(IpcError::malformed(format!(
                "{left} unexpected bytes after the message"
            )));
        }
        Ok(())
    }
}
