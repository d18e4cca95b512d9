//! What the watch stream tells: the lifecycle and changes of every session of the client's
//! app, in sequence order, each named by its reference (never its id).

use crate::id::SessionRef;
use bytes::Bytes;
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Created,
    Changed,
    /// Reached its idle timeout or its maximum lifetime.
    Expired,
    /// Dropped to make room (`--capacity`).
    Evicted,
    Invalidated,
    /// Got a new id, and a new reference ([`Event::new_reference`]); the old id names nothing
    /// any more.
    IdRotated,
}

impl EventKind {
    /// Whether the session's id names nothing after this event.
    pub fn ends_id(self) -> bool {
        !matches!(self, EventKind::Created | EventKind::Changed)
    }
}

/// Where a watch stream is: resuming from it gives every event after it. Opaque: only the
/// server that gave it knows what it holds. Empty starts from now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor(pub(crate) Bytes);

/// One event of the watch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its place in the server's log; 0 for a near-cache client's own writes, which the client
    /// announces itself (see [`crate::cache`]).
    pub seq: u64,
    pub kind: EventKind,
    /// The session's reference (for `IdRotated`, the one it had before).
    pub reference: SessionRef,
    /// The session's version after the event.
    pub version: u64,
    /// `Changed`: the names of the attributes the batch touched.
    pub changed: Vec<String>,
    /// `IdRotated`: the session's new reference.
    pub new_reference: Option<SessionRef>,
    pub at: SystemTime,
    /// Resuming from here gives every event after this one (empty for a client's own
    /// announcements).
    pub cursor: Cursor,
}

/// The first message of every watch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchHello {
    /// Random per server process: a different epoch means the server restarted.
    pub server_epoch: u64,
    /// The sequence number the next event will carry.
    pub next_seq: u64,
    /// False when the requested position could not be resumed: events were missed.
    pub resumed: bool,
    /// Whether the server's store keeps sessions across a restart of the server.
    pub durable: bool,
    /// Resuming from here gives every event after this hello.
    pub cursor: Cursor,
}

/// An item of the raw watch stream ([`crate::SessionClient::watch_raw`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    Hello(WatchHello),
    Event(Event),
    /// An event of a kind this client does not know (from a newer server): something happened
    /// to some session at `seq`, so whatever was cached may be stale.
    Unknown {
        seq: u64,
        cursor: Cursor,
    },
}
