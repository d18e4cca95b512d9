//! The `session.v1` protocol: the generated protobuf messages and the tonic client and server
//! for `SessionService`. The schema is `proto/session/v1/session.proto`; docs/protocol.md
//! describes every RPC, field and error.
//!
//! Server and client crates both depend on this one and never on each other.

pub mod codec;

/// Generated code for the `session.v1` package.
#[allow(missing_debug_implementations, clippy::all)] // generated code
pub mod v1 {
    tonic::include_proto!("session.v1");

    /// The encoded `FileDescriptorSet` of the schema, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("session_v1_descriptor");
}

pub use v1::*;

/// The classic session-server port, where servers listen and clients look by default.
pub const DEFAULT_PORT: u16 = 9510;

/// The protocol version of this schema, which clients and servers announce in the handshake
/// (`Hello.protocol_version`, or the `session-protocol` metadata on gRPC). Version 1 is the
/// protocol before the handshake: its clients send no hello. Version 2 added the handshake,
/// credentials, apps, session references in events and watch cursors (docs/protocol.md,
/// "Compatibility").
pub const PROTOCOL_VERSION: u32 = 2;

/// gRPC metadata of the handshake, request side (the token goes in `authorization` as
/// `Bearer <token>`): the client's protocol version, its app and its node name.
pub mod metadata {
    /// `Hello.protocol_version`.
    pub const PROTOCOL: &str = "session-protocol";
    /// `Hello.app`.
    pub const APP: &str = "session-app";
    /// `Hello.node`.
    pub const NODE: &str = "session-node";
    /// The bearer token: `Bearer <token>`.
    pub const AUTHORIZATION: &str = "authorization";
    /// Response side: `HelloReply.store_id`.
    pub const STORE_ID: &str = "session-store-id";
    /// Response side: `HelloReply.epoch`.
    pub const EPOCH: &str = "session-epoch";
}

/// The first bytes a client sends on a connection to the session port to speak the framed
/// pipeline instead of gRPC (see docs/protocol.md): then every message is a `PipelineRequest`
/// (client to server) or `PipelineResponse` (server to client), encoded as protobuf and
/// preceded by its length as a 4-byte big-endian integer, the first request carrying the
/// client's `Hello` (protocol 2). An HTTP/2 connection starts with `PRI`, so the first byte
/// tells the two apart.
pub const FRAMED_PREFACE: &[u8] = b"session.v1 framed\r\n";

/// Appends `message` to `buffer` as one frame of the framed pipeline: its length as a 4-byte
/// big-endian integer, then the message. Encoding straight into a connection's write buffer
/// spares a buffer and a copy per message. Appends nothing and returns `false` for a message
/// of 4 GiB or more, which no frame can carry.
pub fn put_frame(buffer: &mut prost::bytes::BytesMut, message: &impl prost::Message) -> bool {
    use prost::bytes::BufMut;
    let Ok(length) = u32::try_from(message.encoded_len()) else {
        return false;
    };
    buffer.reserve(4 + length as usize);
    buffer.put_u32(length);
    // `encode` would measure the whole message again; the room is reserved already.
    message.encode_raw(buffer);
    true
}
