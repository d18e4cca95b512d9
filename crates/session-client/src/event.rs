//! What the watch stream tells: every session's lifecycle and changes, in sequence order.

use crate::id::SessionId;
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
    /// Got a new id ([`Event::new_id`]); the old one names nothing any more.
    IdRotated,
}

impl EventKind {
    /// Whether the session's id names nothing after this event.
    pub fn ends_id(self) -> bool {
        !matches!(self, EventKind::Created | EventKind::Changed)
    }
}

/// One event of the watch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its place in the server's log; 0 for a near-cache client's own writes, which the client
    /// announces itself (see [`crate::cache`]).
    pub seq: u64,
    pub kind: EventKind,
    pub session_id: SessionId,
    /// The session's version after the event.
    pub version: u64,
    /// `Changed`: the names of the attributes the batch touched.
    pub changed: Vec<String>,
    /// `IdRotated`: the session's new id.
    pub new_id: Option<SessionId>,
    pub at: SystemTime,
}

/// The first message of every watch stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchHello {
    /// Random per server process: a different epoch means the server restarted.
    pub server_epoch: u64,
    /// The sequence number the next event will carry.
    pub next_seq: u64,
    /// False when the requested position could not be resumed: events were missed.
    pub resumed: bool,
    /// Whether the server's store keeps sessions across a restart of the server.
    pub durable: bool,
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
    },
}
