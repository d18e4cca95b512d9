//! The admin HTTP port: `/metrics` (Prometheus text) and `/healthz`.

use crate::{Engine, store::SessionStore};
use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

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
    let body = engine.metrics.render(engine.store.usage(), &engine.events);
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
