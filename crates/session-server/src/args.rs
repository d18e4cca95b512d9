//! The command-line flags of `session-server` (each with an environment variable twin), and
//! the [`ServerConfig`] they make.

use crate::{clock::SystemClock, config::*, store::Limits};
use std::{net::SocketAddr, sync::Arc, time::Duration};

/// Flags of `session-server` (serving).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address of the gRPC port (use 0.0.0.0:9510 inside a container).
    #[arg(long, env = "SESSION_LISTEN", default_value_t = default_listen(), value_name = "ADDR")]
    pub listen: SocketAddr,

    /// Address of the admin HTTP port (/metrics, /healthz).
    #[arg(long, env = "SESSION_ADMIN_LISTEN", default_value_t = default_admin_listen(), value_name = "ADDR")]
    pub admin_listen: SocketAddr,

    /// Default idle timeout of a session (e.g. 30m, 90s).
    #[arg(long, env = "SESSION_IDLE_TIMEOUT", default_value = "30m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Default absolute lifetime of a session (e.g. 8h).
    #[arg(long, env = "SESSION_MAX_LIFETIME", default_value = "8h", value_parser = humantime::parse_duration)]
    pub max_lifetime: Duration,

    /// Memory for all sessions together; least recently used sessions are evicted past it (e.g. 512MiB).
    #[arg(long, env = "SESSION_CAPACITY", default_value = "512MiB", value_parser = parse_bytes)]
    pub capacity: u64,

    /// Largest size of one session (e.g. 1MiB).
    #[arg(long, env = "SESSION_MAX_SESSION_SIZE", default_value = "1MiB", value_parser = parse_bytes)]
    pub max_session_size: u64,

    /// Largest size of one attribute, name and value (e.g. 256KiB).
    #[arg(long, env = "SESSION_MAX_ATTRIBUTE_SIZE", default_value = "256KiB", value_parser = parse_bytes)]
    pub max_attribute_size: u64,

    /// How often expired sessions are swept out of memory.
    #[arg(long, env = "SESSION_SWEEP_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub sweep_interval: Duration,

    /// Longest idle timeout a client may ask for when it creates a session; longer ones are
    /// cut to this (so no client can make sessions that never expire).
    #[arg(long, env = "SESSION_IDLE_TIMEOUT_CAP", default_value = "24h", value_parser = humantime::parse_duration)]
    pub idle_timeout_cap: Duration,

    /// Longest absolute lifetime a client may ask for; longer ones are cut to this.
    #[arg(long, env = "SESSION_MAX_LIFETIME_CAP", default_value = "30days", value_parser = humantime::parse_duration)]
    pub max_lifetime_cap: Duration,

    /// Events kept for watchers that reconnect and resume.
    #[arg(long, env = "SESSION_WATCH_BUFFER", default_value_t = DEFAULT_WATCH_BUFFER)]
    pub watch_buffer: usize,

    /// Bytes those events may hold together (an event names the attributes it changed).
    #[arg(long, env = "SESSION_WATCH_BUFFER_BYTES", default_value = "32MiB", value_parser = parse_bytes)]
    pub watch_buffer_bytes: u64,

    /// Client connections open at once on the session port; past it new ones are closed at
    /// once, with a metric and a log line (a few more are kept for health checks).
    #[arg(long, env = "SESSION_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = parse_connections)]
    pub max_connections: usize,

    /// How long a new connection may take to send its protocol's preface.
    #[arg(long, env = "SESSION_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// How long a framed connection may sit without a request, or a reply wait for its client
    /// to read it; gRPC connections must answer pings within it.
    #[arg(long, env = "SESSION_CONNECTION_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub connection_idle_timeout: Duration,

    /// Bytes of replies one pipeline message may get; later calls in it answer
    /// RESOURCE_EXHAUSTED without running (e.g. 64MiB).
    #[arg(long, env = "SESSION_MAX_BATCH_REPLY", default_value = "64MiB", value_parser = parse_bytes)]
    pub max_batch_reply: u64,

    /// Worker threads (default: one per core). One is plenty for most loads, and better where
    /// the server shares few cores with app servers: idle workers woken to steal work cost
    /// more than the calls. One runs Tokio's current-thread scheduler, which has no stealing
    /// to track.
    #[arg(long, env = "SESSION_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// How long shutdown waits for in-flight calls.
    #[arg(long, env = "SESSION_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

impl ServeArgs {
    /// The library configuration, after checking that the limits fit together.
    pub fn config(&self) -> Result<ServerConfig, String> {
        if self.max_attribute_size > self.max_session_size {
            return Err(format!(
                "--max-attribute-size ({}) is larger than --max-session-size ({}): lower it or raise the session limit",
                self.max_attribute_size, self.max_session_size
            ));
        }
        if self.max_session_size > self.capacity {
            return Err(format!(
                "--max-session-size ({}) is larger than --capacity ({}): one session must fit in memory",
                self.max_session_size, self.capacity
            ));
        }
        if self.idle_timeout.is_zero() || self.max_lifetime.is_zero() {
            return Err("--idle-timeout and --max-lifetime must be longer than zero".into());
        }
        if self.idle_timeout > self.idle_timeout_cap || self.max_lifetime > self.max_lifetime_cap {
            return Err(
                "--idle-timeout and --max-lifetime must not be longer than their caps (--idle-timeout-cap, --max-lifetime-cap)".into(),
            );
        }
        let second = Duration::from_secs(1);
        if self.handshake_timeout < second || self.connection_idle_timeout < second {
            return Err(
                "--handshake-timeout and --connection-idle-timeout must be at least 1s".into(),
            );
        }
        Ok(ServerConfig {
            limits: Limits {
                capacity_bytes: self.capacity,
                max_session_bytes: self.max_session_size,
                max_attribute_bytes: self.max_attribute_size,
                default_idle_timeout: self.idle_timeout,
                default_max_lifetime: self.max_lifetime,
                idle_timeout_cap: self.idle_timeout_cap,
                max_lifetime_cap: self.max_lifetime_cap,
            },
            sweep_interval: self.sweep_interval.max(Duration::from_millis(10)),
            watch_buffer: self.watch_buffer,
            watch_buffer_bytes: self.watch_buffer_bytes,
            shutdown_grace: self.shutdown_grace,
            clock: Arc::new(SystemClock),
            connections: ConnectionLimits {
                max_connections: self.max_connections,
                handshake_timeout: self.handshake_timeout,
                idle_timeout: self.connection_idle_timeout,
                // Room for at least one whole session, whatever the flag says.
                max_batch_reply_bytes: self.max_batch_reply.max(self.max_session_size),
            },
        })
    }
}

fn parse_connections(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("write a number of connections, at least 1".into()),
    }
}

/// Parses sizes such as `512MiB`, `1MB` or `65536`.
fn parse_bytes(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{e} (write a size such as 512MiB, 64KiB or 1048576)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("512MiB"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_bytes("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn defaults_match_the_constants() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let config = Cli::parse_from(["session-server"])
            .serve
            .config()
            .expect("valid defaults");
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.sweep_interval, DEFAULT_SWEEP_INTERVAL);
        assert_eq!(config.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
        assert_eq!(config.watch_buffer_bytes, DEFAULT_WATCH_BUFFER_BYTES);
        assert_eq!(config.connections, ConnectionLimits::default());
    }
}
