//! One stored item per file: a small binary header, then the body. Files are written to a temp
//! directory on the same filesystem and renamed into place, so a reader (or a restart after a
//! crash) sees either the whole old file, the whole new file, or none: never half a file.
//!
//! ```text
//! magic (8) | put_ms u64 BE | body_len u64 BE | key_len u32 BE | key | tag_len u32 BE | tag | body
//! ```
//! `key` is the owning session id, `tag` the blob's mime type (empty for session states). A
//! file whose length disagrees with its header is torn or foreign and is treated as corrupt.

use crate::StoreError;
use crate::ids::MAX_SESSION_ID_BYTES;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Longest mime type a blob may carry, in bytes.
pub const MAX_MIME_BYTES: usize = 255;

const FIXED_HEADER: usize = 8 + 8 + 8 + 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub put_ms: u64,
    pub body_len: u64,
    pub key: String,
    pub tag: String,
}

impl Header {
    fn encode(&self, magic: &[u8; 8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_HEADER + 4 + self.key.len() + self.tag.len());
        out.extend_from_slice(magic);
        out.extend_from_slice(&self.put_ms.to_be_bytes());
        out.extend_from_slice(&self.body_len.to_be_bytes());
        // Both lengths are capped far below u32::MAX by the callers' checks.
        out.extend_from_slice(&(self.key.len() as u32).to_be_bytes());
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(&(self.tag.len() as u32).to_be_bytes());
        out.extend_from_slice(self.tag.as_bytes());
        out
    }

    fn encoded_len(&self) -> u64 {
        (FIXED_HEADER + 4 + self.key.len() + self.tag.len()) as u64
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what: path.display().to_string(),
        reason: reason.into(),
    }
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn read_string(
    r: &mut impl Read,
    max: usize,
    path: &Path,
    what: &str,
) -> Result<String, StoreError> {
    let len = read_u32(r).map_err(|e| corrupt(path, format!("{what} length: {e}")))? as usize;
    if len > max {
        return Err(corrupt(path, format!("{what} length {len} exceeds {max}")));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)
        .map_err(|e| corrupt(path, format!("{what}: {e}")))?;
    String::from_utf8(buf).map_err(|_| corrupt(path, format!("{what} is not UTF-8")))
}

/// Opens `path` and reads its header, checking it against the file's length. The returned
/// file is positioned at the start of the body. `Ok(None)` when the file does not exist.
pub(crate) fn open_record(
    path: &Path,
    magic: &[u8; 8],
) -> Result<Option<(Header, File)>, StoreError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(&format!("open {}", path.display()), &e)),
    };
    let file_len = file
        .metadata()
        .map_err(|e| StoreError::io(&format!("stat {}", path.display()), &e))?
        .len();
    let mut m = [0u8; 8];
    file.read_exact(&mut m)
        .map_err(|e| corrupt(path, format!("magic: {e}")))?;
    if &m != magic {
        return Err(corrupt(path, "wrong magic"));
    }
    let put_ms = read_u64(&mut file).map_err(|e| corrupt(path, format!("put time: {e}")))?;
    let body_len = read_u64(&mut file).map_err(|e| corrupt(path, format!("body length: {e}")))?;
    let key = read_string(&mut file, MAX_SESSION_ID_BYTES, path, "key")?;
    let tag = read_string(&mut file, MAX_MIME_BYTES, path, "tag")?;
    let header = Header {
        put_ms,
        body_len,
        key,
        tag,
    };
    let expected = header.encoded_len().checked_add(body_len);
    if expected != Some(file_len) {
        return Err(corrupt(
            path,
            format!(
                "file is {file_len} bytes, header says {}",
                header.encoded_len().saturating_add(body_len)
            ),
        ));
    }
    Ok(Some((header, file)))
}

/// Reads the body of a record opened with [`open_record`].
pub(crate) fn read_body(
    path: &Path,
    header: &Header,
    mut file: File,
) -> Result<Vec<u8>, StoreError> {
    let len = usize::try_from(header.body_len).map_err(|_| corrupt(path, "body too large"))?;
    let mut body = Vec::with_capacity(len);
    file.read_to_end(&mut body)
        .map_err(|e| StoreError::io(&format!("read {}", path.display()), &e))?;
    if body.len() != len {
        // The file changed under us (replaced by a rename is fine, truncated is not).
        return Err(corrupt(path, "body length changed while reading"));
    }
    Ok(body)
}

/// A fully written temp file, removed on drop unless [`TempRecord::persist`] moved it into
/// place. A failed or abandoned write therefore leaves nothing behind in the live directory.
#[derive(Debug)]
pub(crate) struct TempRecord {
    path: PathBuf,
    persisted: bool,
}

impl TempRecord {
    /// Writes header + body to a fresh file in `tmp_dir`, fsyncing it when `fsync` is set so
    /// that a later rename can never expose a file whose data is not on disk yet.
    pub(crate) fn write(
        tmp_dir: &Path,
        magic: &[u8; 8],
        header: &Header,
        body: &[u8],
        fsync: bool,
    ) -> Result<Self, StoreError> {
        let path = tmp_dir.join(format!("{}.tmp", crate::ids::new_blob_id()));
        let record = Self {
            path,
            persisted: false,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&record.path)
            .map_err(|e| StoreError::io(&format!("create {}", record.path.display()), &e))?;
        let write = |file: &mut File| -> io::Result<()> {
            file.write_all(&header.encode(magic))?;
            file.write_all(body)?;
            if fsync {
                file.sync_all()?;
            }
            Ok(())
        };
        if let Err(e) = write(&mut file) {
            // `record` is dropped here, which removes the partial file.
            return Err(StoreError::io(
                &format!("write {}", record.path.display()),
                &e,
            ));
        }
        Ok(record)
    }

    /// Atomically moves the file to `target` (replacing what is there).
    pub(crate) fn persist(mut self, target: &Path) -> Result<(), StoreError> {
        std::fs::rename(&self.path, target).map_err(|e| {
            StoreError::io(
                &format!("rename {} -> {}", self.path.display(), target.display()),
                &e,
            )
        })?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempRecord {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes a rename in `dir` durable (the directory entry itself is data too).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(&format!("fsync {}", dir.display()), &e))
}

/// Removes a file; a file that is already gone is fine.
pub(crate) fn remove(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(&format!("remove {}", path.display()), &e)),
    }
}

/// The directories of one fs store under `root` at open: `root/<name>` for the records
/// (created if needed) and `root/tmp-<name>` for writes in progress, emptied because anything
/// left there is a write that never finished (logged as `what`).
pub(crate) fn open_dirs(
    root: &Path,
    name: &str,
    what: &str,
) -> Result<(std::path::PathBuf, std::path::PathBuf), StoreError> {
    let dir = root.join(name);
    let tmp = root.join(format!("tmp-{name}"));
    std::fs::create_dir_all(&dir)
        .map_err(|e| StoreError::io(&format!("create {}", dir.display()), &e))?;
    let leftovers = reset_tmp_dir(&tmp)?;
    if leftovers > 0 {
        tracing::info!(count = leftovers, dir = %tmp.display(), "removed unfinished {what} writes");
    }
    Ok((dir, tmp))
}

/// Creates `dir` (and parents) and empties it of files: used for the temp directory at open,
/// where anything left over is a write that never finished.
pub(crate) fn reset_tmp_dir(dir: &Path) -> Result<usize, StoreError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::io(&format!("create {}", dir.display()), &e))?;
    let mut removed = 0;
    for entry in read_dir(dir)? {
        let path = entry.path();
        if path.is_file() {
            remove(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

pub(crate) fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, StoreError> {
    let ctx = format!("list {}", dir.display());
    std::fs::read_dir(dir)
        .map_err(|e| StoreError::io(&ctx, &e))?
        .map(|e| e.map_err(|e| StoreError::io(&ctx, &e)))
        .collect()
}
