//! Reading attributes as types: JSON values (the client's default encoding), lists and
//! counters, each failing with [`Error::Decode`] when the attribute holds something else.

use crate::{
    error::Error,
    value::{Attribute, Session, Value},
};
use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

/// The content type of JSON values, the client's default encoding.
pub const JSON: &str = "application/json";

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

impl Session {
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
