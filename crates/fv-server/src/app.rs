//! Application wiring: shared state, routes, binding, graceful shutdown.

use crate::config::ServeConfig;
use crate::http;
use axum::Router;
use axum::routing::{get, post};
use fv_pool::GpuPool;
use fv_session::{SessionLimits, SessionLogger, SessionManager};
use fv_store::Stores;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the server runs on: the worker pool and, optionally, the stores. Built by the binary
/// (or a test).
#[derive(Clone)]
pub struct ServerDeps {
    pub pool: Arc<dyn GpuPool>,
    /// Session snapshots; `None` builds what the config's `store:` section asks for when the
    /// server binds (a Redis store connects then).
    pub stores: Option<Arc<Stores>>,
}

impl std::fmt::Debug for ServerDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerDeps").finish_non_exhaustive()
    }
}

/// Server-level switches that are not part of the serve YAML.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Serve the browser player page at `/` (the mock server turns this on).
    pub web_ui: bool,
    /// A client whose socket accepts nothing for this long is dropped, so a client that stops
    /// reading cannot pin its worker or block shutdown. Default 30 s.
    pub send_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            web_ui: false,
            send_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("invalid session limits: {0}")]
    Limits(String),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the worker pool: {0}")]
    Pool(#[from] fv_pool::PoolError),
    #[error("cannot create the stores: {0}")]
    Store(#[from] fv_store::StoreError),
    #[error("cannot start the prompt enhancer: {0}")]
    Prompt(#[from] fv_prompt::PromptError),
    #[error("invalid prompt safety config: {0}")]
    Safety(#[from] fv_prompt::ConfigError),
    #[error("cannot load the presets: {0}")]
    Presets(String),
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) struct AppState {
    pub config: Arc<ServeConfig>,
    pub deps: ServerDeps,
    /// The session snapshot stores (from the deps, or built from the config).
    pub stores: Arc<Stores>,
    pub options: ServerOptions,
    pub sessions: Arc<SessionManager>,
    pub per_ip: crate::access::PerIpLimit,
    pub logger: SessionLogger,
    /// LLM calls and the safety filter, for sessions.
    pub prompts: crate::session::PromptDeps,
    /// The enhancer behind `/prompt-system-config` (`None` when prompts are off).
    pub enhancer: Option<fv_prompt::PromptEnhancer>,
    /// Polls the system-prompt directory while the server runs.
    pub _prompt_watcher: Option<fv_prompt::SystemPromptWatcher>,
    /// `/curated-presets`.
    pub presets: crate::presets::PresetStore,
    /// Fired when draining starts: no new sessions, no new segments.
    pub draining: CancellationToken,
    /// Fired when the grace period is over: every session closes now.
    pub hard_stop: CancellationToken,
    pub tracker: TaskTracker,
    pub shutting_down: AtomicBool,
    /// Set when the pool was still warming up `streaming.warmup.timeout_seconds` after start.
    pub warmup_timed_out: AtomicBool,
    pub started: Instant,
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}

/// A bound, not yet serving, server. `local_addr` is known before `serve` (tests bind port 0).
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
    reaper: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Validates the config, then binds `server.host:server.port` (nothing is bound when the
    /// config is invalid).
    pub async fn bind(
        config: ServeConfig,
        deps: ServerDeps,
        options: ServerOptions,
    ) -> Result<Self, ServerError> {
        config.validate()?;
        let stores = match &deps.stores {
            Some(stores) => stores.clone(),
            None => Arc::new(config.store.build().await?),
        };
        let s = &config.streaming;
        let limits = SessionLimits {
            max_sessions: s.max_sessions,
            segment_cap: s.generation_segment_cap,
            idle_timeout: Duration::from_secs(s.session_timeout_seconds),
            init_timeout: Duration::from_secs(s.init_timeout_seconds),
        };
        let sessions =
            SessionManager::new(limits).map_err(|e| ServerError::Limits(e.to_string()))?;
        let reaper = sessions.spawn_reaper(Duration::from_millis(s.reaper_interval_ms));
        let logger = SessionLogger::new(s.session_log_dir.as_ref().map(Into::into));
        let addr = format!("{}:{}", config.server.host, config.server.port);
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        // Make sure the recorder exists before the first session records anything.
        let _ = crate::metrics::handle();
        let per_ip = crate::access::PerIpLimit::new(config.streaming.max_sessions_per_ip);
        let (prompts, enhancer, prompt_watcher) = prompt_deps(&config).await?;
        let presets =
            crate::presets::PresetStore::open(config.streaming.dreamverse.presets_file.as_deref())
                .map_err(ServerError::Presets)?;
        let state = Arc::new(AppState {
            config: Arc::new(config),
            deps,
            stores,
            options,
            per_ip,
            sessions,
            logger,
            prompts,
            enhancer,
            _prompt_watcher: prompt_watcher,
            presets,
            draining: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            shutting_down: AtomicBool::new(false),
            warmup_timed_out: AtomicBool::new(false),
            started: Instant::now(),
        });
        if state.config.streaming.warmup.enabled {
            spawn_warmup_watchdog(state.clone());
        }
        Ok(Self {
            listener,
            state,
            reaper,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then drains: `/readyz` turns 503, new sessions are
    /// refused, in-flight segments get `streaming.shutdown_grace_seconds` to finish, every
    /// session is closed with 1001, and the pool's workers are stopped.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            listener,
            state,
            reaper,
        } = self;
        let app = router(state.clone());
        let grace = Duration::from_secs(state.config.streaming.shutdown_grace_seconds);
        let stop_http = CancellationToken::new();
        let drain_state = state.clone();
        let stop_http_trigger = stop_http.clone();
        let drainer = tokio::spawn(async move {
            shutdown.await;
            tracing::info!(?grace, "shutdown requested: draining sessions");
            drain_state.shutting_down.store(true, Ordering::Release);
            drain_state.draining.cancel();
            drain_state.tracker.close();
            if tokio::time::timeout(grace, drain_state.tracker.wait())
                .await
                .is_err()
            {
                tracing::warn!("grace period over: closing remaining sessions");
                drain_state.hard_stop.cancel();
                drain_state.tracker.wait().await;
            }
            stop_http_trigger.cancel();
        });
        use axum::serve::ListenerExt;
        // Control messages are small writes: without TCP_NODELAY, Nagle plus the client's
        // delayed ACK add ~40 ms to a segment's first bytes.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop_http.cancelled().await })
        .await;
        drainer.abort();
        reaper.abort();
        // Sessions are gone: stop the workers (worker processes get their stop message and
        // `streaming.pool.worker_stop_timeout_seconds` before they are killed).
        state.deps.pool.shutdown().await;
        served?;
        Ok(())
    }
}

/// The prompt services `streaming.prompt` / `streaming.safety` ask for: the enhancer (with its
/// system-prompt watcher) when prompts are on, and the safety filter, its model loaded now
/// rather than at the first check.
async fn prompt_deps(
    config: &ServeConfig,
) -> Result<
    (
        crate::session::PromptDeps,
        Option<fv_prompt::PromptEnhancer>,
        Option<fv_prompt::SystemPromptWatcher>,
    ),
    ServerError,
> {
    let s = &config.streaming;
    let (enhancer, watcher) = if s.prompt.enabled {
        let env = fv_prompt::ProcessEnv;
        for warning in s.prompt.key_warnings(&env) {
            tracing::warn!("{warning}");
        }
        let enhancer = fv_prompt::PromptEnhancer::from_config(&s.prompt, Arc::new(env))?;
        let watcher = s
            .prompt
            .reload_interval()
            .map(|every| enhancer.watch_system_prompts(every))
            .transpose()?;
        let providers: Vec<String> = enhancer.providers().into_iter().map(|p| p.name).collect();
        tracing::info!(?providers, "prompt enhancer ready");
        (Some(enhancer), watcher)
    } else {
        (None, None)
    };
    let safety = fv_prompt::PromptSafetyFilter::from_config(&s.safety)?;
    if safety.is_enabled() {
        // A model that cannot load makes checks `unavailable` (`safety.on_unavailable`).
        if let Err(e) = safety.preload().await {
            tracing::error!(error = %e, "prompt safety classifier not loaded");
        }
    }
    let service = enhancer
        .clone()
        .map(|e| Arc::new(e) as Arc<dyn fv_prompt::PromptService>);
    Ok((
        crate::session::PromptDeps { service, safety },
        enhancer,
        watcher,
    ))
}

/// Flags (and logs) a warm-up that outlives `streaming.warmup.timeout_seconds`; `/readyz`
/// then reports `warmup_failed` instead of `warming`.
fn spawn_warmup_watchdog(state: Arc<AppState>) {
    let limit = Duration::from_secs(state.config.streaming.warmup.timeout_seconds);
    tokio::spawn(async move {
        let pool = state.deps.pool.clone();
        if tokio::time::timeout(limit, pool.ready()).await.is_err() && !state.is_draining() {
            tracing::error!(?limit, "worker warm-up did not finish in time");
            state.warmup_timed_out.store(true, Ordering::Release);
        }
    });
}

fn router(state: Arc<AppState>) -> Router {
    let mut app = Router::new()
        .route("/v1/stream", get(crate::v1::upgrade))
        .route("/ws", get(crate::dreamverse::upgrade))
        .route(
            "/prompt-system-config",
            get(http::prompt_system_config).post(http::update_prompt_system_config),
        )
        .route("/curated-presets", get(http::curated_presets))
        .route("/curated-presets/append", post(http::append_curated_preset))
        .route("/models", get(http::models))
        .route("/health", get(http::health))
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route("/status", get(http::status))
        .route("/metrics", get(http::metrics));
    if state.options.web_ui {
        app = app.route("/", get(http::player));
    }
    app.with_state(state)
}
