//! stream-router: routes `/v1/stream` WebSockets to healthy streaming-server replicas with
//! room. `cargo run -p stream-router` runs the built-in `configs/router.yaml` (two local mock
//! servers on 8001 and 8002); `--config FILE` runs another.

use clap::Parser;
use fv_router::config::RouterConfig;
use std::path::PathBuf;

/// `configs/router.yaml`, compiled in: the config that runs when `--config` is not given.
const BUILT_IN_CONFIG: &str = include_str!("../../../configs/router.yaml");

#[derive(Debug, Parser)]
#[command(
    version,
    about = "fv-stream router: one address in front of streaming-server replicas"
)]
struct Args {
    /// Router YAML (a top-level `router:` block; see docs/router.md) [default: the built-in
    /// configs/router.yaml, two local replicas on ports 8001 and 8002]
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on [default: router.host from --config]
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on; 0 picks a free one [default: router.port from --config]
    #[arg(long)]
    port: Option<u16>,
    /// Print the effective configuration and exit
    #[arg(long)]
    check_config: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Logs go to stderr, so stdout's first line is always `listening on ...` for scripts.
    fv_runtime::init_tracing();
    fv_runtime::report_exit(
        "stream-router",
        run(Args::parse()).await,
        fv_router::exit_code,
    )
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => {
            tracing::info!(config = %path.display(), "router config");
            RouterConfig::load(path)?
        }
        None => {
            let config = RouterConfig::from_yaml_str(BUILT_IN_CONFIG)?;
            let replicas: Vec<&str> = config.replicas.iter().map(|r| r.url.as_str()).collect();
            tracing::info!(
                ?replicas,
                "no --config given: running the built-in configs/router.yaml; \
                 pass --config FILE to route to other replicas"
            );
            config
        }
    };
    if let Some(host) = args.host {
        config.host = host;
    }
    if let Some(port) = args.port {
        config.port = port;
    }
    config.validate()?;
    if args.check_config {
        print!("{}", config.to_yaml_string());
        return Ok(());
    }
    let router = fv_router::Router::bind(config).await?;
    let addr = router.local_addr()?;
    tracing::info!("router listening on http://{addr}/ (WebSocket /v1/stream)");
    fv_runtime::announce(&format!("listening on http://{addr}/"));
    router.serve(fv_router::shutdown_signal()).await?;
    Ok(())
}
