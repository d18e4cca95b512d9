//! Live updates: the session server's watch stream, fanned out to the browsers of this
//! instance as server-sent events, each browser hearing only about its own session.

use bytes::Bytes;
use futures_util::Stream;
use session_client::{AnyClient, EventKind, SessionRef, watch::Update};
use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::sync::broadcast::{self, error::RecvError};

/// A comment line this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub struct Live {
    /// Never read; kept so new browsers can `resubscribe` to the one watch stream.
    template: Mutex<broadcast::Receiver<Update>>,
    /// Streams open now, and the most allowed: each holds a connection and a receiver.
    open: Arc<AtomicUsize>,
    max: usize,
}

/// Counts one stream as open for as long as it lives.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Live {
    pub fn start(client: &AnyClient, max_streams: usize) -> Self {
        Self {
            template: Mutex::new(client.subscribe()),
            open: Arc::new(AtomicUsize::new(0)),
            max: max_streams,
        }
    }

    /// Server-sent events for one session, by its reference (events never carry ids):
    /// `event: session` whenever it changes elsewhere (or when changes may have been missed),
    /// so the page refreshes its parts. `None` when the most streams allowed are open.
    pub fn events(
        &self,
        session: SessionRef,
    ) -> Option<impl Stream<Item = Result<Bytes, Infallible>> + 'static> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let slot = Slot(Arc::clone(&self.open));
        let rx = self
            .template
            .lock()
            .map(|t| t.resubscribe())
            .unwrap_or_else(|p| p.into_inner().resubscribe());
        let hello = Bytes::from_static(b"retry: 1000\n: connected\n\n");
        Some(futures_util::stream::unfold(
            (rx, session, Some(hello), slot),
            |(mut rx, id, first, slot)| async move {
                if let Some(first) = first {
                    return Some((Ok(first), (rx, id, None, slot)));
                }
                loop {
                    let chunk = match tokio::time::timeout(KEEP_ALIVE, rx.recv()).await {
                        Err(_) => Bytes::from_static(b": keep-alive\n\n"),
                        Ok(Err(RecvError::Closed)) => return None,
                        Ok(Err(RecvError::Lagged(_))) | Ok(Ok(Update::Reset)) => {
                            Bytes::from_static(b"event: session\ndata: reset\n\n")
                        }
                        Ok(Ok(Update::Disconnected)) => continue,
                        Ok(Ok(Update::Event(e))) if e.reference == id => {
                            let kind = match e.kind {
                                EventKind::Changed => "changed",
                                EventKind::IdRotated => "rotated",
                                EventKind::Expired
                                | EventKind::Evicted
                                | EventKind::Invalidated => "ended",
                                // Only a write of this very session's can create it.
                                EventKind::Created => continue,
                            };
                            Bytes::from(format!("event: session\ndata: {kind} {}\n\n", e.version))
                        }
                        Ok(Ok(Update::Event(_))) => continue,
                    };
                    return Some((Ok(chunk), (rx, id, None, slot)));
                }
            },
        ))
    }
}
