//! The command-line flags of `session-server` (each with an environment variable twin), and
//! the [`ServerConfig`] they make.

use crate::{
    apps::{Apps, Quota},
    auth::{Auth, Source},
    clock::SystemClock,
    config::*,
    store::{Limits, durable::Fsync},
    tls::{ADMIN_ALPN, SESSION_ALPN, Tls, TlsFiles, TlsSettings},
};
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

/// Where sessions are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// In memory only: a restart loses every session.
    Memory,
    /// In memory, and on disk in --data-dir: a restart (or a crash) loses nothing.
    Durable,
}

/// Flags of `session-server` (serving).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Where sessions are kept: durable when --data-dir is given, memory otherwise.
    #[arg(long, env = "SESSION_STORE", value_enum)]
    pub store: Option<StoreKind>,

    /// The durable store's directory (made, mode 0700, if it does not exist).
    #[arg(long, env = "SESSION_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// How long a write of the durable store waits for the disk, as Redis's appendfsync:
    /// always (on disk before its reply), everysec (in the OS before its reply, on disk
    /// within about a second) or no (in the OS; the OS decides when on disk).
    #[arg(long, env = "SESSION_FSYNC", default_value_t = Fsync::EverySec)]
    pub fsync: Fsync,

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

    /// The credentials file: who may call, as which app (docs/security.md). Read again on
    /// SIGHUP. Without it (or SESSION_AUTH), anyone who reaches the port may call.
    #[arg(long, env = "SESSION_AUTH_FILE", value_name = "FILE")]
    pub auth_file: Option<PathBuf>,

    /// The credentials themselves, in the file's format (lines, or entries separated by ';').
    #[arg(
        long,
        env = "SESSION_AUTH",
        hide_env_values = true,
        conflicts_with = "auth_file",
        value_name = "TEXT"
    )]
    pub auth: Option<String>,

    /// Listen beyond loopback without credentials: anyone who reaches the port could read and
    /// take over every session. Refused without this flag.
    #[arg(long, env = "SESSION_INSECURE")]
    pub insecure: bool,

    /// Sessions each app may hold, unless the credentials file gives it a quota; past it, an
    /// app's new session evicts its least recently used.
    #[arg(long, env = "SESSION_APP_MAX_SESSIONS", value_name = "N")]
    pub app_max_sessions: Option<u64>,

    /// Bytes each app's sessions may hold together (e.g. 256MiB), unless the credentials file
    /// says otherwise; past it, the app's least recently used sessions are evicted.
    #[arg(long, env = "SESSION_APP_CAPACITY", value_parser = parse_bytes, value_name = "SIZE")]
    pub app_capacity: Option<u64>,

    /// Calls a second each app may make (after a burst of a second's worth), unless the
    /// credentials file says otherwise; past it, calls answer RESOURCE_EXHAUSTED.
    #[arg(long, env = "SESSION_APP_RATE", value_name = "N")]
    pub app_rate: Option<u32>,

    /// The session port's certificate chain (PEM): the port then takes TLS only, both
    /// protocols. `session-server dev-cert` makes one for development.
    #[arg(
        long,
        env = "SESSION_TLS_CERT",
        requires = "tls_key",
        value_name = "FILE"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(
        long,
        env = "SESSION_TLS_KEY",
        requires = "tls_cert",
        value_name = "FILE"
    )]
    pub tls_key: Option<PathBuf>,

    /// Verify client certificates signed by this CA (PEM): a verified certificate's subject
    /// common name authenticates as the credentials file's cert:NAME says (mutual TLS).
    #[arg(
        long,
        env = "SESSION_TLS_CLIENT_CA",
        requires = "tls_cert",
        value_name = "FILE"
    )]
    pub tls_client_ca: Option<PathBuf>,

    /// The admin port's certificate chain (PEM): /metrics and /healthz then over HTTPS.
    #[arg(
        long,
        env = "SESSION_ADMIN_TLS_CERT",
        requires = "admin_tls_key",
        value_name = "FILE"
    )]
    pub admin_tls_cert: Option<PathBuf>,

    /// The private key of --admin-tls-cert (PEM).
    #[arg(
        long,
        env = "SESSION_ADMIN_TLS_KEY",
        requires = "admin_tls_cert",
        value_name = "FILE"
    )]
    pub admin_tls_key: Option<PathBuf>,
}

impl ServeArgs {
    /// The store to serve: the durable one in `--data-dir`, or the memory store.
    pub fn store_kind(&self) -> Result<StoreKind, String> {
        match (self.store, &self.data_dir) {
            (Some(StoreKind::Durable), None) => {
                Err("--store durable needs --data-dir: where to keep the sessions".into())
            }
            (Some(StoreKind::Memory), Some(_)) => {
                Err("--data-dir is for --store durable; with --store memory nothing is kept".into())
            }
            (Some(kind), _) => Ok(kind),
            (None, Some(_)) => Ok(StoreKind::Durable),
            (None, None) => Ok(StoreKind::Memory),
        }
    }

    /// The library configuration, after checking that the limits fit together.
    pub fn config(&self) -> Result<ServerConfig, String> {
        if self.max_attribute_size > self.max_session_size {
            return Err(format!(
                "--max-attribute-size ({}) is larger than --max-session-size ({}): lower it or raise the session limit",
                self.max_attribute_size, self.max_session_size
            ));
        }
        if self.max_session_size > MAX_SESSION_SIZE_CAP {
            return Err(format!(
                "--max-session-size ({}) is larger than {MAX_SESSION_SIZE_CAP} bytes: a session must fit one framed message",
                self.max_session_size
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
        let quota = Quota {
            max_sessions: self.app_max_sessions.filter(|n| *n > 0),
            max_bytes: self.app_capacity,
            rate: self.app_rate.filter(|n| *n > 0),
        };
        if quota.max_bytes.is_some_and(|b| b < self.max_session_size) {
            return Err(
                "--app-capacity is smaller than --max-session-size: one session must fit an app"
                    .into(),
            );
        }
        let source = match (&self.auth_file, &self.auth) {
            (Some(path), _) => Source::File(path.clone()),
            (None, Some(text)) => Source::Text(text.replace(';', "\n")),
            (None, None) => Source::Off,
        };
        let auth = Auth::new(source, Arc::new(Apps::new(quota))).map_err(|e| e.to_string())?;
        if !auth.enabled() && !self.insecure {
            for (flag, addr) in [("--listen", self.listen)] {
                if !addr.ip().is_loopback() {
                    return Err(format!(
                        "refusing to listen on {addr} ({flag}) without credentials: anyone who reaches it could read and take over every session. Give --auth-file (docs/security.md), or pass --insecure to accept that"
                    ));
                }
            }
        }
        let port_tls = |cert: &Option<PathBuf>, key: &Option<PathBuf>, client_ca, alpn| {
            let (Some(cert), Some(key)) = (cert, key) else {
                return Ok(None);
            };
            let files = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca,
            };
            Tls::load(files, alpn)
                .map(|tls| Some(Arc::new(tls)))
                .map_err(|e| e.to_string())
        };
        let tls = TlsSettings {
            session: port_tls(
                &self.tls_cert,
                &self.tls_key,
                self.tls_client_ca.clone(),
                SESSION_ALPN,
            )?,
            admin: port_tls(&self.admin_tls_cert, &self.admin_tls_key, None, ADMIN_ALPN)?,
        };
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
            auth: Arc::new(auth),
            tls,
        })
    }
}

/// The largest `--max-session-size`: a session and its request must fit one framed message,
/// whose length is 32 bits.
const MAX_SESSION_SIZE_CAP: u64 = (1 << 31) - MESSAGE_SLACK_BYTES as u64;

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
        assert!(!config.auth.enabled());
        assert!(config.tls.session.is_none() && config.tls.admin.is_none());
    }

    fn parse(args: &[&str]) -> Result<ServerConfig, String> {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let mut all = vec!["session-server"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)
            .map_err(|e| e.to_string())?
            .serve
            .config()
    }

    #[test]
    fn a_data_dir_makes_the_store_durable_and_the_two_must_agree() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let kind = |args: &[&str]| {
            let mut all = vec!["session-server"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).expect("flags").serve.store_kind()
        };
        assert_eq!(kind(&[]), Ok(StoreKind::Memory));
        assert_eq!(kind(&["--data-dir", "/d"]), Ok(StoreKind::Durable));
        assert!(kind(&["--store", "durable"]).is_err());
        assert!(kind(&["--store", "memory", "--data-dir", "/d"]).is_err());
    }

    #[test]
    fn beyond_loopback_credentials_are_required_unless_insecure() {
        let error = parse(&["--listen", "0.0.0.0:9510"]).expect_err("refused");
        assert!(
            error.contains("without credentials") && error.contains("--insecure"),
            "{error}"
        );
        assert!(parse(&["--listen", "0.0.0.0:9510", "--insecure"]).is_ok());
        let token = "a-token-of-at-least-32-characters-0123";
        let auth = format!("app:cart token:{token}");
        let config =
            parse(&["--listen", "0.0.0.0:9510", "--auth", &auth]).expect("with credentials");
        assert!(config.auth.enabled());
        assert!(
            parse(&["--listen", "[::1]:9510"]).is_ok(),
            "loopback needs none"
        );
    }
}
