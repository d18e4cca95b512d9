//! The handshake, client side: who this client is (protocol version, token, app, node), sent
//! as a framed connection's first message or as every gRPC request's metadata, and what the
//! server said of itself in answer, kept for the app to ask ([`Heard`]).

use crate::{config::ClientConfig, convert, error::Error, hello::ServerHello};
use parking_lot::Mutex;
use session_proto::{PROTOCOL_VERSION, metadata as keys, v1 as pb};
use std::sync::atomic::{AtomicU8, Ordering};
use tonic::{
    Request,
    metadata::{MetadataMap, MetadataValue},
};

/// This client's side of the handshake, made once from its configuration.
#[derive(Clone)]
pub(crate) struct Handshake {
    hello: pb::Hello,
    metadata: MetadataMap,
}

/// Shows no token.
impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("app", &self.hello.app)
            .field("node", &self.hello.node)
            .field("token", &!self.hello.token.is_empty())
            .finish()
    }
}

impl Handshake {
    pub(crate) fn new(config: &ClientConfig) -> Result<Self, Error> {
        let hello = pb::Hello {
            protocol_version: PROTOCOL_VERSION,
            token: config
                .token
                .as_ref()
                .map(|t| t.expose().to_owned())
                .unwrap_or_default(),
            app: config.app.clone().unwrap_or_default(),
            node: config.node.clone().unwrap_or_default(),
        };
        let value = |what: &str, text: &str| {
            MetadataValue::try_from(text)
                .map_err(|_| Error::InvalidArgument(format!("the {what} must be printable ASCII")))
        };
        let mut metadata = MetadataMap::new();
        metadata.insert(keys::PROTOCOL, MetadataValue::from(PROTOCOL_VERSION));
        if !hello.app.is_empty() {
            metadata.insert(keys::APP, value("app name", &hello.app)?);
        }
        if !hello.node.is_empty() {
            metadata.insert(keys::NODE, value("node name", &hello.node)?);
        }
        if !hello.token.is_empty() {
            let mut bearer = value("token", &format!("Bearer {}", hello.token))?;
            bearer.set_sensitive(true);
            metadata.insert(keys::AUTHORIZATION, bearer);
        }
        Ok(Self { hello, metadata })
    }

    /// The first message of a framed connection.
    pub(crate) fn first_message(&self) -> pb::PipelineRequest {
        pb::PipelineRequest {
            calls: Vec::new(),
            origin: 0,
            hello: Some(self.hello.clone()),
        }
    }

    /// A gRPC request carrying the handshake's metadata.
    pub(crate) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        *request.metadata_mut() = self.metadata.clone();
        request
    }
}

/// The server's answer to a framed connection's first message: its terms, or why it refused.
pub(crate) fn answer(response: pb::PipelineResponse) -> Result<(ServerHello, bool), Error> {
    let Some(reply) = response.hello else {
        return Err(match response.replies.first().and_then(|r| match &r.kind {
            Some(pb::reply::Kind::Error(e)) => Some(e),
            _ => None,
        }) {
            Some(refused) => convert::refusal(refused),
            None => Error::Unavailable(
                "the session server did not answer the handshake: it is older than this client (protocol 1); upgrade the server first".into(),
            ),
        });
    };
    if reply.code != 0 {
        return Err(convert::refusal(&pb::CallError {
            code: reply.code,
            message: reply.message,
            details: Default::default(),
        }));
    }
    let durable = reply.durable;
    Ok((
        ServerHello {
            protocol_version: reply.protocol_version,
            store_id: reply.store_id,
            epoch: reply.epoch,
            app: reply.app,
        },
        durable,
    ))
}

/// What a gRPC response's metadata says of the server.
pub(crate) fn from_metadata(metadata: &MetadataMap) -> Option<ServerHello> {
    let text = |key: &str| metadata.get(key).and_then(|v| v.to_str().ok());
    Some(ServerHello {
        protocol_version: text(keys::PROTOCOL)?.parse().ok()?,
        store_id: text(keys::STORE_ID)?.to_owned(),
        epoch: text(keys::EPOCH)?.parse().ok()?,
        app: text(keys::APP).unwrap_or_default().to_owned(),
    })
}

/// What the server said of itself last: in a handshake, and (whether its store is durable)
/// in a watch hello. Shared by every clone of a client.
#[derive(Debug, Default)]
pub(crate) struct Heard {
    hello: Mutex<Option<ServerHello>>,
    durable: AtomicU8,
}

const DURABILITY_UNKNOWN: u8 = 0;
const NOT_DURABLE: u8 = 1;
const DURABLE: u8 = 2;

impl Heard {
    pub(crate) fn hello(&self, hello: ServerHello) {
        *self.hello.lock() = Some(hello);
    }

    pub(crate) fn last(&self) -> Option<ServerHello> {
        self.hello.lock().clone()
    }

    pub(crate) fn durable(&self, durable: bool) {
        let value = if durable { DURABLE } else { NOT_DURABLE };
        self.durable.store(value, Ordering::Relaxed);
    }

    pub(crate) fn is_durable(&self) -> Option<bool> {
        match self.durable.load(Ordering::Relaxed) {
            NOT_DURABLE => Some(false),
            DURABLE => Some(true),
            DURABILITY_UNKNOWN.. => None,
        }
    }
}
