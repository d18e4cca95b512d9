//! A watch subscription that survives server restarts: it reconnects with capped backoff,
//! resumes from the last sequence number it saw, and says [`Update::Reset`] whenever events
//! may have been missed, so that anything cached from earlier events gets dropped.

use crate::{
    client::SessionClient,
    event::{Cursor, Event, WatchItem},
};
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::broadcast;

/// Retry delays after a failed connection: doubling from the first to the cap.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(50);
pub const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Updates buffered per receiver before a slow receiver starts lagging.
const CHANNEL_CAPACITY: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// A change. Events of a near-cache client's own writes come from the client itself, with
    /// `seq` 0.
    Event(Event),
    /// (Re)connected: events may have been missed (first connection, reconnect, server
    /// restart, fell behind, an event this client cannot read), so caches built from earlier
    /// events must be dropped.
    Reset,
    /// The server cannot be reached; reconnecting.
    Disconnected,
}

impl SessionClient {
    /// The events of the app's sessions, on a stream of its own (a near cache's client shares the
    /// cache's, see [`crate::CachedClient::subscribe`]). The stream ends when every receiver
    /// is dropped.
    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        subscribe(self.clone())
    }
}

/// Starts following the events of every session of the client's app. The task ends when
/// every receiver is dropped.
pub fn subscribe(client: SessionClient) -> broadcast::Receiver<Update> {
    let (tx, rx) = broadcast::channel(CHANNEL_CAPACITY);
    tokio::spawn(follow(client, tx, 0, |_| false));
    rx
}

/// A subscription whose every update goes to `first`, from the task that reads the stream
/// (no hand-off between tasks), then to whoever subscribes to the returned sender. Events
/// caused by calls of `skip_origin` are left out. `first` says whether it still wants updates;
/// the task ends when it does not and nobody subscribes.
pub(crate) fn subscribe_with(
    client: SessionClient,
    skip_origin: u64,
    first: impl Fn(Option<&Update>) -> bool + Send + Sync + 'static,
) -> broadcast::Sender<Update> {
    let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
    tokio::spawn(follow(client, tx.clone(), skip_origin, first));
    tx
}

/// `first(None)` asks whether it is still wanted; `first(Some(update))` hands it an update.
async fn follow(
    client: SessionClient,
    tx: broadcast::Sender<Update>,
    skip_origin: u64,
    first: impl Fn(Option<&Update>) -> bool,
) {
    let wanted = || tx.receiver_count() > 0 || first(None);
    let mut cursor = Cursor::default();
    let mut backoff = BACKOFF_FIRST;
    let mut connected = false;
    // Whether this episode of failures was logged: one line per outage, not per retry.
    let mut said = false;
    let publish = |update: Update| {
        first(Some(&update));
        let _ = tx.send(update); // nobody subscribed is fine
    };
    while wanted() {
        // A failed connection is the server's absence (or a refusal): wait and try again.
        let ended = match client.watch_skipping(&cursor, skip_origin).await {
            Ok(mut stream) => loop {
                let item = match stream.next().await {
                    Some(Ok(item)) => item,
                    Some(Err(e)) => break Some(e),
                    None => break None,
                };
                let update = match item {
                    WatchItem::Hello(hello) => {
                        backoff = BACKOFF_FIRST;
                        connected = true;
                        if said {
                            tracing::info!("session server watch stream connected again");
                            said = false;
                        }
                        client.heard_durable(hello.durable);
                        cursor = hello.cursor;
                        // Even a resumed stream says Reset: whoever listens dropped its
                        // caches on Disconnected and may trust them again from here.
                        Update::Reset
                    }
                    WatchItem::Event(event) => {
                        cursor = event.cursor.clone();
                        Update::Event(event)
                    }
                    // Something happened that this client cannot read: whatever is cached
                    // may be stale.
                    WatchItem::Unknown { cursor: after, .. } => {
                        cursor = after;
                        Update::Reset
                    }
                };
                publish(update);
                if !wanted() {
                    return;
                }
            },
            Err(e) => Some(e),
        };
        if !said && let Some(e) = &ended {
            tracing::warn!(error = %e, "session server watch stream failed; retrying (near caches are off meanwhile)");
            said = true;
        }
        if connected {
            connected = false;
            publish(Update::Disconnected);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_CAP);
    }
}
