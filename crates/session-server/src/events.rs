//! The event log behind `Watch`: every lifecycle and change event gets the next sequence number
//! and stays in a bounded ring, so a watcher that reconnects can resume where it left off, or
//! learn that it missed events and must drop what it cached.

use crate::id::SessionId;
use futures_util::Stream;
use parking_lot::Mutex;
use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Created,
    Changed,
    Expired,
    Evicted,
    Invalidated,
    IdRotated,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::Created,
        EventKind::Changed,
        EventKind::Expired,
        EventKind::Evicted,
        EventKind::Invalidated,
        EventKind::IdRotated,
    ];

    /// Whether the reply to the call that caused it says as much: true of the caller's own
    /// changes, false of expiry and eviction, which a call can set off for other sessions
    /// (eviction to make room) and which every watcher must hear.
    fn answered(self) -> bool {
        match self {
            EventKind::Created
            | EventKind::Changed
            | EventKind::Invalidated
            | EventKind::IdRotated => true,
            EventKind::Expired | EventKind::Evicted => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Changed => "changed",
            EventKind::Expired => "expired",
            EventKind::Evicted => "evicted",
            EventKind::Invalidated => "invalidated",
            EventKind::IdRotated => "id_rotated",
        }
    }
}

tokio::task_local! {
    /// The origin of the calls the current task is answering (`PipelineRequest.origin`):
    /// events published meanwhile carry it, so a watcher can leave out its own writes without
    /// every store passing it along.
    pub static ORIGIN: u64;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    /// Who caused it (see [`ORIGIN`]); 0 for the server itself (expiry, eviction) and for
    /// calls that named no origin.
    pub origin: u64,
    pub kind: EventKind,
    pub session_id: SessionId,
    pub version: u64,
    pub changed: Vec<String>,
    pub new_id: Option<SessionId>,
    pub at_ms: u64,
}

/// The first item of a watch, and the item sent again if a watcher fell out of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub server_epoch: u64,
    pub next_seq: u64,
    pub resumed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    Hello(Hello),
    Event(Arc<Event>),
}

#[derive(Debug)]
struct Ring {
    events: VecDeque<Arc<Event>>,
    /// Sequence number of the next event; the ring holds `next_seq - events.len()..next_seq`.
    next_seq: u64,
}

#[derive(Debug)]
pub struct EventLog {
    /// Random per process, so a watcher can tell a restarted server (whose sequence numbers
    /// start again) from the one it was following.
    epoch: u64,
    capacity: usize,
    ring: Mutex<Ring>,
    /// Carries `next_seq` to sleeping watchers; `None` once the server shuts down.
    wake: watch::Sender<Option<u64>>,
    counts: [AtomicU64; EventKind::ALL.len()],
}

impl EventLog {
    pub fn new(capacity: usize) -> Self {
        let epoch = loop {
            let e = rand::random::<u64>();
            if e != 0 {
                break e; // 0 means "no epoch" on the wire
            }
        };
        Self {
            epoch,
            capacity: capacity.max(1),
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                next_seq: 1,
            }),
            wake: watch::Sender::new(Some(1)),
            counts: Default::default(),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Appends an event. Stores call this while holding their own lock, so sequence order is
    /// the order in which changes took effect.
    pub fn publish(
        &self,
        kind: EventKind,
        session_id: &SessionId,
        version: u64,
        changed: Vec<String>,
        new_id: Option<SessionId>,
        at_ms: u64,
    ) {
        self.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
        let next = {
            let mut ring = self.ring.lock();
            let seq = ring.next_seq;
            ring.next_seq += 1;
            if ring.events.len() == self.capacity {
                ring.events.pop_front();
            }
            ring.events.push_back(Arc::new(Event {
                seq,
                origin: kind
                    .answered()
                    .then(|| ORIGIN.try_with(|o| *o).ok())
                    .flatten()
                    .unwrap_or(0),
                kind,
                session_id: *session_id,
                version,
                changed,
                new_id,
                at_ms,
            }));
            ring.next_seq
        };
        // Nobody watching, nobody to wake: a watcher that comes later subscribes before it
        // reads the ring, so the ring's lock orders it against this check.
        if self.wake.receiver_count() == 0 {
            return;
        }
        self.wake.send_if_modified(|v| {
            if v.is_some() {
                *v = Some(next);
            }
            v.is_some()
        });
    }

    /// How many events of a kind were ever published.
    pub fn count(&self, kind: EventKind) -> u64 {
        self.counts[kind as usize].load(Ordering::Relaxed)
    }

    /// Ends every watch stream: part of shutdown.
    pub fn close(&self) {
        self.wake.send_replace(None);
    }

    /// Events from `from` on, at most `max`; `Err(oldest)` when `from` has left the ring.
    fn read_from(&self, from: u64, max: usize) -> Result<Vec<Arc<Event>>, u64> {
        let ring = self.ring.lock();
        let oldest = ring.next_seq - ring.events.len() as u64;
        if from < oldest {
            return Err(oldest);
        }
        let skip = (from - oldest) as usize;
        Ok(ring.events.iter().skip(skip).take(max).cloned().collect())
    }

    /// A stream of watch items: a hello, then every event after the requested position, then
    /// live events until the log closes. `server_epoch == 0` starts from now. Events whose
    /// origin is `skip_origin` (when non-zero) are left out.
    pub fn watch(
        self: &Arc<Self>,
        server_epoch: u64,
        after_seq: u64,
        skip_origin: u64,
    ) -> impl Stream<Item = WatchItem> + Send + 'static {
        let (oldest, next) = {
            let ring = self.ring.lock();
            (ring.next_seq - ring.events.len() as u64, ring.next_seq)
        };
        let resumable = server_epoch == self.epoch && after_seq < next && after_seq + 1 >= oldest;
        let cursor = if resumable { after_seq + 1 } else { next };
        let hello = Hello {
            server_epoch: self.epoch,
            next_seq: cursor,
            resumed: resumable,
        };
        let state = WatchState {
            log: Arc::clone(self),
            wake: self.wake.subscribe(),
            cursor,
            skip_origin,
            pending: VecDeque::from([WatchItem::Hello(hello)]),
        };
        futures_util::stream::unfold(state, WatchState::next)
    }
}

struct WatchState {
    log: Arc<EventLog>,
    wake: watch::Receiver<Option<u64>>,
    cursor: u64,
    skip_origin: u64,
    pending: VecDeque<WatchItem>,
}

impl WatchState {
    /// Events handed over per lock of the ring, so a far-behind watcher never holds it long.
    const BATCH: usize = 256;

    async fn next(mut self) -> Option<(WatchItem, Self)> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some((item, self));
            }
            // Mark the current value seen before reading, so no publish can slip between.
            if self.wake.borrow_and_update().is_none() {
                return None;
            }
            match self.log.read_from(self.cursor, Self::BATCH) {
                Ok(events) if events.is_empty() => {
                    if self.wake.changed().await.is_err() {
                        return None;
                    }
                }
                Ok(events) => {
                    self.cursor = events[events.len() - 1].seq + 1;
                    let skip = self.skip_origin;
                    self.pending.extend(
                        events
                            .into_iter()
                            .filter(|e| skip == 0 || e.origin != skip)
                            .map(WatchItem::Event),
                    );
                }
                Err(oldest) => {
                    // Fell behind the ring: say so, and carry on from what is still there.
                    self.cursor = oldest;
                    self.pending.push_back(WatchItem::Hello(Hello {
                        server_epoch: self.log.epoch,
                        next_seq: oldest,
                        resumed: false,
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// Publishes what a call of origin 7 sets off: its own change, and the eviction of another
    /// session to make room.
    async fn call_of_origin_7(log: &EventLog) {
        ORIGIN
            .scope(7, async {
                log.publish(
                    EventKind::Changed,
                    &SessionId::generate(),
                    2,
                    vec!["a".into()],
                    None,
                    0,
                );
                log.publish(
                    EventKind::Evicted,
                    &SessionId::generate(),
                    5,
                    Vec::new(),
                    None,
                    0,
                );
            })
            .await;
        log.publish(
            EventKind::Changed,
            &SessionId::generate(),
            1,
            Vec::new(),
            None,
            0,
        );
    }

    async fn seen(log: &Arc<EventLog>, skip_origin: u64) -> Vec<(EventKind, u64, u64)> {
        let watch = log.watch(0, 0, skip_origin);
        futures_util::pin_mut!(watch);
        assert!(matches!(watch.next().await, Some(WatchItem::Hello(_))));
        call_of_origin_7(log).await;
        let mut events = Vec::new();
        while let Ok(Some(WatchItem::Event(e))) =
            tokio::time::timeout(std::time::Duration::from_millis(100), watch.next()).await
        {
            events.push((e.kind, e.seq, e.origin));
        }
        events
    }

    #[tokio::test]
    async fn a_watch_leaves_out_the_changes_of_the_origin_it_names_and_nothing_else() {
        let log = Arc::new(EventLog::new(100));
        assert_eq!(
            seen(&log, 7).await,
            vec![(EventKind::Evicted, 2, 0), (EventKind::Changed, 3, 0)],
            "an eviction set off by the call is everybody's news"
        );
        let log = Arc::new(EventLog::new(100));
        assert_eq!(
            seen(&log, 0).await,
            vec![
                (EventKind::Changed, 1, 7),
                (EventKind::Evicted, 2, 0),
                (EventKind::Changed, 3, 0)
            ]
        );
        let log = Arc::new(EventLog::new(100));
        assert_eq!(seen(&log, 8).await.len(), 3, "another origin's watch");
    }
}
