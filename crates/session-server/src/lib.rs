//! The session server: holds HTTP session data for every app server of a cluster, so any
//! session can be served by any app server.
//!
//! Layout, bottom up:
//! - [`id`]: server-made session ids (256 random bits, URL-safe).
//! - [`clock`]: the time source of expiry, injectable for tests.
//! - [`store`]: the storage contract ([`store::SessionStore`]) and the in-memory store.
//! - [`events`]: the sequenced event log behind `Watch`.
//! - [`convert`]: protobuf ⇄ domain types, with input checks.
//! - [`service`]: the `session.v1.SessionService` gRPC implementation.
//! - [`metrics`], [`admin`]: Prometheus metrics and the admin HTTP port.
//! - [`config`]: defaults and command-line flags.
//! - [`probe`]: the gRPC health check behind `session-server health`.
//! - `testing` (feature `test-support`): a real server for tests, in-process.
//!
//! [`run`] serves everything on already-bound listeners until a shutdown future resolves;
//! the `session-server` binary only parses flags and calls it.

pub mod admin;
pub mod clock;
pub mod config;
pub mod convert;
pub mod events;
pub mod framed;
pub mod id;
pub mod metrics;
pub mod probe;
#[cfg(test)]
mod properties;
pub mod service;
pub mod store;
#[cfg(feature = "test-support")]
pub mod testing;

use crate::{
    admin::AdminState,
    config::ServerConfig,
    events::EventLog,
    metrics::Metrics,
    service::SessionServiceImpl,
    store::{SessionStore, memory::MemoryStore},
};
use session_proto::v1::session_service_server::SessionServiceServer;
use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection service could not be built: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("admin server failed: {0}")]
    Admin(#[from] std::io::Error),
}

/// A store with its event log and metrics: what the gRPC server serves, and what an app can
/// embed to run sessions in-process (not shared) with the same semantics.
#[derive(Debug, Clone)]
pub struct Engine {
    pub store: Arc<MemoryStore>,
    pub events: Arc<EventLog>,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server shuts down; ends long-lived streams.
    pub closing: CancellationToken,
    max_batch_reply_bytes: u64,
}

impl Engine {
    pub fn new(config: &ServerConfig) -> Self {
        let events = Arc::new(EventLog::new(
            config.watch_buffer,
            config.watch_buffer_bytes,
        ));
        let store = Arc::new(MemoryStore::new(
            config.limits,
            Arc::clone(&config.clock),
            Arc::clone(&events),
        ));
        Self {
            store,
            events,
            metrics: Arc::new(Metrics::new()),
            closing: CancellationToken::new(),
            max_batch_reply_bytes: config.connections.max_batch_reply_bytes,
        }
    }

    pub fn service(&self) -> SessionServiceImpl<MemoryStore> {
        SessionServiceImpl::new(
            Arc::clone(&self.store),
            Arc::clone(&self.events),
            Arc::clone(&self.metrics),
            self.closing.clone(),
            self.max_batch_reply_bytes,
        )
    }

    /// Sweeps expired sessions out of memory every `interval` until `stop` is cancelled.
    pub fn spawn_sweeper(
        &self,
        interval: std::time::Duration,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        let expired = store.sweep().await;
                        if expired > 0 {
                            tracing::debug!(expired, "swept expired sessions");
                        }
                    }
                }
            }
        })
    }
}

/// Serves gRPC (sessions, health, reflection) on `grpc` and HTTP admin on `admin` until
/// `shutdown` resolves; then health turns NOT_SERVING, watch streams end, and in-flight calls
/// get `config.shutdown_grace` to finish.
pub async fn run(
    grpc: TcpListener,
    admin: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let engine = Engine::new(&config);
    let stop = CancellationToken::new();
    let sweeper = engine.spawn_sweeper(config.sweep_interval, stop.clone());

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SessionServiceServer<SessionServiceImpl<MemoryStore>>>()
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(session_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(session_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let max_message = config.max_message_bytes();
    let sessions = SessionServiceServer::new(engine.service())
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);

    let serving = Arc::new(AtomicBool::new(true));
    let admin_app = admin::router(AdminState {
        store: Arc::clone(&engine.store),
        events: Arc::clone(&engine.events),
        metrics: Arc::clone(&engine.metrics),
        serving: Arc::clone(&serving),
    });

    // One port, two protocols: the accept loop serves framed connections and hands the
    // others to tonic (those over the connection limit to a server of health checks only).
    let (to_grpc, grpc_connections) = tokio::sync::mpsc::channel(64);
    let (to_health, health_connections) = tokio::sync::mpsc::channel(framed::HEALTH_RESERVE);
    let connections = TaskTracker::new();
    let limits = config.connections;
    tokio::spawn(framed::accept(
        grpc,
        engine.service(),
        max_message,
        limits,
        framed::Routes {
            grpc: to_grpc,
            health: to_health,
        },
        connections.clone(),
        stop.clone(),
    ));
    // A peer that stops answering pings (or reading) is let go within the idle timeout.
    let grpc_builder = || {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(limits.idle_timeout / 2))
            .http2_keepalive_timeout(Some(limits.idle_timeout / 2))
    };
    let grpc_stop = stop.clone();
    let grpc_server = grpc_builder()
        .add_service(health_service.clone())
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(sessions)
        .serve_with_incoming_shutdown(ReceiverStream::new(grpc_connections), async move {
            grpc_stop.cancelled().await
        });
    let health_stop = stop.clone();
    let health_server = grpc_builder()
        .add_service(health_service)
        .serve_with_incoming_shutdown(ReceiverStream::new(health_connections), async move {
            health_stop.cancelled().await
        });
    let admin_stop = stop.clone();
    let admin_server = axum::serve(admin, admin_app)
        .with_graceful_shutdown(async move { admin_stop.cancelled().await });

    let grpc_task = tokio::spawn(grpc_server);
    let health_task = tokio::spawn(health_server);
    let admin_task = tokio::spawn(admin_server.into_future());
    tracing::info!("serving");

    shutdown.await;
    tracing::info!("shutting down: health NOT_SERVING, draining in-flight calls");
    serving.store(false, Ordering::Relaxed);
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    health
        .set_not_serving::<SessionServiceServer<SessionServiceImpl<MemoryStore>>>()
        .await;
    engine.events.close();
    engine.closing.cancel();
    stop.cancel();

    // Framed connections end between batches; the grace period covers the batch in hand.
    connections.close();
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        let grpc = grpc_task.await;
        let admin = admin_task.await;
        let _ = health_task.await;
        connections.wait().await;
        (grpc, admin)
    })
    .await;
    sweeper.abort();
    match drained {
        Ok((grpc, admin)) => {
            if let Ok(result) = grpc {
                result?;
            }
            if let Ok(result) = admin {
                result?;
            }
            tracing::info!("stopped");
        }
        Err(_) => tracing::warn!(
            grace = ?config.shutdown_grace,
            "in-flight calls did not finish within the grace period; stopping anyway"
        ),
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM: what a terminal and a container manager each send.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
