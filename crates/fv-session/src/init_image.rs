//! `session_init_v2.initial_image`: validation, decoding and temp-file persistence.
//!
//! Wire shape: `{"mime": str, "name": str?, "data": base64 str}`. Rules:
//! * `null` or `{}` means "no image"; any other non-object is an error.
//! * `mime` is one of `image/png`, `image/jpeg`, `image/jpg`, `image/webp` (exact,
//!   case-sensitive).
//! * `data` is strict standard base64 with canonical padding: whitespace or any other
//!   character outside the alphabet fails.
//! * The decoded image must be 1..=`max_bytes` bytes ([`MAX_INIT_IMAGE_BYTES`] by default).
//! * Beyond FastVideo: the bytes must start with the magic number of the declared type, so a
//!   mislabelled or garbage upload fails here instead of inside the model.
//! * `name` (optional) is reduced to its basename and used only for logging.
//!
//! Every error's message starts with the field it is about, e.g.
//! `initial_image.mime: unsupported type "image/gif" (...)`, so it can be sent to the client.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use tempfile::TempPath;

/// Default cap on the decoded image size: 32 MiB, as in FastVideo.
pub const MAX_INIT_IMAGE_BYTES: usize = 33_554_432;
/// `name` is cut to this many bytes (at a char boundary); it only ends up in logs.
pub const MAX_NAME_BYTES: usize = 255;
/// Longest part of a rejected `mime` value echoed back in the error message.
const MAX_ECHOED_MIME_CHARS: usize = 64;

/// The image formats a session may start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    Png,
    Jpeg,
    Webp,
}

impl ImageKind {
    /// Maps an accepted mime type (exact match) to its kind.
    pub fn from_mime(mime: &str) -> Option<Self> {
        match mime {
            "image/png" => Some(ImageKind::Png),
            "image/jpeg" | "image/jpg" => Some(ImageKind::Jpeg),
            "image/webp" => Some(ImageKind::Webp),
            _ => None,
        }
    }

    /// File suffix used for the temp file, with the dot.
    pub const fn extension(self) -> &'static str {
        match self {
            ImageKind::Png => ".png",
            ImageKind::Jpeg => ".jpg",
            ImageKind::Webp => ".webp",
        }
    }

    /// Human name for messages.
    pub const fn label(self) -> &'static str {
        match self {
            ImageKind::Png => "PNG",
            ImageKind::Jpeg => "JPEG",
            ImageKind::Webp => "WebP",
        }
    }

    /// The format whose signature `bytes` start with, if any.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        [ImageKind::Png, ImageKind::Jpeg, ImageKind::Webp]
            .into_iter()
            .find(|k| k.matches_magic(bytes))
    }

    /// Whether `bytes` start with this format's signature.
    pub fn matches_magic(self, bytes: &[u8]) -> bool {
        match self {
            ImageKind::Png => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            ImageKind::Jpeg => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
            ImageKind::Webp => {
                bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP"
            }
        }
    }
}

/// Why an `initial_image` was refused. Display names the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum InitImageError {
    #[error("initial_image: expected an object with mime and data, got {0}")]
    NotAnObject(&'static str),
    #[error("initial_image.mime: missing")]
    MissingMime,
    #[error("initial_image.mime: expected a string, got {0}")]
    MimeNotString(&'static str),
    #[error(
        "initial_image.mime: unsupported type {0:?} (expected image/png, image/jpeg, image/jpg or image/webp)"
    )]
    UnsupportedMime(String),
    #[error("initial_image.name: expected a string, got {0}")]
    NameNotString(&'static str),
    #[error("initial_image.data: missing")]
    MissingData,
    #[error("initial_image.data: expected a base64 string, got {0}")]
    DataNotString(&'static str),
    #[error("initial_image.data: invalid base64: {0}")]
    InvalidBase64(String),
    #[error("initial_image.data: empty image")]
    Empty,
    #[error("initial_image.data: image is {size} bytes, more than the {max} byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("initial_image.data is not a PNG, JPEG or WebP image")]
    WrongFormat,
    #[error("initial_image: cannot write the image to a temporary file: {0}")]
    Persist(#[source] std::io::Error),
}

/// A validated, decoded initial image (still in memory).
#[derive(Clone, PartialEq, Eq)]
pub struct InitImage {
    kind: ImageKind,
    mime: String,
    name: Option<String>,
    data: Vec<u8>,
}

impl std::fmt::Debug for InitImage {
    // The bytes would flood logs; show their length instead.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitImage")
            .field("kind", &self.kind)
            .field("mime", &self.mime)
            .field("name", &self.name)
            .field("len", &self.data.len())
            .finish()
    }
}

impl InitImage {
    pub fn kind(&self) -> ImageKind {
        self.kind
    }

    /// The mime type as the client declared it (`image/jpg` stays `image/jpg`).
    pub fn mime(&self) -> &str {
        &self.mime
    }

    /// The client's file name, reduced to its basename; `None` if absent or empty.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Always false for a decoded image (empty data is rejected); provided for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Writes the image to a new temp file named `fastvideo-init-XXXX<ext>` in `dir` (created
    /// if missing) or the system temp directory. The file is private to the user (0600 on
    /// Unix) and deleted when the returned [`PersistedImage`] is dropped.
    ///
    /// Blocking file IO of up to `max_bytes`: async callers run it in
    /// `tokio::task::spawn_blocking`.
    pub fn persist(self, dir: Option<&Path>) -> Result<PersistedImage, InitImageError> {
        let mut builder = tempfile::Builder::new();
        builder
            .prefix("fastvideo-init-")
            .suffix(self.kind.extension());
        let mut file = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(InitImageError::Persist)?;
                builder.tempfile_in(dir)
            }
            None => builder.tempfile(),
        }
        .map_err(InitImageError::Persist)?;
        // On error `file` drops here and the partial file is removed.
        file.write_all(&self.data)
            .and_then(|()| file.flush())
            .map_err(InitImageError::Persist)?;
        Ok(PersistedImage {
            path: file.into_temp_path(),
            kind: self.kind,
            name: self.name,
            len: self.data.len(),
        })
    }
}

/// An initial image on disk. The file is removed when this value is dropped.
#[derive(Debug)]
pub struct PersistedImage {
    path: TempPath,
    kind: ImageKind,
    name: Option<String>,
    len: usize,
}

impl PersistedImage {
    /// Path to pass as the generator's `image_path`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> ImageKind {
        self.kind
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Size of the file in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (empty images are rejected before persisting).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Validates and decodes `session_init_v2.initial_image` (see the module docs for the rules).
/// `Ok(None)` for `null` or `{}`. Runs in time linear in the input; oversized input is refused
/// from its length before anything is decoded.
pub fn decode_initial_image(
    value: &Value,
    max_bytes: usize,
) -> Result<Option<InitImage>, InitImageError> {
    let obj = match value {
        Value::Null => return Ok(None),
        Value::Object(obj) if obj.is_empty() => return Ok(None),
        Value::Object(obj) => obj,
        other => return Err(InitImageError::NotAnObject(json_type(other))),
    };

    let mime = match obj.get("mime") {
        None | Some(Value::Null) => return Err(InitImageError::MissingMime),
        Some(Value::String(s)) => s,
        Some(other) => return Err(InitImageError::MimeNotString(json_type(other))),
    };
    // The declared type must be one we accept; the content decides the actual format below.
    ImageKind::from_mime(mime).ok_or_else(|| {
        InitImageError::UnsupportedMime(mime.chars().take(MAX_ECHOED_MIME_CHARS).collect())
    })?;

    let name = match obj.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => basename(s),
        Some(other) => return Err(InitImageError::NameNotString(json_type(other))),
    };

    let data = match obj.get("data") {
        None | Some(Value::Null) => return Err(InitImageError::MissingData),
        Some(Value::String(s)) => s,
        Some(other) => return Err(InitImageError::DataNotString(json_type(other))),
    };
    if data.is_empty() {
        return Err(InitImageError::Empty);
    }
    // Refuse by length first so a huge string is never decoded (and never allocated twice).
    let size_hint = decoded_len_hint(data);
    if size_hint > max_bytes {
        return Err(InitImageError::TooLarge {
            size: size_hint,
            max: max_bytes,
        });
    }
    let bytes = STANDARD
        .decode(data)
        .map_err(|e| InitImageError::InvalidBase64(describe_base64_error(&e)))?;
    if bytes.is_empty() {
        return Err(InitImageError::Empty);
    }
    if bytes.len() > max_bytes {
        return Err(InitImageError::TooLarge {
            size: bytes.len(),
            max: max_bytes,
        });
    }
    // The bytes must be a supported image, but a label that disagrees with them (a JPEG sent
    // as image/png) is accepted as upstream did: the content decides the file's suffix.
    let kind = ImageKind::sniff(&bytes).ok_or(InitImageError::WrongFormat)?;
    Ok(Some(InitImage {
        kind,
        mime: mime.clone(),
        name,
        data: bytes,
    }))
}

/// Decoded length of a canonically padded string (exact when the length is a multiple of 4,
/// otherwise a lower bound; such input is invalid anyway).
fn decoded_len_hint(data: &str) -> usize {
    let len = data.len();
    if len.is_multiple_of(4) {
        let pad = data.bytes().rev().take(2).filter(|&b| b == b'=').count();
        len / 4 * 3 - pad
    } else {
        len / 4 * 3
    }
}

fn describe_base64_error(err: &base64::DecodeError) -> String {
    fn byte(b: u8) -> String {
        if b.is_ascii_graphic() {
            format!("'{}'", char::from(b))
        } else {
            format!("byte 0x{b:02x}")
        }
    }
    match err {
        base64::DecodeError::InvalidByte(offset, b) => {
            format!("invalid character {} at offset {offset}", byte(*b))
        }
        base64::DecodeError::InvalidLength(_) => {
            "length is not a multiple of 4 (padding missing or data truncated)".to_string()
        }
        base64::DecodeError::InvalidLastSymbol(offset, b) => {
            format!("non-canonical last symbol {} at offset {offset}", byte(*b))
        }
        base64::DecodeError::InvalidPadding => "invalid padding".to_string(),
    }
}

/// Last path component, splitting on both `/` and `\`, cut to [`MAX_NAME_BYTES`].
fn basename(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    if base.is_empty() {
        return None;
    }
    let mut end = base.len().min(MAX_NAME_BYTES);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    Some(base[..end].to_string())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
