//! Wiring: shared state, routes, binding, the health loop and graceful drain.

use crate::config::RouterConfig;
use crate::error::RouterError;
use crate::registry::Registry;
use crate::select::{CapacityWeighted, Selector};
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::routing::get;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) struct App {
    pub config: RouterConfig,
    pub registry: Arc<Registry>,
    /// Fired when shutdown starts: `/readyz` 503, upgrades refused, waiting sessions closed.
    pub draining: CancellationToken,
    /// Fired when the grace period is over: every bridged session closes with 1001.
    pub hard_stop: CancellationToken,
    /// Every WebSocket session (axum does not track upgraded sockets).
    pub tracker: TaskTracker,
    pub started: Instant,
    pub session_ids: AtomicU64,
}

impl App {
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }
}

/// A bound, not yet serving, router. `local_addr` is known before `serve` (tests bind port 0).
pub struct Router {
    listener: TcpListener,
    app: Arc<App>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("local_addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// Validates `config`, then binds `host:port` (nothing is bound when the config is
    /// invalid). Replicas are chosen by [`CapacityWeighted`].
    pub async fn bind(config: RouterConfig) -> Result<Self, RouterError> {
        Self::bind_with_selector(config, Arc::new(CapacityWeighted::new())).await
    }

    /// Like [`Router::bind`] with another selection policy.
    pub async fn bind_with_selector(
        config: RouterConfig,
        selector: Arc<dyn Selector>,
    ) -> Result<Self, RouterError> {
        config.validate()?;
        let registry = Arc::new(Registry::new(&config, selector)?);
        let addr = format!("{}:{}", config.host, config.port);
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| RouterError::Bind { addr, source })?;
        let app = Arc::new(App {
            config,
            registry,
            draining: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            started: Instant::now(),
            session_ids: AtomicU64::new(1),
        });
        Ok(Self { listener, app })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Probes replicas and routes sessions until `shutdown` resolves, then drains: `/readyz`
    /// turns 503, new WebSocket upgrades get HTTP 503, bridged sessions get
    /// `shutdown_grace_seconds` to end on their own, and the rest are closed with 1001 on both
    /// sides.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RouterError> {
        let Router { listener, app } = self;
        let stop_probes = CancellationToken::new();
        let health = tokio::spawn(crate::health::run(
            app.registry.clone(),
            app.config.health_check.clone(),
            stop_probes.clone(),
        ));
        let stop_http = CancellationToken::new();
        let drain_app = app.clone();
        let stop_http_trigger = stop_http.clone();
        let drainer = tokio::spawn(async move {
            shutdown.await;
            let grace = drain_app.config.shutdown_grace();
            tracing::info!(?grace, "shutdown requested: draining sessions");
            drain_app.draining.cancel();
            drain_app.tracker.close();
            if tokio::time::timeout(grace, drain_app.tracker.wait())
                .await
                .is_err()
            {
                tracing::warn!("grace period over: closing remaining sessions");
                drain_app.hard_stop.cancel();
                drain_app.tracker.wait().await;
            }
            stop_http_trigger.cancel();
        });
        let served = accept_loop(listener, routes(app), stop_http).await;
        stop_probes.cancel();
        drainer.abort();
        let _ = health.await;
        served
    }
}

/// Serves HTTP/1.1 on `listener` until `stop` fires.
///
/// A hand-rolled loop instead of `axum::serve`: hyper's HTTP/1 connection is used directly, so
/// an upgraded WebSocket hands back the plain `TcpStream` (axum's server wraps it in a private
/// type), which the relay threads need.
async fn accept_loop(
    listener: TcpListener,
    router: axum::Router,
    stop: CancellationToken,
) -> Result<(), RouterError> {
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the open sessions.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        // Small control frames must not wait for Nagle plus the client's delayed ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let router = router.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let mut router = router.clone();
                // An axum Router is always ready, so `call` needs no `poll_ready` first.
                async move { tower_service::Service::call(&mut router, req).await }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, %peer, "HTTP connection ended with an error");
            }
        });
    }
    connections.close();
    // Idle keep-alive connections close at once; a slow request gets a moment.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), connections.wait()).await;
    Ok(())
}

/// Binds and serves `config` until `shutdown` resolves (see [`Router::serve`]).
pub async fn run(
    config: RouterConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RouterError> {
    Router::bind(config).await?.serve(shutdown).await
}

fn routes(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/v1/stream", get(crate::bridge::upgrade))
        .route("/ws", get(crate::bridge::upgrade_product))
        .route(
            "/router/replicas/sessions",
            get(crate::http::replica_sessions),
        )
        .route("/status", get(crate::http::status))
        .route("/healthz", get(crate::http::healthz))
        .route("/readyz", get(crate::http::readyz))
        .route("/metrics", get(crate::http::metrics))
        .with_state(app)
}
