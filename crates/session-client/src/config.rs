//! [`ClientConfig`]: where the session server is, who this client is (its app, its
//! credential, its node name), how long a call may take, and how calls travel (TLS included).

use crate::error::Error;
use std::{fmt, path::Path, sync::Arc, time::Duration};

/// The default deadline of every call: how long an app waits before it calls the server
/// unavailable.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// The address clients use when given none.
pub fn default_server_url() -> String {
    format!("http://127.0.0.1:{}", session_proto::DEFAULT_PORT)
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The session server's address: `http://host:port`, or `https://host:port` for TLS.
    /// Exactly one for now: servers with memory stores share nothing, so a client spread over
    /// two would split sessions between them; [`SessionClient::connect_lazy`](crate::SessionClient::connect_lazy) refuses more than one.
    pub endpoints: Vec<String>,
    /// Deadline of each call, connection included.
    pub timeout: Duration,
    /// How calls travel; the watch stream is gRPC either way.
    pub protocol: Protocol,
    /// The app whose sessions this client works on. `None`: the credential's app, or
    /// `default` on a server without authentication.
    pub app: Option<String>,
    /// The app's bearer token, when the server requires one (docs/security.md).
    pub token: Option<Token>,
    /// This app server's name in the server's logs and statistics (say `cart-9081`).
    pub node: Option<String>,
    /// TLS settings for an `https://` address: the CA to trust, a client certificate.
    pub tls: TlsOptions,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            endpoints: vec![default_server_url()],
            timeout: DEFAULT_TIMEOUT,
            protocol: Protocol::default(),
            app: None,
            token: None,
            node: None,
            tls: TlsOptions::default(),
        }
    }
}

/// A bearer token: a secret, so its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl Token {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into().trim().into())
    }

    /// The token in `path`: the file's first line.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::InvalidArgument(format!("token file {}: {e}", path.display())))?;
        let token = text.lines().next().unwrap_or_default().trim();
        if token.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "token file {} is empty",
                path.display()
            )));
        }
        Ok(Self::new(token))
    }

    /// The token itself, for the handshake. Never for a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

/// TLS for an `https://` address. Without a CA, the system's CAs are trusted.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// The CA certificates (PEM) that signed the server's certificate.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate chain and its private key (PEM), for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name to check the server's certificate against, when it is not the address's
    /// host (say, an address by IP and a certificate for a name).
    pub server_name: Option<String>,
}

/// Shows which files are set, never a key.
impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca", &self.ca_pem.is_some())
            .field("identity", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsOptions {
    /// Reads the CA file and, for mutual TLS, a client certificate and its key (PEM files).
    pub fn from_files(ca: Option<&Path>, identity: Option<(&Path, &Path)>) -> Result<Self, Error> {
        let read = |what: &str, path: &Path| {
            std::fs::read(path)
                .map_err(|e| Error::InvalidArgument(format!("{what} {}: {e}", path.display())))
        };
        Ok(Self {
            ca_pem: ca.map(|p| read("CA file", p)).transpose()?,
            identity: match identity {
                Some((cert, key)) => {
                    Some((read("client certificate", cert)?, read("client key", key)?))
                }
                None => None,
            },
            server_name: None,
        })
    }
}

/// How a client carries its calls to the session server's port. Both carry the same
/// `session.v1` pipeline messages with the same guarantees; see docs/protocol.md.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// Length-prefixed messages on a plain TCP (or TLS) connection: the fastest (about 13 µs
    /// less CPU per call at each end than HTTP/2; see docs/performance.md).
    #[default]
    Framed,
    /// The `Pipeline` gRPC stream, for when only gRPC gets through (a gRPC proxy between).
    Grpc,
}

impl std::str::FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "framed" => Ok(Self::Framed),
            "grpc" => Ok(Self::Grpc),
            _ => Err(format!("unknown protocol {s:?} (framed or grpc)")),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Framed => "framed",
            Self::Grpc => "grpc",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let config = ClientConfig {
            token: Some(Token::new("a-secret-token")),
            tls: TlsOptions {
                identity: Some((b"cert".to_vec(), b"a-secret-key".to_vec())),
                ..TlsOptions::default()
            },
            ..ClientConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("a-secret"), "{shown}");
    }
}
