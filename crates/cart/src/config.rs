//! Configuration of a cart instance: flags, each with an environment variable twin.

use crate::csrf;
use session_client::{DEFAULT_TIMEOUT, Protocol, TlsOptions, Token, default_server_url};
use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

/// The tutorial's two instances.
pub const FIRST_PORT: u16 = 9081;
pub const SECOND_PORT: u16 = 9082;

/// Sessions kept in an instance's near cache by default: a few MiB for carts like the sample's.
pub const DEFAULT_NEAR_CACHE: usize = 100_000;

/// Live-update streams (`/Cart/events`) an instance keeps open at once.
pub const DEFAULT_MAX_EVENT_STREAMS: usize = 1024;

/// The app the cart's sessions belong to on the session server.
pub const DEFAULT_APP: &str = "cart";

/// Where the catalogue lives in a checkout; containers point `--catalog` elsewhere.
pub const DEFAULT_CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/cart");

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SessionMode {
    /// Sessions live in the session server: any instance can serve any session.
    Clustered,
    /// Sessions live in this process only: jumping to the other instance loses the cart.
    Local,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CartArgs {
    /// Address to listen on (0.0.0.0:9081 inside a container).
    #[arg(long, env = "CART_LISTEN", default_value_t = SocketAddr::from(([127, 0, 0, 1], FIRST_PORT)))]
    pub listen: SocketAddr,

    /// Session server address(es), comma-separated: http://HOST:PORT, or https://HOST:PORT
    /// for TLS.
    #[arg(long, env = "CART_SESSION_SERVER", default_values_t = [default_server_url()], value_delimiter = ',')]
    pub session_server: Vec<String>,

    /// The app token the session server knows the cart by (docs/security.md).
    #[arg(
        long,
        env = "CART_SESSION_TOKEN",
        hide_env_values = true,
        conflicts_with = "session_token_file"
    )]
    pub session_token: Option<String>,

    /// A file holding that token (the start scripts' target/sample/secrets/cart.token).
    #[arg(long, env = "CART_SESSION_TOKEN_FILE", value_name = "FILE")]
    pub session_token_file: Option<PathBuf>,

    /// The app the cart's sessions belong to (a token names its app, which must be this).
    #[arg(long, env = "CART_SESSION_APP", default_value = DEFAULT_APP)]
    pub session_app: String,

    /// The CA (PEM) that signed the session server's certificate, for an https:// address;
    /// without it, the system's CAs.
    #[arg(long, env = "CART_SESSION_CA", value_name = "FILE")]
    pub session_ca: Option<PathBuf>,

    /// A client certificate (PEM) to present to the session server (mutual TLS).
    #[arg(
        long,
        env = "CART_SESSION_CLIENT_CERT",
        requires = "session_client_key",
        value_name = "FILE"
    )]
    pub session_client_cert: Option<PathBuf>,

    /// The private key (PEM) of --session-client-cert.
    #[arg(
        long,
        env = "CART_SESSION_CLIENT_KEY",
        requires = "session_client_cert",
        value_name = "FILE"
    )]
    pub session_client_key: Option<PathBuf>,

    /// This instance's name in the session server's logs and statistics (default:
    /// cart-PUBLIC_PORT).
    #[arg(long, env = "CART_NODE")]
    pub node: Option<String>,

    /// Where sessions live.
    #[arg(long, env = "CART_SESSIONS", value_enum, default_value_t = SessionMode::Clustered)]
    pub sessions: SessionMode,

    /// The port browsers use to reach this instance (differs from --listen behind port mapping).
    #[arg(long, env = "CART_PUBLIC_PORT")]
    pub public_port: Option<u16>,

    /// The port browsers use to reach the other instance, for the "Go to" link.
    #[arg(long, env = "CART_PEER_PORT")]
    pub peer_port: Option<u16>,

    /// Background of the box: goldenrod on the first instance, darkseagreen on the second.
    #[arg(long, env = "CART_COLOR")]
    pub color: Option<String>,

    /// Folder with catalog.json and pictures/.
    #[arg(long, env = "CART_CATALOG", default_value = DEFAULT_CATALOG)]
    pub catalog: PathBuf,

    /// How long a page waits for the session server before answering 503.
    #[arg(long, env = "CART_SESSION_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub session_timeout: Duration,

    /// How calls reach the session server: framed (the fastest) or grpc (when only gRPC gets
    /// through, as with a gRPC proxy between).
    #[arg(long, env = "CART_SESSION_PROTOCOL", default_value_t = Protocol::default())]
    pub session_protocol: Protocol,

    /// Mark the session cookie Secure even when requests do not arrive over TLS (behind a
    /// TLS-terminating proxy).
    #[arg(long, env = "CART_SECURE_COOKIE")]
    pub secure_cookie: bool,

    /// Sessions this instance keeps in its near cache (clustered mode); 0 turns it off, so
    /// every read goes to the session server.
    #[arg(long, env = "CART_NEAR_CACHE", default_value_t = DEFAULT_NEAR_CACHE)]
    pub near_cache: usize,

    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "CART_WORKERS")]
    pub workers: Option<usize>,

    /// The key of the forms' CSRF tokens (at least 32 characters). Every instance behind one
    /// address must share it. Without it or --csrf-key-file, a random key per process.
    #[arg(
        long,
        env = "CART_CSRF_KEY",
        hide_env_values = true,
        conflicts_with = "csrf_key_file"
    )]
    pub csrf_key: Option<String>,

    /// A file holding that key, made (mode 0600) with a random key if missing.
    #[arg(long, env = "CART_CSRF_KEY_FILE")]
    pub csrf_key_file: Option<PathBuf>,

    /// Addresses of reverse proxies whose X-Forwarded-Host/-Proto (and Forwarded) headers
    /// are believed, comma-separated; from anyone else they are ignored.
    #[arg(long, env = "CART_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpAddr>,

    /// Live-update streams kept open at once; more are answered 503.
    #[arg(long, env = "CART_MAX_EVENT_STREAMS", default_value_t = DEFAULT_MAX_EVENT_STREAMS)]
    pub max_event_streams: usize,
}

/// What an instance shows and how it reaches sessions, resolved from the flags.
#[derive(Debug, Clone)]
pub struct Settings {
    pub public_port: u16,
    pub peer_port: u16,
    pub color: String,
    pub mode: SessionMode,
    pub session_servers: Vec<String>,
    pub session_timeout: Duration,
    pub session_protocol: Protocol,
    /// The app the cart's sessions belong to, and its token (if the server wants one).
    pub session_app: String,
    pub session_token: Option<Token>,
    pub session_tls: TlsOptions,
    /// This instance's name in the session server's logs.
    pub node: String,
    pub secure_cookie: Option<bool>,
    pub catalog: PathBuf,
    pub near_cache: usize,
    pub workers: Option<usize>,
    pub csrf_key: csrf::Key,
    pub trusted_proxies: Vec<IpAddr>,
    pub max_event_streams: usize,
}

impl CartArgs {
    pub fn settings(&self) -> Result<Settings, String> {
        let public_port = self.public_port.unwrap_or(self.listen.port());
        let peer_port = self.peer_port.unwrap_or(if public_port == SECOND_PORT {
            FIRST_PORT
        } else {
            SECOND_PORT
        });
        let color = match &self.color {
            Some(c) => c.clone(),
            None if public_port <= peer_port => "goldenrod".into(),
            None => "darkseagreen".into(),
        };
        // It lands in a style attribute: names and #hex only.
        if color.is_empty() || !color.chars().all(|c| c.is_ascii_alphanumeric() || c == '#') {
            return Err(format!(
                "--color {color:?} is not a colour name or #hex value"
            ));
        }
        let csrf_key = match (&self.csrf_key, &self.csrf_key_file) {
            (Some(key), _) => csrf::Key::new(key).map_err(|e| format!("--csrf-key: {e}"))?,
            (None, Some(path)) => csrf::Key::from_file(path)?,
            (None, None) => {
                tracing::warn!(
                    "no --csrf-key or --csrf-key-file: form tokens use a key of this process, so pages left open across a restart, or served by another instance, are refused"
                );
                csrf::Key::random()
            }
        };
        let session_token = match (&self.session_token, &self.session_token_file) {
            (Some(token), _) => Some(Token::new(token.as_str())),
            (None, Some(path)) => Some(Token::from_file(path).map_err(|e| e.to_string())?),
            (None, None) => None,
        };
        let identity = self
            .session_client_cert
            .as_deref()
            .zip(self.session_client_key.as_deref());
        let session_tls = TlsOptions::from_files(self.session_ca.as_deref(), identity)
            .map_err(|e| e.to_string())?;
        Ok(Settings {
            public_port,
            peer_port,
            color,
            mode: self.sessions,
            session_servers: self.session_server.clone(),
            session_timeout: self.session_timeout,
            session_protocol: self.session_protocol,
            session_app: self.session_app.clone(),
            session_token,
            session_tls,
            node: self
                .node
                .clone()
                .unwrap_or_else(|| format!("cart-{public_port}")),
            secure_cookie: self.secure_cookie.then_some(true),
            catalog: self.catalog.clone(),
            near_cache: self.near_cache,
            workers: self.workers,
            csrf_key,
            trusted_proxies: self.trusted_proxies.clone(),
            max_event_streams: self.max_event_streams,
        })
    }
}

impl Settings {
    /// Defaults for an instance on `public_port`, as the flags would give them.
    pub fn for_port(public_port: u16, peer_port: u16) -> Self {
        Self {
            public_port,
            peer_port,
            color: if public_port <= peer_port {
                "goldenrod"
            } else {
                "darkseagreen"
            }
            .into(),
            mode: SessionMode::Clustered,
            session_servers: vec![default_server_url()],
            session_timeout: DEFAULT_TIMEOUT,
            session_protocol: Protocol::default(),
            session_app: DEFAULT_APP.into(),
            session_token: None,
            session_tls: TlsOptions::default(),
            node: format!("cart-{public_port}"),
            secure_cookie: None,
            catalog: DEFAULT_CATALOG.into(),
            near_cache: DEFAULT_NEAR_CACHE,
            workers: None,
            csrf_key: csrf::Key::random(),
            trusted_proxies: Vec::new(),
            max_event_streams: DEFAULT_MAX_EVENT_STREAMS,
        }
    }
}
