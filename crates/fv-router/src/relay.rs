//! The relay of a bridged session, on blocking threads.
//!
//! Each direction runs on its own OS thread doing blocking `read` and `write`, and a third
//! thread ends the session. Why threads: through this relay a message costs one `read`, which
//! the kernel completes by waking the blocked thread directly, and one `write`. On the async
//! runtime it also costs an `epoll_wait` and a task wake-up, several microseconds per message
//! in `cargo xtask bench router`, enough to be slower than nginx. Sessions are GPU-bound (a
//! replica holds a handful), so three small threads per session are cheap; the first message,
//! the choice of replica and the failover stay on the async runtime.
//!
//! The router writes a frame of its own (a close, an error) only where the stream it writes to
//! is between frames; otherwise it drops the connection.

use crate::ws::{self, Violation, Walker};
use metrics::Counter;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

/// Stack of each relay thread: they hold nothing big on the stack (buffers are on the heap).
const STACK_BYTES: usize = 128 * 1024;

/// A direction of the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// Client → replica.
    Up,
    /// Replica → client.
    Down,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::Up => 0,
            Dir::Down => 1,
        }
    }
}

/// How one direction stopped.
#[derive(Debug)]
pub(crate) enum End {
    /// A close frame passed: the close handshake has begun (the direction goes on).
    Closed,
    /// Its source ended the stream.
    Eof,
    /// Reading its source failed.
    Gone(String),
    /// Writing to the other side failed or timed out.
    SendFailed(String),
    /// Its source sent a frame that breaks a rule; close both sides with this.
    Refused(u16, String),
    /// The router wrote its own frame to this direction's destination and stopped relaying.
    Stopped,
}

/// What the session's coordinator hears.
#[derive(Debug)]
pub(crate) enum Event {
    /// A close frame passed in this direction.
    Closed(Dir),
    /// This direction stopped.
    Ended(Dir, End),
    /// The shutdown grace period is over: close both sides with 1001.
    Shutdown,
}

/// One direction's state, handed over from the async phase (which may have walked bytes it
/// has not written yet).
#[derive(Debug)]
pub(crate) struct Core {
    /// Bytes read from the source and not yet written, from the first unwritten byte on.
    pub buf: Vec<u8>,
    /// Bytes at the start of `buf` already walked.
    pub pending: usize,
    pub violation: Option<Violation>,
    pub walker: Walker,
    pub bytes: Counter,
    pub messages: Counter,
    /// Messages already added to `messages`.
    pub counted: u64,
    /// `Closed` was already reported for this direction.
    pub close_reported: bool,
}

/// A direction's destination, shared between its relay thread and the coordinator, which
/// may write a frame of its own between two of the relay's writes.
struct Out {
    writer: TcpStream,
    /// The destination stream is between frames.
    clean: bool,
    /// The coordinator took the destination over; the relay thread stops.
    stopped: bool,
}

fn lock(out: &Mutex<Out>) -> MutexGuard<'_, Out> {
    out.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Everything a bridged session's relay needs.
#[derive(Debug)]
pub(crate) struct Session {
    pub client: TcpStream,
    pub replica: TcpStream,
    pub up: Core,
    pub down: Core,
    /// Events that already happened during the async phase.
    pub early: Vec<Event>,
    pub send_timeout: Duration,
    pub close_wait: Duration,
}

/// Starts the relay threads. Returns the coordinator's event sender (for [`Event::Shutdown`])
/// and a receiver that completes when the session is over and both sockets are closed.
pub(crate) fn start(
    s: Session,
) -> std::io::Result<(mpsc::Sender<Event>, tokio::sync::oneshot::Receiver<()>)> {
    for sock in [&s.client, &s.replica] {
        sock.set_nonblocking(false)?;
        sock.set_read_timeout(None)?;
        // A peer that accepts nothing for this long is given up on, like on the async side.
        sock.set_write_timeout(Some(s.send_timeout.max(Duration::from_millis(1))))?;
    }
    let (tx, rx) = mpsc::channel();
    let ended: Vec<Dir> = s
        .early
        .iter()
        .filter_map(|e| match e {
            Event::Ended(d, _) => Some(*d),
            _ => None,
        })
        .collect();
    for e in s.early {
        let _ = tx.send(e);
    }
    let up_out = Arc::new(Mutex::new(Out {
        writer: s.replica.try_clone()?,
        clean: s.up.pending == 0 && s.up.walker.at_boundary(),
        stopped: false,
    }));
    let down_out = Arc::new(Mutex::new(Out {
        writer: s.client.try_clone()?,
        clean: s.down.pending == 0 && s.down.walker.at_boundary(),
        stopped: false,
    }));
    let mut threads = Vec::new();
    let mut running = [false, false];
    for (dir, core, src, out) in [
        (Dir::Up, s.up, &s.client, &up_out),
        (Dir::Down, s.down, &s.replica, &down_out),
    ] {
        if ended.contains(&dir) {
            continue;
        }
        let src = src.try_clone()?;
        let out = out.clone();
        let events = tx.clone();
        let name = match dir {
            Dir::Up => "fv-relay-up",
            Dir::Down => "fv-relay-down",
        };
        threads.push(
            std::thread::Builder::new()
                .name(name.into())
                .stack_size(STACK_BYTES)
                .spawn(move || pump(core, src, &out, dir, &events))?,
        );
        running[dir.index()] = true;
    }
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    // Kept to unblock the relay threads if the coordinator cannot start.
    let sockets = (s.client.try_clone()?, s.replica.try_clone()?);
    let coordinator = Coordinator {
        client: s.client,
        replica: s.replica,
        up_out,
        down_out,
        done: [!running[0], !running[1]],
        closed: [false, false],
        close_wait: s.close_wait,
    };
    let spawned = std::thread::Builder::new()
        .name("fv-relay".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            coordinator.run(&rx);
            for t in threads {
                let _ = t.join();
            }
            let _ = done_tx.send(());
        });
    if let Err(e) = spawned {
        let _ = sockets.0.shutdown(Shutdown::Both);
        let _ = sockets.1.shutdown(Shutdown::Both);
        return Err(e);
    }
    Ok((tx, done_rx))
}

/// Relays one direction until it stops, then reports why.
fn pump(
    mut core: Core,
    mut src: TcpStream,
    out: &Mutex<Out>,
    dir: Dir,
    events: &mpsc::Sender<Event>,
) {
    let mut data = vec![0u8; ws::READ_CHUNK.max(core.buf.len() + 1024)];
    let (mut start, mut end) = (0, core.buf.len());
    data[..end].copy_from_slice(&core.buf);
    core.buf = Vec::new();
    let why = loop {
        if core.pending == 0 && core.violation.is_none() {
            let (n, v) = core.walker.walk(&data[start..end]);
            core.pending = n;
            core.violation = v;
            if core.walker.messages > core.counted {
                core.messages.increment(core.walker.messages - core.counted);
                core.counted = core.walker.messages;
            }
        }
        if core.pending > 0 {
            let mut o = lock(out);
            if o.stopped {
                break End::Stopped;
            }
            o.clean = false;
            if let Err(e) = o.writer.write_all(&data[start..start + core.pending]) {
                break End::SendFailed(match e.kind() {
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => "send timed out".into(),
                    _ => e.to_string(),
                });
            }
            core.bytes.increment(core.pending as u64);
            start += core.pending;
            core.pending = 0;
            o.clean = core.walker.at_boundary();
        }
        if let Some((code, reason)) = core.violation.take() {
            break End::Refused(code, reason);
        }
        if core.walker.closed.is_some() && !core.close_reported && core.walker.at_boundary() {
            core.close_reported = true;
            let _ = events.send(Event::Closed(dir));
        }
        if start == end {
            (start, end) = (0, 0);
        } else if end == data.len() {
            // Only a partial header (at most 13 bytes) is ever kept, so this frees space.
            data.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        match src.read(&mut data[end..]) {
            Ok(0) => break End::Eof,
            Ok(n) => end += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break End::Gone(e.to_string()),
        }
    };
    let _ = events.send(Event::Ended(dir, why));
}

/// Ends a session: propagates the end of one stream to the other side, and writes the
/// router's own frames where a side vanished or broke a rule.
struct Coordinator {
    client: TcpStream,
    replica: TcpStream,
    /// Destination of [`Dir::Up`]: the replica (the router writes masked frames there).
    up_out: Arc<Mutex<Out>>,
    /// Destination of [`Dir::Down`]: the client.
    down_out: Arc<Mutex<Out>>,
    done: [bool; 2],
    closed: [bool; 2],
    close_wait: Duration,
}

/// What the coordinator does after an event.
enum Next {
    /// Keep relaying.
    Continue,
    /// The session is ending: give the peers [`Session::close_wait`] to finish.
    Wind,
    /// Close both sockets now.
    Teardown,
}

impl Coordinator {
    fn run(&self, rx: &mpsc::Receiver<Event>) {
        let mut done = self.done;
        let mut closed = self.closed;
        let mut deadline: Option<Instant> = None;
        while !(done[0] && done[1]) {
            let event = match deadline {
                None => match rx.recv() {
                    Ok(e) => e,
                    Err(_) => break,
                },
                Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                    Ok(e) => e,
                    Err(_) => break,
                },
            };
            let next = match event {
                Event::Closed(dir) => {
                    closed[dir.index()] = true;
                    tracing::debug!(?dir, "close frame relayed");
                    Next::Wind
                }
                Event::Shutdown => {
                    tracing::info!("grace period over: closing the session");
                    let close = (
                        fv_protocol::close::GOING_AWAY,
                        fv_protocol::close::REASON_SERVER_SHUTDOWN,
                    );
                    self.close_replica(close);
                    inject(&self.down_out, &ws::close_frame(Some(close), None));
                    Next::Wind
                }
                Event::Ended(dir, end) => {
                    done[dir.index()] = true;
                    self.ended(dir, end, closed[0] || closed[1])
                }
            };
            match next {
                Next::Continue => {}
                Next::Wind => {
                    deadline.get_or_insert_with(|| Instant::now() + self.close_wait);
                }
                Next::Teardown => break,
            }
        }
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.replica.shutdown(Shutdown::Both);
    }

    fn ended(&self, dir: Dir, end: End, closing: bool) -> Next {
        match (dir, end) {
            (_, End::Closed | End::Stopped) => Next::Continue,
            // A close frame passed: the end of one stream goes on to the other side.
            (Dir::Up, End::Eof) if closing => {
                let _ = lock(&self.up_out).writer.shutdown(Shutdown::Write);
                Next::Wind
            }
            (Dir::Down, End::Eof) if closing => {
                let _ = lock(&self.down_out).writer.shutdown(Shutdown::Write);
                Next::Wind
            }
            // The client went away: the replica sees the same, a connection that ends.
            (Dir::Up, End::Eof | End::Gone(_)) | (Dir::Down, End::SendFailed(_)) => {
                tracing::debug!("client gone");
                Next::Teardown
            }
            (Dir::Down, End::Eof) => {
                self.replica_lost("it closed the connection without a close frame".into())
            }
            (Dir::Down, End::Gone(e)) | (Dir::Up, End::SendFailed(e)) => self.replica_lost(e),
            (Dir::Up, End::Refused(code, reason)) => {
                tracing::info!(code, %reason, "client frame refused");
                self.close_replica((code, &reason));
                inject(
                    &self.down_out,
                    &ws::close_frame(Some((code, &reason)), None),
                );
                Next::Wind
            }
            (Dir::Down, End::Refused(code, reason)) => {
                tracing::warn!(code, %reason, "replica frame refused");
                self.close_replica((code, &reason));
                self.replica_lost(format!(
                    "the replica sent a frame the router refused: {reason}"
                ))
            }
        }
    }

    /// The replica vanished mid-session: the client gets `error{worker_failed}` and 1011.
    fn replica_lost(&self, why: String) -> Next {
        tracing::warn!(reason = %why, "replica connection lost mid-session");
        let wire = crate::RouterError::ReplicaLost(why).to_wire();
        let msg = fv_protocol::ServerMessage::error(wire.code, wire.message, wire.retryable);
        let mut frames = ws::frame(ws::OP_TEXT, msg.to_json().as_bytes(), None);
        frames.extend(ws::close_frame(
            Some((wire.close_code, wire.close_reason)),
            None,
        ));
        inject(&self.down_out, &frames);
        Next::Wind
    }

    fn close_replica(&self, close: (u16, &str)) {
        inject(
            &self.up_out,
            &ws::close_frame(Some(close), Some(ws::new_mask())),
        );
    }
}

/// Writes the router's own frames to a destination that is between frames, and stops the
/// relay into it either way.
fn inject(out: &Mutex<Out>, frames: &[u8]) {
    let mut o = lock(out);
    if !o.stopped && o.clean {
        let _ = o.writer.write_all(frames);
    }
    o.stopped = true;
}
