//! [`CachedClient`]: a [`SessionClient`] with a near cache of sessions an app server read or wrote recently, kept coherent by the
//! session server's watch stream, so that most reads need no round trip.
//!
//! Coherence rests on three rules:
//! - Every change event drops the copy it makes stale. An event for a session that is not
//!   cached leaves a version "tombstone", so a read that raced with the event cannot store
//!   the older copy afterwards.
//! - While the watch stream is down nothing is cached, and every (re)connect clears the cache
//!   (`Update::Reset`): whatever happened meanwhile is unknown, so nothing survives a rejoin.
//! - A caller states the oldest version it accepts (the actix integration carries the newest
//!   version a browser has seen in a cookie), so a write on one app server followed by a read
//!   on another is never answered with an older copy (read-your-writes, monotonic reads),
//!   even before that server has heard of the write.
//!
//! Reads served here still tell the server about the access, in the background and at most
//! every [`TOUCH_INTERVAL`], so idle timeouts keep counting real use; and a copy whose own
//! timeouts have passed is never served.

//!
//! The wrapper owns the cache, the watch subscription that keeps it coherent, and the
//! announcements of its own writes: the server leaves those out of this client's watch (each
//! would cost both processes a message and a few thread wake-ups per write, only to confirm
//! what the write's reply already said), so the wrapper applies them to the cache and tells
//! its subscribers itself.

mod near;

pub use near::TOUCH_INTERVAL;

use crate::{
    client::{self, SessionClient},
    error::Error,
    event::{Event, EventKind},
    id::SessionRef,
    ops::Ops,
    value::{Session, SessionInfo, WriteResult},
    watch::{self, Update},
};
use near::{Lookup, NearCache};
use serde::{Serialize, de::DeserializeOwned};
use std::{
    num::NonZeroUsize,
    sync::{Arc, Weak},
    time::{Duration, SystemTime},
};
use tokio::sync::broadcast;

/// A [`SessionClient`] whose reads through [`get_fresh`](Self::get_fresh) are mostly
/// answered from a near cache, without a round trip. Cheap to clone; clones share the cache.
#[derive(Debug, Clone)]
pub struct CachedClient {
    client: SessionClient,
    cache: Arc<NearCache>,
    /// The watch subscription the cache follows, shared with [`subscribe`](Self::subscribe)rs
    /// so that an app server opens one event stream, not one per use.
    updates: broadcast::Sender<Update>,
}

impl SessionClient {
    /// Adds a near cache of up to `capacity` sessions, kept coherent by the watch stream.
    /// Needs a Tokio runtime (it starts the watch).
    pub fn with_near_cache(self, capacity: NonZeroUsize) -> CachedClient {
        let cache = Arc::new(NearCache::new(capacity));
        let weak: Weak<NearCache> = Arc::downgrade(&cache);
        let updates = watch::subscribe_with(self.clone(), self.origin(), move |update| {
            let Some(cache) = weak.upgrade() else {
                return false;
            };
            if let Some(update) = update {
                cache.on_update(update);
            }
            true
        });
        CachedClient {
            client: self,
            cache,
            updates,
        }
    }
}

impl CachedClient {
    /// The client underneath: its calls bypass the cache (and its writes are not announced).
    pub fn client(&self) -> &SessionClient {
        &self.client
    }

    pub fn timeout(&self) -> Duration {
        self.client.timeout()
    }

    /// See [`SessionClient::store_is_durable`].
    pub fn store_is_durable(&self) -> Option<bool> {
        self.client.store_is_durable()
    }

    /// The events of the app's sessions: the cache's own stream, this client's writes included.
    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.updates.subscribe()
    }

    /// Whether the server leaves this client's own writes out of its watch, so that the
    /// client must apply them to the cache itself (an in-process service tags no calls).
    fn announces(&self) -> bool {
        self.client.origin() != 0
    }

    /// After a write through this client: the event the server leaves out of this client's
    /// watch, applied to the cache and told to subscribers as the server would have. Its
    /// `seq` is 0: it is not in the server's log. Made only when announced.
    fn announce(&self, event: impl FnOnce() -> Event) {
        if !self.announces() {
            return; // the watch brings this write's event like any other
        }
        let event = event();
        self.cache.on_event(&event);
        // Nobody listening is fine.
        let _ = self.updates.send(Update::Event(event));
    }

    /// After a write that may or may not have taken effect (no answer in time): the cached
    /// copy can no longer be trusted, nor an older one stored by a read in flight.
    fn doubt(&self, id: &str, error: &Error) {
        if !self.announces() {
            return;
        }
        match error {
            Error::NotFound => self.cache.forget(id),
            e if e.may_have_applied() => self.cache.doubt(id),
            _ => {} // refused as a whole: nothing changed
        }
    }

    /// Keeps the session a write returned; `generation` is the cache's from before the call,
    /// so a write that raced with a reconnect is not kept.
    fn remember(&self, generation: u64, written: &WriteResult) {
        if let Some(session) = &written.session {
            self.cache.store(session, generation);
        }
    }

    /// The attribute names a write touches, for the event it is announced by; none when
    /// nothing is announced.
    fn changed_names(&self, ops: &Ops) -> Vec<String> {
        if !self.announces() {
            return Vec::new();
        }
        ops.names().map(str::to_owned).collect()
    }

    /// The session, at `min_version` or newer, from the cache when it holds such a copy, else
    /// from the server.
    pub async fn get_fresh(&self, id: &str, min_version: u64) -> Result<Session, Error> {
        let generation = match self.cache.lookup(id, min_version) {
            Lookup::Hit { session, touch } => {
                if touch {
                    // Tell the server about the access, without making this request wait.
                    let (client, id, version) = (self.clone(), id.to_owned(), session.info.version);
                    tokio::spawn(async move {
                        if let Err(Error::NotFound) =
                            client.client.get_if_changed(&id, version).await
                        {
                            client.cache.forget(&id);
                        }
                    });
                }
                return Ok(session);
            }
            Lookup::Miss { generation } => generation,
        };
        match self.client.get(id).await {
            Ok(session) => {
                self.cache.store(&session, generation);
                Ok(session)
            }
            Err(e) => {
                if e == Error::NotFound {
                    self.cache.forget(id);
                }
                Err(e)
            }
        }
    }

    /// See [`SessionClient::get`]: always from the server.
    pub async fn get(&self, id: &str) -> Result<Session, Error> {
        self.client.get(id).await
    }

    /// See [`SessionClient::get_names`]: always from the server.
    pub async fn get_names(&self, id: &str, names: &[&str]) -> Result<Session, Error> {
        self.client.get_names(id, names).await
    }

    pub async fn create(&self, ops: Ops) -> Result<WriteResult, Error> {
        self.create_with(ops, None, None, false).await
    }

    /// See [`SessionClient::create_with`].
    pub async fn create_with(
        &self,
        ops: Ops,
        idle_timeout: Option<Duration>,
        max_lifetime: Option<Duration>,
        return_session: bool,
    ) -> Result<WriteResult, Error> {
        let generation = self.cache.generation();
        let changed = self.changed_names(&ops);
        let written = self
            .client
            .create_with(ops, idle_timeout, max_lifetime, return_session)
            .await?;
        let (reference, version) = (written.info.reference, written.info.version);
        self.announce(|| own_event(EventKind::Created, reference, version, changed));
        self.remember(generation, &written);
        Ok(written)
    }

    pub async fn apply(&self, id: &str, ops: Ops) -> Result<WriteResult, Error> {
        self.apply_with(id, ops, false).await
    }

    /// See [`SessionClient::apply_with`].
    pub async fn apply_with(
        &self,
        id: &str,
        ops: Ops,
        return_session: bool,
    ) -> Result<WriteResult, Error> {
        let generation = self.cache.generation();
        let changed = self.changed_names(&ops);
        let written = match self.client.apply_with(id, ops, return_session).await {
            Ok(written) => written,
            Err(e) => {
                self.doubt(id, &e);
                return Err(e);
            }
        };
        let (reference, version) = (written.info.reference, written.info.version);
        self.announce(|| own_event(EventKind::Changed, reference, version, changed));
        self.remember(generation, &written);
        Ok(written)
    }

    pub async fn invalidate(&self, id: &str) -> Result<(), Error> {
        match self.client.invalidate_ref(id).await {
            Ok(reference) => {
                self.cache.forget(id);
                self.announce(|| own_event(EventKind::Invalidated, reference, 0, Vec::new()));
                Ok(())
            }
            Err(e) => {
                self.doubt(id, &e);
                Err(e)
            }
        }
    }

    /// See [`SessionClient::rotate_id`].
    pub async fn rotate_id(&self, id: &str) -> Result<SessionInfo, Error> {
        let (info, previous) = match self.client.rotate_id_ref(id).await {
            Ok(rotated) => rotated,
            Err(e) => {
                self.doubt(id, &e);
                return Err(e);
            }
        };
        self.cache.forget(id);
        self.announce(|| Event {
            new_reference: Some(info.reference),
            ..own_event(EventKind::IdRotated, previous, info.version, Vec::new())
        });
        Ok(info)
    }

    /// See [`SessionClient::modify`]; the writes go through the cache.
    pub async fn modify<T, F>(&self, id: &str, name: &str, f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> T,
    {
        let read = self.client.get_names(id, &[name]).await?;
        client::modify(read, name, f, |ops| self.apply(id, ops)).await
    }
}

/// An event of this client's own write, as the server would have sent it.
fn own_event(kind: EventKind, reference: SessionRef, version: u64, changed: Vec<String>) -> Event {
    Event {
        seq: 0,
        kind,
        reference,
        version,
        changed,
        new_reference: None,
        at: SystemTime::now(),
        cursor: Default::default(),
    }
}
