//! The in-memory store: the embedded default.
//!
//! One mutex guards a `Table` of sessions in least-recently-used order with an expiry
//! index (see `table.rs` for why it is not a general-purpose map). Critical sections
//! are a hash lookup and a few small edits, far shorter than the gRPC work around them, so one
//! lock keeps eviction exactly LRU and the byte counts exact without hurting throughput.
//!
//! Expiry is checked on every access, so an expired session is NOT_FOUND before any sweep.
//! The index is lazy: a read only stores the new last-access time; the sweep pops entries
//! whose indexed deadline has passed and either expires them or re-files them under their
//! real deadline. A session is re-filed at most once per idle timeout, so a sweep's work is
//! proportional to what expired (and what was due for re-filing), not to how many sessions exist.
//!
//! Each app's sessions are on an LRU list of their own, with their own counts. Past an app's
//! quota, its own least recently used sessions make room; past the store's capacity, the app
//! holding the most bytes gives way first, so that no app's growth evicts the sessions of an
//! app smaller than itself.
//!
//! Attribute names and content types repeat across sessions, so the store keeps one shared
//! copy of each short one (`entry.rs`, with a session's entry and attributes).

mod entry;

use super::{
    CreateOptions, GetOutcome, GetQuery, LimitKind, Limits, Operation, Rotated, SESSION_OVERHEAD,
    SessionStore, StoreError, Usage, WriteOutcome, batch, new_reference,
    table::{MAX_SLOTS, SlotNo, Table},
};
use crate::{
    apps::{AppId, Apps, Quota},
    clock::Clock,
    events::{EventKind, EventLog},
    id::SessionId,
};
use entry::{Entry, commit};
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
    /// The apps' quotas.
    apps: Arc<Apps>,
    /// `memory:` and random hex: every process holds a store of its own.
    store_id: String,
}

#[derive(Debug, Default)]
struct Inner {
    /// Sessions in LRU order per app, filed under an indexed deadline never later than the
    /// real one.
    sessions: Table<Entry>,
    /// Sum of every entry's `size`.
    bytes: u64,
    /// What each app holds, by `AppId::index`.
    by_app: Vec<Usage>,
    interned: HashSet<Arc<str>>,
}

impl MemoryStore {
    pub fn new(
        limits: Limits,
        clock: Arc<dyn Clock>,
        events: Arc<EventLog>,
        apps: Arc<Apps>,
    ) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            limits,
            clock,
            events,
            apps,
            store_id: format!("memory:{:016x}", rand::random::<u64>()),
        }
    }

    fn create_now(
        &self,
        app: AppId,
        options: CreateOptions,
        ops: Vec<Operation>,
    ) -> Result<WriteOutcome, StoreError> {
        let now = self.clock.now_ms();
        let id = SessionId::generate();
        let mut entry = Entry::new(
            app,
            now,
            duration_ms(
                options
                    .idle_timeout
                    .unwrap_or(self.limits.default_idle_timeout)
                    .min(self.limits.idle_timeout_cap),
            ),
            duration_ms(
                options
                    .max_lifetime
                    .unwrap_or(self.limits.default_max_lifetime)
                    .min(self.limits.max_lifetime_cap),
            ),
            SESSION_OVERHEAD + crate::id::ID_LEN as u64,
        );
        let staged = batch::stage(
            |name| entry.attrs.get(name),
            entry.size(),
            ops,
            1,
            &self.limits,
        )?;
        let quota = self.apps.quota(app);
        let mut inner = self.inner.lock();
        let changed = commit(&mut entry, staged.changes, staged.size, &mut inner.interned);
        let outcome = WriteOutcome {
            info: entry.info(&id),
            results: staged.results,
            session: options.return_session.then(|| entry.snapshot(&id, &[])),
        };
        if let Some(max) = quota.max_sessions {
            while inner.usage(app).sessions >= max && inner.evict_from(app, None, &self.events, now)
            {
            }
        }
        inner.make_room(
            app,
            entry.size(),
            None,
            self.capacity(quota),
            &self.events,
            now,
        );
        let (size, due, reference) = (entry.size(), entry.deadline(), entry.reference);
        inner.sessions.insert(id, entry, due).map_err(|_| full())?;
        inner.added(app, size);
        self.events
            .publish(EventKind::Created, app, reference, 1, changed, 0, now);
        Ok(outcome)
    }

    /// The store's capacity and the app's share of it.
    fn capacity(&self, quota: Quota) -> Capacity {
        Capacity {
            store: self.limits.capacity_bytes,
            app: quota.max_bytes,
        }
    }

    fn get_now(
        &self,
        app: AppId,
        id: &SessionId,
        query: GetQuery,
    ) -> Result<GetOutcome, StoreError> {
        let now = self.clock.now_ms();
        let mut inner = self.inner.lock();
        let slot = inner.used(app, id, now, &self.events)?;
        let entry = inner.sessions.get(slot).ok_or(StoreError::NotFound)?;
        if query.known_version == Some(entry.version) {
            return Ok(GetOutcome::NotModified(entry.info(id)));
        }
        Ok(GetOutcome::Found(entry.snapshot(id, &query.names)))
    }

    fn apply_now(
        &self,
        app: AppId,
        id: &SessionId,
        ops: Vec<Operation>,
        return_session: bool,
    ) -> Result<WriteOutcome, StoreError> {
        let now = self.clock.now_ms();
        let mut inner = self.inner.lock();
        let slot = inner.used(app, id, now, &self.events)?;
        let Inner {
            sessions, interned, ..
        } = &mut *inner;
        let entry = sessions.get_mut(slot).ok_or(StoreError::NotFound)?;
        let staged = batch::stage(
            |name| entry.attrs.get(name),
            entry.size(),
            ops,
            entry.version + 1,
            &self.limits,
        )?;
        let old_size = entry.size();
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
        let reference = entry.reference;
        let new_size = staged.size;
        inner.resized(app, old_size, new_size);
        if new_size > old_size {
            let capacity = self.capacity(self.apps.quota(app));
            inner.make_room(app, 0, Some(slot), capacity, &self.events, now);
        }
        if !changed.is_empty() {
            self.events.publish(
                EventKind::Changed,
                app,
                reference,
                outcome.info.version,
                changed,
                0,
                now,
            );
        }
        Ok(outcome)
    }

    fn invalidate_now(&self, app: AppId, id: &SessionId) -> Result<u64, StoreError> {
        let now = self.clock.now_ms();
        let mut inner = self.inner.lock();
        let slot = inner.live(app, id, now, &self.events)?;
        let entry = inner.remove(slot).ok_or(StoreError::NotFound)?;
        self.events.publish(
            EventKind::Invalidated,
            app,
            entry.reference,
            entry.version,
            Vec::new(),
            0,
            now,
        );
        Ok(entry.reference)
    }

    fn rotate_now(&self, app: AppId, id: &SessionId) -> Result<Rotated, StoreError> {
        let now = self.clock.now_ms();
        let mut inner = self.inner.lock();
        let slot = inner.live(app, id, now, &self.events)?;
        let mut entry = inner.remove(slot).ok_or(StoreError::NotFound)?;
        let new_id = SessionId::generate();
        let previous_reference = entry.reference;
        entry.reference = new_reference();
        entry.last_access_ms = now;
        let info = entry.info(&new_id);
        let (size, due) = (entry.size(), entry.deadline());
        // The slot just freed takes it: this insert cannot find the table full.
        inner
            .sessions
            .insert(new_id, entry, due)
            .map_err(|_| full())?;
        inner.added(app, size);
        self.events.publish(
            EventKind::IdRotated,
            app,
            previous_reference,
            info.version,
            Vec::new(),
            info.reference,
            now,
        );
        Ok(Rotated {
            info,
            previous_reference,
        })
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
                    if let Some(entry) = inner.remove(slot) {
                        self.events.expired(&entry, now);
                        expired += 1;
                    }
                } else {
                    inner.sessions.refile(slot, real);
                }
            }
        }
    }
}

/// Bytes the sessions may hold: all of them, and those of the app writing.
#[derive(Debug, Clone, Copy)]
struct Capacity {
    store: u64,
    app: Option<u64>,
}

impl EventLog {
    fn expired(&self, entry: &Entry, now: u64) {
        self.publish(
            EventKind::Expired,
            entry.app,
            entry.reference,
            entry.version,
            Vec::new(),
            0,
            now,
        );
    }
}

impl Inner {
    /// The slot of `app`'s session `id` if it exists and has not expired; an expired one is
    /// removed here, so expiry holds on every access whether or not a sweep has run. Another
    /// app's session is not found, and not touched.
    fn live(
        &mut self,
        app: AppId,
        id: &SessionId,
        now: u64,
        events: &EventLog,
    ) -> Result<SlotNo, StoreError> {
        let slot = self.sessions.find(id).ok_or(StoreError::NotFound)?;
        let entry = self.sessions.get(slot).ok_or(StoreError::NotFound)?;
        if entry.app != app {
            return Err(StoreError::NotFound);
        }
        if entry.deadline() <= now {
            if let Some(entry) = self.remove(slot) {
                events.expired(&entry, now);
            }
            return Err(StoreError::NotFound);
        }
        Ok(slot)
    }

    /// The slot of `app`'s live session `id`, marked as used now.
    fn used(
        &mut self,
        app: AppId,
        id: &SessionId,
        now: u64,
        events: &EventLog,
    ) -> Result<SlotNo, StoreError> {
        let slot = self.live(app, id, now, events)?;
        self.sessions.touch(slot);
        let entry = self.sessions.get_mut(slot).ok_or(StoreError::NotFound)?;
        entry.last_access_ms = now;
        Ok(slot)
    }

    fn usage(&self, app: AppId) -> Usage {
        self.by_app.get(app.index()).copied().unwrap_or_default()
    }

    fn usage_mut(&mut self, app: AppId) -> &mut Usage {
        if self.by_app.len() <= app.index() {
            self.by_app.resize(app.index() + 1, Usage::default());
        }
        &mut self.by_app[app.index()]
    }

    /// Counts a session of `size` bytes put in the table.
    fn added(&mut self, app: AppId, size: u64) {
        self.bytes += size;
        let usage = self.usage_mut(app);
        usage.sessions += 1;
        usage.bytes += size;
    }

    fn resized(&mut self, app: AppId, old: u64, new: u64) {
        self.bytes = self.bytes - old + new;
        let usage = self.usage_mut(app);
        usage.bytes = usage.bytes - old + new;
    }

    /// Takes a session out, `None` if `slot` names none.
    fn remove(&mut self, slot: SlotNo) -> Option<Entry> {
        let (_, entry) = self.sessions.remove(slot)?;
        let size = entry.size();
        self.bytes -= size;
        let usage = self.usage_mut(entry.app);
        usage.sessions -= 1;
        usage.bytes -= size;
        Some(entry)
    }

    /// Evicts `app`'s least recently used session, unless it is `keep`; whether it did.
    fn evict_from(
        &mut self,
        app: AppId,
        keep: Option<SlotNo>,
        events: &EventLog,
        now: u64,
    ) -> bool {
        let Some(victim) = self.sessions.least_recently_used(app.index()) else {
            return false;
        };
        if Some(victim) == keep {
            return false; // the one being written is all that is left
        }
        let Some(entry) = self.remove(victim) else {
            return false;
        };
        tracing::debug!(
            app = app.index(),
            bytes = entry.size(),
            "evicted to stay within capacity"
        );
        events.publish(
            EventKind::Evicted,
            entry.app,
            entry.reference,
            entry.version,
            Vec::new(),
            0,
            now,
        );
        true
    }

    /// Evicts least recently used sessions, never `keep`, until `extra` more bytes of `app`
    /// fit: first the app's own, to stay within its quota, then those of the app holding the
    /// most, to stay within the store's capacity.
    fn make_room(
        &mut self,
        app: AppId,
        extra: u64,
        keep: Option<SlotNo>,
        capacity: Capacity,
        events: &EventLog,
        now: u64,
    ) {
        if let Some(max) = capacity.app {
            while self.usage(app).bytes + extra > max && self.evict_from(app, keep, events, now) {}
        }
        while self.bytes + extra > capacity.store {
            let Some(victim) = self.largest(keep) else {
                return;
            };
            if !self.evict_from(victim, keep, events, now) {
                return;
            }
        }
    }

    /// The app holding the most bytes that has a session to evict other than `keep`.
    fn largest(&self, keep: Option<SlotNo>) -> Option<AppId> {
        (0..self.by_app.len())
            .map(AppId::from_index)
            .filter(|app| {
                self.sessions
                    .least_recently_used(app.index())
                    .is_some_and(|lru| Some(lru) != keep)
            })
            .max_by_key(|app| self.usage(*app).bytes)
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
        app: AppId,
        options: CreateOptions,
        ops: Vec<Operation>,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send {
        ready(self.create_now(app, options, ops))
    }

    fn get(
        &self,
        app: AppId,
        id: &SessionId,
        query: GetQuery,
    ) -> impl Future<Output = Result<GetOutcome, StoreError>> + Send {
        ready(self.get_now(app, id, query))
    }

    fn apply(
        &self,
        app: AppId,
        id: &SessionId,
        ops: Vec<Operation>,
        return_session: bool,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send {
        ready(self.apply_now(app, id, ops, return_session))
    }

    fn invalidate(
        &self,
        app: AppId,
        id: &SessionId,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        ready(self.invalidate_now(app, id))
    }

    fn rotate_id(
        &self,
        app: AppId,
        id: &SessionId,
    ) -> impl Future<Output = Result<Rotated, StoreError>> + Send {
        ready(self.rotate_now(app, id))
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

    fn usage_by_app(&self) -> Vec<Usage> {
        self.inner.lock().by_app.clone()
    }

    fn durable(&self) -> bool {
        false
    }

    fn store_id(&self) -> &str {
        &self.store_id
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
    const APP: AppId = AppId::for_tests(0);

    fn store_with(limits: Limits) -> (MemoryStore, ManualClock, Arc<EventLog>) {
        store_of(limits, Arc::new(Apps::new(Quota::default())))
    }

    fn store_of(limits: Limits, apps: Arc<Apps>) -> (MemoryStore, ManualClock, Arc<EventLog>) {
        let clock = ManualClock::new(1_700_000_000_000);
        let events = Arc::new(EventLog::new(1024, 1 << 20));
        let store = MemoryStore::new(limits, Arc::new(clock.clone()), Arc::clone(&events), apps);
        (store, clock, events)
    }

    /// A store whose limits let `capacity` bytes of sessions in.
    fn small(capacity: u64) -> Limits {
        Limits {
            capacity_bytes: capacity,
            max_session_bytes: 5_000,
            max_attribute_bytes: 5_000,
            ..Limits::default()
        }
    }

    fn held(store: &MemoryStore, app: AppId, ids: &[SessionId]) -> usize {
        ids.iter()
            .filter(|id| store.get_now(app, id, GetQuery::default()).is_ok())
            .count()
    }

    #[test]
    fn another_apps_session_is_not_found_and_left_as_it_was() {
        let (store, _, events) = store();
        let other = AppId::for_tests(1);
        let id = create(&store, vec![set("a", b"1")]);
        assert_eq!(
            store.get_now(other, &id, GetQuery::default()),
            Err(StoreError::NotFound)
        );
        assert_eq!(
            store
                .apply_now(other, &id, vec![set("a", b"2")], false)
                .map(drop),
            Err(StoreError::NotFound)
        );
        assert_eq!(store.invalidate_now(other, &id), Err(StoreError::NotFound));
        assert_eq!(
            store.rotate_now(other, &id).map(drop),
            Err(StoreError::NotFound)
        );
        let GetOutcome::Found(s) = store
            .get_now(APP, &id, GetQuery::default())
            .expect("its own")
        else {
            panic!("found");
        };
        assert_eq!(s.info.version, 1);
        assert_eq!(events.count(EventKind::Changed), 0);
    }

    #[test]
    fn past_capacity_the_app_holding_the_most_gives_way_first() {
        let (store, _, _) = store_with(small(10_000));
        let (big, little) = (APP, AppId::for_tests(1));
        let bigs: Vec<_> = (0..15)
            .map(|_| create_in(&store, big, vec![set("a", &[0; 400])]))
            .collect();
        let littles: Vec<_> = (0..4)
            .map(|_| create_in(&store, little, vec![set("a", &[0; 400])]))
            .collect();
        assert_eq!(
            held(&store, little, &littles),
            4,
            "its growth evicts the larger app's"
        );
        assert!(held(&store, big, &bigs) < 15);
        let usage = store.usage_by_app();
        assert!(usage[big.index()].bytes > usage[little.index()].bytes);
        assert!(store.usage().bytes <= 10_000);

        // The other way round: the large app's growth evicts its own, not the small one's.
        for _ in 0..30 {
            create_in(&store, big, vec![set("a", &[0; 400])]);
        }
        assert_eq!(held(&store, little, &littles), 4);
    }

    #[test]
    fn an_apps_quota_evicts_its_own_least_recently_used_sessions_only() {
        let apps = Arc::new(Apps::new(Quota::default()));
        let shop = apps.get_or_create("shop").expect("an app").id;
        let cart = apps.get_or_create("cart").expect("an app").id;
        let quota = Quota {
            max_bytes: Some(3_000),
            max_sessions: Some(4),
            rate: None,
        };
        apps.configure(&[("shop".into(), quota)]).expect("valid");
        let (store, _, _) = store_of(small(1 << 20), apps);
        let carts: Vec<_> = (0..10)
            .map(|_| create_in(&store, cart, vec![set("a", &[0; 400])]))
            .collect();
        let shops: Vec<_> = (0..10)
            .map(|_| create_in(&store, shop, vec![set("a", &[0; 400])]))
            .collect();
        assert_eq!(
            held(&store, cart, &carts),
            10,
            "no quota of its own, nothing evicted"
        );
        assert_eq!(held(&store, shop, &shops), 4, "at most four sessions");
        assert_eq!(held(&store, shop, &shops[6..]), 4, "the newest");
        let before = store.usage_by_app()[shop.index()];
        store
            .apply_now(shop, &shops[9], vec![set("b", &[0; 2_000])], false)
            .expect("grows");
        let after = store.usage_by_app()[shop.index()];
        assert!(
            after.bytes <= 3_000 && after.sessions < before.sessions,
            "{after:?}"
        );
        assert!(
            store.get_now(shop, &shops[9], GetQuery::default()).is_ok(),
            "the one written stays"
        );
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
        create_in(store, APP, ops)
    }

    fn create_in(store: &MemoryStore, app: AppId, ops: Vec<Operation>) -> SessionId {
        store
            .create_now(app, CreateOptions::default(), ops)
            .expect("create")
            .info
            .id
    }

    fn list(store: &MemoryStore, id: &SessionId, name: &str) -> Vec<Bytes> {
        match store.get_now(APP, id, GetQuery::default()).expect("get") {
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
            store.get_now(APP, &id, GetQuery::default()).is_ok(),
            "an access within the idle timeout"
        );
        clock.advance(29 * MINUTE);
        assert!(
            store.get_now(APP, &id, GetQuery::default()).is_ok(),
            "the access above refreshed it"
        );
        clock.advance(30 * MINUTE);
        assert_eq!(
            store.get_now(APP, &id, GetQuery::default()),
            Err(StoreError::NotFound)
        );
        assert_eq!(
            store
                .apply_now(APP, &id, vec![set("a", b"2")], false)
                .map(drop),
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
                .get_now(APP, &id, GetQuery::default())
                .expect("still within its lifetime");
        }
        clock.advance(20 * MINUTE);
        assert_eq!(
            store.get_now(APP, &id, GetQuery::default()),
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
        let id = store
            .create_now(APP, options, vec![])
            .expect("create")
            .info
            .id;
        clock.advance(5_000);
        assert_eq!(
            store.get_now(APP, &id, GetQuery::default()),
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
                    .create_now(APP, short.clone(), vec![])
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
                store.get_now(APP, id, GetQuery::default()),
                Err(StoreError::NotFound)
            );
        }
    }

    #[test]
    fn sweep_refiles_sessions_that_were_used_since_they_were_indexed() {
        let (store, clock, _) = store();
        let id = create(&store, vec![]);
        clock.advance(20 * MINUTE);
        store.get_now(APP, &id, GetQuery::default()).expect("live");
        clock.advance(15 * MINUTE); // past the indexed deadline, not the real one
        assert_eq!(store.sweep_now(), (0, 1));
        assert!(store.get_now(APP, &id, GetQuery::default()).is_ok());
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
            store.apply_now(APP, &id, batch, false),
            Err(StoreError::OutOfRange { index: 1, .. })
        ));
        let GetOutcome::Found(s) = store.get_now(APP, &id, GetQuery::default()).expect("get")
        else {
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
        match store.apply_now(APP, &id, vec![stale], false) {
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
            .apply_now(APP, &id, vec![fresh], false)
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
            store.apply_now(APP, &id, vec![push(b"z")], false),
            Err(StoreError::OutOfRange { .. })
        ));
        let out = store
            .apply_now(
                APP,
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
                APP,
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
            store
                .apply_now(APP, &id, vec![recent], false)
                .expect("push");
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
            .apply_now(APP, &a, vec![set("cart", b"3")], false)
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
            .apply_now(APP, &b, vec![op("cart", set_json)], false)
            .expect("overwrite, new type");
        let mut inner = store.inner.lock();
        let mut stored = |id| {
            let slot = inner.live(APP, id, clock.now_ms(), &events).expect("live");
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
            store.apply_now(APP, &id, vec![add], false),
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
        store
            .get_now(APP, survivor, GetQuery::default())
            .expect("held");
        create(&store, vec![set("a", &[0; 400])]);
        assert!(
            store.get_now(APP, survivor, GetQuery::default()).is_ok(),
            "recently used, not evicted"
        );
        assert_eq!(
            store.get_now(APP, &ids[0], GetQuery::default()),
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
            store.create_now(APP, CreateOptions::default(), vec![big]),
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
            store.apply_now(APP, &id, parts, false),
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
        let info = store.rotate_now(APP, &id).expect("rotate").info;
        assert_ne!(info.id, id);
        assert_eq!(
            store.get_now(APP, &id, GetQuery::default()),
            Err(StoreError::NotFound)
        );
        assert!(store.get_now(APP, &info.id, GetQuery::default()).is_ok());
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
            store.get_now(APP, &id, q),
            Ok(GetOutcome::NotModified(_))
        ));
    }
}
