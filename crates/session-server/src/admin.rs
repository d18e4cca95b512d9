//! The admin HTTP port: `/metrics` (Prometheus text) and `/healthz`, over TLS when
//! `--admin-tls-cert` is given. Neither reveals a session, so neither needs a credential.

use crate::{Engine, store::SessionStore, tls::Tls};
use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long a TLS client of the admin port may take over its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `stop`, over TLS if `tls` is given.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<Tls>>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        return axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    };
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    while let Some(tcp) = crate::server::next_connection(&listener, &stop, "admin").await {
        let (acceptor, app, watcher) = (tls.acceptor(), app.clone(), graceful.watcher());
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        return tracing::debug!(error = %e, "admin port: TLS handshake failed");
                    }
                    Err(_) => return tracing::debug!("admin port: no TLS handshake in time"),
                };
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let connection = builder
                .serve_connection(
                    hyper_util::rt::TokioIo::new(stream),
                    hyper_util::service::TowerToHyperService::new(app),
                )
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "admin port: connection failed");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}

#[derive(Debug)]
pub struct AdminState<S> {
    pub engine: Engine<S>,
    /// Cleared when shutdown begins, so load balancers stop sending work first.
    pub serving: Arc<AtomicBool>,
}

impl<S> Clone for AdminState<S> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
            serving: Arc::clone(&self.serving),
        }
    }
}

pub fn router<S: SessionStore>(state: AdminState<S>) -> Router {
    Router::new()
        .route("/metrics", get(metrics::<S>))
        .route("/healthz", get(healthz::<S>))
        .with_state(state)
}

/// OpenMetrics for Prometheus; the same text as `text/plain` for a browser (one that asks for
/// HTML), which would otherwise download it as a file instead of showing it.
async fn metrics<S: SessionStore>(
    State(state): State<AdminState<S>>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let engine = &state.engine;
    let by_app: Vec<_> = engine
        .auth
        .apps()
        .all()
        .into_iter()
        .zip(
            engine
                .store
                .usage_by_app()
                .into_iter()
                .chain(std::iter::repeat(Default::default())),
        )
        .map(|(app, usage)| (Arc::clone(&app.name), usage))
        .collect();
    let body = engine
        .metrics
        .render(engine.store.usage(), &by_app, &engine.events);
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let content_type = if accept.contains("text/html") && !accept.contains("openmetrics") {
        "text/plain; charset=utf-8"
    } else {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    };
    ([(header::CONTENT_TYPE, content_type)], body)
}

async fn healthz<S: SessionStore>(State(state): State<AdminState<S>>) -> impl IntoResponse {
    if state.serving.load(Ordering::Relaxed) {
        (StatusCode::OK, "serving\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    }
}
