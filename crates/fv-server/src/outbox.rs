//! The sending half of a session: a byte-bounded queue in front of a writer task with a send
//! timeout, so a client that stops reading can hold neither unbounded memory nor its worker.

use crate::error::Failure;
use crate::metrics as m;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use fv_protocol::ServerMessage;
use fv_session::SessionLog;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Bytes a session may have queued for its socket before producers wait (the generator, through
/// the pool's bounded event channel, waits with them).
pub const OUTBOX_BYTES: usize = 16 * 1024 * 1024;
/// What a message costs at least, so tiny messages are bounded in number too.
const MIN_MESSAGE_COST: usize = 64;

enum Outbound {
    Text(String),
    Binary(Bytes),
    Close(u16, String),
}

struct Item {
    msg: Outbound,
    /// Returned to the budget once the writer has handed the message to the socket.
    _permit: OwnedSemaphorePermit,
}

/// Cloneable handle producers send through; a running segment holds one too.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::UnboundedSender<Item>,
    budget: Arc<Semaphore>,
    close_sent: Arc<AtomicBool>,
}

impl Outbox {
    /// Creates the queue and spawns its writer. The writer gives up on a client whose socket
    /// accepts nothing for `send_timeout`; every later send then returns `false`.
    pub fn spawn(
        sink: SplitSink<WebSocket, Message>,
        send_timeout: Duration,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_loop(sink, rx, send_timeout));
        let outbox = Self {
            tx,
            budget: Arc::new(Semaphore::new(OUTBOX_BYTES)),
            close_sent: Arc::new(AtomicBool::new(false)),
        };
        (outbox, writer)
    }

    async fn push(&self, msg: Outbound, cost: usize) -> bool {
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

    /// Queues a control message; `false` when the client is gone.
    pub async fn json(&self, msg: ServerMessage) -> bool {
        let text = msg.to_json();
        let cost = text.len();
        self.push(Outbound::Text(text), cost).await
    }

    /// Queues media; `false` when the client is gone.
    pub async fn binary(&self, data: Bytes) -> bool {
        metrics::counter!(m::MEDIA_BYTES_TOTAL).increment(data.len() as u64);
        let cost = data.len();
        self.push(Outbound::Binary(data), cost).await
    }

    /// Queues the close frame; nothing queued after it is sent.
    pub async fn close(&self, code: u16, reason: &str) {
        self.close_sent.store(true, Ordering::Release);
        let _ = self
            .push(Outbound::Close(code, reason.to_string()), reason.len())
            .await;
    }

    /// Whether a close frame was queued.
    pub fn close_sent(&self) -> bool {
        self.close_sent.load(Ordering::Acquire)
    }

    /// Resolves when the writer has stopped (client gone or too slow).
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Sends the error frame for `failure` and, when the mapping says so, the close frame.
    /// Returns `true` when the socket is being closed.
    pub async fn fail(&self, failure: &Failure, log: Option<&SessionLog>) -> bool {
        let wire = failure.wire();
        let message = failure.to_string();
        metrics::counter!(m::ERRORS_TOTAL, "code" => wire.code.as_str()).increment(1);
        tracing::info!(code = wire.code.as_str(), %message, "error sent to client");
        if let Some(log) = log {
            log.error(wire.code.as_str(), &message);
        }
        self.json(ServerMessage::error(wire.code, message, wire.retryable))
            .await;
        match wire.close {
            Some((code, reason)) => {
                self.close(code, reason).await;
                true
            }
            None => false,
        }
    }
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::UnboundedReceiver<Item>,
    send_timeout: Duration,
) {
    while let Some(item) = rx.recv().await {
        let (msg, last) = match item.msg {
            Outbound::Text(t) => (Message::Text(t.into()), false),
            Outbound::Binary(b) => (Message::Binary(b), false),
            Outbound::Close(code, reason) => (
                Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })),
                true,
            ),
        };
        match tokio::time::timeout(send_timeout, sink.send(msg)).await {
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
    let _ = tokio::time::timeout(send_timeout, sink.close()).await;
}
