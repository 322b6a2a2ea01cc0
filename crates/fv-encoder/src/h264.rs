//! The openh264 side: RGB24 or I420 frame -> H.264 access unit, split into NAL units.

use crate::{EncodeError, EncoderConfig, MAX_QP};
use fv_core::PixelFormat;
use openh264::encoder::{
    BitRate, Complexity, Encoder, FrameRate, IntraFramePeriod, Profile, QpRange, RateControlMode,
    UsageType,
};
use openh264::formats::{RgbSliceU8, YUVBuffer, YUVSlices};
use openh264::{OpenH264API, Timestamp};

/// NAL unit types we treat specially (ITU-T H.264 table 7-1).
pub(crate) const NAL_IDR: u8 = 5;
pub(crate) const NAL_SPS: u8 = 7;
pub(crate) const NAL_PPS: u8 = 8;

/// One encoded frame: its slice/SEI NAL units already in MP4 form (4-byte big-endian length
/// prefix each), plus the parameter sets the encoder put in front of it, if any.
#[derive(Debug, Default)]
pub(crate) struct EncodedFrame {
    pub sample: Vec<u8>,
    pub is_idr: bool,
    pub sps: Option<Vec<u8>>,
    pub pps: Option<Vec<u8>>,
}

/// An openh264 encoder plus the reusable I420 buffer RGB24 frames are converted into.
pub(crate) struct H264Encoder {
    encoder: Encoder,
    yuv: YUVBuffer,
    width: u32,
    height: u32,
    fps: u32,
    /// Frames encoded over the encoder's whole life; feeds the (monotonic) encoder timestamps.
    frames_encoded: u64,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("frames_encoded", &self.frames_encoded)
            .finish_non_exhaustive()
    }
}

/// Sets openh264's log level to quiet before its first frame. The crate does it only after
/// `InitializeExt`, whose parameter check prints one `Warning: bEnableFrameSkip = 0 ...` line
/// to stderr per encoder (we disable frame skipping on purpose: a skipped frame would leave a
/// hole in the sample timeline), so 1000 sessions meant 1000 lines in an operator's log. The
/// safe API has no way to set the level earlier.
#[allow(unsafe_code)]
fn silence(encoder: &mut Encoder) {
    let mut level: std::ffi::c_int = openh264_sys2::WELS_LOG_QUIET as std::ffi::c_int;
    // SAFETY: `raw_api` is the encoder's own, live (created by `with_api_config`, not yet
    // initialized, which `SetOption(TRACE_LEVEL)` allows: the trace object exists from
    // construction). The option reads one `int` through the pointer during the call; `level`
    // outlives the call and nothing else aliases it. A failure only leaves logging on.
    let status = unsafe {
        encoder.raw_api().set_option(
            openh264_sys2::ENCODER_OPTION_TRACE_LEVEL,
            (&raw mut level).cast::<std::ffi::c_void>(),
        )
    };
    if status != 0 {
        tracing::debug!(status, "could not quiet openh264's log");
    }
}

impl H264Encoder {
    /// `config` must already be validated (even sizes: `YUVBuffer` asserts on odd ones).
    pub fn new(config: &EncoderConfig) -> Result<Self, EncodeError> {
        let cfg = openh264::encoder::EncoderConfig::new()
            .bitrate(BitRate::from_bps(config.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(config.fps as f32))
            .rate_control_mode(RateControlMode::Bitrate)
            // A skipped frame would leave a hole in the sample timeline.
            .skip_frames(false)
            .usage_type(UsageType::CameraVideoRealTime)
            .complexity(Complexity::Low)
            .profile(Profile::Baseline)
            // IDRs are forced by the segmenter (segment start, idr_interval), so the encoder's
            // own period counter cannot drift out of step with segment boundaries.
            .intra_frame_period(IntraFramePeriod::from_num_frames(0))
            // Single-slice mode: more threads buy nothing, one encoder per session instead.
            .num_threads(1)
            // Pre-analysis passes meant for camera/conferencing input. Measured on the
            // synthetic bench clip at 1024x576, turning all three off cut encode time by ~20%,
            // bytes by ~20% and raised PSNR by ~0.6 dB. Scene cuts still get coded (as intra
            // macroblocks in P frames); every segment starts with an IDR anyway.
            .scene_change_detect(false)
            .background_detection(false)
            .adaptive_quantization(false)
            .qp(QpRange::new(config.min_qp, MAX_QP));

        let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), cfg)
            .map_err(|e| EncodeError::Encoder(e.to_string()))?;
        silence(&mut encoder);
        Ok(Self {
            encoder,
            yuv: YUVBuffer::new(config.width as usize, config.height as usize),
            width: config.width,
            height: config.height,
            fps: config.fps,
            frames_encoded: 0,
        })
    }

    /// Makes the next encoded frame an IDR.
    pub fn force_idr(&mut self) {
        self.encoder.force_intra_frame();
    }

    /// Encodes one frame of exactly the configured size. RGB24 is converted into the reusable
    /// buffer; I420 planes go to openh264 as they are (no conversion, no copy).
    pub fn encode(&mut self, frame: &fv_core::Frame) -> Result<EncodedFrame, EncodeError> {
        if frame.width() != self.width || frame.height() != self.height {
            return Err(EncodeError::FrameSize {
                expected_width: self.width,
                expected_height: self.height,
                width: frame.width(),
                height: frame.height(),
            });
        }
        let (w, h) = (self.width as usize, self.height as usize);
        let timestamp = Timestamp::from_millis(self.frames_encoded * 1000 / u64::from(self.fps));
        // The size is checked above, the config is even, and `Frame` guarantees its buffer
        // length for its format, so openh264's length asserts hold in both arms.
        let bitstream = match frame.format() {
            PixelFormat::I420 => {
                let (y, chroma) = frame.data().split_at(w * h);
                let (u, v) = chroma.split_at(w / 2 * (h / 2));
                let planes = YUVSlices::new((y, u, v), (w, h), (w, w / 2, w / 2));
                self.encoder.encode_at(&planes, timestamp)
            }
            // RGB24 (borrowed, no copy) and any format fv-core adds later: every frame has an
            // RGB view.
            _ => {
                self.yuv.read_rgb8(RgbSliceU8::new(&frame.rgb(), (w, h)));
                self.encoder.encode_at(&self.yuv, timestamp)
            }
        }
        .map_err(|e| EncodeError::Encoder(e.to_string()))?;
        self.frames_encoded += 1;

        let mut out = EncodedFrame::default();
        let mut vcl_nals = 0usize;
        for l in 0..bitstream.num_layers() {
            let Some(layer) = bitstream.layer(l) else {
                continue;
            };
            for n in 0..layer.nal_count() {
                let Some(nal) = layer.nal_unit(n) else {
                    continue;
                };
                let body = strip_start_code(nal);
                let Some(&header) = body.first() else {
                    continue;
                };
                match header & 0x1f {
                    NAL_SPS => out.sps = Some(body.to_vec()),
                    NAL_PPS => out.pps = Some(body.to_vec()),
                    nal_type => {
                        if (1..=5).contains(&nal_type) {
                            vcl_nals += 1;
                        }
                        out.is_idr |= nal_type == NAL_IDR;
                        let len = u32::try_from(body.len()).map_err(|_| {
                            EncodeError::Bitstream(format!("NAL unit of {} bytes", body.len()))
                        })?;
                        out.sample.extend_from_slice(&len.to_be_bytes());
                        out.sample.extend_from_slice(body);
                    }
                }
            }
        }
        if vcl_nals == 0 {
            // Only possible if openh264 skipped the frame despite skip_frames(false).
            return Err(EncodeError::Bitstream(format!(
                "openh264 produced no picture for frame {} ({:?})",
                self.frames_encoded - 1,
                bitstream.frame_type()
            )));
        }
        Ok(out)
    }
}

/// Removes a leading Annex-B start code (`00 00 01` or `00 00 00 01`), if any.
pub(crate) fn strip_start_code(nal: &[u8]) -> &[u8] {
    if let Some(rest) = nal.strip_prefix(&[0, 0, 0, 1]) {
        rest
    } else if let Some(rest) = nal.strip_prefix(&[0, 0, 1]) {
        rest
    } else {
        nal
    }
}

#[cfg(test)]
mod tests {
    use super::strip_start_code;

    #[test]
    fn strips_both_start_code_forms() {
        assert_eq!(strip_start_code(&[0, 0, 0, 1, 0x67, 1]), &[0x67, 1]);
        assert_eq!(strip_start_code(&[0, 0, 1, 0x68]), &[0x68]);
        assert_eq!(strip_start_code(&[0x65, 0, 0, 1]), &[0x65, 0, 0, 1]);
        assert_eq!(strip_start_code(&[]), &[] as &[u8]);
    }
}
