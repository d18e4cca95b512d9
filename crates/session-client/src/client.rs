//! [`SessionClient`]: the typed API over `session.v1`, with per-call deadlines so that a
//! missing server gives [`Error::Unavailable`] in bounded time, never a hang.
//!
//! It sits on the transport (which carries a call and brings back its reply) and
//! `crate::convert` (which builds the call and reads the reply), and knows nothing of the
//! near cache, which wraps it (`crate::cache`).

use crate::{
    config::{ClientConfig, DEFAULT_TIMEOUT},
    convert,
    error::Error,
    event::{Cursor, WatchItem},
    hello::ServerHello,
    id::{Prefix, SessionRef},
    ops::Ops,
    transport::{LocalService, Transport},
    value::{Session, SessionInfo, WriteResult},
};
use futures_util::{StreamExt, stream::BoxStream};
use serde::{Serialize, de::DeserializeOwned};
use std::{fmt, future::Future, sync::Arc, time::Duration};

/// A handle to the session service. Cheap to clone; clones share connections.
///
/// The underlying connection reconnects by itself: when the server comes back after a
/// restart, the next call works again without rebuilding the client.
#[derive(Clone)]
pub struct SessionClient {
    transport: Transport,
}

impl fmt::Debug for SessionClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionClient")
            .field("transport", &self.transport.name())
            .field("timeout", &self.timeout())
            .finish()
    }
}

impl SessionClient {
    /// A client that connects on first use (and reconnects after failures), so an app can
    /// start before the session server does.
    pub fn connect_lazy(config: ClientConfig) -> Result<Self, Error> {
        Ok(Self::on(Transport::connect_lazy(&config)?))
    }

    /// A client of a service in this process: same semantics, no network, nothing shared.
    pub fn in_process(service: Arc<LocalService>) -> Self {
        Self::on(Transport::in_process(service, DEFAULT_TIMEOUT))
    }

    fn on(transport: Transport) -> Self {
        Self { transport }
    }

    /// The deadline of each call.
    pub fn timeout(&self) -> Duration {
        self.transport.timeout()
    }

    /// Tags this client's calls (0: untagged), so that a watch can leave out their events.
    pub(crate) fn origin(&self) -> u64 {
        self.transport.origin()
    }

    /// Whether the session server keeps sessions across its own restarts, as it last said
    /// (in a framed handshake, or a watch hello): `None` until it has said so once. Lets an
    /// app say truthfully what an outage of the session server costs its users.
    pub fn store_is_durable(&self) -> Option<bool> {
        self.transport.heard().is_durable()
    }

    /// Records what a watch hello said of the store.
    pub(crate) fn heard_durable(&self, durable: bool) {
        self.transport.heard().durable(durable);
    }

    /// What the server said of itself when this client last connected (its store, its
    /// epoch, this client's app): `None` before the first connection.
    pub fn server_hello(&self) -> Option<ServerHello> {
        self.transport.heard().last()
    }

    /// Creates a session (the server makes its id) and applies `ops` to it atomically.
    pub async fn create(&self, ops: Ops) -> Result<WriteResult, Error> {
        self.create_with(ops, None, None, false).await
    }

    /// Creates a session with its own timeouts, optionally returning the whole session.
    #[tracing::instrument(level = "debug", name = "session_call", skip_all, fields(op = "create", ops = ops.len()))]
    pub async fn create_with(
        &self,
        ops: Ops,
        idle_timeout: Option<Duration>,
        max_lifetime: Option<Duration>,
        return_session: bool,
    ) -> Result<WriteResult, Error> {
        let call = convert::create(ops, idle_timeout, max_lifetime, return_session);
        convert::written(self.transport.call(call).await?)
    }

    /// The whole session.
    pub async fn get(&self, id: &str) -> Result<Session, Error> {
        self.get_names(id, &[]).await
    }

    /// Only the named attributes (all when `names` is empty).
    #[tracing::instrument(level = "debug", name = "session_call", skip_all, fields(op = "get", session = %Prefix(id)))]
    pub async fn get_names(&self, id: &str, names: &[&str]) -> Result<Session, Error> {
        let reply = self.transport.call(convert::get(id, names, 0)).await?;
        // Without a known version the server never answers "not modified".
        convert::got(reply)?.ok_or_else(|| Error::Server {
            code: tonic::Code::Internal,
            message: "the server answered \"not modified\" to a read without a version".into(),
        })
    }

    /// `None` when the session is still at `known_version` (a cheap answer), else the session.
    #[tracing::instrument(level = "debug", name = "session_call", skip_all, fields(op = "get", session = %Prefix(id)))]
    pub async fn get_if_changed(
        &self,
        id: &str,
        known_version: u64,
    ) -> Result<Option<Session>, Error> {
        let reply = self.transport.call(convert::get(id, &[], known_version));
        convert::got(reply.await?)
    }

    /// Applies `ops` atomically: all of them or, on any error, none.
    pub async fn apply(&self, id: &str, ops: Ops) -> Result<WriteResult, Error> {
        self.apply_with(id, ops, false).await
    }

    /// Like [`apply`](Self::apply), returning the whole session after the write in the same
    /// round trip.
    #[tracing::instrument(level = "debug", name = "session_call", skip_all, fields(op = "apply", session = %Prefix(id), ops = ops.len()))]
    pub async fn apply_with(
        &self,
        id: &str,
        ops: Ops,
        return_session: bool,
    ) -> Result<WriteResult, Error> {
        let call = convert::apply(id, ops, return_session);
        convert::written(self.transport.call(call).await?)
    }

    pub async fn invalidate(&self, id: &str) -> Result<(), Error> {
        self.invalidate_ref(id).await.map(drop)
    }

    /// [`invalidate`](Self::invalidate), returning the reference the session had.
    #[tracing::instrument(level = "debug", name = "session_call", skip_all, fields(op = "invalidate", session = %Prefix(id)))]
    pub(crate) async fn invalidate_ref(&self, id: &str) -> Result<SessionRef, Error> {
        convert::invalidated(self.transport.call(convert::invalidate(id)).await?)
    }

    /// Gives the session a new id (the old one is NOT_FOUND at once) and a new reference:
    /// call it on login.
    pub async fn rotate_id(&self, id: &str) -> Result<SessionInfo, Error> {
        Ok(self.rotate_id_ref(id).await?.0)
    }

    /// [`rotate_id`](Self::rotate_id), with the reference the session had before.
    #[tracing::instrument(level = "debug", name = "session_call", skip_all, fields(op = "rotate_id", session = %Prefix(id)))]
    pub(crate) async fn rotate_id_ref(&self, id: &str) -> Result<(SessionInfo, SessionRef), Error> {
        convert::rotated(self.transport.call(convert::rotate_id(id)).await?)
    }

    /// Read-modify-write of one JSON attribute without locks: reads it, calls `f` with its
    /// current value, and writes the result only if nobody changed it meanwhile; on a
    /// conflict `f` runs again on the newer value, after a short random pause that spreads
    /// contending writers apart. Gives up after `MODIFY_ATTEMPTS` tries with the last conflict.
    pub async fn modify<T, F>(&self, id: &str, name: &str, f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> T,
    {
        let read = self.get_names(id, &[name]).await?;
        modify(read, name, f, |ops| self.apply(id, ops)).await
    }

    /// The raw event stream of this client's app, from `from` (the cursor of the last hello or
    /// event seen; the default cursor starts from now). Most apps want
    /// [`subscribe`](Self::subscribe), which reconnects and resumes by itself.
    pub async fn watch_raw(
        &self,
        from: &Cursor,
    ) -> Result<BoxStream<'static, Result<WatchItem, Error>>, Error> {
        self.watch_skipping(from, 0).await
    }

    /// [`watch_raw`](Self::watch_raw), leaving out the events caused by calls of `origin`.
    pub(crate) async fn watch_skipping(
        &self,
        from: &Cursor,
        skip_origin: u64,
    ) -> Result<BoxStream<'static, Result<WatchItem, Error>>, Error> {
        let request = convert::watch(from, skip_origin);
        let stream = self.transport.watch(request).await?;
        Ok(stream
            .map(|item| item.and_then(convert::watch_item))
            .boxed())
    }
}

/// The loop of [`SessionClient::modify`], from the attribute as `read`, writing through
/// `apply` (the near cache's, when there is one).
pub(crate) async fn modify<T, F, W, Fut>(
    read: Session,
    name: &str,
    mut f: F,
    mut apply: W,
) -> Result<T, Error>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<T>) -> T,
    W: FnMut(Ops) -> Fut,
    Fut: Future<Output = Result<WriteResult, Error>>,
{
    const MODIFY_ATTEMPTS: u32 = 100;
    let mut current: Option<T> = read.get_json(name)?;
    let mut version = read.attribute(name).map_or(0, |a| a.version);
    let mut last = None;
    for attempt in 0..MODIFY_ATTEMPTS {
        if attempt > 0 {
            // Up to 100 us doubling to 25.6 ms: contenders spread out, so each round one wins.
            let cap_us = 100 << attempt.min(8);
            tokio::time::sleep(Duration::from_micros(rand::random_range(0..=cap_us))).await;
        }
        let new = f(current.take());
        match apply(Ops::new().set_json_if(name, &new, version)?).await {
            Ok(_) => return Ok(new),
            Err(Error::Conflict {
                name: conflicted,
                current: now,
            }) => {
                version = now.as_ref().map_or(0, |a| a.version);
                current = now.as_ref().map(|a| a.json(name)).transpose()?;
                last = Some(Error::Conflict {
                    name: conflicted,
                    current: now,
                });
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(Error::NotFound))
}
