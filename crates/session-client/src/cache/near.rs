//! The near cache's copies and the rules that keep them coherent (see [`super`]), without
//! timing: the client wrapper feeds it reads, writes and the watch stream's updates.
//!
//! Events name sessions by reference, never by id, so the copies are kept by reference, and
//! a map from id to reference finds a copy for a read. A session not held leaves only its
//! reference (a tombstone), which is all an event gives.

use crate::{
    event::Event,
    id::{SessionId, SessionRef},
    value::Session,
    watch::Update,
};
use lru::LruCache;
use parking_lot::{Mutex, MutexGuard};
use std::{
    collections::HashMap,
    num::NonZeroUsize,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant, SystemTime},
};

/// How often at most a session read from the cache is reported to the server as accessed.
pub const TOUCH_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Entry {
    /// `None`: only a tombstone.
    session: Option<Session>,
    /// The newest version the watch stream announced for this session.
    known_version: u64,
    /// When the server last saw an access, as far as this cache knows.
    server_access: SystemTime,
    last_touch: Instant,
}

impl Entry {
    /// Only a version: a read that raced with the news of `known_version` cannot store an
    /// older copy afterwards.
    fn tombstone(known_version: u64) -> Self {
        Self {
            session: None,
            known_version,
            server_access: SystemTime::UNIX_EPOCH,
            last_touch: Instant::now(),
        }
    }

    /// The newest version this entry knows of, announced or held.
    fn newest(&self) -> u64 {
        let held = self.session.as_ref().map_or(0, |s| s.info.version);
        self.known_version.max(held)
    }
}

/// The copies by reference, and the references of the ids of those held.
#[derive(Debug)]
struct Entries {
    by_ref: LruCache<SessionRef, Entry>,
    refs: HashMap<SessionId, SessionRef>,
}

impl Entries {
    /// Keeps `entry` under `reference`, forgetting the id of whatever it replaces or evicts.
    fn put(&mut self, reference: SessionRef, entry: Entry) {
        let id = entry.session.as_ref().map(|s| s.info.id.clone());
        if let Some((_, gone)) = self.by_ref.push(reference, entry) {
            self.unmap(gone.session.as_ref());
        }
        if let Some(id) = id {
            self.refs.insert(id, reference);
        }
    }

    fn pop(&mut self, reference: SessionRef) {
        if let Some(gone) = self.by_ref.pop(&reference) {
            self.unmap(gone.session.as_ref());
        }
    }

    /// Drops the copy held under `reference`, keeping what its version was.
    fn drop_copy(&mut self, reference: SessionRef) {
        let Some(entry) = self.by_ref.peek_mut(&reference) else {
            return;
        };
        let gone = entry.session.take();
        self.unmap(gone.as_ref());
    }

    fn unmap(&mut self, session: Option<&Session>) {
        if let Some(session) = session
            && self.refs.get(session.info.id.as_str()) == Some(&session.info.reference)
        {
            self.refs.remove(session.info.id.as_str());
        }
    }

    fn clear(&mut self) {
        self.by_ref.clear();
        self.refs.clear();
    }
}

#[derive(Debug)]
pub struct NearCache {
    entries: Mutex<Entries>,
    /// True while the watch stream is connected: only then can copies be trusted.
    live: AtomicBool,
    /// Bumped by every clear (and by a doubt about a session not held), so a read that
    /// started before one cannot store after it.
    generation: AtomicU64,
}

/// What a lookup found.
pub(crate) enum Lookup {
    Hit { session: Session, touch: bool },
    Miss { generation: u64 },
}

impl NearCache {
    pub(crate) fn new(capacity: NonZeroUsize) -> Self {
        Self {
            entries: Mutex::new(Entries {
                by_ref: LruCache::new(capacity),
                refs: HashMap::new(),
            }),
            live: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        }
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock()
    }

    pub(crate) fn lookup(&self, id: &str, min_version: u64) -> Lookup {
        let generation = self.generation.load(Ordering::Acquire);
        if !self.live.load(Ordering::Acquire) {
            return Lookup::Miss { generation };
        }
        let mut entries = self.entries();
        let Some(&reference) = entries.refs.get(id) else {
            return Lookup::Miss { generation };
        };
        let Some(entry) = entries.by_ref.get_mut(&reference) else {
            return Lookup::Miss { generation };
        };
        let Some(session) = &entry.session else {
            return Lookup::Miss { generation };
        };
        let info = &session.info;
        let deadline =
            (entry.server_access + info.idle_timeout).min(info.created_at + info.max_lifetime);
        if info.id != id
            || info.version < min_version.max(entry.known_version)
            || SystemTime::now() >= deadline
        {
            return Lookup::Miss { generation };
        }
        let touch = entry.last_touch.elapsed() >= TOUCH_INTERVAL;
        if touch {
            entry.last_touch = Instant::now();
            entry.server_access = SystemTime::now();
        }
        Lookup::Hit {
            session: session.clone(),
            touch,
        }
    }

    /// Keeps a copy read or written at `generation`, unless something newer is known or held.
    pub(crate) fn store(&self, session: &Session, generation: u64) {
        if !self.live.load(Ordering::Acquire)
            || self.generation.load(Ordering::Acquire) != generation
        {
            return;
        }
        let mut entries = self.entries();
        let reference = session.info.reference;
        let known = entries.by_ref.peek(&reference).map_or(0, Entry::newest);
        if session.info.version < known {
            return;
        }
        entries.put(
            reference,
            Entry {
                session: Some(session.clone()),
                known_version: known,
                server_access: session.info.last_access,
                last_touch: Instant::now(),
            },
        );
    }

    pub(crate) fn forget(&self, id: &str) {
        let mut entries = self.entries();
        if let Some(reference) = entries.refs.get(id).copied() {
            entries.pop(reference);
        }
    }

    /// A write to `id` may have taken effect unseen: drops the copy and refuses any copy not
    /// newer than it, as if an event had announced the next version. For a session not held,
    /// whose reference this cache does not know, no read in flight may store its copy.
    pub(crate) fn doubt(&self, id: &str) {
        let mut entries = self.entries();
        let Some(reference) = entries.refs.get(id).copied() else {
            self.generation.fetch_add(1, Ordering::AcqRel);
            return;
        };
        let next = entries.by_ref.peek(&reference).map_or(0, Entry::newest) + 1;
        entries.put(reference, Entry::tombstone(next));
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn on_event(&self, event: &Event) {
        let mut entries = self.entries();
        let reference = event.reference;
        match event.kind {
            // Ended or moved: the id names nothing any more (the server answers NOT_FOUND).
            kind if kind.ends_id() => entries.pop(reference),
            _ => match entries.by_ref.get_mut(&reference) {
                Some(entry) => {
                    entry.known_version = entry.known_version.max(event.version);
                    if entry
                        .session
                        .as_ref()
                        .is_some_and(|s| s.info.version < event.version)
                    {
                        entries.drop_copy(reference);
                    }
                }
                None => entries.put(reference, Entry::tombstone(event.version)),
            },
        }
    }

    fn clear(&self, live: bool) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.live.store(live, Ordering::Release);
        self.entries().clear();
    }

    /// Follows the watch stream: called by the task that reads it, for every update.
    pub(crate) fn on_update(&self, update: &Update) {
        match update {
            Update::Event(event) => self.on_event(event),
            Update::Reset => self.clear(true),
            Update::Disconnected => self.clear(false),
        }
    }
}

/// The coherence rules, one by one and without timing: the integration tests exercise them
/// through the real watch stream, where an event may win a race that these fix in place.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::{event::EventKind, value::SessionInfo};

    /// Each test session's reference: a hash of its id will do.
    fn reference(id: &str) -> SessionRef {
        SessionRef::new(id.bytes().fold(7, |h, b| h * 31 + u64::from(b)))
    }

    fn session(id: &str, version: u64) -> Session {
        let now = SystemTime::now();
        Session {
            info: SessionInfo {
                id: id.into(),
                reference: reference(id),
                version,
                created_at: now,
                last_access: now,
                idle_timeout: Duration::from_secs(60),
                max_lifetime: Duration::from_secs(3600),
                size_bytes: 0,
            },
            attributes: Default::default(),
        }
    }

    fn connected() -> NearCache {
        let cache = NearCache::new(NonZeroUsize::new(16).unwrap());
        cache.clear(true);
        cache
    }

    fn served(cache: &NearCache, id: &str, min_version: u64) -> Option<u64> {
        match cache.lookup(id, min_version) {
            Lookup::Hit { session, .. } => Some(session.info.version),
            Lookup::Miss { .. } => None,
        }
    }

    fn event(kind: EventKind, id: &str, version: u64) -> Event {
        Event {
            seq: 1,
            kind,
            reference: reference(id),
            version,
            changed: Vec::new(),
            new_reference: None,
            at: SystemTime::now(),
            cursor: Default::default(),
        }
    }

    fn changed(id: &str, version: u64) -> Event {
        event(EventKind::Changed, id, version)
    }

    #[test]
    fn a_doubted_session_is_served_again_only_from_a_newer_copy() {
        let cache = connected();
        cache.store(&session("a", 3), cache.generation());
        cache.doubt("a");
        assert_eq!(served(&cache, "a", 0), None, "the copy may be stale");
        cache.store(&session("a", 3), cache.generation());
        assert_eq!(served(&cache, "a", 0), None, "a read in flight is refused");
        cache.store(&session("a", 4), cache.generation());
        assert_eq!(served(&cache, "a", 0), Some(4));
    }

    #[test]
    fn a_copy_older_than_the_caller_has_seen_is_never_served() {
        let cache = connected();
        cache.store(&session("a", 3), cache.generation());
        assert_eq!(served(&cache, "a", 3), Some(3));
        assert_eq!(
            served(&cache, "a", 4),
            None,
            "the browser saw version 4 elsewhere"
        );
    }

    #[test]
    fn a_change_event_drops_the_copy_it_makes_stale() {
        let cache = connected();
        cache.store(&session("a", 3), cache.generation());
        cache.on_event(&changed("a", 4));
        assert_eq!(served(&cache, "a", 0), None);
        cache.store(&session("a", 4), cache.generation());
        assert_eq!(served(&cache, "a", 0), Some(4));
    }

    #[test]
    fn a_read_that_lost_the_race_with_an_event_cannot_store_its_older_copy() {
        let cache = connected();
        let generation = cache.generation();
        cache.on_event(&changed("b", 5)); // arrives while a read of version 4 is in flight
        cache.store(&session("b", 4), generation);
        assert_eq!(served(&cache, "b", 0), None);
        cache.store(&session("b", 5), generation);
        assert_eq!(served(&cache, "b", 0), Some(5));
    }

    #[test]
    fn a_slow_read_does_not_replace_a_newer_copy() {
        let cache = connected();
        let generation = cache.generation();
        cache.store(&session("a", 5), generation); // a write's reply
        cache.store(&session("a", 4), generation); // a read that was in flight before it
        assert_eq!(served(&cache, "a", 0), Some(5));
    }

    #[test]
    fn ended_sessions_are_dropped() {
        let cache = connected();
        cache.store(&session("a", 1), cache.generation());
        cache.on_event(&event(EventKind::Invalidated, "a", 0));
        assert_eq!(served(&cache, "a", 0), None);
    }

    #[test]
    fn nothing_is_trusted_while_disconnected_nor_kept_across_a_reconnect() {
        let cache = connected();
        let before = cache.generation();
        cache.store(&session("a", 1), before);
        cache.clear(false); // the watch stream dropped
        assert_eq!(served(&cache, "a", 0), None);
        cache.store(&session("a", 1), cache.generation());
        assert_eq!(
            served(&cache, "a", 0),
            None,
            "no copies while no events can arrive"
        );
        cache.clear(true); // reconnected
        cache.store(&session("a", 1), before);
        assert_eq!(
            served(&cache, "a", 0),
            None,
            "a read from before the gap is not kept"
        );
    }

    #[test]
    fn a_doubt_about_a_session_not_held_keeps_a_read_in_flight_from_storing() {
        let cache = connected();
        let generation = cache.generation();
        cache.doubt("a"); // a write to "a" went unanswered while a read of it was out
        cache.store(&session("a", 3), generation);
        assert_eq!(served(&cache, "a", 0), None);
        cache.store(&session("a", 3), cache.generation());
        assert_eq!(
            served(&cache, "a", 0),
            Some(3),
            "a read made after the doubt"
        );
    }

    #[test]
    fn a_rotated_session_is_found_by_neither_id_nor_reference() {
        let cache = connected();
        cache.store(&session("a", 2), cache.generation());
        cache.on_event(&event(EventKind::IdRotated, "a", 2));
        assert_eq!(served(&cache, "a", 0), None);
        assert!(
            cache.entries().refs.is_empty(),
            "no id is kept for a copy gone"
        );
    }

    #[test]
    fn a_copy_evicted_by_capacity_takes_its_id_along() {
        let cache = NearCache::new(NonZeroUsize::new(2).unwrap());
        cache.clear(true);
        for id in ["a", "b", "c"] {
            cache.store(&session(id, 1), cache.generation());
        }
        assert_eq!(served(&cache, "a", 0), None, "the least recently used went");
        assert_eq!(served(&cache, "c", 0), Some(1));
        assert_eq!(cache.entries().refs.len(), 2);
    }

    #[test]
    fn a_copy_past_its_own_timeouts_is_not_served() {
        let cache = connected();
        let mut old = session("a", 1);
        old.info.created_at = SystemTime::now() - Duration::from_secs(7200); // lifetime 1 h
        cache.store(&old, cache.generation());
        assert_eq!(served(&cache, "a", 0), None);
    }
}
