//! [`ScriptedReplica`]: a replica stand-in whose health, capacity and sessions a test scripts.

use anyhow::{anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

/// What a test controls and observes on a [`ScriptedReplica`].
#[derive(Debug)]
pub struct ReplicaControl {
    /// `gpu_id` in this replica's `gpu_assigned`, so a client can tell replicas apart.
    pub id: u32,
    health: AtomicU16,
    capacity: Mutex<Option<(u32, u32)>>,
    reject: AtomicBool,
    /// When non-zero, WebSocket upgrades are refused with this HTTP status.
    upgrade_status: AtomicU16,
    sessions: AtomicUsize,
    probes: AtomicUsize,
    first_frames: Mutex<Vec<String>>,
    client_closes: Mutex<Vec<Option<(u16, String)>>>,
    upgrade_heads: Mutex<Vec<String>>,
}

fn locked<T: Clone>(m: &Mutex<T>) -> T {
    m.lock()
        .map(|g| g.clone())
        .unwrap_or_else(|e| e.into_inner().clone())
}

fn push<T>(m: &Mutex<Vec<T>>, v: T) {
    match m.lock() {
        Ok(mut g) => g.push(v),
        Err(e) => e.into_inner().push(v),
    }
}

/// A replica stand-in that speaks just enough of the protocol for router tests and benches.
///
/// * `GET /health` answers the status set by [`ScriptedReplica::set_health`] (200 at start).
/// * `GET /status` answers `{"active_sessions", "max_sessions"}` when a capacity was set
///   ([`ScriptedReplica::set_capacity`]), else 404.
/// * `/v1/stream`: after the first frame it sends `gpu_assigned{gpu_id: id}` and
///   `ltx2_stream_start`; then for `segment_prompt_source` it acts on the prompt:
///   `blast N SIZE` sends N binary frames of SIZE bytes ([`blast_payload`]) then
///   `ltx2_segment_complete`; `close CODE REASON` closes with that code and reason; `drop` drops
///   the TCP connection; anything else gets `ltx2_segment_start` + `ltx2_segment_complete`.
///   `snapshot_state` gets `error{internal_error}` like a fresh session on the real server;
///   binary frames are echoed back. Client close frames are recorded.
/// * With [`ScriptedReplica::set_reject`] every session gets `error{session_rejected}` and
///   close 1013 at once, like a full server; with [`ScriptedReplica::set_upgrade_status`] the
///   upgrade itself is refused with an HTTP status.
///
/// Dropping it stops the listener and kills every session without a close frame.
#[derive(Debug)]
pub struct ScriptedReplica {
    pub addr: SocketAddr,
    control: Arc<ReplicaControl>,
    task: tokio::task::JoinHandle<()>,
}

/// The payload of every binary frame of a `blast` of `size`-byte frames.
pub fn blast_payload(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i.wrapping_mul(31) % 251) as u8)
        .collect()
}

impl ScriptedReplica {
    /// Binds `127.0.0.1:0` and serves.
    pub async fn start(id: u32) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let control = Arc::new(ReplicaControl {
            id,
            health: AtomicU16::new(200),
            capacity: Mutex::new(None),
            reject: AtomicBool::new(false),
            upgrade_status: AtomicU16::new(0),
            sessions: AtomicUsize::new(0),
            probes: AtomicUsize::new(0),
            first_frames: Mutex::new(Vec::new()),
            client_closes: Mutex::new(Vec::new()),
            upgrade_heads: Mutex::new(Vec::new()),
        });
        let ctl = control.clone();
        let task = tokio::spawn(async move {
            // Owned here so aborting the accept loop also kills every session.
            let mut sessions = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let _ = stream.set_nodelay(true);
                        sessions.spawn(serve_connection(stream, ctl.clone()));
                    }
                    Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                }
            }
        });
        Ok(Self {
            addr,
            control,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`, for a router config.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn control(&self) -> &ReplicaControl {
        &self.control
    }

    /// HTTP status `/health` answers from now on.
    pub fn set_health(&self, status: u16) {
        self.control.health.store(status, Ordering::SeqCst);
    }

    /// What `/status` reports from now on.
    pub fn set_capacity(&self, active: u32, max: u32) {
        match self.control.capacity.lock() {
            Ok(mut c) => *c = Some((active, max)),
            Err(e) => *e.into_inner() = Some((active, max)),
        }
    }

    /// Refuse every new session like a full server.
    pub fn set_reject(&self, reject: bool) {
        self.control.reject.store(reject, Ordering::SeqCst);
    }

    /// Refuse WebSocket upgrades with this HTTP status (`None`: accept them).
    pub fn set_upgrade_status(&self, status: Option<u16>) {
        self.control
            .upgrade_status
            .store(status.unwrap_or(0), Ordering::SeqCst);
    }

    /// WebSocket sessions accepted so far.
    pub fn sessions(&self) -> usize {
        self.control.sessions.load(Ordering::SeqCst)
    }

    /// `/health` requests answered so far.
    pub fn probes(&self) -> usize {
        self.control.probes.load(Ordering::SeqCst)
    }

    /// The first frame of every session, in order.
    pub fn first_frames(&self) -> Vec<String> {
        locked(&self.control.first_frames)
    }

    /// Close frames received from clients (`None`: a close frame without a code).
    pub fn client_closes(&self) -> Vec<Option<(u16, String)>> {
        locked(&self.control.client_closes)
    }

    /// The HTTP head of every WebSocket upgrade request.
    pub fn upgrade_heads(&self) -> Vec<String> {
        locked(&self.control.upgrade_heads)
    }

    /// Waits (up to 10 s) until a client close frame has been recorded and returns it.
    pub async fn wait_client_close(&self) -> anyhow::Result<Option<(u16, String)>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(c) = self.client_closes().first() {
                return Ok(c.clone());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the replica never received a close frame");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for ScriptedReplica {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Largest request head the replica reads.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A request head parsed by httparse: the head as received, its path and headers.
#[derive(Debug)]
struct Head {
    raw: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads an HTTP request head; returns it and whatever was read past it.
async fn read_head(stream: &mut TcpStream) -> anyhow::Result<(Head, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(end) = req.parse(&buf)? {
            let head = Head {
                // Without the blank line that ends it.
                raw: String::from_utf8_lossy(&buf[..end.saturating_sub(4)]).into_owned(),
                path: req.path.unwrap_or("/").to_owned(),
                headers: req
                    .headers
                    .iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value).trim().to_owned();
                        (h.name.to_owned(), value)
                    })
                    .collect(),
            };
            return Ok((head, buf[end..].to_vec()));
        }
        if buf.len() > MAX_HEAD_BYTES {
            bail!("request head too large");
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before the request head ended");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn serve_connection(mut stream: TcpStream, ctl: Arc<ReplicaControl>) {
    let Ok((head, rest)) = read_head(&mut stream).await else {
        return;
    };
    let path = head.path.clone();
    let is_upgrade = head
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let refuse = ctl.upgrade_status.load(Ordering::SeqCst);
    if is_upgrade
        && refuse == 0
        && let Some(key) = head.header("sec-websocket-key")
    {
        push(&ctl.upgrade_heads, head.raw.clone());
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
        let config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let ws =
            WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(config)).await;
        ctl.sessions.fetch_add(1, Ordering::SeqCst);
        let _ = run_session(ws, &ctl).await;
        return;
    }
    let (code, body) = if is_upgrade {
        (refuse, json!({"detail": "upgrade refused by the test"}))
    } else if path.starts_with("/health") {
        ctl.probes.fetch_add(1, Ordering::SeqCst);
        let code = ctl.health.load(Ordering::SeqCst);
        (
            code,
            json!({"status": if code < 400 { "ok" } else { "down" }}),
        )
    } else if path.starts_with("/status") {
        match locked(&ctl.capacity) {
            Some((active, max)) => (200, json!({"active_sessions": active, "max_sessions": max})),
            None => (404, json!({"detail": "Not Found"})),
        }
    } else {
        (404, json!({"detail": "Not Found"}))
    };
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn run_session(
    mut ws: WebSocketStream<TcpStream>,
    ctl: &ReplicaControl,
) -> anyhow::Result<()> {
    if ctl.reject.load(Ordering::SeqCst) {
        let err = json!({"type": "error", "code": "session_rejected",
                         "message": "max sessions reached (0)", "retryable": false});
        ws.send(Message::Text(err.to_string().into())).await?;
        ws.send(close(1013, "session_rejected")).await?;
        while let Some(Ok(_)) = ws.next().await {}
        return Ok(());
    }
    let first = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => break t.to_string(),
            Some(Ok(Message::Binary(b))) => break format!("<binary {} bytes>", b.len()),
            Some(Ok(Message::Close(f))) => {
                push(
                    &ctl.client_closes,
                    f.map(|f| (u16::from(f.code), f.reason.to_string())),
                );
                return Ok(());
            }
            Some(Ok(_)) => continue,
            None | Some(Err(_)) => return Ok(()),
        }
    };
    push(&ctl.first_frames, first);
    let assigned = json!({"type": "gpu_assigned", "gpu_id": ctl.id, "session_timeout": 300});
    let start =
        json!({"type": "ltx2_stream_start", "width": 64, "height": 64, "fps": 24, "num_frames": 6});
    ws.send(Message::Text(assigned.to_string().into())).await?;
    ws.send(Message::Text(start.to_string().into())).await?;
    let mut segment = 0u32;
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                match v["type"].as_str() {
                    Some("snapshot_state") => {
                        let err = json!({"type": "error", "code": "internal_error",
                            "message": "no continuation state available for session", "retryable": false});
                        ws.send(Message::Text(err.to_string().into())).await?;
                    }
                    Some("segment_prompt_source") => {
                        let prompt = v["prompt"].as_str().unwrap_or_default().to_owned();
                        if !segment_command(&mut ws, &prompt, segment).await? {
                            return Ok(());
                        }
                        segment += 1;
                    }
                    _ => {}
                }
            }
            Message::Binary(b) => ws.send(Message::Binary(b)).await?,
            Message::Close(f) => {
                push(
                    &ctl.client_closes,
                    f.map(|f| (u16::from(f.code), f.reason.to_string())),
                );
            }
            _ => {}
        }
    }
    Ok(())
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.to_owned().into(),
    }))
}

/// Acts on one prompt; `false` when the session is over.
async fn segment_command(
    ws: &mut WebSocketStream<TcpStream>,
    prompt: &str,
    segment: u32,
) -> anyhow::Result<bool> {
    let words: Vec<&str> = prompt.split_whitespace().collect();
    let complete =
        json!({"type": "ltx2_segment_complete", "segment_idx": segment, "generation_time_ms": 0.0});
    match words.as_slice() {
        ["blast", n, size] => {
            let n: usize = n.parse().map_err(|_| anyhow!("blast: bad count"))?;
            let size: usize = size.parse().map_err(|_| anyhow!("blast: bad size"))?;
            let payload = tokio_tungstenite::tungstenite::Bytes::from(blast_payload(size));
            for _ in 0..n {
                ws.feed(Message::Binary(payload.clone())).await?;
            }
            ws.send(Message::Text(complete.to_string().into())).await?;
            Ok(true)
        }
        ["close", code, reason @ ..] => {
            let code: u16 = code.parse().map_err(|_| anyhow!("close: bad code"))?;
            ws.send(close(code, &reason.join(" "))).await?;
            while let Some(Ok(_)) = ws.next().await {}
            Ok(false)
        }
        ["drop"] => Ok(false),
        _ => {
            let start = json!({"type": "ltx2_segment_start", "segment_idx": segment, "prompt": prompt, "total_steps": 1});
            ws.send(Message::Text(start.to_string().into())).await?;
            ws.send(Message::Text(complete.to_string().into())).await?;
            Ok(true)
        }
    }
}
