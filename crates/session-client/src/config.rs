//! [`ClientConfig`]: where the session server is, how long a call may take, and how calls
//! travel.

use std::{fmt, time::Duration};

/// The default deadline of every call: how long an app waits before it calls the server
/// unavailable.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// The address clients use when given none.
pub fn default_server_url() -> String {
    format!("http://127.0.0.1:{}", session_proto::DEFAULT_PORT)
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The session server's address (`http://host:port`). Exactly one for now: servers
    /// with memory stores share nothing, so a client spread over two would split sessions
    /// between them; [`SessionClient::connect_lazy`](crate::SessionClient::connect_lazy) refuses more than one.
    pub endpoints: Vec<String>,
    /// Deadline of each call, connection included.
    pub timeout: Duration,
    /// How calls travel; the watch stream is gRPC either way.
    pub protocol: Protocol,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            endpoints: vec![default_server_url()],
            timeout: DEFAULT_TIMEOUT,
            protocol: Protocol::default(),
        }
    }
}

/// How a client carries its calls to the session server's port. Both carry the same
/// `session.v1` pipeline messages with the same guarantees; see docs/protocol.md.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// Length-prefixed messages on a plain TCP connection: the fastest (about 13 µs less CPU
    /// per call at each end than HTTP/2; see docs/performance.md).
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
