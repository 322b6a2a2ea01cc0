//! [`decode_fmp4`]: a whole segment decoded independently of the muxer that wrote it.

use anyhow::bail;

/// What [`decode_fmp4`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Frames the H.264 decoder produced.
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    /// `avc1.PPCCLL` from the init segment's avcC.
    pub codec: String,
    /// Samples listed in the `trun` boxes.
    pub samples: usize,
}

/// Decodes a whole segment (init + fragments) with openh264's decoder through
/// `fv_encoder::inspect`, which walks the boxes independently of the muxer that wrote them:
/// SPS/PPS from `avcC`, samples from `trun` sizes and `mdat`. Fails unless every decoded frame
/// has the size the track declares.
pub fn decode_fmp4(data: &[u8]) -> anyhow::Result<Decoded> {
    use fv_encoder::inspect;
    let segment = inspect::parse_segment(data)?;
    let frames = inspect::decode_segment(&segment)?;
    let (width, height) = (usize::from(segment.width), usize::from(segment.height));
    if let Some(bad) = frames.iter().find(|f| f.len() != width * height * 3) {
        bail!(
            "decoded a frame of {} bytes, the track says {width}x{height}",
            bad.len()
        );
    }
    Ok(Decoded {
        frames: frames.len(),
        width,
        height,
        codec: segment.avcc_codec.clone(),
        samples: segment.sample_count(),
    })
}
