//! The event log behind `Watch`: every lifecycle and change event gets the next sequence number
//! and stays in a bounded ring, so a watcher that reconnects can resume where it left off, or
//! learn that it missed events and must drop what it cached.
//!
//! Events name sessions by their reference, never by id (an id is the user's cookie), and a
//! watcher sees the events of its own app only. Where a watcher is is a [`Cursor`], which
//! clients hold as opaque bytes.

use crate::apps::AppId;
use bytes::{BufMut, Bytes, BytesMut};
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
    /// The session's app: only its watchers see the event.
    pub app: AppId,
    /// The session's reference (for `IdRotated`, the one it had before).
    pub reference: u64,
    pub version: u64,
    pub changed: Vec<String>,
    /// `IdRotated`: the session's new reference; 0 otherwise.
    pub new_reference: u64,
    pub at_ms: u64,
}

/// A position in the log: the event log's epoch and the sequence number of the next event.
/// Clients get it as 16 opaque bytes ([`Cursor::to_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub epoch: u64,
    pub next_seq: u64,
}

impl Cursor {
    const LEN: usize = 16;

    pub fn to_bytes(self) -> Bytes {
        let mut out = BytesMut::with_capacity(Self::LEN);
        out.put_u64(self.epoch);
        out.put_u64(self.next_seq);
        out.freeze()
    }

    /// `None` for bytes that are no cursor of this kind of store (a watcher may bring one
    /// from another store): such a watch starts from now, not resumed.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; Self::LEN] = bytes.try_into().ok()?;
        let (epoch, seq) = bytes.split_at(8);
        Some(Self {
            epoch: u64::from_be_bytes(epoch.try_into().ok()?),
            next_seq: u64::from_be_bytes(seq.try_into().ok()?),
        })
    }
}

/// The first item of a watch, and the item sent again if a watcher fell out of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub server_epoch: u64,
    pub next_seq: u64,
    pub resumed: bool,
}

impl Hello {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            epoch: self.server_epoch,
            next_seq: self.next_seq,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    Hello(Hello),
    Event(Arc<Event>),
}

impl Event {
    /// Bytes the event holds in memory: the struct, its `Arc`, and each changed name.
    pub fn size(&self) -> usize {
        EVENT_OVERHEAD
            + self
                .changed
                .iter()
                .map(|n| n.len() + NAME_OVERHEAD)
                .sum::<usize>()
    }
}

/// An event's fixed cost: the struct in its `Arc`, and its slot in the ring.
const EVENT_OVERHEAD: usize = std::mem::size_of::<Event>() + 24;
/// A changed name's cost beyond its text: the `String` and its allocation's rounding.
const NAME_OVERHEAD: usize = 32;

#[derive(Debug)]
struct Ring {
    events: VecDeque<Arc<Event>>,
    /// Sum of the held events' [`Event::size`].
    bytes: usize,
    /// Sequence number of the next event; the ring holds `next_seq - events.len()..next_seq`.
    next_seq: u64,
}

#[derive(Debug)]
pub struct EventLog {
    /// Random per process, so a watcher can tell a restarted server (whose sequence numbers
    /// start again) from the one it was following.
    epoch: u64,
    capacity: usize,
    /// Bytes the ring may hold (it always keeps the newest event, whatever its size).
    max_bytes: usize,
    ring: Mutex<Ring>,
    /// Carries `next_seq` to sleeping watchers; `None` once the server shuts down.
    wake: watch::Sender<Option<u64>>,
    counts: [AtomicU64; EventKind::ALL.len()],
}

impl EventLog {
    /// A log keeping at most `capacity` events of at most `max_bytes` together.
    pub fn new(capacity: usize, max_bytes: u64) -> Self {
        let epoch = loop {
            let e = rand::random::<u64>();
            if e != 0 {
                break e; // 0 means "no epoch" on the wire
            }
        };
        Self {
            epoch,
            capacity: capacity.max(1),
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                bytes: 0,
                next_seq: 1,
            }),
            wake: watch::Sender::new(Some(1)),
            counts: Default::default(),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The position after event `seq`.
    pub fn cursor_after(&self, seq: u64) -> Cursor {
        Cursor {
            epoch: self.epoch,
            next_seq: seq + 1,
        }
    }

    /// Appends an event of session `reference` of `app` (for `IdRotated`, `new_reference` is
    /// the session's new one; 0 otherwise). Stores call this while holding their own lock, so
    /// sequence order is the order in which changes took effect.
    #[allow(clippy::too_many_arguments)] // one event's fields, each a plain value
    pub fn publish(
        &self,
        kind: EventKind,
        app: AppId,
        reference: u64,
        version: u64,
        changed: Vec<String>,
        new_reference: u64,
        at_ms: u64,
    ) {
        self.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
        let next = {
            let mut ring = self.ring.lock();
            let seq = ring.next_seq;
            ring.next_seq += 1;
            let event = Event {
                seq,
                origin: kind
                    .answered()
                    .then(|| ORIGIN.try_with(|o| *o).ok())
                    .flatten()
                    .unwrap_or(0),
                kind,
                app,
                reference,
                version,
                changed,
                new_reference,
                at_ms,
            };
            let size = event.size();
            while !ring.events.is_empty()
                && (ring.events.len() >= self.capacity || ring.bytes + size > self.max_bytes)
            {
                if let Some(oldest) = ring.events.pop_front() {
                    ring.bytes -= oldest.size();
                }
            }
            ring.bytes += size;
            ring.events.push_back(Arc::new(event));
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

    /// Events from `from` on, at most `max` of them and about `max_bytes` (at least one);
    /// `Err(oldest)` when `from` has left the ring.
    fn read_from(&self, from: u64, max: usize, max_bytes: usize) -> Result<Vec<Arc<Event>>, u64> {
        let ring = self.ring.lock();
        let oldest = ring.next_seq - ring.events.len() as u64;
        if from < oldest {
            return Err(oldest);
        }
        let skip = (from - oldest) as usize;
        let mut bytes = 0;
        Ok(ring
            .events
            .iter()
            .skip(skip)
            .take(max)
            .take_while(|e| {
                let first = bytes == 0;
                bytes += e.size();
                first || bytes <= max_bytes
            })
            .cloned()
            .collect())
    }

    /// Bytes the ring holds now.
    pub fn bytes(&self) -> usize {
        self.ring.lock().bytes
    }

    /// A stream of watch items of `app`'s sessions: a hello, then every event from `from`
    /// on, then live events until the log closes. `None`, or a cursor of another epoch or no
    /// longer in the ring, starts from now (the hello says it did not resume). Events whose
    /// origin is `skip_origin` (when non-zero) are left out.
    pub fn watch(
        self: &Arc<Self>,
        app: AppId,
        from: Option<Cursor>,
        skip_origin: u64,
    ) -> impl Stream<Item = WatchItem> + Send + 'static {
        let (oldest, next) = {
            let ring = self.ring.lock();
            (ring.next_seq - ring.events.len() as u64, ring.next_seq)
        };
        let resumable =
            from.filter(|c| c.epoch == self.epoch && c.next_seq <= next && c.next_seq >= oldest);
        let resumed = resumable.is_some();
        let cursor = resumable.map_or(next, |c| c.next_seq);
        let hello = Hello {
            server_epoch: self.epoch,
            next_seq: cursor,
            resumed,
        };
        let state = WatchState {
            log: Arc::clone(self),
            wake: self.wake.subscribe(),
            cursor,
            app,
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
    app: AppId,
    skip_origin: u64,
    pending: VecDeque<WatchItem>,
}

impl WatchState {
    /// Events handed over per lock of the ring, so a far-behind watcher never holds it long.
    const BATCH: usize = 256;
    /// Bytes of events a watcher holds beyond the ring's: what it took but has not sent.
    const BATCH_BYTES: usize = 64 * 1024;

    async fn next(mut self) -> Option<(WatchItem, Self)> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some((item, self));
            }
            // Mark the current value seen before reading, so no publish can slip between.
            if self.wake.borrow_and_update().is_none() {
                return None;
            }
            match self
                .log
                .read_from(self.cursor, Self::BATCH, Self::BATCH_BYTES)
            {
                Ok(events) if events.is_empty() => {
                    if self.wake.changed().await.is_err() {
                        return None;
                    }
                }
                Ok(events) => {
                    self.cursor = events[events.len() - 1].seq + 1;
                    let (app, skip) = (self.app, self.skip_origin);
                    self.pending.extend(
                        events
                            .into_iter()
                            .filter(|e| e.app == app && (skip == 0 || e.origin != skip))
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

    const APP: AppId = AppId::for_tests(0);

    fn publish(log: &EventLog, kind: EventKind, app: AppId, version: u64, changed: Vec<String>) {
        log.publish(kind, app, rand::random(), version, changed, 0, 0);
    }

    /// Publishes what a call of origin 7 sets off: its own change, and the eviction of another
    /// session to make room.
    async fn call_of_origin_7(log: &EventLog) {
        ORIGIN
            .scope(7, async {
                publish(log, EventKind::Changed, APP, 2, vec!["a".into()]);
                publish(log, EventKind::Evicted, APP, 5, Vec::new());
            })
            .await;
        publish(log, EventKind::Changed, APP, 1, Vec::new());
    }

    async fn seen(log: &Arc<EventLog>, skip_origin: u64) -> Vec<(EventKind, u64, u64)> {
        let watch = log.watch(APP, None, skip_origin);
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

    fn changed(log: &EventLog, names: usize, len: usize) {
        let names = (0..names).map(|i| format!("{i:0len$}")).collect();
        publish(log, EventKind::Changed, APP, 2, names);
    }

    #[test]
    fn the_ring_holds_no_more_bytes_than_its_bound_and_always_the_newest_event() {
        let log = EventLog::new(1_000, 100_000);
        for _ in 0..1_000 {
            changed(&log, 10, 900); // about 9 KB each
        }
        assert!(log.bytes() <= 100_000, "{} bytes held", log.bytes());
        assert!(log.bytes() > 80_000, "the ring is used up to its bound");
        changed(&log, 500, 900); // larger than the whole bound
        assert_eq!(log.ring.lock().events.len(), 1);
        changed(&log, 1, 1);
        assert_eq!(log.ring.lock().events.len(), 1, "the large one made room");
    }

    #[tokio::test]
    async fn a_watcher_takes_a_bounded_number_of_bytes_at_a_time() {
        let log = Arc::new(EventLog::new(1_000, 100 << 20));
        for _ in 0..100 {
            changed(&log, 10, 900);
        }
        let taken = log.read_from(1, 256, 64 * 1024).expect("in the ring");
        let bytes: usize = taken.iter().map(|e| e.size()).sum();
        assert!(
            bytes <= 64 * 1024 && taken.len() >= 6,
            "{} events, {bytes} bytes",
            taken.len()
        );
        changed(&log, 500, 900);
        assert_eq!(
            log.read_from(101, 256, 1024).expect("in the ring").len(),
            1,
            "at least one"
        );
    }

    #[tokio::test]
    async fn a_watch_leaves_out_the_changes_of_the_origin_it_names_and_nothing_else() {
        let log = Arc::new(EventLog::new(100, 1 << 20));
        assert_eq!(
            seen(&log, 7).await,
            vec![(EventKind::Evicted, 2, 0), (EventKind::Changed, 3, 0)],
            "an eviction set off by the call is everybody's news"
        );
        let log = Arc::new(EventLog::new(100, 1 << 20));
        assert_eq!(
            seen(&log, 0).await,
            vec![
                (EventKind::Changed, 1, 7),
                (EventKind::Evicted, 2, 0),
                (EventKind::Changed, 3, 0)
            ]
        );
        let log = Arc::new(EventLog::new(100, 1 << 20));
        assert_eq!(seen(&log, 8).await.len(), 3, "another origin's watch");
    }

    #[tokio::test]
    async fn a_watcher_sees_its_own_apps_events_only_and_resumes_from_its_cursor() {
        let log = Arc::new(EventLog::new(100, 1 << 20));
        let other = AppId::for_tests(1);
        let watch = log.watch(APP, None, 0);
        futures_util::pin_mut!(watch);
        let Some(WatchItem::Hello(hello)) = watch.next().await else {
            panic!("a hello first");
        };
        publish(&log, EventKind::Changed, other, 1, Vec::new());
        publish(&log, EventKind::Changed, APP, 2, Vec::new());
        publish(&log, EventKind::Changed, APP, 3, Vec::new());
        let Some(WatchItem::Event(first)) = watch.next().await else {
            panic!("an event");
        };
        assert_eq!(
            (first.app, first.version),
            (APP, 2),
            "the other app's is left out"
        );

        let from = log.cursor_after(first.seq).to_bytes();
        let resumed = log.watch(APP, Cursor::from_bytes(&from), 0);
        futures_util::pin_mut!(resumed);
        let Some(WatchItem::Hello(again)) = resumed.next().await else {
            panic!("a hello first");
        };
        assert!(again.resumed && !hello.resumed);
        let Some(WatchItem::Event(next)) = resumed.next().await else {
            panic!("an event");
        };
        assert_eq!(next.version, 3, "exactly after the cursor");
        assert_eq!(Cursor::from_bytes(b"not a cursor"), None);
    }
}
