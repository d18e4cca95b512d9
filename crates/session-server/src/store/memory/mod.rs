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
//!
//! Every change can go to a [`Journal`] (`journal.rs`), under the lock and so in commit order,
//! as records (`record.rs`): the durable store is this store over a journal of an embedded
//! engine, which gives the records back on start ([`MemoryStore::load`]). The memory store's
//! journal records nothing.

mod entry;
pub mod journal;
pub mod record;

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
use journal::{Change, Journal, NoJournal};
use parking_lot::Mutex;
use std::{
    collections::HashSet,
    future::{Future, ready},
    sync::Arc,
};

#[derive(Debug)]
pub struct MemoryStore<J = NoJournal> {
    inner: Mutex<Inner>,
    limits: Limits,
    clock: Arc<dyn Clock>,
    events: Arc<EventLog>,
    /// The apps' quotas, and their names for records.
    apps: Arc<Apps>,
    journal: J,
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
    /// Whether changes are noted for a journal (`Journal::RECORDS`).
    recording: bool,
    /// The sessions changed (`true`) or removed (`false`) since the journal last took them.
    changed: Vec<(SessionId, bool)>,
}

impl MemoryStore {
    pub fn new(
        limits: Limits,
        clock: Arc<dyn Clock>,
        events: Arc<EventLog>,
        apps: Arc<Apps>,
    ) -> Self {
        Self::with_journal(limits, clock, events, apps, NoJournal::default())
    }
}

impl<J: Journal> MemoryStore<J> {
    /// The memory store over `journal`, which takes every change.
    pub fn with_journal(
        limits: Limits,
        clock: Arc<dyn Clock>,
        events: Arc<EventLog>,
        apps: Arc<Apps>,
        journal: J,
    ) -> Self {
        Self {
            inner: Mutex::new(Inner {
                recording: J::RECORDS,
                ..Inner::default()
            }),
            limits,
            clock,
            events,
            apps,
            journal,
        }
    }

    #[cfg(test)]
    pub(crate) fn journal(&self) -> &J {
        &self.journal
    }

    /// The version a write after `version` gives: the next, or the journal's floor, above
    /// every version an earlier process may have acknowledged and lost.
    fn next_version(&self, version: u64) -> u64 {
        (version + 1).max(self.journal.version_floor())
    }

    /// Hands the changes noted since the last time to the journal; the ticket to settle.
    fn record(&self, inner: &mut Inner) -> u64 {
        if inner.changed.is_empty() {
            return 0;
        }
        let noted = std::mem::take(&mut inner.changed);
        let mut changes: Vec<Change> = Vec::with_capacity(noted.len());
        for (id, present) in noted {
            // A session changed twice in one call is recorded once, as it is now.
            if changes.iter().any(|(seen, _)| *seen == id) {
                continue;
            }
            let record = present
                .then(|| inner.sessions.find(&id))
                .flatten()
                .and_then(|slot| inner.sessions.get(slot))
                .map(|entry| self.encode(entry));
            changes.push((id, record));
        }
        self.journal.record(changes)
    }

    /// The slot of a live session, or why there is none; an expired session removed on the
    /// way is recorded either way.
    fn live_or_record(
        &self,
        inner: &mut Inner,
        app: AppId,
        id: &SessionId,
        now: u64,
    ) -> Result<SlotNo, StoreError> {
        let live = inner.live(app, id, now, &self.events);
        if live.is_err() {
            self.record(inner);
        }
        live
    }

    fn encode(&self, entry: &Entry) -> Vec<u8> {
        let app = self.apps.get(entry.app);
        record::encode(entry, app.as_ref().map_or("", |a| &a.name))
    }

    /// Waits until the changes of `ticket` are as durable as the journal promises.
    async fn settled<T>(&self, outcome: Result<(T, u64), StoreError>) -> Result<T, StoreError> {
        let (value, ticket) = outcome?;
        SessionStore::settle(self, ticket).await?;
        Ok(value)
    }

    fn create_now(
        &self,
        app: AppId,
        options: CreateOptions,
        ops: Vec<Operation>,
    ) -> Result<(WriteOutcome, u64), StoreError> {
        self.journal.check()?;
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
        let reference = entry.reference;
        inner.insert(id, entry)?;
        self.events
            .publish(EventKind::Created, app, reference, 1, changed, 0, now);
        let ticket = self.record(&mut inner);
        Ok((outcome, ticket))
    }

    /// The store's capacity and the app's share of it.
    fn capacity(&self, quota: Quota) -> Capacity {
        Capacity {
            store: self.limits.capacity_bytes,
            app: quota.max_bytes,
        }
    }

    /// A read: it waits for no journal (what it notes, an expiry or a coarse access, is
    /// recorded and made durable with the next write or within a second).
    fn get_now(
        &self,
        app: AppId,
        id: &SessionId,
        query: GetQuery,
    ) -> Result<GetOutcome, StoreError> {
        let now = self.clock.now_ms();
        let mut inner = self.inner.lock();
        let used = inner.used(app, id, now, &self.events);
        self.record(&mut inner);
        let entry = inner.sessions.get(used?).ok_or(StoreError::NotFound)?;
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
    ) -> Result<(WriteOutcome, u64), StoreError> {
        self.journal.check()?;
        let now = self.clock.now_ms();
        let mut inner = self.inner.lock();
        let used = inner.used(app, id, now, &self.events);
        let slot = match used {
            Ok(slot) => slot,
            Err(e) => {
                self.record(&mut inner); // an expiry noticed here
                return Err(e);
            }
        };
        let version = match inner.sessions.get(slot) {
            Some(entry) => self.next_version(entry.version),
            None => return Err(StoreError::NotFound),
        };
        let Inner {
            sessions, interned, ..
        } = &mut *inner;
        let entry = sessions.get_mut(slot).ok_or(StoreError::NotFound)?;
        let staged = batch::stage(
            |name| entry.attrs.get(name),
            entry.size(),
            ops,
            version,
            &self.limits,
        )?;
        let old_size = entry.size();
        let changed = if staged.changes.is_empty() {
            Vec::new() // nothing changed (say, removing what was not there): no new version
        } else {
            entry.version = version;
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
        if !changed.is_empty() {
            inner.note(*id, true);
        }
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
        let ticket = self.record(&mut inner);
        Ok((outcome, ticket))
    }

    fn invalidate_now(&self, app: AppId, id: &SessionId) -> Result<(u64, u64), StoreError> {
        self.journal.check()?;
        let now = self.clock.now_ms();
        let mut inner = self.inner.lock();
        let slot = self.live_or_record(&mut inner, app, id, now)?;
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
        let ticket = self.record(&mut inner);
        Ok((entry.reference, ticket))
    }

    fn rotate_now(&self, app: AppId, id: &SessionId) -> Result<(Rotated, u64), StoreError> {
        self.journal.check()?;
        let now = self.clock.now_ms();
        let mut inner = self.inner.lock();
        let slot = self.live_or_record(&mut inner, app, id, now)?;
        let mut entry = inner.remove(slot).ok_or(StoreError::NotFound)?;
        let new_id = SessionId::generate();
        let previous_reference = entry.reference;
        entry.reference = new_reference();
        entry.last_access_ms = now;
        let info = entry.info(&new_id);
        // The slot just freed takes it: this insert cannot find the table full.
        inner.insert(new_id, entry)?;
        self.events.publish(
            EventKind::IdRotated,
            app,
            previous_reference,
            info.version,
            Vec::new(),
            info.reference,
            now,
        );
        // The old id's removal and the new one's record, together.
        let ticket = self.record(&mut inner);
        let rotated = Rotated {
            info,
            previous_reference,
        };
        Ok((rotated, ticket))
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
                    self.record(&mut inner);
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
            self.record(&mut inner);
        }
    }

    /// Mends a journal that failed (a full disk, say) once it can be written again: it gets
    /// every session as memory holds it now, under the lock (writes are refused meanwhile).
    /// Whether the journal is well.
    fn repair(&self) -> bool {
        if !self.journal.needs_repair() {
            return true;
        }
        if !self.journal.reopen() {
            return false;
        }
        let mut inner = self.inner.lock();
        inner.changed.clear(); // all of it is in what follows
        let changes: Vec<Change> = inner
            .sessions
            .iter()
            .map(|(id, entry)| (*id, Some(self.encode(entry))))
            .collect();
        self.journal.mend(changes)
    }

    /// Loads the journal's records (on start, before serving): sessions expired meanwhile are
    /// dropped (and their records removed), the rest put back as they were, ids and versions
    /// included. Returns how many were loaded and how many had expired.
    pub fn load(&self) -> Result<(usize, usize), StoreError> {
        let now = self.clock.now_ms();
        let (mut loaded, mut expired, mut order) = (0, Vec::new(), Vec::new());
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        for record in self.journal.records() {
            let (id, bytes) = record?;
            let app_id = |name: &str| {
                self.apps
                    .get_or_create(name)
                    .map(|app| app.id)
                    .map_err(|e| record::BadRecord(format!("app {name:?}: {e}")))
            };
            let entry = record::decode(&bytes, &mut inner.interned, app_id).map_err(|e| {
                StoreError::Storage(format!("session record {id} cannot be read: {e}"))
            })?;
            if entry.deadline() <= now {
                expired.push(id);
                continue;
            }
            let due = entry.deadline();
            let (app, size, accessed) = (entry.app, entry.size(), entry.last_access_ms);
            let slot = inner.sessions.insert(id, entry, due).map_err(|_| full())?;
            inner.added(app, size);
            order.push((accessed, slot));
            loaded += 1;
        }
        // Least recently used first, as before the restart (to the grain records keep).
        order.sort_unstable();
        for (_, slot) in order {
            inner.sessions.touch(slot);
        }
        // Under a smaller --capacity than before, the least recently used go, as on a write.
        let capacity = Capacity {
            store: self.limits.capacity_bytes,
            app: None,
        };
        inner.make_room(AppId::from_index(0), 0, None, capacity, &self.events, now);
        let evicted = inner.changed.len();
        let gone = expired.len();
        // Made durable with the next write, or within a second.
        inner
            .changed
            .extend(expired.into_iter().map(|id| (id, false)));
        self.record(inner);
        self.journal.loaded();
        if evicted > 0 {
            tracing::warn!(
                evicted,
                capacity = self.limits.capacity_bytes,
                "the sessions kept exceed --capacity: the least recently used were evicted"
            );
        }
        Ok((loaded - evicted, gone))
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

    /// The slot of `app`'s live session `id`, marked as used now. A journal hears of the
    /// access when it moves the session into a later grain (`record::grain`).
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
        let grain = record::grain_end(entry.last_access_ms, entry.idle_ms);
        entry.last_access_ms = now;
        if self.recording && record::grain_end(now, entry.idle_ms) != grain {
            self.note(*id, true);
        }
        Ok(slot)
    }

    /// Notes for the journal that session `id` changed (`present`) or left.
    fn note(&mut self, id: SessionId, present: bool) {
        if self.recording {
            self.changed.push((id, present));
        }
    }

    /// Puts a session in the table, counted and noted.
    fn insert(&mut self, id: SessionId, entry: Entry) -> Result<(), StoreError> {
        let (app, size, due) = (entry.app, entry.size(), entry.deadline());
        self.sessions.insert(id, entry, due).map_err(|_| full())?;
        self.added(app, size);
        self.note(id, true);
        Ok(())
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

    /// Takes a session out (noted), `None` if `slot` names none.
    fn remove(&mut self, slot: SlotNo) -> Option<Entry> {
        let (id, entry) = self.sessions.remove(slot)?;
        self.note(id, false);
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

impl<J: Journal> SessionStore for MemoryStore<J> {
    fn create(
        &self,
        app: AppId,
        options: CreateOptions,
        ops: Vec<Operation>,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send {
        self.settled(self.create_now(app, options, ops))
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
        self.settled(self.apply_now(app, id, ops, return_session))
    }

    fn invalidate(
        &self,
        app: AppId,
        id: &SessionId,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.settled(self.invalidate_now(app, id))
    }

    fn rotate_id(
        &self,
        app: AppId,
        id: &SessionId,
    ) -> impl Future<Output = Result<Rotated, StoreError>> + Send {
        self.settled(self.rotate_now(app, id))
    }

    fn sweep(&self) -> impl Future<Output = usize> + Send {
        let expired = self.sweep_now().0;
        self.repair();
        ready(expired)
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
        self.journal.durable()
    }

    fn store_id(&self) -> &str {
        self.journal.store_id()
    }

    fn capabilities(&self) -> &'static [super::Capability] {
        &[super::Capability::ExactEviction]
    }

    fn recover(&self) -> Result<Option<String>, StoreError> {
        if !J::RECORDS {
            return Ok(None);
        }
        let (loaded, expired) = self.load()?;
        Ok(Some(format!(
            "loaded {loaded} sessions ({expired} had expired while the server was down, and are gone)"
        )))
    }

    fn flush(&self) -> impl Future<Output = ()> + Send {
        self.journal.flush();
        ready(())
    }

    async fn settle(&self, ticket: u64) -> Result<(), StoreError> {
        if ticket == 0 {
            return Ok(());
        }
        self.journal.settle(ticket).await
    }

    fn backup(&self, to: &std::path::Path) -> Result<super::Backup, super::BackupError> {
        self.journal.backup(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        clock::ManualClock,
        store::{
            Attribute, OpKind, Value,
            conformance::{op, set},
        },
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

    fn store() -> (MemoryStore, ManualClock, Arc<EventLog>) {
        store_with(Limits::default())
    }

    fn create(store: &MemoryStore, ops: Vec<Operation>) -> SessionId {
        create_in(store, APP, ops)
    }

    fn create_in(store: &MemoryStore, app: AppId, ops: Vec<Operation>) -> SessionId {
        store
            .create_now(app, CreateOptions::default(), ops)
            .expect("create")
            .0
            .info
            .id
    }

    #[test]
    fn a_session_costs_one_slot_of_128_bytes_and_an_attribute_80() {
        // What keeps 1M sessions of 1 KB within 1.3 times their payload (docs/performance.md).
        assert!(crate::store::table::slot_size::<Entry>() <= 128);
        assert!(size_of::<(Arc<str>, Attribute)>() <= 80);
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
                    .0
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
}
