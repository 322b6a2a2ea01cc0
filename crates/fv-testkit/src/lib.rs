//! Test helpers: start the real server in-process on port 0 and talk to it like a client.
//!
//! Every server started here binds `127.0.0.1:0` and is shut down when its [`TestServer`] is
//! dropped, so tests never collide on ports and leave nothing running.

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use fv_server::config::ServeConfig;
use fv_server::{Server, ServerDeps, ServerOptions};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod browser;
pub mod router;

/// How long a test waits for any single server message before failing (a guard against hangs,
/// not a performance assertion).
pub const RECV_TIMEOUT: Duration = Duration::from_secs(20);

/// Small, fast defaults for tests: 64x64, 6 frames, 24 fps, 2 steps, 2 workers, no warm-up.
pub fn test_config() -> ServeConfig {
    let mut c = ServeConfig::mock_defaults();
    c.server.host = "127.0.0.1".into();
    c.server.port = 0;
    let s = &mut c.default_request.sampling;
    s.width = 64;
    s.height = 64;
    s.num_frames = 6;
    s.fps = 24;
    s.num_inference_steps = 2;
    c.streaming.fragment_frames = 4;
    c.streaming.pool.num_workers = Some(2);
    c.streaming.warmup.enabled = false;
    c.streaming.reaper_interval_ms = 20;
    c.streaming.shutdown_grace_seconds = 5;
    c
}

/// A `serve(shutdown)` future on its own task, with the sender of its `shutdown`: stopped
/// gracefully by [`Background::shutdown`], aborted when dropped. Behind [`TestServer`] and
/// [`router::TestRouter`].
#[derive(Debug)]
pub(crate) struct Background<E> {
    /// Names the task in the error when it panicked.
    what: &'static str,
    stop: Option<oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<Result<(), E>>>,
}

impl<E> Background<E> {
    /// Starts the graceful shutdown without waiting for it.
    pub(crate) fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl<E> Background<E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    /// Spawns `serve(shutdown)`, where `shutdown` resolves on [`Background::stop`] or drop.
    pub(crate) fn spawn<F, Fut>(what: &'static str, serve: F) -> Self
    where
        F: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<()>();
        let join = tokio::spawn(serve(Box::pin(async move {
            let _ = rx.await;
        })));
        Self {
            what,
            stop: Some(tx),
            join: Some(join),
        }
    }

    /// Shuts down gracefully and waits until the task has returned, with its error.
    pub(crate) async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop();
        if let Some(join) = self.join.take() {
            join.await
                .with_context(|| format!("{} task panicked", self.what))??;
        }
        Ok(())
    }
}

impl<E> Drop for Background<E> {
    fn drop(&mut self) {
        self.stop();
        if let Some(join) = self.join.take() {
            join.abort();
        }
    }
}

/// A server running on its own task; shut down when dropped.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    task: Background<fv_server::ServerError>,
}

impl TestServer {
    /// Starts a mock-generator server with `config` (its port should be 0).
    pub async fn start(config: ServeConfig) -> anyhow::Result<Self> {
        Self::start_mock(config, Duration::ZERO).await
    }

    /// Starts a mock-generator server whose segments take `segment_time`.
    pub async fn start_mock(config: ServeConfig, segment_time: Duration) -> anyhow::Result<Self> {
        let deps = fv_server::mock_deps(&config, segment_time)?;
        Self::start_with(config, deps).await
    }

    /// Starts a server on the given dependencies (custom generators, stores).
    pub async fn start_with(config: ServeConfig, deps: ServerDeps) -> anyhow::Result<Self> {
        let options = ServerOptions {
            web_ui: true,
            ..ServerOptions::default()
        };
        Self::start_with_options(config, deps, options).await
    }

    /// Starts a server with explicit [`ServerOptions`].
    pub async fn start_with_options(
        config: ServeConfig,
        deps: ServerDeps,
        options: ServerOptions,
    ) -> anyhow::Result<Self> {
        let server = Server::bind(config, deps, options).await?;
        let addr = server.local_addr()?;
        let task = Background::spawn("server", |shutdown| server.serve(shutdown));
        Ok(Self { addr, task })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/stream", self.addr)
    }

    /// Opens a WebSocket on `/v1/stream`.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        Client::connect(&self.ws_url()).await
    }

    /// `GET path`, returning status and body.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        http_get(self.addr, path).await
    }

    /// Starts the graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        self.task.stop();
    }

    /// Starts a server on `workers` [`generators::TestGenerator`]s sharing one
    /// [`generators::Observed`], which is returned for assertions.
    pub async fn with_test_generators(
        config: ServeConfig,
        workers: usize,
        step_time: Duration,
        behaviour: generators::Behaviour,
    ) -> anyhow::Result<(Self, std::sync::Arc<generators::Observed>)> {
        let (gens, observed) = generators::test_generators(workers, step_time, behaviour);
        let deps = fv_server::deps_with_generators(&config, gens)?;
        Ok((Self::start_with(config, deps).await?, observed))
    }

    /// Shuts down gracefully and waits until the server has stopped.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.task.shutdown().await
    }
}

/// What the server sent next.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    Json(Value),
    Binary(Vec<u8>),
    /// A close frame: code and reason.
    Close(u16, String),
    /// The connection ended without a close frame (1006 in browser terms).
    Dropped,
}

/// Everything a client saw for one segment.
#[derive(Debug, Clone, Default)]
pub struct SegmentTranscript {
    /// Every JSON message in order.
    pub messages: Vec<Value>,
    /// Binary frames in order: the first is the init segment.
    pub binaries: Vec<Vec<u8>>,
    /// `type` of every message, with `<binary>` for binary frames, in arrival order.
    pub order: Vec<String>,
}

impl SegmentTranscript {
    /// The first message of type `ty`.
    pub fn find(&self, ty: &str) -> Option<&Value> {
        self.messages.iter().find(|m| m["type"] == ty)
    }

    /// The whole segment as one fMP4 byte stream.
    pub fn media(&self) -> Vec<u8> {
        self.binaries.concat()
    }
}

/// A protocol client over tokio-tungstenite.
#[derive(Debug)]
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        Ok(Self { ws })
    }

    /// Opens a WebSocket with extra request headers. `Ok(Err(status))` when the server refused
    /// the upgrade with that HTTP status.
    pub async fn connect_with_headers(
        url: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Result<Self, u16>> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            request.headers_mut().insert(
                HeaderName::from_bytes(name.as_bytes())?,
                HeaderValue::from_str(value)?,
            );
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(Ok(Self { ws })),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Ok(Err(response.status().as_u16()))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn send_json(&mut self, value: &Value) -> anyhow::Result<()> {
        self.send_text(&value.to_string()).await
    }

    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws.send(Message::Text(text.to_string().into())).await?;
        Ok(())
    }

    pub async fn send_binary(&mut self, data: Vec<u8>) -> anyhow::Result<()> {
        self.ws.send(Message::Binary(data.into())).await?;
        Ok(())
    }

    /// Sends a close frame.
    pub async fn close(&mut self, code: u16, reason: &str) -> anyhow::Result<()> {
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.to_string().into(),
        };
        self.ws.send(Message::Close(Some(frame))).await?;
        Ok(())
    }

    /// Drops the TCP connection without a close frame.
    pub fn abort(self) {
        drop(self);
    }

    /// The next server message (JSON parsed; every JSON message is also checked to parse as a
    /// `fv_protocol::ServerMessage`, so a schema slip fails the test).
    pub async fn recv(&mut self) -> anyhow::Result<Received> {
        self.recv_within(RECV_TIMEOUT).await
    }

    pub async fn recv_within(&mut self, limit: Duration) -> anyhow::Result<Received> {
        loop {
            let next = tokio::time::timeout(limit, self.ws.next())
                .await
                .map_err(|_| anyhow!("no server message within {limit:?}"))?;
            return Ok(match next {
                None => Received::Dropped,
                Some(Err(e)) => {
                    use tokio_tungstenite::tungstenite::Error as E;
                    match e {
                        E::ConnectionClosed | E::AlreadyClosed => Received::Dropped,
                        E::Protocol(_) | E::Io(_) => Received::Dropped,
                        other => bail!("websocket error: {other}"),
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t)
                        .with_context(|| format!("server sent non-JSON text: {t}"))?;
                    serde_json::from_str::<fv_protocol::ServerMessage>(&t).with_context(|| {
                        format!("server message does not match the protocol: {t}")
                    })?;
                    Received::Json(v)
                }
                Some(Ok(Message::Binary(b))) => Received::Binary(b.to_vec()),
                Some(Ok(Message::Close(frame))) => match frame {
                    Some(f) => Received::Close(f.code.into(), f.reason.to_string()),
                    None => Received::Close(1005, String::new()),
                },
                Some(Ok(_)) => continue,
            });
        }
    }

    /// The next message, which must be JSON.
    pub async fn recv_json(&mut self) -> anyhow::Result<Value> {
        match self.recv().await? {
            Received::Json(v) => Ok(v),
            other => bail!("expected a JSON message, got {other:?}"),
        }
    }

    /// The next message, which must be JSON of type `ty`.
    pub async fn expect(&mut self, ty: &str) -> anyhow::Result<Value> {
        let v = self.recv_json().await?;
        if v["type"] != ty {
            bail!("expected {ty}, got {v}");
        }
        Ok(v)
    }

    /// Skips messages (JSON of other types and binary frames) until a JSON message of type
    /// `ty`, and returns it. Fails if the connection ends first.
    pub async fn recv_until(&mut self, ty: &str) -> anyhow::Result<Value> {
        loop {
            match self.recv().await? {
                Received::Json(v) if v["type"] == ty => return Ok(v),
                Received::Json(_) | Received::Binary(_) => {}
                other => bail!("connection ended before {ty}: {other:?}"),
            }
        }
    }

    /// Reads until the close frame (skipping nothing: any other message fails) and returns it.
    pub async fn expect_close(&mut self) -> anyhow::Result<(u16, String)> {
        match self.recv().await? {
            Received::Close(code, reason) => Ok((code, reason)),
            other => bail!("expected a close frame, got {other:?}"),
        }
    }

    /// Sends `session_init_v2` (with `extra` merged in) and reads through `ltx2_stream_start`.
    /// Returns every message received on the way.
    pub async fn init_with(&mut self, extra: Value) -> anyhow::Result<Vec<Value>> {
        let mut msg = json!({"type": "session_init_v2"});
        if let (Some(m), Some(e)) = (msg.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                m.insert(k.clone(), v.clone());
            }
        }
        self.send_json(&msg).await?;
        let mut seen = Vec::new();
        loop {
            let v = self.recv_json().await?;
            let done = v["type"] == "ltx2_stream_start";
            if v["type"] == "error" {
                bail!("init failed: {v}");
            }
            seen.push(v);
            if done {
                return Ok(seen);
            }
        }
    }

    pub async fn init(&mut self) -> anyhow::Result<Vec<Value>> {
        self.init_with(json!({})).await
    }

    /// Requests a segment and collects everything through `ltx2_segment_complete`.
    pub async fn segment(&mut self, prompt: &str) -> anyhow::Result<SegmentTranscript> {
        self.send_json(&json!({"type": "segment_prompt_source", "prompt": prompt}))
            .await?;
        self.collect_segment().await
    }

    /// Collects one segment's messages through `ltx2_segment_complete` (fails on `error`).
    pub async fn collect_segment(&mut self) -> anyhow::Result<SegmentTranscript> {
        let mut t = SegmentTranscript::default();
        loop {
            match self.recv().await? {
                Received::Json(v) => {
                    let ty = v["type"].as_str().unwrap_or("?").to_string();
                    if ty == "error" {
                        bail!("segment failed: {v}");
                    }
                    t.order.push(ty.clone());
                    t.messages.push(v);
                    if ty == "ltx2_segment_complete" {
                        return Ok(t);
                    }
                }
                Received::Binary(b) => {
                    t.order.push("<binary>".into());
                    t.binaries.push(b);
                }
                other => bail!("connection ended mid-segment: {other:?}"),
            }
        }
    }
}

/// A minimal HTTP/1.1 GET (no client dependency needed for health probes).
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(RECV_TIMEOUT, stream.read_to_end(&mut raw))
        .await
        .map_err(|_| anyhow!("HTTP response timed out"))??;
    let text = String::from_utf8(raw).context("non-UTF-8 HTTP response")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no status line in {head}"))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body
            .split_once("\r\n")
            .ok_or_else(|| anyhow!("bad chunk header"))?;
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).ok_or_else(|| anyhow!("short chunk"))?);
        body = rest
            .get(size + 2..)
            .ok_or_else(|| anyhow!("missing chunk end"))?;
    }
}

pub mod generators {
    //! Generators with test hooks, built on [`fv_core::MockGenerator`].

    use fv_core::{
        CancelToken, GenerateError, GenerationRequest, GenerationResult, GenerationSink, Generator,
        MockGenerator, MockGeneratorConfig,
    };
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Duration;

    /// Everything the test wants to know about the requests a generator saw.
    #[derive(Debug, Default)]
    pub struct Observed {
        pub requests: Mutex<Vec<GenerationRequest>>,
        /// Whether `image_path` existed on disk when the request ran.
        pub image_existed: Mutex<Vec<bool>>,
        /// Denoising steps actually executed, over all requests.
        pub steps: AtomicU32,
        /// Segments that ended with `Cancelled`.
        pub cancelled: AtomicU32,
        /// For [`Behaviour::GatedFrames`]: opened by the test.
        gate: (Mutex<bool>, Condvar),
    }

    impl Observed {
        pub fn requests(&self) -> Vec<GenerationRequest> {
            self.requests.lock().map(|r| r.clone()).unwrap_or_default()
        }

        /// Lets a [`Behaviour::GatedFrames`] generator go on past its first frame batch.
        pub fn open_gate(&self) {
            if let Ok(mut open) = self.gate.0.lock() {
                *open = true;
            }
            self.gate.1.notify_all();
        }

        /// Waits up to `limit` for the gate; `false` when it stayed shut.
        fn wait_gate(&self, limit: Duration) -> bool {
            let Ok(guard) = self.gate.0.lock() else {
                return false;
            };
            match self.gate.1.wait_timeout_while(guard, limit, |open| !*open) {
                Ok((open, _)) => *open,
                Err(_) => false,
            }
        }
    }

    /// What [`TestGenerator`] does with a request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Behaviour {
        /// The mock gradient.
        Normal,
        /// Fails every request whose prompt contains `"fail"`.
        FailOnPromptFail,
        /// Returns zero frames.
        NoFrames,
        /// Hands over the first frame batch, then blocks (up to 10 s) until the test calls
        /// [`Observed::open_gate`]; fails the segment if the gate never opens. Proves that media
        /// leaves the server before generation has finished.
        GatedFrames,
        /// For prompts containing `"badframe"`: first hands over a frame of the wrong size
        /// (the encoder rejects it mid-segment), then keeps generating normally.
        BadFrameOnPromptBadframe,
        /// Random pixels: incompressible, so segments are megabytes of H.264.
        Noise,
    }

    /// A [`MockGenerator`] that records what it sees and can be told to misbehave.
    #[derive(Debug)]
    pub struct TestGenerator {
        inner: MockGenerator,
        step_time: Duration,
        behaviour: Behaviour,
        observed: Arc<Observed>,
    }

    impl TestGenerator {
        pub fn new(step_time: Duration, behaviour: Behaviour, observed: Arc<Observed>) -> Self {
            Self {
                inner: MockGenerator::new(MockGeneratorConfig {
                    segment_time: Duration::ZERO,
                    frame_batch: 4,
                }),
                step_time,
                behaviour,
                observed,
            }
        }
    }

    struct CountingSink<'a> {
        inner: &'a mut dyn GenerationSink,
        observed: &'a Observed,
        step_time: Duration,
        gated: bool,
        batches: u32,
        gate_failed: bool,
    }

    impl GenerationSink for CountingSink<'_> {
        fn step(&mut self, step: u32, total: u32) {
            // Simulate the step's work before reporting it, like a model would.
            std::thread::sleep(self.step_time);
            self.observed.steps.fetch_add(1, Ordering::SeqCst);
            self.inner.step(step, total);
        }

        fn frames(&mut self, frames: Vec<fv_core::Frame>) {
            if self.gated && self.batches == 1 && !self.observed.wait_gate(Duration::from_secs(10))
            {
                self.gate_failed = true;
            }
            self.batches += 1;
            self.inner.frames(frames);
        }
    }

    impl Generator for TestGenerator {
        fn generate(
            &mut self,
            request: &GenerationRequest,
            sink: &mut dyn GenerationSink,
            cancel: &CancelToken,
        ) -> Result<GenerationResult, GenerateError> {
            if let Ok(mut r) = self.observed.requests.lock() {
                r.push(request.clone());
            }
            let existed = request.image_path.as_ref().is_some_and(|p| p.exists());
            if let Ok(mut e) = self.observed.image_existed.lock() {
                e.push(existed);
            }
            if self.behaviour == Behaviour::FailOnPromptFail && request.prompt.contains("fail") {
                return Err(GenerateError::Failed("the test asked for a failure".into()));
            }
            if self.behaviour == Behaviour::BadFrameOnPromptBadframe
                && request.prompt.contains("badframe")
            {
                let w = request.width.max(16) / 2;
                let h = request.height.max(16) / 2;
                if let Ok(small) = fv_core::Frame::from_rgb(w, h, vec![0; (w * h * 3) as usize]) {
                    sink.frames(vec![small]);
                }
            }
            if self.behaviour == Behaviour::Noise {
                let total = request.num_inference_steps.max(1);
                for step in 1..=total {
                    if cancel.is_cancelled() {
                        return Err(GenerateError::Cancelled);
                    }
                    sink.step(step, total);
                }
                let (w, h) = (request.width.max(16), request.height.max(16));
                let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(request.segment_idx);
                for _ in 0..request.num_frames.max(1) {
                    if cancel.is_cancelled() {
                        return Err(GenerateError::Cancelled);
                    }
                    let rgb = (0..w * h * 3)
                        .map(|_| {
                            // xorshift64: cheap, deterministic noise.
                            seed ^= seed << 13;
                            seed ^= seed >> 7;
                            seed ^= seed << 17;
                            seed as u8
                        })
                        .collect();
                    let frame = fv_core::Frame::from_rgb(w, h, rgb)
                        .map_err(|e| GenerateError::Failed(e.to_string()))?;
                    sink.frames(vec![frame]);
                }
                return Ok(GenerationResult::default());
            }
            if self.behaviour == Behaviour::NoFrames {
                for step in 1..=request.num_inference_steps.max(1) {
                    sink.step(step, request.num_inference_steps.max(1));
                }
                return Ok(GenerationResult::default());
            }
            let mut counting = CountingSink {
                inner: sink,
                observed: &self.observed,
                step_time: self.step_time,
                gated: self.behaviour == Behaviour::GatedFrames,
                batches: 0,
                gate_failed: false,
            };
            let result = self.inner.generate(request, &mut counting, cancel);
            if counting.gate_failed {
                return Err(GenerateError::Failed(
                    "the gate was never opened: no media reached the client early".into(),
                ));
            }
            if result == Err(GenerateError::Cancelled) {
                self.observed.cancelled.fetch_add(1, Ordering::SeqCst);
            }
            result
        }

        fn name(&self) -> &str {
            "test"
        }
    }

    /// `n` test generators sharing one [`Observed`].
    pub fn test_generators(
        n: usize,
        step_time: Duration,
        behaviour: Behaviour,
    ) -> (Vec<Box<dyn Generator>>, Arc<Observed>) {
        let observed = Arc::new(Observed::default());
        let gens = (0..n)
            .map(|_| {
                Box::new(TestGenerator::new(step_time, behaviour, observed.clone()))
                    as Box<dyn Generator>
            })
            .collect();
        (gens, observed)
    }
}

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

/// A child process that is killed (and reaped) when dropped, so a test that fails half-way
/// leaves no server running. Derefs to the [`std::process::Child`].
#[derive(Debug)]
pub struct ChildGuard(std::process::Child);

impl ChildGuard {
    /// Takes ownership of `child`.
    pub fn new(child: std::process::Child) -> Self {
        Self(child)
    }
}

impl std::ops::Deref for ChildGuard {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Live processes (zombies excluded) whose environment has `name=value`: how tests find the
/// worker processes a server started (give the server a unique value; its children inherit
/// it). Linux `/proc` only; empty elsewhere.
pub fn processes_with_env(name: &str, value: &str) -> Vec<u32> {
    let needle = format!("{name}={value}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // A process that exited meanwhile has no environ left to read.
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let marked = environ.split(|&b| b == 0).any(|v| v == needle.as_bytes());
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The state letter follows the parenthesised command name.
            let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
            marked && !matches!(state, Some('Z' | 'X') | None)
        })
        .collect()
}
