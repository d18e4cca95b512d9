//! Sessions as the client sees them, and the builder of write batches.

use crate::error::Error;
use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};
use session_proto::v1 as pb;
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
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

impl TryFrom<pb::Attribute> for Attribute {
    type Error = Error;

    fn try_from(a: pb::Attribute) -> Result<Self, Error> {
        let value = a.value.unwrap_or_default();
        let value = match value.kind {
            Some(pb::value::Kind::Bytes(data)) => Value::Bytes {
                content_type: value.content_type,
                data,
            },
            Some(pb::value::Kind::List(l)) => Value::List {
                content_type: value.content_type,
                items: l.items,
            },
            Some(pb::value::Kind::Counter(c)) => Value::Counter(c),
            None => {
                return Err(Error::Decode {
                    name: a.name,
                    reason: "value has no kind".into(),
                });
            }
        };
        Ok(Attribute {
            value,
            version: a.version,
        })
    }
}

/// A session's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: String,
    pub version: u64,
    pub created_at: SystemTime,
    pub last_access: SystemTime,
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
    pub size_bytes: u64,
}

impl From<pb::SessionInfo> for SessionInfo {
    fn from(i: pb::SessionInfo) -> Self {
        let at = |ms: i64| UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
        SessionInfo {
            id: i.id,
            version: i.version,
            created_at: at(i.created_at_ms),
            last_access: at(i.last_access_ms),
            idle_timeout: Duration::from_millis(i.idle_timeout_ms),
            max_lifetime: Duration::from_millis(i.max_lifetime_ms),
            size_bytes: i.size_bytes,
        }
    }
}

/// A session as read: metadata and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub info: SessionInfo,
    /// Shared, so that handing out a cached session costs no copy.
    pub attributes: Arc<BTreeMap<String, Attribute>>,
}

impl TryFrom<pb::Session> for Session {
    type Error = Error;

    fn try_from(s: pb::Session) -> Result<Self, Error> {
        let info = s.info.unwrap_or_default().into();
        let attributes = s
            .attributes
            .into_iter()
            .map(|a| Ok((a.name.clone(), Attribute::try_from(a)?)))
            .collect::<Result<_, Error>>()?;
        Ok(Session {
            info,
            attributes: Arc::new(attributes),
        })
    }
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

/// A batch of operations, applied atomically by the server in the order they were added.
///
/// ```
/// use session_client::Ops;
/// let ops = Ops::new()
///     .list_push_json("cart", "NIN CD", Some(100))?
///     .recent_push_json("history", "nin-cd", 5)?
///     .counter_add("visits", 1);
/// assert_eq!(ops.len(), 3);
/// # Ok::<(), session_client::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ops {
    pub(crate) ops: Vec<pb::Operation>,
}

impl Ops {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Appends another batch's operations after these.
    pub fn extend(&mut self, other: Ops) {
        self.ops.extend(other.ops);
    }

    fn push(mut self, name: &str, kind: pb::operation::Kind) -> Self {
        self.ops.push(pb::Operation {
            name: name.to_owned(),
            kind: Some(kind),
        });
        self
    }

    /// Sets raw bytes; with `expected_version`, only if the attribute is at that version
    /// (0: only if absent), else the batch fails with [`Error::Conflict`].
    pub fn set_bytes(
        self,
        name: &str,
        content_type: &str,
        data: Bytes,
        expected_version: Option<u64>,
    ) -> Self {
        let value = pb::Value {
            content_type: content_type.to_owned(),
            kind: Some(pb::value::Kind::Bytes(data)),
        };
        self.push(
            name,
            pb::operation::Kind::Set(pb::SetOp {
                value: Some(value),
                expected_version,
            }),
        )
    }

    pub fn set_json<T: Serialize + ?Sized>(self, name: &str, value: &T) -> Result<Self, Error> {
        Ok(self.set_bytes(name, JSON, json(value)?, None))
    }

    /// Sets a JSON value only if the attribute is still at `expected_version` (0: absent).
    pub fn set_json_if<T: Serialize + ?Sized>(
        self,
        name: &str,
        value: &T,
        expected_version: u64,
    ) -> Result<Self, Error> {
        Ok(self.set_bytes(name, JSON, json(value)?, Some(expected_version)))
    }

    pub fn remove(self, name: &str) -> Self {
        self.push(
            name,
            pb::operation::Kind::Remove(pb::RemoveOp {
                expected_version: None,
            }),
        )
    }

    /// Appends to a list; with `max_len`, fails with [`Error::OutOfRange`] past that length.
    pub fn list_push_json<T: Serialize + ?Sized>(
        self,
        name: &str,
        item: &T,
        max_len: Option<u32>,
    ) -> Result<Self, Error> {
        let op = pb::ListPushOp {
            item: json(item)?,
            content_type: JSON.into(),
            max_len: max_len.unwrap_or(0),
        };
        Ok(self.push(name, pb::operation::Kind::ListPush(op)))
    }

    /// Removes the first equal item from a list, if any.
    pub fn list_remove_json<T: Serialize + ?Sized>(
        self,
        name: &str,
        item: &T,
    ) -> Result<Self, Error> {
        Ok(self.push(
            name,
            pb::operation::Kind::ListRemove(pb::ListRemoveOp { item: json(item)? }),
        ))
    }

    /// Puts an item first in a list, dropping equal items and keeping the newest `keep`.
    pub fn recent_push_json<T: Serialize + ?Sized>(
        self,
        name: &str,
        item: &T,
        keep: u32,
    ) -> Result<Self, Error> {
        let op = pb::RecentPushOp {
            item: json(item)?,
            content_type: JSON.into(),
            keep,
        };
        Ok(self.push(name, pb::operation::Kind::RecentPush(op)))
    }

    pub fn counter_add(self, name: &str, delta: i64) -> Self {
        self.counter_add_bounded(name, delta, None, None)
    }

    /// Adds to a counter within `[min, max]`, failing with [`Error::OutOfRange`] outside.
    pub fn counter_add_bounded(
        self,
        name: &str,
        delta: i64,
        min: Option<i64>,
        max: Option<i64>,
    ) -> Self {
        let op = pb::CounterAddOp {
            delta,
            min,
            max,
            remove_at_zero: false,
        };
        self.push(name, pb::operation::Kind::CounterAdd(op))
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteResult {
    pub info: SessionInfo,
    pub results: Vec<pb::OpResult>,
    /// The session after the write, when asked for.
    pub session: Option<Session>,
}

impl TryFrom<pb::WriteResponse> for WriteResult {
    type Error = Error;

    fn try_from(w: pb::WriteResponse) -> Result<Self, Error> {
        Ok(WriteResult {
            info: w.info.unwrap_or_default().into(),
            results: w.results,
            session: w.session.map(Session::try_from).transpose()?,
        })
    }
}
