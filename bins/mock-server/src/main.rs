//! GPU-free streaming server for frontend work: the real server with a moving-gradient
//! generator. `cargo run -p mock-server`, then open http://127.0.0.1:8000/.

use anyhow::Context;
use clap::{Parser, Subcommand};
use fv_server::config::ServeConfig;
use fv_server::{Server, ServerOptions};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "fv-stream mock server: /v1/stream and /ws (Dreamverse) without a GPU"
)]
struct Args {
    /// Address to listen on [default: 127.0.0.1, or server.host from --config]
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on; 0 picks a free one [default: 8000, or server.port from --config]
    #[arg(long)]
    port: Option<u16>,
    /// Serve YAML (FastVideo's schema); without it the mock defaults apply
    #[arg(long)]
    config: Option<PathBuf>,
    /// Simulated generation time per segment, spread over the denoising steps
    #[arg(long, default_value_t = 0)]
    sleep_ms: u64,
    /// Print the effective configuration and exit
    #[arg(long)]
    check_config: bool,
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
        let segment_time = Duration::from_millis(args.sleep_ms);
        return fv_server::serve_worker(|config, _device| {
            Ok(Box::new(fv_server::mock_generator(config, segment_time)))
        });
    }
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(args)));
    fv_runtime::report_exit("mock-server", result, fv_server::exit_code)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => {
            let loaded = ServeConfig::load(path)?;
            for warning in &loaded.warnings {
                tracing::warn!("{warning}");
            }
            for key in &loaded.ignored {
                tracing::info!(key, "config key accepted but not used by the mock server");
            }
            loaded.config
        }
        None => ServeConfig::mock_defaults(),
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
    let sleep_ms = args.sleep_ms.to_string();
    let worker =
        || Ok(fv_server::WorkerCommand::current_exe()?.args(["--sleep-ms", &sleep_ms, "worker"]));
    let deps = fv_server::mock_deps_for(&config, Duration::from_millis(args.sleep_ms), worker)
        .context("starting the worker pool")?;
    let options = ServerOptions {
        web_ui: true,
        ..ServerOptions::default()
    };
    let server = Server::bind(config, deps, options).await?;
    let addr = server.local_addr()?;
    tracing::info!("mock server listening on http://{addr}/ (WebSockets /v1/stream and /ws)");
    fv_runtime::announce(&format!("listening on http://{addr}/"));
    server.serve(fv_server::shutdown_signal()).await?;
    Ok(())
}
