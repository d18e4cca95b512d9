//! Sessions as the client sees them: values, attributes, metadata, and what a write did.

use crate::{error::Error, id::SessionId};
use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

/// The content type of JSON values, the client's default encoding.
pub const JSON: &str = "application/json";

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

impl Attribute {
    /// A bytes value decoded from JSON; `name` is for the error.
    pub fn json<T: DeserializeOwned>(&self, name: &str) -> Result<T, Error> {
        match &self.value {
            Value::Bytes { data, .. } => decode(name, data),
            _ => Err(Error::Decode {
                name: name.into(),
                reason: "not a bytes value".into(),
            }),
        }
    }
}

/// A session's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: SessionId,
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

    /// A bytes attribute decoded from JSON; `None` when absent.
    pub fn get_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, Error> {
        self.attributes.get(name).map(|a| a.json(name)).transpose()
    }

    /// A list attribute's items decoded from JSON; empty when absent.
    pub fn list_json<T: DeserializeOwned>(&self, name: &str) -> Result<Vec<T>, Error> {
        match self.attributes.get(name).map(|a| &a.value) {
            None => Ok(Vec::new()),
            Some(Value::List { items, .. }) => items.iter().map(|i| decode(name, i)).collect(),
            Some(_) => Err(Error::Decode {
                name: name.into(),
                reason: "not a list".into(),
            }),
        }
    }

    /// How many items a list attribute holds, without decoding them; 0 when absent.
    pub fn list_len(&self, name: &str) -> Result<usize, Error> {
        match self.attributes.get(name).map(|a| &a.value) {
            None => Ok(0),
            Some(Value::List { items, .. }) => Ok(items.len()),
            Some(_) => Err(Error::Decode {
                name: name.into(),
                reason: "not a list".into(),
            }),
        }
    }

    /// A counter attribute; 0 when absent.
    pub fn counter(&self, name: &str) -> Result<i64, Error> {
        match self.attributes.get(name).map(|a| &a.value) {
            None => Ok(0),
            Some(Value::Counter(c)) => Ok(*c),
            Some(_) => Err(Error::Decode {
                name: name.into(),
                reason: "not a counter".into(),
            }),
        }
    }
}

fn decode<T: DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Decode {
        name: name.into(),
        reason: e.to_string(),
    })
}

/// Encodes a value as JSON bytes.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, Error> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| Error::InvalidArgument(format!("value cannot be encoded as JSON: {e}")))
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
