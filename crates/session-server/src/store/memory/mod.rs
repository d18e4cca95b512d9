//! The in-memory store: the embedded default.
//!
//! One mutex guards a `Table` of sessions in least-recently-used order with an expiry
//! index (see `table.rs` for why it is not a general-purpose map). Critical sections
//! are a hash lookup and a few small edits, far shorter than the gRPC work around them, so one
//! lock keeps eviction exactly LRU and the byte count exact without hurting throughput.
//!
//! Expiry is checked on every access, so an expired session is NOT_FOUND before any sweep.
//! The index is lazy: a read only stores the new last-access time; the sweep pops entries
//! whose indexed deadline has passed and either expires them or re-files them under their
//! real deadline. A session is re-filed at most once per idle timeout, so a sweep's work is
//! proportional to what expired (and what was due for re-filing), not to how many sessions exist.
//!
//! Attribute names and content types repeat across sessions, so the store keeps one shared
//! copy of each short one (`entry.rs`, with a session's entry and attributes).

mod entry;

use super::{
    CreateOptions, GetOutcome, GetQuery, LimitKind, Limits, Operation, SESSION_OVERHEAD,
    SessionInfo, SessionStore, StoreError, Usage, WriteOutcome, batch,
    table::{MAX_SLOTS, SlotNo, Table},
};
use crate::{
    clock::Clock,
    events::{EventKind, EventLog},
    id::SessionId,
};
use entry::{Attrs, Entry, commit};
use parking_lot::Mutex;
use std::{
    collections::HashSet,
    future::{Future, ready},
    sync::Arc,
};

#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    limits: Limits,
    clock: Arc<dyn Clock>,
    events: Arc<EventLog>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Sessions in LRU order, filed under an indexed deadline never later than the real one.
    sessions: Table<Entry>,
    /// Sum of every entry's `size`.
    bytes: u64,
    interned: HashSet<Arc<str>>,
}

impl MemoryStore {
    pub fn new(limits: Limits, clock: Arc<dyn Clock>, events: Arc<EventLog>) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            limits,
            clock,
            events,
        }
    }

    fn create_now(
        &self,
        options: CreateOptions,
        ops: Vec<Operation>,
    ) -> Result<WriteOutcome, StoreError> {
        let now = self.clock.now_ms();
        let id = SessionId::generate();
        let mut entry = Entry {
            attrs: Attrs::default(),
            version: 1,
            created_ms: now,
            last_access_ms: now,
            idle_ms: duration_ms(
                options
                    .idle_timeout
                    .unwrap_or(self.limits.default_idle_timeout)
                    .min(self.limits.idle_timeout_cap),
            ),
            lifetime_ms: duration_ms(
                options
                    .max_lifetime
                    .unwrap_or(self.limits.default_max_lifetime)
                    .min(self.limits.max_lifetime_cap),
            ),
            size: SESSION_OVERHEAD + crate::id::ID_LEN as u64,
        };
        let staged = batch::stage(
            |name| entry.attrs.get(name),
            entry.size,
            ops,
            1,
            &self.limits,
        )?;
        let mut inner = self.inner.lock();
        let changed = commit(&mut entry, staged.changes, staged.size, &mut inner.interned);
        let outcome = WriteOutcome {
            info: entry.info(&id),
            results: staged.results,
            session: options.return_session.then(|| entry.snapshot(&id, &[])),
        };
        inner.make_room(entry.size, None, &self.limits, &self.events, now);
        let (size, due) = (entry.size, entry.deadline());
        inner.sessions.insert(id, entry, due).map_err(|_| full())?;
        inner.bytes += size;
        self.events
            .publish(EventKind::Created, &id, 1, changed, None, now);
        Ok(outcome)
    }

    fn get_now(&self, id: &SessionId, query: GetQuery) -> Result<GetOutcome, StoreError> {
        let now = self.clock.now_ms();
        let mut inner = self.inner.lock();
        let slot = inner.used(id, now, &self.events)?;
        let entry = inner.sessions.get(slot).ok_or(StoreError::NotFound)?;
        if query.known_version == Some(entry.version) {
            return Ok(GetOutcome::NotModified(entry.info(id)));
        }
        Ok(GetOutcome::Found(entry.snapshot(id, &query.names)))
    }

    fn apply_now(
        &self,
        id: &SessionId,
        ops: Vec<Operation>,
        return_session: bool,
    ) -> Result<WriteOutcome, StoreError> {
        let now = self.clock.now_ms();
        let mut inner = self.inner.lock();
        let slot = inner.used(id, now, &self.events)?;
        let Inner {
            sessions, interned, ..
        } = &mut *inner;
        let entry = sessions.get_mut(slot).ok_or(StoreError::NotFound)?;
        let staged = batch::stage(
            |name| entry.attrs.get(name),
            entry.size,
            ops,
            entry.version + 1,
            &self.limits,
        )?;
        let old_size = entry.size;
        let changed = if staged.changes.is_empty() {
            Vec::new() // nothing changed (say, removing what was not there): no new version
        } else {
            entry.version += 1;
            commit(entry, staged.changes, staged.size, interned)
        };
        let outcome = WriteOutcome {
            info: entry.info(id),
            results: staged.results,
            session: return_session.then(|| entry.snapshot(id, &[])),
        };
        let new_size = staged.size;
        inner.bytes = inner.bytes - old_size + new_size;
        if new_size > old_size {
            inner.make_room(0, Some(slot), &self.limits, &self.events, now);
        }
        if !changed.is_empty() {
            self.events.publish(
                EventKind::Changed,
                id,
                outcome.info.version,
                changed,
                None,
                now,
            );
        }
        Ok(outcome)
    }

    fn invalidate_now(&self, id: &SessionId) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut inner = self.inner.lock();
        let slot = inner.live(id, now, &self.events)?;
        let version = inner.remove(slot).ok_or(StoreError::NotFound)?.version;
        self.events
            .publish(EventKind::Invalidated, id, version, Vec::new(), None, now);
        Ok(())
    }

    fn rotate_now(&self, id: &SessionId) -> Result<SessionInfo, StoreError> {
        let now = self.clock.now_ms();
        let mut inner = self.inner.lock();
        let slot = inner.live(id, now, &self.events)?;
        let mut entry = inner.remove(slot).ok_or(StoreError::NotFound)?;
        let new_id = SessionId::generate();
        entry.last_access_ms = now;
        let info = entry.info(&new_id);
        let (size, due) = (entry.size, entry.deadline());
        // The slot just freed takes it: this insert cannot find the table full.
        inner
            .sessions
            .insert(new_id, entry, due)
            .map_err(|_| full())?;
        inner.bytes += size;
        self.events.publish(
            EventKind::IdRotated,
            id,
            info.version,
            Vec::new(),
            Some(new_id),
            now,
        );
        Ok(info)
    }

    /// Returns `(expired, examined)`: examined counts index entries looked at, the measure of
    /// the sweep's work.
    fn sweep_now(&self) -> (usize, usize) {
        /// Entries handled per lock, so a large sweep never stalls requests for long.
        const CHUNK: usize = 1024;
        let (mut expired, mut examined) = (0, 0);
        loop {
            let now = self.clock.now_ms();
            let mut inner = self.inner.lock();
            for _ in 0..CHUNK {
                let Some(slot) = inner.sessions.pop_due(now) else {
                    return (expired, examined);
                };
                examined += 1;
                let Some(real) = inner.sessions.get(slot).map(Entry::deadline) else {
                    continue;
                };
                if real <= now {
                    let id = *inner.sessions.id(slot);
                    if let Some(entry) = inner.remove(slot) {
                        self.events.publish(
                            EventKind::Expired,
                            &id,
                            entry.version,
                            Vec::new(),
                            None,
                            now,
                        );
                        expired += 1;
                    }
                } else {
                    inner.sessions.refile(slot, real);
                }
            }
        }
    }
}

impl Inner {
    /// The slot of `id` if it exists and has not expired; an expired one is removed here,
    /// so expiry holds on every access whether or not a sweep has run.
    fn live(&mut self, id: &SessionId, now: u64, events: &EventLog) -> Result<SlotNo, StoreError> {
        let slot = self.sessions.find(id).ok_or(StoreError::NotFound)?;
        let entry = self.sessions.get(slot).ok_or(StoreError::NotFound)?;
        if entry.deadline() <= now {
            if let Some(entry) = self.remove(slot) {
                events.publish(EventKind::Expired, id, entry.version, Vec::new(), None, now);
            }
            return Err(StoreError::NotFound);
        }
        Ok(slot)
    }

    /// The slot of live session `id`, marked as used now.
    fn used(&mut self, id: &SessionId, now: u64, events: &EventLog) -> Result<SlotNo, StoreError> {
        let slot = self.live(id, now, events)?;
        self.sessions.touch(slot);
        let entry = self.sessions.get_mut(slot).ok_or(StoreError::NotFound)?;
        entry.last_access_ms = now;
        Ok(slot)
    }

    /// Takes a session out, `None` if `slot` names none.
    fn remove(&mut self, slot: SlotNo) -> Option<Entry> {
        let (_, entry) = self.sessions.remove(slot)?;
        self.bytes -= entry.size;
        Some(entry)
    }

    /// Evicts least recently used sessions, never `keep`, until `extra` more bytes fit.
    fn make_room(
        &mut self,
        extra: u64,
        keep: Option<SlotNo>,
        limits: &Limits,
        events: &EventLog,
        now: u64,
    ) {
        while self.bytes + extra > limits.capacity_bytes {
            let Some(victim) = self.sessions.least_recently_used() else {
                return;
            };
            if Some(victim) == keep {
                return; // the one being written is all that is left
            }
            let id = *self.sessions.id(victim);
            let Some(entry) = self.remove(victim) else {
                return;
            };
            tracing::debug!(session = %id, bytes = entry.size, "evicted to stay within capacity");
            events.publish(
                EventKind::Evicted,
                &id,
                entry.version,
                Vec::new(),
                None,
                now,
            );
        }
    }
}

/// The error of a create (or a rotation) that finds every slot of the table taken.
fn full() -> StoreError {
    StoreError::LimitExceeded {
        which: LimitKind::Sessions,
        limit: u64::from(MAX_SLOTS),
        wanted: u64::from(MAX_SLOTS) + 1,
        attr: None,
    }
}

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl SessionStore for MemoryStore {
    fn create(
        &self,
        options: CreateOptions,
        ops: Vec<Operation>,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send {
        ready(self.create_now(options, ops))
    }

    fn get(
        &self,
        id: &SessionId,
        query: GetQuery,
    ) -> impl Future<Output = Result<GetOutcome, StoreError>> + Send {
        ready(self.get_now(id, query))
    }

    fn apply(
        &self,
        id: &SessionId,
        ops: Vec<Operation>,
        return_session: bool,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send {
        ready(self.apply_now(id, ops, return_session))
    }

    fn invalidate(&self, id: &SessionId) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(self.invalidate_now(id))
    }

    fn rotate_id(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<SessionInfo, StoreError>> + Send {
        ready(self.rotate_now(id))
    }

    fn sweep(&self) -> impl Future<Output = usize> + Send {
        ready(self.sweep_now().0)
    }

    fn usage(&self) -> Usage {
        let inner = self.inner.lock();
        Usage {
            sessions: inner.sessions.len() as u64,
            bytes: inner.bytes,
        }
    }

    fn durable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        clock::ManualClock,
        store::{Attribute, OpKind, Value},
    };
    use bytes::Bytes;
    use std::time::Duration;

    const MINUTE: u64 = 60_000;

    fn store_with(limits: Limits) -> (MemoryStore, ManualClock, Arc<EventLog>) {
        let clock = ManualClock::new(1_700_000_000_000);
        let events = Arc::new(EventLog::new(1024, 1 << 20));
        let store = MemoryStore::new(limits, Arc::new(clock.clone()), Arc::clone(&events));
        (store, clock, events)
    }

    fn store() -> (MemoryStore, ManualClock, Arc<EventLog>) {
        store_with(Limits::default())
    }

    fn set(name: &str, data: &'static [u8]) -> Operation {
        Operation {
            name: name.into(),
            kind: OpKind::Set {
                value: Value::Bytes {
                    content_type: "text/plain".into(),
                    data: Bytes::from_static(data),
                },
                expected_version: None,
            },
        }
    }

    fn op(name: &str, kind: OpKind) -> Operation {
        Operation {
            name: name.into(),
            kind,
        }
    }

    fn create(store: &MemoryStore, ops: Vec<Operation>) -> SessionId {
        store
            .create_now(CreateOptions::default(), ops)
            .expect("create")
            .info
            .id
    }

    fn list(store: &MemoryStore, id: &SessionId, name: &str) -> Vec<Bytes> {
        match store.get_now(id, GetQuery::default()).expect("get") {
            GetOutcome::Found(s) => match s.attributes.get(name).map(|a| a.value.clone()) {
                Some(Value::List { items, .. }) => items,
                None => Vec::new(),
                Some(other) => panic!("not a list: {other:?}"),
            },
            GetOutcome::NotModified(_) => panic!("unexpected not modified"),
        }
    }

    #[test]
    fn a_session_costs_one_slot_of_128_bytes_and_an_attribute_80() {
        // What keeps 1M sessions of 1 KB within 1.3 times their payload (docs/performance.md).
        assert!(crate::store::table::slot_size::<Entry>() <= 128);
        assert!(size_of::<(Arc<str>, Attribute)>() <= 80);
    }

    #[test]
    fn idle_session_is_not_found_at_once_without_a_sweep() {
        let (store, clock, _) = store();
        let id = create(&store, vec![set("a", b"1")]);
        clock.advance(29 * MINUTE);
        assert!(
            store.get_now(&id, GetQuery::default()).is_ok(),
            "an access within the idle timeout"
        );
        clock.advance(29 * MINUTE);
        assert!(
            store.get_now(&id, GetQuery::default()).is_ok(),
            "the access above refreshed it"
        );
        clock.advance(30 * MINUTE);
        assert_eq!(
            store.get_now(&id, GetQuery::default()),
            Err(StoreError::NotFound)
        );
        assert_eq!(
            store.apply_now(&id, vec![set("a", b"2")], false).map(drop),
            Err(StoreError::NotFound)
        );
        assert_eq!(
            store.usage().sessions,
            0,
            "expired on access, before any sweep"
        );
    }

    #[test]
    fn absolute_lifetime_ends_even_a_busy_session() {
        let (store, clock, _) = store();
        let id = create(&store, vec![]);
        for _ in 0..(8 * 60 / 20) - 1 {
            clock.advance(20 * MINUTE);
            store
                .get_now(&id, GetQuery::default())
                .expect("still within its lifetime");
        }
        clock.advance(20 * MINUTE);
        assert_eq!(
            store.get_now(&id, GetQuery::default()),
            Err(StoreError::NotFound)
        );
    }

    #[test]
    fn per_session_timeouts_override_the_defaults() {
        let (store, clock, _) = store();
        let options = CreateOptions {
            idle_timeout: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        let id = store.create_now(options, vec![]).expect("create").info.id;
        clock.advance(5_000);
        assert_eq!(
            store.get_now(&id, GetQuery::default()),
            Err(StoreError::NotFound)
        );
    }

    #[test]
    fn sweep_work_is_proportional_to_what_expired() {
        let (store, clock, events) = store();
        let short = CreateOptions {
            idle_timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        for _ in 0..10_000 {
            create(&store, vec![]);
        }
        let doomed: Vec<_> = (0..25)
            .map(|_| {
                store
                    .create_now(short.clone(), vec![])
                    .expect("create")
                    .info
                    .id
            })
            .collect();
        clock.advance(61_000);
        assert_eq!(
            store.sweep_now(),
            (25, 25),
            "only the expired entries were examined"
        );
        assert_eq!(store.usage().sessions, 10_000);
        assert_eq!(events.count(EventKind::Expired), 25);
        for id in &doomed {
            assert_eq!(
                store.get_now(id, GetQuery::default()),
                Err(StoreError::NotFound)
            );
        }
    }

    #[test]
    fn sweep_refiles_sessions_that_were_used_since_they_were_indexed() {
        let (store, clock, _) = store();
        let id = create(&store, vec![]);
        clock.advance(20 * MINUTE);
        store.get_now(&id, GetQuery::default()).expect("live");
        clock.advance(15 * MINUTE); // past the indexed deadline, not the real one
        assert_eq!(store.sweep_now(), (0, 1));
        assert!(store.get_now(&id, GetQuery::default()).is_ok());
        clock.advance(31 * MINUTE);
        assert_eq!(store.sweep_now().0, 1);
        assert_eq!(
            store.usage(),
            Usage {
                sessions: 0,
                bytes: 0
            }
        );
    }

    #[test]
    fn a_failed_batch_changes_nothing() {
        let (store, _, _) = store();
        let id = create(&store, vec![set("a", b"1")]);
        let batch = vec![
            set("a", b"2"),
            op(
                "n",
                OpKind::CounterAdd {
                    delta: -1,
                    min: Some(0),
                    max: None,
                    remove_at_zero: false,
                },
            ),
        ];
        assert!(matches!(
            store.apply_now(&id, batch, false),
            Err(StoreError::OutOfRange { index: 1, .. })
        ));
        let GetOutcome::Found(s) = store.get_now(&id, GetQuery::default()).expect("get") else {
            panic!()
        };
        assert_eq!(s.info.version, 1);
        assert_eq!(
            s.attributes["a"].value,
            Value::Bytes {
                content_type: "text/plain".into(),
                data: Bytes::from_static(b"1")
            }
        );
    }

    #[test]
    fn compare_and_set_reports_the_current_attribute() {
        let (store, _, _) = store();
        let id = create(&store, vec![set("a", b"1")]);
        let stale = op(
            "a",
            OpKind::Set {
                value: Value::Counter(5),
                expected_version: Some(0),
            },
        );
        match store.apply_now(&id, vec![stale], false) {
            Err(StoreError::Conflict {
                index: 0,
                name,
                current: Some(current),
            }) => {
                assert_eq!(name, "a");
                assert_eq!(current.version, 1);
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        let fresh = op(
            "a",
            OpKind::Set {
                value: Value::Counter(5),
                expected_version: Some(1),
            },
        );
        let out = store
            .apply_now(&id, vec![fresh], false)
            .expect("matching version");
        assert_eq!(out.results[0].attribute_version, 2);
    }

    #[test]
    fn list_operations_keep_order_and_bounds() {
        let (store, _, _) = store();
        let push = |item: &'static [u8]| {
            op(
                "l",
                OpKind::ListPush {
                    item: Bytes::from_static(item),
                    content_type: "t".into(),
                    max_len: Some(3),
                },
            )
        };
        let id = create(&store, vec![push(b"x"), push(b"y"), push(b"x")]);
        assert!(matches!(
            store.apply_now(&id, vec![push(b"z")], false),
            Err(StoreError::OutOfRange { .. })
        ));
        let out = store
            .apply_now(
                &id,
                vec![op(
                    "l",
                    OpKind::ListRemove {
                        item: Bytes::from_static(b"x"),
                    },
                )],
                false,
            )
            .expect("remove");
        assert!(out.results[0].removed);
        assert_eq!(
            list(&store, &id, "l"),
            vec![Bytes::from_static(b"y"), Bytes::from_static(b"x")]
        );
        let miss = store
            .apply_now(
                &id,
                vec![op(
                    "l",
                    OpKind::ListRemove {
                        item: Bytes::from_static(b"q"),
                    },
                )],
                false,
            )
            .expect("miss");
        assert!(!miss.results[0].removed);
        assert_eq!(
            miss.info.version, out.info.version,
            "a no-op does not bump the version"
        );
    }

    #[test]
    fn recent_push_moves_to_front_without_duplicates() {
        let (store, _, _) = store();
        let id = create(&store, vec![]);
        for item in [b"a", b"b", b"c", b"a", b"d"] {
            let recent = op(
                "h",
                OpKind::RecentPush {
                    item: Bytes::copy_from_slice(item),
                    content_type: "t".into(),
                    keep: 3,
                },
            );
            store.apply_now(&id, vec![recent], false).expect("push");
        }
        let items: Vec<_> = list(&store, &id, "h").iter().map(|b| b[0]).collect();
        assert_eq!(items, b"dac");
    }

    #[test]
    fn names_and_content_types_are_shared_and_a_new_content_type_replaces_the_old() {
        let (store, clock, events) = store();
        let a = create(&store, vec![set("cart", b"1")]);
        let b = create(&store, vec![set("cart", b"2")]);
        store
            .apply_now(&a, vec![set("cart", b"3")], false)
            .expect("overwrite, same type");
        let json = Value::Bytes {
            content_type: "application/json".into(),
            data: Bytes::from_static(b"{}"),
        };
        let set_json = OpKind::Set {
            value: json,
            expected_version: None,
        };
        store
            .apply_now(&b, vec![op("cart", set_json)], false)
            .expect("overwrite, new type");
        let mut inner = store.inner.lock();
        let mut stored = |id| {
            let slot = inner.live(id, clock.now_ms(), &events).expect("live");
            let (name, attr) = &inner.sessions.get(slot).expect("a session").attrs.0[0];
            let content_type = attr.value.content_type().expect("bytes");
            (Arc::clone(name), Arc::clone(content_type))
        };
        let (name_a, type_a) = stored(&a);
        let (name_b, type_b) = stored(&b);
        assert!(Arc::ptr_eq(&name_a, &name_b), "one copy of a name");
        assert_eq!(&*type_a, "text/plain");
        assert_eq!(&*type_b, "application/json");
        let shared = inner.interned.get("text/plain").expect("interned");
        assert!(Arc::ptr_eq(&type_a, shared), "one copy of a content type");
    }

    #[test]
    fn wrong_type_is_refused() {
        let (store, _, _) = store();
        let id = create(&store, vec![set("a", b"1")]);
        let add = op(
            "a",
            OpKind::CounterAdd {
                delta: 1,
                min: None,
                max: None,
                remove_at_zero: false,
            },
        );
        assert!(matches!(
            store.apply_now(&id, vec![add], false),
            Err(StoreError::WrongType { found: "bytes", .. })
        ));
    }

    #[test]
    fn least_recently_used_sessions_are_evicted_at_capacity() {
        let limits = Limits {
            capacity_bytes: 10_000,
            max_session_bytes: 5_000,
            max_attribute_bytes: 5_000,
            ..Limits::default()
        };
        let (store, _, events) = store_with(limits);
        let ids: Vec<_> = (0..20)
            .map(|_| create(&store, vec![set("a", &[0; 400])]))
            .collect();
        assert!(store.usage().bytes <= 10_000);
        let held = store.usage().sessions as usize;
        assert!(held < 20 && held > 5, "held {held}");
        assert_eq!(events.count(EventKind::Evicted) as usize, 20 - held);
        // The newest survive; reading one keeps it from being the next victim.
        let survivor = &ids[20 - held];
        store.get_now(survivor, GetQuery::default()).expect("held");
        create(&store, vec![set("a", &[0; 400])]);
        assert!(
            store.get_now(survivor, GetQuery::default()).is_ok(),
            "recently used, not evicted"
        );
        assert_eq!(
            store.get_now(&ids[0], GetQuery::default()),
            Err(StoreError::NotFound)
        );
    }

    #[test]
    fn limits_name_themselves() {
        let limits = Limits {
            max_session_bytes: 2_000,
            max_attribute_bytes: 1_000,
            ..Limits::default()
        };
        let (store, _, _) = store_with(limits);
        let big = op(
            "big",
            OpKind::Set {
                value: Value::Bytes {
                    content_type: "".into(),
                    data: Bytes::from(vec![0; 1_000]),
                },
                expected_version: None,
            },
        );
        assert!(matches!(
            store.create_now(CreateOptions::default(), vec![big]),
            Err(StoreError::LimitExceeded {
                which: LimitKind::Attribute,
                ..
            })
        ));
        let id = create(&store, vec![]);
        let parts: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                op(
                    n,
                    OpKind::Set {
                        value: Value::Bytes {
                            content_type: "".into(),
                            data: Bytes::from(vec![0; 800]),
                        },
                        expected_version: None,
                    },
                )
            })
            .collect();
        assert!(matches!(
            store.apply_now(&id, parts, false),
            Err(StoreError::LimitExceeded {
                which: LimitKind::Session,
                ..
            })
        ));
    }

    #[test]
    fn rotation_moves_data_and_kills_the_old_id() {
        let (store, _, events) = store();
        let id = create(&store, vec![set("a", b"1")]);
        let bytes = store.usage().bytes;
        let info = store.rotate_now(&id).expect("rotate");
        assert_ne!(info.id, id);
        assert_eq!(
            store.get_now(&id, GetQuery::default()),
            Err(StoreError::NotFound)
        );
        assert!(store.get_now(&info.id, GetQuery::default()).is_ok());
        assert_eq!(store.usage().bytes, bytes);
        assert_eq!(events.count(EventKind::IdRotated), 1);
    }

    #[test]
    fn not_modified_when_the_version_is_known() {
        let (store, _, _) = store();
        let id = create(&store, vec![set("a", b"1")]);
        let q = GetQuery {
            names: vec![],
            known_version: Some(1),
        };
        assert!(matches!(
            store.get_now(&id, q),
            Ok(GetOutcome::NotModified(_))
        ));
    }
}
