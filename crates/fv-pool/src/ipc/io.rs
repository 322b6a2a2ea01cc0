//! Reading and writing whole messages: async on the pool's side (tokio), blocking on the
//! worker's side (std).

use super::codec::{FRAME, HEADER, frame_trailer, frame_wire};
use super::{IpcError, MAX_MESSAGE_BYTES};
use fv_core::Frame;
use std::io::{Read, Write};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Checks a header's length; returns the body length (the length minus the tag).
fn body_len(header: [u8; HEADER]) -> Result<usize, IpcError> {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 {
        return Err(IpcError::malformed("message without a tag"));
    }
    if len > MAX_MESSAGE_BYTES {
        return Err(IpcError::TooLarge {
            len,
            max: MAX_MESSAGE_BYTES,
        });
    }
    Ok(len - 1)
}

/// Reads one message: `(tag, body)`. [`IpcError::Closed`] when the peer closed the socket
/// between messages, [`IpcError::Io`] when it closed in the middle of one. The body is read
/// into a buffer of exactly its size, without zeroing it first.
pub(crate) async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<(u8, Vec<u8>), IpcError> {
    let mut header = [0u8; HEADER];
    let first = reader.read(&mut header).await?;
    if first == 0 {
        return Err(IpcError::Closed);
    }
    reader.read_exact(&mut header[first..]).await?;
    let len = body_len(header)?;
    let mut body = Vec::with_capacity(len);
    while body.len() < len {
        let want = (len - body.len()) as u64;
        if (&mut *reader).take(want).read_buf(&mut body).await? == 0 {
            return Err(IpcError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    Ok((header[4], body))
}

/// Blocking [`read_message`].
pub(crate) fn read_message_sync<R: Read>(reader: &mut R) -> Result<(u8, Vec<u8>), IpcError> {
    let mut header = [0u8; HEADER];
    let first = loop {
        match reader.read(&mut header) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if first == 0 {
        return Err(IpcError::Closed);
    }
    reader.read_exact(&mut header[first..])?;
    let len = body_len(header)?;
    let mut body = Vec::with_capacity(len);
    reader.take(len as u64).read_to_end(&mut body)?;
    if body.len() != len {
        return Err(IpcError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok((header[4], body))
}

/// Writes an encoded message.
pub(crate) fn write_message_sync<W: Write>(writer: &mut W, message: &[u8]) -> Result<(), IpcError> {
    writer.write_all(message)?;
    Ok(())
}

/// Writes a frame message straight from the frame's buffer: the same bytes as
/// `encode_from_worker(FromWorker::Frame { .. })`, without copying the pixels.
pub(crate) fn write_frame_sync<W: Write>(
    writer: &mut W,
    run_id: u64,
    end_of_batch: bool,
    frame: &Frame,
) -> Result<(), IpcError> {
    let (format, pixels) = frame_wire(frame);
    let trailer = frame_trailer(run_id, end_of_batch, frame, format);
    let len = pixels.len() + trailer.len() + 1;
    if len > MAX_MESSAGE_BYTES {
        return Err(IpcError::TooLarge {
            len,
            max: MAX_MESSAGE_BYTES,
        });
    }
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(&(len as u32).to_le_bytes());
    header[4] = FRAME;
    writer.write_all(&header)?;
    writer.write_all(&pixels)?;
    writer.write_all(&trailer)?;
    Ok(())
}
