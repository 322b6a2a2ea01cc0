//! [`Client`]: the `/v1/stream` protocol over tokio-tungstenite, with transcripts of segments.

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for any single server message before failing (a guard against hangs,
/// not a performance assertion).
pub const RECV_TIMEOUT: Duration = Duration::from_secs(20);

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
    /// Check every JSON message against `/v1/stream`'s `ServerMessage` (off for `/ws`, the
    /// Dreamverse product protocol, whose messages have other shapes).
    strict: bool,
}

impl Client {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        Ok(Self { ws, strict: true })
    }

    /// Opens a `/ws` (Dreamverse product protocol) socket: JSON messages are not checked
    /// against `/v1/stream`'s schema.
    pub async fn connect_product(url: &str) -> anyhow::Result<Self> {
        let mut client = Self::connect(url).await?;
        client.strict = false;
        Ok(client)
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
            Ok((ws, _)) => Ok(Ok(Self { ws, strict: true })),
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
                    if self.strict {
                        serde_json::from_str::<fv_protocol::ServerMessage>(&t).with_context(
                            || format!("server message does not match the protocol: {t}"),
                        )?;
                    }
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
