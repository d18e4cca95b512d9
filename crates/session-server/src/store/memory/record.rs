//! A session's record: what a journal keeps of an entry, as protobuf, so that a later version
//! of the server reads an earlier one's records (fields are only ever added) and an earlier
//! one skips what it does not know.
//!
//! The last access is kept coarsely: rounded up to a grain (a sixteenth of the session's idle
//! timeout, at most [`ACCESS_GRAIN_MS`]), and written again only when a read crosses into a
//! later grain. After a restart a session may so live up to one grain longer than its idle
//! timeout, never shorter.

use super::entry::{Attrs, Entry, intern};
use crate::{
    apps::AppId,
    convert,
    store::{Attribute, SESSION_OVERHEAD, Value},
};
use prost::Message;
use session_proto::v1 as pb;
use std::{collections::HashSet, sync::Arc};

/// The coarsest the last access is kept: a read writes a record at most once a grain.
pub const ACCESS_GRAIN_MS: u64 = 60_000;

/// The grain of a session with idle timeout `idle_ms`: a sixteenth of it, so that a restart
/// lengthens a short timeout in proportion, and at most [`ACCESS_GRAIN_MS`].
pub fn grain(idle_ms: u64) -> u64 {
    (idle_ms / 16).clamp(1, ACCESS_GRAIN_MS)
}

/// The encoded form of an [`Entry`].
#[derive(Clone, PartialEq, prost::Message)]
struct Record {
    #[prost(string, tag = "1")]
    app: String,
    #[prost(fixed64, tag = "2")]
    reference: u64,
    #[prost(uint64, tag = "3")]
    version: u64,
    #[prost(uint64, tag = "4")]
    created_ms: u64,
    /// Rounded up to the grain.
    #[prost(uint64, tag = "5")]
    last_access_ms: u64,
    #[prost(uint64, tag = "6")]
    idle_ms: u64,
    #[prost(uint64, tag = "7")]
    lifetime_ms: u64,
    #[prost(message, repeated, tag = "8")]
    attributes: Vec<pb::Attribute>,
}

/// The end of the grain `ms` falls in, for a session of idle timeout `idle_ms`: what a record
/// says of an access at `ms`.
pub fn grain_end(ms: u64, idle_ms: u64) -> u64 {
    let grain = grain(idle_ms);
    (ms / grain + 1).saturating_mul(grain)
}

/// `entry` of app `app` as a record.
pub(super) fn encode(entry: &Entry, app: &str) -> Vec<u8> {
    Record {
        app: app.to_owned(),
        reference: entry.reference,
        version: entry.version,
        created_ms: entry.created_ms,
        last_access_ms: grain_end(entry.last_access_ms, entry.idle_ms),
        idle_ms: entry.idle_ms,
        lifetime_ms: entry.lifetime_ms,
        attributes: entry
            .attrs
            .0
            .iter()
            .map(|(name, a)| pb::Attribute {
                name: name.to_string(),
                value: Some(a.value.clone().into()),
                version: a.version,
            })
            .collect(),
    }
    .encode_to_vec()
}

/// Why a record cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRecord(pub String);

/// A record read back: the app's name and the entry (its names shared through `interned`).
/// `app_id` finds the app's number by its name.
pub(super) fn decode(
    bytes: &[u8],
    interned: &mut HashSet<Arc<str>>,
    app_id: impl FnOnce(&str) -> Result<AppId, BadRecord>,
) -> Result<Entry, BadRecord> {
    let record = Record::decode(bytes).map_err(|e| BadRecord(e.to_string()))?;
    let app = app_id(&record.app)?;
    let mut attrs: Vec<(Arc<str>, Attribute)> = Vec::with_capacity(record.attributes.len());
    for a in record.attributes {
        let mut value: Value = a
            .value
            .ok_or_else(|| BadRecord(format!("attribute {:?} has no value", a.name)))?
            .try_into()
            .map_err(|e: convert::InvalidInput| BadRecord(e.message))?;
        if let Value::Bytes { content_type, .. } | Value::List { content_type, .. } = &mut value {
            *content_type = intern(interned, content_type);
        }
        attrs.push((
            intern(interned, &a.name),
            Attribute {
                value,
                version: a.version,
            },
        ));
    }
    attrs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut entry = Entry::new(
        app,
        record.created_ms,
        record.idle_ms,
        record.lifetime_ms,
        0,
    );
    let size = attrs.iter().map(|(name, a)| a.size(name)).sum::<u64>()
        + SESSION_OVERHEAD
        + crate::id::ID_LEN as u64;
    entry.attrs = Attrs(attrs.into_boxed_slice());
    entry.version = record.version;
    entry.reference = record.reference;
    entry.last_access_ms = record.last_access_ms;
    entry.set_size(size);
    Ok(entry)
}
