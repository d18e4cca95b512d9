//! The handshake: what a client presents (a framed connection's `Hello`, or the metadata of a
//! gRPC request) and what the server answers (`HelloReply`, or response metadata). A client
//! of protocol 1 presents nothing; what it may still do is in docs/protocol.md,
//! "Compatibility".

use crate::auth::{Caller, Presented, Refusal};
use session_proto::{PROTOCOL_VERSION, metadata as keys, v1 as pb};
use std::sync::Arc;
use tonic::{
    Code,
    metadata::{MetadataMap, MetadataValue},
};

/// What TLS learnt of a connection's client, for requests on it: the subject common name of
/// the client certificate it verified. tonic puts it in each gRPC request's extensions.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub certificate: Option<Arc<str>>,
}

/// What a framed client presents in its hello (`None`: it sent none, protocol 1).
pub fn from_hello<'a>(hello: Option<&'a pb::Hello>, peer: &'a Peer) -> Presented<'a> {
    let Some(hello) = hello else {
        return Presented {
            certificate: peer.certificate.as_deref(),
            protocol: 1,
            ..Presented::default()
        };
    };
    let text = |s: &'a str| (!s.is_empty()).then_some(s);
    Presented {
        token: text(&hello.token),
        certificate: peer.certificate.as_deref(),
        app: text(&hello.app),
        node: text(&hello.node),
        protocol: hello.protocol_version.max(1),
    }
}

/// What a gRPC request presents in its metadata.
pub fn from_metadata<'a>(metadata: &'a MetadataMap, peer: Option<&'a Peer>) -> Presented<'a> {
    let text = |key: &str| metadata.get(key).and_then(|v| v.to_str().ok());
    let token = text(keys::AUTHORIZATION).and_then(|v| {
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    Presented {
        token,
        certificate: peer.and_then(|p| p.certificate.as_deref()),
        app: text(keys::APP),
        node: text(keys::NODE),
        protocol: text(keys::PROTOCOL)
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
    }
}

/// What the store says of itself in every answer to a hello.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    pub store_id: String,
    pub epoch: u64,
    pub durable: bool,
}

/// The answer to a hello: the connection's terms, or why it is refused.
pub fn reply(outcome: &Result<Caller, Refusal>, facts: &ServerFacts) -> pb::HelloReply {
    let (code, message, app) = match outcome {
        Ok(caller) => (Code::Ok, String::new(), caller.app.name.to_string()),
        Err(refusal) => (refusal.code, refusal.message.clone(), String::new()),
    };
    pb::HelloReply {
        code: code as i32,
        message,
        protocol_version: PROTOCOL_VERSION,
        store_id: facts.store_id.clone(),
        epoch: facts.epoch,
        app,
        durable: facts.durable,
    }
}

/// The same facts as response metadata, for gRPC streams of `caller`.
pub fn add_metadata(metadata: &mut MetadataMap, facts: &ServerFacts, caller: &Caller) {
    if let Ok(id) = MetadataValue::try_from(facts.store_id.as_str()) {
        metadata.insert(keys::STORE_ID, id);
    }
    if let Ok(app) = MetadataValue::try_from(&*caller.app.name) {
        metadata.insert(keys::APP, app);
    }
    metadata.insert(keys::EPOCH, MetadataValue::from(facts.epoch));
    metadata.insert(keys::PROTOCOL, MetadataValue::from(PROTOCOL_VERSION));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_presents_a_bearer_token_app_and_version() {
        let mut metadata = MetadataMap::new();
        metadata.insert(keys::AUTHORIZATION, "Bearer abc".parse().expect("ascii"));
        metadata.insert(keys::APP, "cart".parse().expect("ascii"));
        metadata.insert(keys::PROTOCOL, "2".parse().expect("ascii"));
        let p = from_metadata(&metadata, None);
        assert_eq!((p.token, p.app, p.protocol), (Some("abc"), Some("cart"), 2));
        let mut basic = MetadataMap::new();
        basic.insert(keys::AUTHORIZATION, "Basic abc".parse().expect("ascii"));
        let p = from_metadata(&basic, None);
        assert_eq!(
            (p.token, p.protocol),
            (None, 1),
            "not a bearer token; no version is 1"
        );
    }
}
