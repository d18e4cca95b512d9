//! [`ServerHello`]: what the session server said of itself when this client connected.

/// The server's answer to the handshake (`HelloReply`, or a gRPC response's metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// The protocol version spoken on the connection.
    pub protocol_version: u32,
    /// Names the store behind the server: servers that give the same one share sessions.
    pub store_id: String,
    /// Random per server process: a new one means the server restarted.
    pub epoch: u64,
    /// The app this client's calls work on.
    pub app: String,
}
