//! Server configuration: what [`crate::run`] and [`crate::Engine`] take, with documented
//! defaults. The command-line flags that set it are in `args` (feature `server`).

use crate::{
    apps::{Apps, Quota},
    auth::Auth,
    clock::{Clock, SystemClock},
    store::Limits,
};
// The store's limits are the store's; the flags' defaults name them here too.
pub use crate::store::{
    DEFAULT_CAPACITY_BYTES, DEFAULT_IDLE_TIMEOUT, DEFAULT_IDLE_TIMEOUT_CAP,
    DEFAULT_MAX_ATTRIBUTE_BYTES, DEFAULT_MAX_LIFETIME, DEFAULT_MAX_LIFETIME_CAP,
    DEFAULT_MAX_SESSION_BYTES,
};
use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

/// The admin HTTP port (metrics, health), beside the classic gRPC port.
pub const DEFAULT_ADMIN_PORT: u16 = 9540;
pub const DEFAULT_WATCH_BUFFER: usize = 65_536;
pub const DEFAULT_WATCH_BUFFER_BYTES: u64 = 32 * 1024 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_MAX_BATCH_REPLY_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Room a request needs beyond the session data it carries (ids, names, framing).
pub const MESSAGE_SLACK_BYTES: usize = 64 * 1024;

/// Loopback: a laptop's default. Containers pass 0.0.0.0 explicitly.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, session_proto::DEFAULT_PORT))
}

pub fn default_admin_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_ADMIN_PORT))
}

/// Everything the server library needs to run.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub limits: Limits,
    /// How often expired sessions are swept (they are NOT_FOUND on access regardless).
    pub sweep_interval: Duration,
    /// Events kept for watchers that reconnect and resume.
    pub watch_buffer: usize,
    /// Bytes those events may hold together.
    pub watch_buffer_bytes: u64,
    /// How long shutdown waits for in-flight calls.
    pub shutdown_grace: Duration,
    /// The time source of expiry; tests inject a manual clock.
    pub clock: Arc<dyn Clock>,
    pub connections: ConnectionLimits,
    /// Who may call, and the apps sessions belong to (with their quotas). Off by default:
    /// whoever reaches the server may call (the binary refuses that beyond loopback).
    pub auth: Arc<Auth>,
    /// TLS of the session and admin ports; plaintext by default.
    #[cfg(feature = "server")]
    pub tls: crate::tls::TlsSettings,
}

/// What one client connection to the session port may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; past it new ones are closed at once (a few more are kept
    /// for health checks, see `framed::HEALTH_RESERVE`).
    pub max_connections: usize,
    /// How long a new connection may take to say which protocol it speaks.
    pub handshake_timeout: Duration,
    /// How long a framed connection may sit without a request, or a reply wait for the
    /// client to read it; gRPC connections must answer pings within it.
    pub idle_timeout: Duration,
    /// Bytes of replies one pipeline message may be answered with; the calls after that
    /// answer RESOURCE_EXHAUSTED without running.
    pub max_batch_reply_bytes: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_CONNECTION_IDLE_TIMEOUT,
            max_batch_reply_bytes: DEFAULT_MAX_BATCH_REPLY_BYTES,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            watch_buffer: DEFAULT_WATCH_BUFFER,
            watch_buffer_bytes: DEFAULT_WATCH_BUFFER_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            clock: Arc::new(SystemClock),
            connections: ConnectionLimits::default(),
            auth: Arc::new(Auth::off(Arc::new(Apps::new(Quota::default())))),
            #[cfg(feature = "server")]
            tls: crate::tls::TlsSettings::default(),
        }
    }
}

impl ServerConfig {
    /// The gRPC decoder's limit: the largest session plus room for the rest of a request.
    pub fn max_message_bytes(&self) -> usize {
        usize::try_from(self.limits.max_session_bytes).unwrap_or(usize::MAX) + MESSAGE_SLACK_BYTES
    }
}
