//! The production shape with real processes: mock-server replicas sharing one real
//! `redis-server` (`store.kind: redis`), stream-router in front. A replica killed with SIGKILL
//! mid-stream loses nothing: the client reconnects through the router with its resume token
//! and the stream goes on with the next segment on the survivor. Redis stopped under a live
//! session degrades the snapshots only; once it is back they resume.

#[path = "../../../crates/fv-store/tests/support/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

use fv_testkit::router::{TestRouter, router_config};
use fv_testkit::{ChildGuard, Client, http_get, spawn_listening};
use redis_server::RedisServer;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_mock-server");

/// A mock-server process on a free port with `store.kind: redis`, killed on drop.
struct Replica {
    child: ChildGuard,
    addr: SocketAddr,
}

impl Replica {
    fn start(dir: &Path, name: &str, redis_url: &str) -> anyhow::Result<Self> {
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "generator:\n  model_path: mock\n\
                 default_request:\n  sampling:\n    width: 64\n    height: 64\n    num_frames: 6\n    \
                 num_inference_steps: 2\n\
                 streaming:\n  generation_segment_cap: 10\n  warmup:\n    enabled: false\n\
                 store:\n  kind: redis\n  redis:\n    url: {redis_url}\n    op_timeout_ms: 500\n    \
                 connect_timeout_ms: 500\n"
            ),
        )?;
        let (child, addr) = spawn_listening(
            Command::new(BIN)
                .args(["--host", "127.0.0.1", "--port", "0", "--config"])
                .arg(&config)
                .stderr(Stdio::null()),
        )
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        Ok(Self { child, addr })
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn active_sessions(&self) -> anyhow::Result<u64> {
        let (_, body) = http_get(self.addr, "/status").await?;
        let status: Value = serde_json::from_str(&body)?;
        Ok(status["active_sessions"].as_u64().unwrap_or_default())
    }
}

fn token_of(seen: &[Value]) -> anyhow::Result<String> {
    seen.iter()
        .find(|m| m["type"] == "ltx2_stream_start")
        .and_then(|m| m["resume_token"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no resume token in {seen:?}"))
}

fn segment_idx(t: &fv_testkit::SegmentTranscript) -> Option<u64> {
    t.find("ltx2_segment_start")
        .and_then(|m| m["segment_idx"].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_loses_nothing_the_stream_resumes_on_the_survivor() -> anyhow::Result<()> {
    let Some(redis) = RedisServer::start() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let mut replicas = vec![
        Replica::start(dir.path(), "a", &redis.url())?,
        Replica::start(dir.path(), "b", &redis.url())?,
    ];
    let urls: Vec<String> = replicas.iter().map(Replica::url).collect();
    let router = TestRouter::start_ready(router_config(&urls), 2).await?;

    let mut c = Client::connect(&router.ws_url()).await?;
    let token = token_of(&c.init().await?)?;
    for expected in 0..2 {
        let t = c.segment(&format!("segment {expected}")).await?;
        assert_eq!(segment_idx(&t), Some(expected));
    }
    // SIGKILL the replica serving the stream: no drain, no goodbye.
    let mut serving = None;
    for (i, r) in replicas.iter().enumerate() {
        if r.active_sessions().await? == 1 {
            serving = Some(i);
        }
    }
    let serving = serving.ok_or_else(|| anyhow::anyhow!("no replica holds the session"))?;
    let mut killed = replicas.remove(serving);
    killed.child.kill()?;
    killed.child.wait()?;
    let survivor = &replicas[0];
    // The client notices (its socket ends), reconnects through the router and resumes.
    let _ = c.recv().await;
    router
        .wait_for("the killed replica out of rotation", |s| {
            s["healthy_replicas"].as_u64() == Some(1)
        })
        .await?;
    let mut c = Client::connect(&router.ws_url()).await?;
    let seen = c.init_with(json!({"resume_token": token})).await?;
    assert_eq!(token_of(&seen)?, token, "the same stream");
    let t = c.segment("after the crash").await?;
    assert_eq!(segment_idx(&t), Some(2), "the stream goes on where it was");
    assert_eq!(survivor.active_sessions().await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_mid_session_degrades_snapshots_and_they_resume() -> anyhow::Result<()> {
    let Some(mut redis) = RedisServer::start() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let a = Replica::start(dir.path(), "a", &redis.url())?;
    let mut c = Client::connect(&format!("ws://{}/v1/stream", a.addr)).await?;
    let token = token_of(&c.init().await?)?;
    c.segment("with redis").await?;
    redis.stop();
    // The session goes on without its store.
    let t = c.segment("without redis").await?;
    assert_eq!(segment_idx(&t), Some(1));
    redis.restart();
    // The restarted Redis is empty: the next checkpoint writes the stream's records again.
    let t = c.segment("redis is back").await?;
    assert_eq!(segment_idx(&t), Some(2));
    // Proof: another replica resumes the stream from Redis alone.
    let b = Replica::start(dir.path(), "b", &redis.url())?;
    let mut c2 = Client::connect(&format!("ws://{}/v1/stream", b.addr)).await?;
    c2.init_with(json!({"resume_token": token})).await?;
    let t = c2.segment("on b").await?;
    assert_eq!(segment_idx(&t), Some(3));
    drop(c);
    Ok(())
}
