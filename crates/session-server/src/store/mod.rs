//! The storage contract: sessions of named attributes, changed by atomic batches of
//! operations, with versions, expiry and bounded memory. Every session belongs to an app
//! (`crate::apps`): a call names its caller's app, and a session of another app is
//! `NOT_FOUND` to it.
//!
//! [`SessionStore`] is what the gRPC layer talks to. [`memory::MemoryStore`] is the embedded
//! default; a durable or Redis-backed store implements the same trait without changing the
//! protocol. The types here are the domain model: `crate::convert` is the only place that
//! turns protobuf messages into them and back.

pub mod batch;
#[cfg(test)]
mod conformance;
pub mod durable;
pub mod memory;
mod table;

use crate::{apps::AppId, id::SessionId};
use bytes::Bytes;
use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

/// An attribute's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Bytes {
        content_type: Arc<str>,
        data: Bytes,
    },
    List {
        content_type: Arc<str>,
        items: Vec<Bytes>,
    },
    Counter(i64),
}

impl Value {
    /// Bytes this value counts against the limits: its payload plus a little per list item,
    /// which is what holding it really costs.
    pub fn size(&self) -> u64 {
        match self {
            Value::Bytes { content_type, data } => (content_type.len() + data.len()) as u64,
            Value::List {
                content_type,
                items,
            } => {
                let payload: usize = items.iter().map(|i| i.len() + LIST_ITEM_OVERHEAD).sum();
                (content_type.len() + payload) as u64
            }
            Value::Counter(_) => 8,
        }
    }

    /// The content type of bytes and lists; counters have none.
    pub fn content_type(&self) -> Option<&Arc<str>> {
        match self {
            Value::Bytes { content_type, .. } | Value::List { content_type, .. } => {
                Some(content_type)
            }
            Value::Counter(_) => None,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Bytes { .. } => "bytes",
            Value::List { .. } => "list",
            Value::Counter(_) => "counter",
        }
    }
}

/// Per-item cost of a list beyond its bytes (the `Bytes` handle).
const LIST_ITEM_OVERHEAD: usize = 16;
/// Per-attribute cost beyond name and value (map node, version).
pub const ATTRIBUTE_OVERHEAD: u64 = 48;
/// Per-session cost beyond attributes (map entry, expiry index, timestamps).
pub const SESSION_OVERHEAD: u64 = 160;

/// A stored attribute with the session version at which it was last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub value: Value,
    pub version: u64,
}

impl Attribute {
    fn size(&self, name: &str) -> u64 {
        name.len() as u64 + self.value.size() + ATTRIBUTE_OVERHEAD
    }
}

/// One change to one attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub name: String,
    pub kind: OpKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// Replace the value; with `expected_version`, only if the attribute is at that version
    /// (0: only if absent).
    Set {
        value: Value,
        expected_version: Option<u64>,
    },
    Remove {
        expected_version: Option<u64>,
    },
    /// Append to a list; `max_len` bounds the resulting length.
    ListPush {
        item: Bytes,
        content_type: String,
        max_len: Option<u32>,
    },
    /// Remove the first equal item, if any.
    ListRemove {
        item: Bytes,
    },
    /// Move to front, drop duplicates, keep the newest `keep`.
    RecentPush {
        item: Bytes,
        content_type: String,
        keep: u32,
    },
    CounterAdd {
        delta: i64,
        min: Option<i64>,
        max: Option<i64>,
        remove_at_zero: bool,
    },
}

/// What one operation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpResult {
    pub attribute_version: u64,
    pub counter: i64,
    pub list_len: u32,
    pub removed: bool,
}

/// A session's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: SessionId,
    /// What events name the session by: random, never 0, and new with every new id.
    pub reference: u64,
    pub version: u64,
    pub created_at_ms: u64,
    pub last_access_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_lifetime_ms: u64,
    pub size_bytes: u64,
}

/// A session as read: metadata and the requested attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSnapshot {
    pub info: SessionInfo,
    pub attributes: BTreeMap<String, Attribute>,
}

/// The outcome of a write batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    pub info: SessionInfo,
    pub results: Vec<OpResult>,
    /// Present when the caller asked for the session after the write.
    pub session: Option<SessionSnapshot>,
}

/// Options for a new session; `None` takes the server's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    pub idle_timeout: Option<Duration>,
    pub max_lifetime: Option<Duration>,
    pub return_session: bool,
}

/// What a read asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetQuery {
    /// Empty: every attribute.
    pub names: Vec<String>,
    /// When equal to the session's version, the answer is [`GetOutcome::NotModified`].
    pub known_version: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetOutcome {
    Found(SessionSnapshot),
    NotModified(SessionInfo),
}

// The defaults of `Limits`, which the server's flags show too.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);
pub const DEFAULT_CAPACITY_BYTES: u64 = 512 * 1024 * 1024;
pub const DEFAULT_MAX_SESSION_BYTES: u64 = 1024 * 1024;
pub const DEFAULT_MAX_ATTRIBUTE_BYTES: u64 = 256 * 1024;
pub const DEFAULT_IDLE_TIMEOUT_CAP: Duration = Duration::from_secs(24 * 60 * 60);
pub const DEFAULT_MAX_LIFETIME_CAP: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Limits that bound the store's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes all sessions may hold together; past it, least recently used sessions are evicted.
    pub capacity_bytes: u64,
    /// Bytes one session may hold; a write past it fails.
    pub max_session_bytes: u64,
    /// Bytes one attribute (name and value) may hold; a write past it fails.
    pub max_attribute_bytes: u64,
    pub default_idle_timeout: Duration,
    pub default_max_lifetime: Duration,
    /// The longest timeouts a client may ask for; longer ones are cut to these.
    pub idle_timeout_cap: Duration,
    pub max_lifetime_cap: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            capacity_bytes: DEFAULT_CAPACITY_BYTES,
            max_session_bytes: DEFAULT_MAX_SESSION_BYTES,
            max_attribute_bytes: DEFAULT_MAX_ATTRIBUTE_BYTES,
            default_idle_timeout: DEFAULT_IDLE_TIMEOUT,
            default_max_lifetime: DEFAULT_MAX_LIFETIME,
            idle_timeout_cap: DEFAULT_IDLE_TIMEOUT_CAP,
            max_lifetime_cap: DEFAULT_MAX_LIFETIME_CAP,
        }
    }
}

/// Which limit a write ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Session,
    Attribute,
    /// List items one batch may look at (see [`MAX_BATCH_WORK`]).
    BatchWork,
    /// Sessions one store holds, whatever their size (`limit` and `wanted` count sessions).
    Sessions,
}

/// List items one batch may look at or copy while the store holds its lock: a batch of
/// list operations on long lists would otherwise hold every other session's calls up. This
/// many take about 3 ms; the cart's largest batch looks at a few hundred.
pub const MAX_BATCH_WORK: u64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Unknown, expired or invalidated.
    #[error("session not found")]
    NotFound,
    /// The store's storage cannot take the write now (a full disk, say), or could not keep it:
    /// the message says which, and whether the write may have been applied.
    #[error("{0}")]
    Storage(String),
    #[error("operation {index} on {name:?}: attribute version does not match")]
    Conflict {
        index: usize,
        name: String,
        current: Option<Attribute>,
    },
    #[error("operation {index} on {name:?}: attribute holds a {found}, not a {wanted}")]
    WrongType {
        index: usize,
        name: String,
        found: &'static str,
        wanted: &'static str,
    },
    #[error("operation {index} on {name:?}: {detail}")]
    OutOfRange {
        index: usize,
        name: String,
        detail: String,
    },
    #[error("{which:?} limit exceeded: {wanted} bytes wanted, limit {limit} bytes{}", attr.as_ref().map(|a| format!(" (attribute {a:?})")).unwrap_or_default())]
    LimitExceeded {
        which: LimitKind,
        limit: u64,
        wanted: u64,
        attr: Option<String>,
    },
}

/// What a store may promise beyond the core of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// At capacity (and at an app's quota) exactly the least recently used sessions are
    /// evicted (the app holding the most first, past the store's capacity), each with an
    /// `EVICTED` event. A store bounded by its engine's own eviction (Redis's `maxmemory`)
    /// cannot promise it.
    ExactEviction,
}

/// A fresh session reference (see [`SessionInfo::reference`]).
pub fn new_reference() -> u64 {
    rand::random_range(1..=u64::MAX)
}

/// Counts of what the store holds, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub sessions: u64,
    pub bytes: u64,
}

/// A rotation's outcome: the session under its new id, and the reference it had before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub info: SessionInfo,
    pub previous_reference: u64,
}

/// The semantics every store keeps: atomic batches, versions, server-made ids, sessions that
/// belong to an app, expiry checked on every access, and bounded memory (the store's and each
/// app's quota). Methods return futures so that stores doing I/O fit.
pub trait SessionStore: Send + Sync + 'static {
    /// Creates a session of `app`.
    fn create(
        &self,
        app: AppId,
        options: CreateOptions,
        ops: Vec<Operation>,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send;

    /// Reads session `id` of `app`; a session of another app is `NotFound`, as is any other
    /// call's on it.
    fn get(
        &self,
        app: AppId,
        id: &SessionId,
        query: GetQuery,
    ) -> impl Future<Output = Result<GetOutcome, StoreError>> + Send;

    fn apply(
        &self,
        app: AppId,
        id: &SessionId,
        ops: Vec<Operation>,
        return_session: bool,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send;

    /// Ends the session; returns the reference it had.
    fn invalidate(
        &self,
        app: AppId,
        id: &SessionId,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    fn rotate_id(
        &self,
        app: AppId,
        id: &SessionId,
    ) -> impl Future<Output = Result<Rotated, StoreError>> + Send;

    /// Removes expired sessions; returns how many. Work is proportional to what expired.
    fn sweep(&self) -> impl Future<Output = usize> + Send;

    fn usage(&self) -> Usage;

    /// What each app holds, by [`AppId::index`] (apps that never held a session may be
    /// missing at the end).
    fn usage_by_app(&self) -> Vec<Usage>;

    /// Whether sessions outlive a restart of the server. Watchers are told (`WatchHello`), so
    /// that apps can tell their users what an outage costs.
    fn durable(&self) -> bool;

    /// Names this store: servers that give the same name share sessions (the handshake's
    /// `store_id`). A store that lives in one process names itself anew in each.
    fn store_id(&self) -> &str;

    /// What the store promises beyond the core of the contract (every store keeps the core:
    /// `store::conformance` checks it, and each declared capability).
    fn capabilities(&self) -> &'static [Capability] {
        &[]
    }

    /// Loads what the store kept from an earlier process. Blocking: called once, on a
    /// blocking thread, before the server answers calls. A line for the log, if any.
    fn recover(&self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// Waits until the writes of `ticket` are as durable as the store promises: the one wait
    /// of a pipeline message answered within `memory::journal::deferring` (0: nothing to wait
    /// for). An error says they may not be (they may have been applied anyway).
    fn settle(&self, ticket: u64) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = ticket;
        std::future::ready(Ok(()))
    }

    /// Makes everything acknowledged durable: the last step of a graceful shutdown.
    fn flush(&self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// Copies what the store keeps, as of one instant, into the new directory `to`, which a
    /// server can open as its data directory. Blocking: call it on a blocking thread.
    fn backup(&self, to: &std::path::Path) -> Result<Backup, BackupError> {
        let _ = to;
        Err(BackupError::Unsupported)
    }
}

/// What a backup copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backup {
    pub sessions: u64,
    /// Bytes of session records.
    pub bytes: u64,
}

/// Why a backup was not made; nothing is left at its destination then.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "this store keeps nothing beyond the process (--store memory): there is nothing to back up"
    )]
    Unsupported,
    /// The destination cannot be one: it exists, or its parent does not.
    #[error("{0}")]
    Destination(String),
    /// A backup runs already.
    #[error("a backup is running already: wait for it to end")]
    Busy,
    /// The store cannot be read or the copy cannot be written.
    #[error("{0}")]
    Failed(String),
}
