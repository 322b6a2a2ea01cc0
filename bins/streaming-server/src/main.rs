//! The streaming server running the LTX-2 pipeline (fv-inference) on the CPU, or on a GPU in
//! a `--features cuda` build (`generator.device: cuda`, `generator.dtype: bf16`). With no
//! `--config` it serves a tiny random-weight model (made on first use in a cache directory).

mod model;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fv_server::config::ServeConfig;
use fv_server::{Server, ServerOptions};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "fv-stream server: /v1/stream with the LTX-2 pipeline"
)]
struct Args {
    /// Serve YAML (FastVideo's schema); generator.model_path names the weights [default: the
    /// tiny random-weight model of configs/tiny-ltx2.yaml, made in a cache directory]
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on [default: server.host from the config]
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on; 0 picks a free one [default: server.port from the config]
    #[arg(long)]
    port: Option<u16>,
    /// Print the effective configuration and exit
    #[arg(long)]
    check_config: bool,
    /// Write a tiny random-weight model to DIR and exit
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    make_tiny_model: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A worker process of `streaming.pool.mode: subprocess` (started by the server itself)
    Worker,
}

fn main() -> std::process::ExitCode {
    fv_runtime::init_tracing();
    let args = Args::parse();
    if let Some(Command::Worker) = args.command {
        return fv_server::serve_worker(model::worker_generator);
    }
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(args)));
    fv_runtime::report_exit("streaming-server", result, fv_server::exit_code)
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
    let mut config = match &args.config {
        Some(path) => {
            let loaded = ServeConfig::load(path)?;
            for warning in &loaded.warnings {
                tracing::warn!("{warning}");
            }
            loaded.config
        }
        None => model::default_config(&model::default_model_dir())?,
    };
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
    let deps = model::deps(&config).context("starting the worker pool")?;
    let options = ServerOptions {
        web_ui: true,
        ..ServerOptions::default()
    };
    let server = Server::bind(config, deps, options).await?;
    fv_runtime::announce(&format!("listening on http://{}/", server.local_addr()?));
    server.serve(fv_server::shutdown_signal()).await?;
    Ok(())
}
