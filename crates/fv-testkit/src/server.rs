//! The streaming server in-process on port 0: [`TestServer`] and [`test_config`].

use crate::generators;
use fv_server::config::ServeConfig;
use fv_server::{Server, ServerDeps, ServerOptions};
use fv_testkit_router::{Background, Client, http_get};
use std::net::SocketAddr;
use std::time::Duration;

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
