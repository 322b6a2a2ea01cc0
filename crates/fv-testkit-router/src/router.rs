//! The router in-process on port 0 ([`TestRouter`], [`router_config`]) and the replica
//! stand-in it is tested against ([`ScriptedReplica`]).

pub use crate::replica::{ReplicaControl, ScriptedReplica, blast_payload};
use crate::{Background, Client, http_get};
use anyhow::bail;
pub use fv_router::config::{ReplicaConfig, RouterConfig};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// A router config for tests: `127.0.0.1:0`, fast probes (every 50 ms, 1 s timeout, unhealthy
/// after 2 failures, back after 2 successes), short timeouts.
pub fn router_config(replicas: &[String]) -> RouterConfig {
    let mut c = RouterConfig::new(replicas.iter().map(ReplicaConfig::new).collect());
    c.host = "127.0.0.1".into();
    c.port = 0;
    c.health_check.interval_seconds = 0.05;
    c.health_check.timeout_seconds = 1.0;
    c.health_check.failure_threshold = 2;
    c.health_check.recovery_threshold = 2;
    c.connect_timeout_seconds = 2.0;
    c.first_frame_timeout_seconds = 5.0;
    c.shutdown_grace_seconds = 5.0;
    c
}

/// A router running on its own task; shut down when dropped.
#[derive(Debug)]
pub struct TestRouter {
    pub addr: SocketAddr,
    task: Background<fv_router::RouterError>,
}

impl TestRouter {
    /// Binds `config` (its port should be 0) and serves it.
    pub async fn start(config: RouterConfig) -> anyhow::Result<Self> {
        let router = fv_router::Router::bind(config).await?;
        let addr = router.local_addr()?;
        let task = Background::spawn("router", |shutdown| router.serve(shutdown));
        Ok(Self { addr, task })
    }

    /// Starts a router and waits until `healthy` of its replicas are healthy.
    pub async fn start_ready(config: RouterConfig, healthy: usize) -> anyhow::Result<Self> {
        let router = Self::start(config).await?;
        router
            .wait_for(&format!("{healthy} healthy replicas"), |s| {
                s["healthy_replicas"].as_u64() == Some(healthy as u64)
            })
            .await?;
        Ok(router)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/stream", self.addr)
    }

    /// Opens a WebSocket on the router's `/v1/stream`.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        Client::connect(&self.ws_url()).await
    }

    /// `GET path`, returning status and body.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        http_get(self.addr, path).await
    }

    /// The router's `/status` body.
    pub async fn status(&self) -> anyhow::Result<Value> {
        let (code, body) = self.get("/status").await?;
        if code != 200 {
            bail!("/status answered {code}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// Polls `/status` (every 20 ms, up to 10 s) until `ok` holds.
    pub async fn wait_for(&self, what: &str, ok: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = self.status().await?;
            if ok(&status) {
                return Ok(status);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("router never reached: {what}; last /status: {status}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        self.task.stop();
    }

    /// Shuts down gracefully and waits until the router has stopped.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.task.shutdown().await
    }
}
