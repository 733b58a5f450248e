//! The manager's HTTP endpoints: `/metrics` on the metrics address (HTTPS, for authorized readers only,
//! unless the manager is told otherwise), `/healthz` and `/readyz` on the probe address. The admission
//! webhook's route lives in `crate::webhook`.

pub mod auth;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Readiness as the probes see it: set once the manager can do its job (caches synced as leader, or running
/// as a healthy standby).
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    match metrics.render() {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        ),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], String::new()),
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(checks): State<Arc<Vec<Readiness>>>) -> impl IntoResponse {
    if checks.iter().all(Readiness::get) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// `/metrics`; behind `reviewer` when given.
pub fn metrics_router(metrics: Arc<Metrics>, reviewer: Option<auth::Reviewer>) -> Router {
    let router = Router::new().route("/metrics", get(render_metrics)).with_state(metrics);
    match reviewer {
        Some(reviewer) => router.layer(axum::middleware::from_fn_with_state(reviewer, auth::require_access)),
        None => router,
    }
}

/// `/readyz` answers ready once every one of `checks` is.
pub fn probe_router(checks: Vec<Readiness>) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(Arc::new(checks))
}

/// Binds `addr` and serves `router`, over TLS when `tls` is given, until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, tls = tls.is_some(), "listening");
    match tls {
        Some(config) => {
            axum::serve(tls::TlsListener::new(listener, config), router).with_graceful_shutdown(shutdown).await
        }
        None => axum::serve(listener, router).with_graceful_shutdown(shutdown).await,
    }
}
