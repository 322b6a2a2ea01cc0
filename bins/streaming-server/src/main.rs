//! The streaming server running the LTX-2 pipeline (fv-inference) on the CPU, or on a GPU in
//! a `--features cuda` build (`generator.device: cuda`, `generator.dtype: bf16`). Try it with
//! random weights: `cargo run -p streaming-server -- --make-tiny-model /tmp/tiny-ltx2`, then
//! `cargo run -p streaming-server -- --config configs/tiny-ltx2.yaml`.

use anyhow::Context;
use clap::Parser;
use fv_inference::{DType, Device};
use fv_server::config::{ModelDevice, ModelDtype, ServeConfig};
use fv_server::{Server, ServerOptions};
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "fv-stream server: /v1/stream with the LTX-2 pipeline"
)]
struct Args {
    /// Serve YAML (FastVideo's schema); generator.model_path names the weights
    #[arg(long, required_unless_present = "make_tiny_model")]
    config: Option<PathBuf>,
    /// Address to listen on [default: server.host from --config]
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on; 0 picks a free one [default: server.port from --config]
    #[arg(long)]
    port: Option<u16>,
    /// Print the effective configuration and exit
    #[arg(long)]
    check_config: bool,
    /// Write a tiny random-weight model to DIR and exit
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    make_tiny_model: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    fv_runtime::init_tracing();
    fv_runtime::report_exit(
        "streaming-server",
        run(Args::parse()).await,
        fv_server::exit_code,
    )
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(dir) = &args.make_tiny_model {
        fv_inference::tiny::write_random_model(dir)?;
        println!(
            "wrote a tiny random-weight LTX-2 model to {}",
            dir.display()
        );
        return Ok(());
    }
    let loaded = ServeConfig::load(&args.config.context("--config is required")?)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let mut config = loaded.config;
    if let Some(host) = args.host {
        config.server.host = host;
    }
    if let Some(port) = args.port {
        config.server.port = port;
    }
    config.validate()?;
    if args.check_config {
        print!("{}", config.to_yaml_string());
        return Ok(());
    }
    let model = Path::new(&config.generator.model_path);
    let device = open_device(config.generator.model_device())?;
    let dtype = match config.generator.dtype {
        // The released weights are bf16, and f32 does not fit an 80 GB GPU (52 GB of
        // transformer weights alone); on the CPU f32 is both exact and fastest.
        None if device.is_cuda() => DType::BF16,
        None | Some(ModelDtype::F32) => DType::F32,
        Some(ModelDtype::Bf16) => DType::BF16,
        Some(ModelDtype::F16) => DType::F16,
    };
    let pipeline = fv_inference::Ltx2Pipeline::load_with(model, &device, dtype)
        .with_context(|| format!("loading the model from {}", model.display()))?;
    tracing::info!(?device, ?dtype, model = %model.display(), "model loaded");
    // Clones share the weights: one load serves every worker.
    let generators = (0..config.streaming.pool.workers())
        .map(|_| Box::new(pipeline.clone()) as Box<dyn fv_core::Generator>)
        .collect();
    let deps =
        fv_server::deps_with_generators(&config, generators).context("starting the worker pool")?;
    let options = ServerOptions {
        web_ui: true,
        ..ServerOptions::default()
    };
    let server = Server::bind(config, deps, options).await?;
    let addr = server.local_addr()?;
    fv_runtime::announce(&format!("listening on http://{addr}/"));
    server.serve(fv_server::shutdown_signal()).await?;
    Ok(())
}

/// The candle device for `generator.device` (CPU when unset).
fn open_device(device: Option<ModelDevice>) -> anyhow::Result<Device> {
    match device {
        None | Some(ModelDevice::Cpu) => Ok(Device::Cpu),
        Some(ModelDevice::Cuda(ordinal)) => {
            Ok(fv_inference::open_cuda(ordinal).context("generator.device")?)
        }
    }
}
