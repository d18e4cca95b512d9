//! The session server: holds HTTP session data for every app server of a cluster, so any
//! session can be served by any app server.
//!
//! The engine, bottom up (always built; an app can embed it, see [`Engine`]):
//! - [`id`]: server-made session ids (256 random bits, URL-safe).
//! - [`clock`]: the time source of expiry, injectable for tests.
//! - [`apps`]: the apps sessions belong to, with their quotas.
//! - [`store`]: the storage contract ([`store::SessionStore`]), the batch semantics every
//!   store shares (`store::batch`), the in-memory store and the durable store over fjall
//!   (`store::durable`).
//! - [`events`]: the sequenced event log behind `Watch`.
//! - [`auth`]: credentials, and the [`auth::Caller`] every call runs as; [`handshake`]: what
//!   a client presents and is answered.
//! - [`convert`]: protobuf ⇄ domain types, with input checks, and every error's answer.
//! - [`service`]: the `session.v1.SessionService` implementation.
//! - [`metrics`]: Prometheus metrics; [`config`]: what the engine and the server take.
//!
//! The network server (feature `server`, on by default):
//! - `run` serves the session port (framed connections in `framed`, gRPC by tonic) and
//!   the admin HTTP port (`admin`) on already-bound listeners until a shutdown future
//!   resolves; the `session-server` binary only parses flags (`args`), sets up logs
//!   (`telemetry`) and calls it.
//! - `admin_service`: `session.v1.AdminService` (backups), on the session port, for the
//!   admin credential.
//! - `probe`: the gRPC health check behind `session-server health`.
//! - `testing` (feature `test-support`): a real server for tests, in-process.

#[cfg(feature = "server")]
pub mod admin;
#[cfg(feature = "server")]
pub mod admin_service;
pub mod apps;
#[cfg(feature = "server")]
pub mod args;
pub mod auth;
pub mod clock;
pub mod config;
pub mod convert;
pub mod events;
#[cfg(feature = "server")]
pub mod framed;
pub mod handshake;
pub mod id;
pub mod metrics;
#[cfg(feature = "server")]
pub mod probe;
#[cfg(test)]
mod properties;
pub mod secrets;
pub mod service;
#[cfg(feature = "server")]
pub mod setup;
pub mod store;
#[cfg(feature = "server")]
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
#[cfg(feature = "server")]
pub mod tls;

#[cfg(feature = "server")]
pub use server::{ServerError, reload, run, serve, shutdown_signal};

#[cfg(feature = "server")]
mod server;

use crate::{
    auth::Auth,
    config::ServerConfig,
    events::EventLog,
    metrics::Metrics,
    service::SessionServiceImpl,
    store::{SessionStore, memory::MemoryStore},
};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A store with its event log and metrics: what the gRPC server serves, and what an app can
/// embed to run sessions in-process (not shared) with the same semantics.
///
/// Generic over the store: [`Engine::new`] makes the memory store; [`Engine::with_store`]
/// takes any other.
#[derive(Debug)]
pub struct Engine<S = MemoryStore> {
    pub store: Arc<S>,
    pub events: Arc<EventLog>,
    pub metrics: Arc<Metrics>,
    /// Who may call, and the apps sessions belong to.
    pub auth: Arc<Auth>,
    /// True while the store loads what it kept (`SessionStore::recover`): calls are refused
    /// with UNAVAILABLE meanwhile, and health says NOT_SERVING.
    pub loading: Arc<std::sync::atomic::AtomicBool>,
    /// Cancelled when the server shuts down; ends long-lived streams.
    pub closing: CancellationToken,
    /// Bytes of replies one pipeline message may get.
    pub(crate) max_batch_reply_bytes: u64,
}

impl<S> Clone for Engine<S> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            events: Arc::clone(&self.events),
            metrics: Arc::clone(&self.metrics),
            auth: Arc::clone(&self.auth),
            loading: Arc::clone(&self.loading),
            closing: self.closing.clone(),
            max_batch_reply_bytes: self.max_batch_reply_bytes,
        }
    }
}

impl Engine<MemoryStore> {
    /// The memory store, with `config`'s limits, clock and apps.
    pub fn new(config: &ServerConfig) -> Self {
        let events = Arc::new(EventLog::new(
            config.watch_buffer,
            config.watch_buffer_bytes,
        ));
        let store = Arc::new(MemoryStore::new(
            config.limits,
            Arc::clone(&config.clock),
            Arc::clone(&events),
            Arc::clone(config.auth.apps()),
        ));
        Self::with_store(store, events, config)
    }
}

impl<S: SessionStore> Engine<S> {
    /// Serves `store`, which publishes its events to `events`.
    pub fn with_store(store: Arc<S>, events: Arc<EventLog>, config: &ServerConfig) -> Self {
        Self {
            store,
            events,
            metrics: Arc::new(Metrics::new()),
            auth: Arc::clone(&config.auth),
            loading: Arc::default(),
            closing: CancellationToken::new(),
            max_batch_reply_bytes: config.connections.max_batch_reply_bytes,
        }
    }

    pub fn service(&self) -> SessionServiceImpl<S> {
        SessionServiceImpl::new(self.clone())
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
