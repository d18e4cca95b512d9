//! A watch subscription that survives server restarts: it reconnects with capped backoff,
//! resumes from the last sequence number it saw, and says [`Update::Reset`] whenever events
//! may have been missed, so that anything cached from earlier events gets dropped.

use crate::client::SessionClient;
use futures_util::StreamExt;
use session_proto::v1::{self as pb, watch_response::Kind};
use std::time::Duration;
use tokio::sync::broadcast;

/// Retry delays after a failed connection: doubling from the first to the cap.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(50);
pub const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Updates buffered per receiver before a slow receiver starts lagging.
const CHANNEL_CAPACITY: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub enum Update {
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
    tokio::spawn(follow(client, tx));
    rx
}

async fn follow(client: SessionClient, tx: broadcast::Sender<Update>) {
    let (mut epoch, mut after) = (0u64, 0u64);
    let mut backoff = BACKOFF_FIRST;
    let mut connected = false;
    while tx.receiver_count() > 0 {
        // A failed connection is the server's absence: wait and try again.
        if let Ok(mut stream) = client.watch_raw(epoch, after).await {
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
                    if tx.send(update).is_err() {
                        return;
                    }
                }
            }
        }
        if connected {
            connected = false;
            let _ = tx.send(Update::Disconnected);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_CAP);
    }
}
