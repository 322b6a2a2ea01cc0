//! The framed protocol between a [`crate::SubprocessPool`] and its worker processes, over a
//! Unix stream socket.
//!
//! Every message is `[u32 LE length][u8 tag][body]`, where `length` counts the tag and the
//! body and is at most [`MAX_MESSAGE_BYTES`]. Bodies are a compact binary encoding:
//! integers little-endian, strings and byte strings as `u32` length + bytes, options as a
//! `0`/`1` byte then the value, continuation-state payloads as JSON. A frame message carries
//! its pixels first and a fixed trailer after them, so the receiver reads the pixels straight
//! into the buffer the [`Frame`] keeps (no copy) and drops the trailer. Decoding never panics:
//! a short body, a bad tag, a size over a limit, invalid UTF-8 or JSON, a frame whose buffer
//! does not match its size, or bytes left over are each an [`IpcError`].

mod codec;
mod io;
#[cfg(test)]
mod tests;

pub(crate) use codec::{
    decode_from_worker, decode_to_worker, encode_from_worker, encode_to_worker,
};
pub(crate) use io::{read_message, read_message_sync, write_frame_sync, write_message_sync};

use fv_core::{AudioTrack, ContinuationState, Frame, GenerateError, GenerationRequest};

/// Version of this protocol; a worker that says another is refused.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

/// Largest message (tag and body), in bytes: a 4096×4096 RGB24 frame (48 MiB, the largest
/// size the server config allows) plus its trailer fits; nothing else comes close.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Send and receive buffer asked for on both ends of a worker's socket. The default (208 KiB)
/// makes a 3 MiB frame cross in many small hand-offs; 4 MiB (the kernel may cap it at
/// `net.core.wmem_max` / `rmem_max`) took one 1920x1088x121 I420 segment from 124 ms to 66 ms
/// in a micro-benchmark (docs/ipc.md).
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// Asks for [`SOCKET_BUFFER_BYTES`] of send and receive buffer on an IPC socket. Best effort:
/// a kernel that refuses leaves the default, which only costs speed.
pub fn tune_socket<Fd: std::os::fd::AsFd>(socket: Fd) {
    let send = rustix::net::sockopt::set_socket_send_buffer_size(&socket, SOCKET_BUFFER_BYTES);
    let recv = rustix::net::sockopt::set_socket_recv_buffer_size(&socket, SOCKET_BUFFER_BYTES);
    if let Err(e) = send.and(recv) {
        tracing::debug!(error = %e, "cannot enlarge the IPC socket buffers; keeping the default");
    }
}

/// Largest width or height of a frame sent over IPC.
pub(crate) const MAX_DIMENSION: u32 = 16_384;

/// Largest string (prompt, error, name), in bytes.
pub(crate) const MAX_TEXT_BYTES: usize = 1 << 20;

/// From the pool to a worker process.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ToWorker {
    /// The answer to `Hello`: what the worker needs to build its generator.
    Init(Box<Init>),
    /// Start a run.
    Run {
        run_id: u64,
        request: Box<GenerationRequest>,
    },
    /// Stop run `run_id` at its next step.
    Cancel { run_id: u64 },
    /// Finish (cancelling a run in progress) and exit.
    Shutdown,
}

/// What a worker process is told at start-up.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Init {
    pub(crate) worker_id: u32,
    /// Send RGB24 frames as I420 (converted in the worker; see docs/ipc.md).
    pub(crate) frames_as_i420: bool,
    /// The warm-up request to run before reporting ready.
    pub(crate) warmup: Option<GenerationRequest>,
    /// Opaque to the pool: what the application's worker needs to build its generator (the
    /// server sends its serialized config).
    pub(crate) payload: Vec<u8>,
}

/// From a worker process to the pool.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FromWorker {
    /// First message after connecting.
    Hello { version: u32, pid: u32 },
    /// The generator is built.
    Booted { generator: String },
    /// The generator could not be built; the worker exits.
    BootFailed { error: String },
    /// The warm-up run finished (`error` when it failed; the worker then exits).
    Warmed { error: Option<String> },
    /// Denoising step `step` of `total` of run `run_id` finished.
    Step { run_id: u64, step: u32, total: u32 },
    /// One decoded frame of run `run_id`; `end_of_batch` closes the generator's batch.
    Frame {
        run_id: u64,
        end_of_batch: bool,
        frame: Frame,
    },
    /// Run `run_id` is over; its frames were all sent before.
    Done {
        run_id: u64,
        result: Result<Finished, GenerateError>,
    },
}

/// A successful run's result, without frames.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Finished {
    pub(crate) state: Option<ContinuationState>,
    pub(crate) audio: Option<AudioTrack>,
}

/// A message that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpcError {
    /// The peer closed the socket between messages.
    #[error("connection closed")]
    Closed,
    /// The socket failed (or closed in the middle of a message).
    #[error("IPC socket error: {0}")]
    Io(#[from] std::io::Error),
    /// A message announced more bytes than allowed.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    /// The bytes do not form a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl IpcError {
    pub(crate) fn malformed(what: impl Into<String>) -> Self {
        Self::Malformed(what.into())
    }
}
