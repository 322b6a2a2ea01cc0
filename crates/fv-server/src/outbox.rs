//! The sending half of a session: a byte-bounded queue in front of a writer task with a send
//! timeout, so a client that stops reading can hold neither unbounded memory nor its worker.
//! Producers hand it protocol-neutral [`Event`]s; the session's [`Protocol`] renders them.

use crate::error::Failure;
use crate::metrics as m;
use crate::session::{Event, Protocol, WireFrame};
use crate::ws::SocketSink;
use futures_util::SinkExt;
use fv_session::SessionLog;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// Bytes a session may have queued for its socket before producers wait (the generator, through
/// the pool's bounded event channel, waits with them).
pub const OUTBOX_BYTES: usize = 16 * 1024 * 1024;
/// What a message costs at least, so tiny messages are bounded in number too.
const MIN_MESSAGE_COST: usize = 64;

struct Item {
    msg: Message,
    /// Returned to the budget once the writer has handed the message to the socket.
    _permit: OwnedSemaphorePermit,
}

/// Cloneable handle producers send through; a running segment holds one too.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::UnboundedSender<Item>,
    budget: Arc<Semaphore>,
    protocol: Arc<dyn Protocol>,
}

impl Outbox {
    /// Creates the queue and spawns its writer. The writer gives up on a client whose socket
    /// accepts nothing for `send_timeout`; every later send then returns `false`. The writer
    /// hands the sink back when every `Outbox` is gone (or it gave up).
    pub fn spawn(
        sink: SocketSink,
        send_timeout: Duration,
        protocol: Arc<dyn Protocol>,
    ) -> (Self, tokio::task::JoinHandle<SocketSink>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_loop(sink, rx, send_timeout));
        let outbox = Self {
            tx,
            budget: Arc::new(Semaphore::new(OUTBOX_BYTES)),
            protocol,
        };
        (outbox, writer)
    }

    async fn push(&self, msg: Message, cost: usize) -> bool {
        let cost = cost.clamp(MIN_MESSAGE_COST, OUTBOX_BYTES) as u32;
        let permit = tokio::select! {
            permit = self.budget.clone().acquire_many_owned(cost) => match permit {
                Ok(p) => p,
                Err(_) => return false,
            },
            // The writer gave up: don't wait for budget that will never come back.
            _ = self.tx.closed() => return false,
        };
        self.tx
            .send(Item {
                msg,
                _permit: permit,
            })
            .is_ok()
    }

    /// Renders `event` in the session's protocol and queues its frames; `false` when the
    /// client is gone.
    pub async fn send(&self, event: Event) -> bool {
        let mut frames = Vec::with_capacity(2);
        self.protocol.render(event, &mut frames);
        for frame in frames {
            let sent = match frame {
                WireFrame::Text(text) => {
                    let cost = text.len();
                    self.push(Message::Text(text.into()), cost).await
                }
                WireFrame::Binary(data) => {
                    metrics::counter!(m::MEDIA_BYTES_TOTAL).increment(data.len() as u64);
                    let cost = data.len();
                    self.push(Message::Binary(data), cost).await
                }
            };
            if !sent {
                return false;
            }
        }
        true
    }

    /// Queues the close frame; nothing queued after it is sent.
    pub async fn close(&self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.to_owned().into(),
        };
        let _ = self.push(Message::Close(Some(frame)), reason.len()).await;
    }

    /// Resolves when the writer has stopped (client gone or too slow).
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Sends the error frame for `failure` (and counts and logs it). Whether the session ends
    /// is the session core's business (`Failure::wire`).
    pub async fn error(&self, failure: &Failure, log: Option<&SessionLog>) {
        let wire = failure.wire();
        let message = failure.to_string();
        metrics::counter!(m::ERRORS_TOTAL, "code" => wire.code.as_str()).increment(1);
        tracing::info!(code = wire.code.as_str(), %message, "error sent to client");
        if let Some(log) = log {
            log.error(wire.code.as_str(), &message);
        }
        self.send(Event::Error {
            code: wire.code,
            message,
            retryable: wire.retryable,
            product_code: wire.product_code,
        })
        .await;
    }
}

async fn write_loop(
    mut sink: SocketSink,
    mut rx: mpsc::UnboundedReceiver<Item>,
    send_timeout: Duration,
) -> SocketSink {
    while let Some(item) = rx.recv().await {
        let last = matches!(item.msg, Message::Close(_));
        match tokio::time::timeout(send_timeout, sink.send(item.msg)).await {
            Ok(Ok(())) if !last => {}
            Ok(Ok(())) => break,
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::warn!(
                    ?send_timeout,
                    "client stopped reading: dropping the connection"
                );
                break;
            }
        }
    }
    // Dropping `rx` wakes every producer waiting for budget.
    drop(rx);
    // Flushes our close frame, or the answer to the client's.
    let _ = tokio::time::timeout(send_timeout, sink.close()).await;
    sink
}
