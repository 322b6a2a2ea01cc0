//! Shared by the streaming-server tests: the real LTX-2 pipeline on the tiny random-weight
//! model, served in-process on port 0.
#![allow(clippy::unwrap_used, dead_code)]

use fv_server::config::ServeConfig;
use fv_testkit::{TestServer, test_config};

/// Writes the tiny model to a temp dir, loads it on the CPU and starts a one-worker server
/// running it; `adjust` sets sizes and streaming knobs on the test config first. Keep the
/// returned dir alive as long as the server.
pub async fn tiny_model_server(
    adjust: impl FnOnce(&mut ServeConfig),
) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    fv_inference::tiny::write_random_model(dir.path()).unwrap();
    let pipeline =
        fv_inference::Ltx2Pipeline::load(dir.path(), &fv_inference::Device::Cpu).unwrap();
    let mut config = test_config();
    config.generator.model_path = dir.path().display().to_string();
    config.streaming.pool.num_workers = Some(1);
    adjust(&mut config);
    let generators = vec![Box::new(pipeline) as Box<dyn fv_core::Generator>];
    let deps = fv_server::deps_with_generators(&config, generators).unwrap();
    (dir, TestServer::start_with(config, deps).await.unwrap())
}
