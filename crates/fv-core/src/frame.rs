/// One RGB24 video frame, rows top to bottom, no padding between rows.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

/// A frame whose buffer does not match its size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {width}x{height} is empty")]
    Empty { width: u32, height: u32 },
    #[error("frame {width}x{height} needs {expected} RGB bytes, got {actual}")]
    BadLength {
        width: u32,
        height: u32,
        expected: usize,
        actual: usize,
    },
}

impl Frame {
    /// Wraps an RGB24 buffer of exactly `width * height * 3` bytes.
    pub fn from_rgb(width: u32, height: u32, rgb: Vec<u8>) -> Result<Self, FrameError> {
        if width == 0 || height == 0 {
            return Err(FrameError::Empty { width, height });
        }
        let expected = width as usize * height as usize * 3;
        if rgb.len() != expected {
            return Err(FrameError::BadLength {
                width,
                height,
                expected,
                actual: rgb.len(),
            });
        }
        Ok(Self { width, height, rgb })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The RGB24 bytes, `width * height * 3` long.
    pub fn rgb(&self) -> &[u8] {
        &self.rgb
    }

    pub fn into_rgb(self) -> Vec<u8> {
        self.rgb
    }
}

impl std::fmt::Debug for Frame {
    // Never dump megabytes of pixels into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wrong_lengths_and_empty_sizes() {
        assert!(Frame::from_rgb(2, 2, vec![0; 12]).is_ok());
        assert_eq!(
            Frame::from_rgb(2, 2, vec![0; 11]),
            Err(FrameError::BadLength {
                width: 2,
                height: 2,
                expected: 12,
                actual: 11
            })
        );
        assert!(matches!(
            Frame::from_rgb(0, 2, vec![]),
            Err(FrameError::Empty { .. })
        ));
    }
}
