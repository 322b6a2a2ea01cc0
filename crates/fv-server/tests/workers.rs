//! How the server reports its workers: a worker that fails warm-up is excluded and shown as
//! failed (never as ready, unlike upstream), `/readyz` is ready while one worker is, and each
//! worker's device follows `generator.engine.num_gpus`. (Worker processes: the mock-server's
//! tests and fv-pool's.)

use fv_core::{
    CancelToken, GenerateError, GenerationRequest, GenerationResult, GenerationSink, Generator,
    MockGenerator,
};
use fv_testkit::{TestServer, test_config};
use serde_json::Value;

/// The mock, except that its warm-up fails when told to.
struct WarmupFails(bool, MockGenerator);

impl Generator for WarmupFails {
    fn generate(
        &mut self,
        request: &GenerationRequest,
        sink: &mut dyn GenerationSink,
        cancel: &CancelToken,
    ) -> Result<GenerationResult, GenerateError> {
        if self.0 && request.session_id == "warmup" {
            return Err(GenerateError::Failed("CUDA error: out of memory".into()));
        }
        self.1.generate(request, sink, cancel)
    }
}

async fn get(server: &TestServer, path: &str) -> anyhow::Result<(u16, Value)> {
    let (code, body) = server.get(path).await?;
    Ok((code, serde_json::from_str(&body)?))
}

#[tokio::test]
async fn a_worker_that_fails_warm_up_is_reported_failed_and_never_ready() -> anyhow::Result<()> {
    let mut config = test_config();
    config.streaming.warmup.enabled = true;
    let generators: Vec<Box<dyn Generator>> = [false, true]
        .into_iter()
        .map(|fails| Box::new(WarmupFails(fails, MockGenerator::default())) as Box<dyn Generator>)
        .collect();
    let deps = fv_server::deps_with_generators(&config, generators)?;
    let server = TestServer::start_with(config, deps).await?;
    let mut ready = (0, Value::Null);
    for _ in 0..400 {
        ready = get(&server, "/readyz").await?;
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let (code, readyz) = ready;
    assert_eq!(code, 200, "one good worker is enough: {readyz}");
    assert_eq!(
        (
            &readyz["ready_gpu_workers"],
            &readyz["warmup_successful_gpus"],
            &readyz["warmup_failed_gpus"],
            &readyz["available_gpus"]
        ),
        (&1.into(), &1.into(), &1.into(), &1.into()),
        "{readyz}"
    );

    let (_, status) = get(&server, "/status").await?;
    let failed = &status["gpu_status"]["1"];
    assert_eq!(failed["ready"], false, "{failed}");
    assert_eq!(failed["available"], false, "{failed}");
    assert_eq!(failed["warmup_success"], false, "{failed}");
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["warmup_error"]
            .as_str()
            .is_some_and(|e| e.contains("out of memory")),
        "{failed}"
    );
    let good = &status["gpu_status"]["0"];
    assert_eq!(
        (&good["ready"], &good["state"]),
        (&true.into(), &"ready".into())
    );
    assert_eq!(status["warmup_failed_gpus"], 1);

    // Sessions only ever get the good worker.
    for _ in 0..2 {
        let mut c = server.connect().await?;
        let seen = c.init().await?;
        let assigned = seen.iter().find(|m| m["type"] == "gpu_assigned");
        assert_eq!(assigned.map(|m| m["gpu_id"].clone()), Some(0.into()));
        c.segment("fine").await?;
    }
    Ok(())
}

#[tokio::test]
async fn in_process_workers_go_one_per_gpu_and_status_says_which() -> anyhow::Result<()> {
    let mut config = test_config();
    config.generator.device = Some("cuda:1".into());
    config.generator.engine.num_gpus = 3;
    config.streaming.pool.num_workers = None;
    assert_eq!(config.worker_devices(), [Some(1), Some(2), Some(3)]);
    // The mock ignores devices; the placement is the server's.
    let server = TestServer::start(config).await?;
    let (_, status) = get(&server, "/status").await?;
    let devices: Vec<Value> = (0..3)
        .map(|i| status["gpu_status"][i.to_string()]["device"].clone())
        .collect();
    assert_eq!(devices, [1, 2, 3].map(Value::from));
    assert_eq!(status["total_gpus"], 3);
    Ok(())
}
