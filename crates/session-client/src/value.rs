//! Sessions as the client sees them: values, attributes, metadata, and what a write did.
//! Reading them as types (JSON, lists, counters) is in [`crate::decode`].

use crate::id::{SessionId, SessionRef};
use bytes::Bytes;
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Bytes {
        content_type: String,
        data: Bytes,
    },
    List {
        content_type: String,
        items: Vec<Bytes>,
    },
    Counter(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub value: Value,
    /// The session version at which it was last written: what a compare-and-set expects.
    pub version: u64,
}

/// A session's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: SessionId,
    /// What events name this session by (not its id); new with every new id.
    pub reference: SessionRef,
    pub version: u64,
    pub created_at: SystemTime,
    pub last_access: SystemTime,
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
    pub size_bytes: u64,
}

/// A session as read: metadata and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub info: SessionInfo,
    /// Shared, so that handing out a cached session costs no copy.
    pub attributes: Arc<BTreeMap<String, Attribute>>,
}

impl Session {
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.get(name)
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteResult {
    pub info: SessionInfo,
    pub results: Vec<OpResult>,
    /// The session after the write, when asked for.
    pub session: Option<Session>,
}

/// What one operation of a write did, in the order of the batch's operations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpResult {
    /// The attribute's version after the write.
    pub attribute_version: u64,
    /// A counter's value after an add.
    pub counter: i64,
    /// A list's length after a push or remove.
    pub list_len: u32,
    /// Whether a remove found something to remove.
    pub removed: bool,
}
