//! A watch subscription that survives server restarts: it reconnects with capped backoff,
//! resumes from the last sequence number it saw, and says [`Update::Reset`] whenever events
//! may have been missed, so that anything cached from earlier events gets dropped.

use crate::{cache::NearCache, client::SessionClient};
use futures_util::StreamExt;
use session_proto::v1::{self as pb, watch_response::Kind};
use std::{sync::Weak, time::Duration};
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
    Event(pb::Event),
    /// (Re)connected: events may have been missed (first connection, reconnect, server
    /// restart, fell behind), so caches built from earlier events must be dropped.
    Reset,
    /// The server cannot be reached; reconnecting.
    Disconnected,
}

/// Starts following every session's events. The task ends when every receiver is dropped.
pub fn subscribe(client: SessionClient) -> broadcast::Receiver<Update> {
    let (tx, rx) = broadcast::channel(CHANNEL_CAPACITY);
    tokio::spawn(follow(client, tx, 0, Weak::new()));
    rx
}

/// The near cache's subscription: every update goes to `cache` first, from the task that
/// reads the stream (no hand-off between tasks), then to whoever subscribes to the returned
/// sender. Events caused by calls of `skip_origin` are left out. The task ends when the cache
/// is gone and nobody subscribes.
pub(crate) fn subscribe_for_cache(
    client: SessionClient,
    skip_origin: u64,
    cache: Weak<NearCache>,
) -> broadcast::Sender<Update> {
    let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
    tokio::spawn(follow(client, tx.clone(), skip_origin, cache));
    tx
}

async fn follow(
    client: SessionClient,
    tx: broadcast::Sender<Update>,
    skip_origin: u64,
    cache: Weak<NearCache>,
) {
    let wanted = || tx.receiver_count() > 0 || cache.strong_count() > 0;
    let (mut epoch, mut after) = (0u64, 0u64);
    let mut backoff = BACKOFF_FIRST;
    let mut connected = false;
    let publish = |update: Update| {
        if let Some(cache) = cache.upgrade() {
            cache.on_update(&update);
        }
        let _ = tx.send(update); // nobody subscribed is fine
    };
    while wanted() {
        // A failed connection is the server's absence: wait and try again.
        if let Ok(mut stream) = client.watch_skipping(epoch, after, skip_origin).await {
            {
                while let Some(item) = stream.next().await {
                    let Ok(pb::WatchResponse { kind: Some(kind) }) = item else {
                        break;
                    };
                    let update = match kind {
                        Kind::Hello(hello) => {
                            backoff = BACKOFF_FIRST;
                            connected = true;
                            epoch = hello.server_epoch;
                            client.heard_durable(hello.durable);
                            after = hello.next_seq.saturating_sub(1);
                            // Even a resumed stream says Reset: whoever listens dropped its
                            // caches on Disconnected and may trust them again from here.
                            Update::Reset
                        }
                        Kind::Event(event) => {
                            after = event.seq;
                            Update::Event(event)
                        }
                    };
                    publish(update);
                    if !wanted() {
                        return;
                    }
                }
            }
        }
        if connected {
            connected = false;
            publish(Update::Disconnected);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_CAP);
    }
}
