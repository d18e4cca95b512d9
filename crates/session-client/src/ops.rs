//! [`Ops`]: the builder of write batches, and the operations it holds.

use crate::{
    decode::{JSON, json},
    error::Error,
};
use bytes::Bytes;
use serde::Serialize;

/// One change to one attribute (see docs/protocol.md for each kind's semantics).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Operation {
    pub(crate) name: String,
    pub(crate) kind: OpKind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OpKind {
    Set {
        content_type: String,
        data: Bytes,
        expected_version: Option<u64>,
    },
    Remove,
    ListPush {
        item: Bytes,
        max_len: Option<u32>,
    },
    ListRemove {
        item: Bytes,
    },
    RecentPush {
        item: Bytes,
        keep: u32,
    },
    CounterAdd {
        delta: i64,
        min: Option<i64>,
        max: Option<i64>,
    },
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
    pub(crate) ops: Vec<Operation>,
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

    /// The names of the attributes the batch touches, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.ops.iter().map(|o| o.name.as_str())
    }

    fn push(mut self, name: &str, kind: OpKind) -> Self {
        self.ops.push(Operation {
            name: name.to_owned(),
            kind,
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
        let kind = OpKind::Set {
            content_type: content_type.to_owned(),
            data,
            expected_version,
        };
        self.push(name, kind)
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
        self.push(name, OpKind::Remove)
    }

    /// Appends to a list; with `max_len`, fails with [`Error::OutOfRange`] past that length.
    pub fn list_push_json<T: Serialize + ?Sized>(
        self,
        name: &str,
        item: &T,
        max_len: Option<u32>,
    ) -> Result<Self, Error> {
        let kind = OpKind::ListPush {
            item: json(item)?,
            max_len,
        };
        Ok(self.push(name, kind))
    }

    /// Removes the first equal item from a list, if any.
    pub fn list_remove_json<T: Serialize + ?Sized>(
        self,
        name: &str,
        item: &T,
    ) -> Result<Self, Error> {
        Ok(self.push(name, OpKind::ListRemove { item: json(item)? }))
    }

    /// Puts an item first in a list, dropping equal items and keeping the newest `keep`.
    pub fn recent_push_json<T: Serialize + ?Sized>(
        self,
        name: &str,
        item: &T,
        keep: u32,
    ) -> Result<Self, Error> {
        let kind = OpKind::RecentPush {
            item: json(item)?,
            keep,
        };
        Ok(self.push(name, kind))
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
        self.push(name, OpKind::CounterAdd { delta, min, max })
    }
}
