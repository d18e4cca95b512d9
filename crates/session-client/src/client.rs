//! [`SessionClient`]: the typed API over `session.v1`, with per-call deadlines so that a
//! missing server gives [`Error::Unavailable`] in bounded time, never a hang.

use crate::{
    error::Error,
    value::{Ops, Session, SessionInfo, WriteResult},
};
use futures_util::{StreamExt, stream::BoxStream};
use serde::{Serialize, de::DeserializeOwned};
use session_proto::v1::{
    self as pb, EventKind, session_service_client::SessionServiceClient,
    session_service_server::SessionService,
};
use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};
use tonic::{
    Request, Status,
    transport::{Channel, Endpoint},
};

/// The default deadline of every call: how long an app waits before it calls the server
/// unavailable.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// The address clients use when given none.
pub fn default_server_url() -> String {
    format!("http://127.0.0.1:{}", session_proto::DEFAULT_PORT)
}

/// A session service running in this process, called without a network hop.
pub type LocalService = dyn SessionService<
        WatchStream = BoxStream<'static, Result<pb::WatchResponse, Status>>,
        PipelineStream = BoxStream<'static, Result<pb::PipelineResponse, Status>>,
    >;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The session server's address (`http://host:port`). Exactly one for now: servers
    /// with memory stores share nothing, so a client spread over two would split sessions
    /// between them; [`SessionClient::connect_lazy`] refuses more than one.
    pub endpoints: Vec<String>,
    /// Deadline of each call, connection included.
    pub timeout: Duration,
    /// How calls travel; the watch stream is gRPC either way.
    pub protocol: Protocol,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            endpoints: vec![default_server_url()],
            timeout: DEFAULT_TIMEOUT,
            protocol: Protocol::default(),
        }
    }
}

/// How a client carries its calls to the session server's port. Both carry the same
/// `session.v1` pipeline messages with the same guarantees; see docs/protocol.md.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// Length-prefixed messages on a plain TCP connection: the fastest (about 13 µs less CPU
    /// per call at each end than HTTP/2; see docs/performance.md).
    #[default]
    Framed,
    /// The `Pipeline` gRPC stream, for when only gRPC gets through (a gRPC proxy between).
    Grpc,
}

impl std::str::FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "framed" => Ok(Self::Framed),
            "grpc" => Ok(Self::Grpc),
            _ => Err(format!("unknown protocol {s:?} (framed or grpc)")),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Framed => "framed",
            Self::Grpc => "grpc",
        })
    }
}

#[derive(Clone)]
enum Transport {
    /// Calls go over the pipeline; the plain client serves the watch stream.
    Grpc {
        /// Shared: cloning a tonic client costs several allocations and atomics, and an app
        /// clones its client for every request (the actix middleware does).
        client: Arc<SessionServiceClient<Channel>>,
        pipeline: crate::pipeline::Pipeline,
        /// Tags this client's calls, so its own watch can leave out the events of its own
        /// writes (see [`SessionClient::with_near_cache`]).
        origin: u64,
    },
    Local(Arc<LocalService>),
}

/// A handle to the session service. Cheap to clone; clones share connections.
///
/// The underlying channel reconnects by itself: when the server comes back after a restart,
/// the next call works again without rebuilding the client.
#[derive(Clone)]
pub struct SessionClient {
    transport: Transport,
    timeout: Duration,
    /// Set by [`SessionClient::with_near_cache`]; shared by every clone.
    cache: Option<Arc<crate::cache::NearCache>>,
    /// The watch subscription the near cache follows, shared with [`SessionClient::subscribe`]
    /// so that an app server opens one event stream, not one per use. That stream leaves out
    /// the events of this client's own writes, which the client announces here itself, without
    /// a round trip.
    updates: Option<tokio::sync::broadcast::Sender<crate::watch::Update>>,
    /// What the last watch hello said of the server's store (see
    /// [`SessionClient::store_is_durable`]); shared by every clone.
    durable: Arc<AtomicU8>,
}

/// What `SessionClient::durable` holds.
const DURABILITY_UNKNOWN: u8 = 0;
const NOT_DURABLE: u8 = 1;
const DURABLE: u8 = 2;

impl fmt::Debug for SessionClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let transport = match self.transport {
            Transport::Grpc { .. } => "grpc",
            Transport::Local(_) => "in-process",
        };
        f.debug_struct("SessionClient")
            .field("transport", &transport)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Runs a call on whichever transport the client has, within its deadline: `$call` is the
/// pipeline's call kind, `$reply` the reply kind that answers it.
macro_rules! call {
    ($self:ident, $method:ident, $req:expr, $call:ident, $reply:ident) => {{
        let req = $req;
        let answer = match &$self.transport {
            // The pipeline fails a call not answered within the timeout.
            Transport::Grpc { pipeline, .. } => {
                match pipeline.call(pb::call::Kind::$call(req)).await {
                    Ok(pb::reply::Kind::$reply(reply)) => Ok(reply),
                    Ok(_) => Err(Status::internal(
                        "the server answered with another kind of reply",
                    )),
                    Err(status) => Err(status),
                }
            }
            Transport::Local(s) => {
                match tokio::time::timeout($self.timeout, s.$method(Request::new(req))).await {
                    Ok(answer) => answer.map(tonic::Response::into_inner),
                    Err(_) => Err(Status::unavailable(format!(
                        "no answer within {:?}",
                        $self.timeout
                    ))),
                }
            }
        };
        answer.map_err(Error::from)
    }};
}

impl SessionClient {
    /// A client that connects on first use (and reconnects after failures), so an app can
    /// start before the session server does.
    pub fn connect_lazy(config: ClientConfig) -> Result<Self, Error> {
        let url = match config.endpoints.as_slice() {
            [] => {
                return Err(Error::InvalidArgument(
                    "no session server address given".into(),
                ));
            }
            [one] => one,
            many => {
                return Err(Error::InvalidArgument(format!(
                    "{} session server addresses given ({}): give one. Session servers share no sessions, so a client spread over several would split them and lose carts",
                    many.len(),
                    many.join(", ")
                )));
            }
        };
        let endpoint = Endpoint::from_shared(url.clone())
            .map(|e| {
                // Pings find a dead or silent server within about two timeouts, so the watch
                // stream notices and the near cache stops trusting itself.
                e.connect_timeout(config.timeout)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(config.timeout)
                    .keep_alive_timeout(config.timeout)
                    .keep_alive_while_idle(true)
            })
            .map_err(|_| {
                Error::InvalidArgument(format!(
                    "{url:?} is not a valid address (write http://HOST:PORT)"
                ))
            })?;
        // Taken before the endpoint goes into the channel.
        let framed_addr = match config.protocol {
            Protocol::Framed => Some(authority(&endpoint)?),
            Protocol::Grpc => None,
        };
        let channel = endpoint.connect_lazy();
        // The reply to a batch may exceed tonic's 4 MiB default; the server bounds what it sends.
        let client = SessionServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let origin = rand::random_range(1..=u64::MAX);
        let connector = match framed_addr {
            Some(addr) => crate::pipeline::Connector::Framed(addr),
            None => crate::pipeline::Connector::Grpc(client.clone()),
        };
        Ok(Self {
            transport: Transport::Grpc {
                pipeline: crate::pipeline::Pipeline::start(connector, config.timeout, origin),
                client: Arc::new(client),
                origin,
            },
            timeout: config.timeout,
            cache: None,
            updates: None,
            durable: Arc::new(AtomicU8::new(DURABILITY_UNKNOWN)),
        })
    }

    /// Adds a near cache of up to `capacity` sessions, kept coherent by the watch stream
    /// (see [`crate::cache`]). Reads through [`get_fresh`](Self::get_fresh) are then mostly
    /// answered without a round trip. Needs a Tokio runtime (it starts the watch).
    ///
    /// The cache's watch stream leaves out the events of this client's own writes (each would
    /// cost both processes a message and a few thread wake-ups per write, only to confirm what
    /// the write's reply already said): the client applies them to the cache and announces
    /// them to [`subscribe`](Self::subscribe)rs itself.
    pub fn with_near_cache(mut self, capacity: std::num::NonZeroUsize) -> Self {
        let cache = Arc::new(crate::cache::NearCache::new(capacity));
        let bare = Self {
            cache: None,
            updates: None,
            ..self.clone()
        };
        self.updates = Some(crate::watch::subscribe_for_cache(
            bare,
            self.origin(),
            Arc::downgrade(&cache),
        ));
        self.cache = Some(cache);
        self
    }

    /// Every session's events (see [`crate::watch`]). With a near cache this shares the
    /// cache's stream; otherwise it opens one.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::watch::Update> {
        match &self.updates {
            Some(updates) => updates.subscribe(),
            None => crate::watch::subscribe(self.clone()),
        }
    }

    /// Tags this client's pipeline calls; 0 for an in-process service, whose calls are not
    /// tagged.
    fn origin(&self) -> u64 {
        match &self.transport {
            Transport::Grpc { origin, .. } => *origin,
            Transport::Local(_) => 0,
        }
    }

    /// The near cache and its subscribers, when the server leaves this client's own writes
    /// out of their watch, so that the client must apply them itself.
    fn own_writes(
        &self,
    ) -> Option<(
        &crate::cache::NearCache,
        &tokio::sync::broadcast::Sender<crate::watch::Update>,
    )> {
        match (&self.cache, &self.updates) {
            (Some(cache), Some(updates)) if self.origin() != 0 => Some((cache, updates)),
            _ => None,
        }
    }

    /// After a write through this client: the event the server leaves out of this client's
    /// watch (see [`with_near_cache`](Self::with_near_cache)), applied to the near cache and
    /// told to subscribers as the server would have. Its `seq` is 0: it is not in the
    /// server's log.
    /// `event` is made only when announced: without a near cache, a write builds none.
    fn announce(&self, event: impl FnOnce() -> pb::Event) {
        let Some((cache, updates)) = self.own_writes() else {
            return; // the watch brings this write's event like any other
        };
        let event = event();
        cache.on_event(&event);
        // Nobody listening is fine.
        let _ = updates.send(crate::watch::Update::Event(event));
    }

    /// After a write that may or may not have taken effect (no answer in time): the cached
    /// copy can no longer be trusted, nor an older one stored by a read in flight.
    fn doubt(&self, id: &str, error: &Error) {
        if let Some((cache, _)) = self.own_writes() {
            match error {
                Error::NotFound => cache.forget(id),
                e if e.may_have_applied() => cache.doubt(id),
                _ => {} // refused as a whole: nothing changed
            }
        }
    }

    /// The session, at `min_version` or newer, from the near cache when it holds such a copy,
    /// else from the server. Without a near cache, the same as [`get`](Self::get).
    pub async fn get_fresh(&self, id: &str, min_version: u64) -> Result<Session, Error> {
        let Some(cache) = &self.cache else {
            return self.get(id).await;
        };
        let generation = match cache.lookup(id, min_version) {
            crate::cache::Lookup::Hit { session, touch } => {
                if touch {
                    // Tell the server about the access, without making this request wait.
                    let (client, id, version) = (self.clone(), id.to_owned(), session.info.version);
                    tokio::spawn(async move {
                        if let Err(Error::NotFound) = client.get_if_changed(&id, version).await
                            && let Some(cache) = &client.cache
                        {
                            cache.forget(&id);
                        }
                    });
                }
                return Ok(session);
            }
            crate::cache::Lookup::Miss { generation } => generation,
        };
        match self.get(id).await {
            Ok(session) => {
                cache.store(&session, generation);
                Ok(session)
            }
            Err(e) => {
                if e == Error::NotFound {
                    cache.forget(id);
                }
                Err(e)
            }
        }
    }

    /// A client of a service in this process: same semantics, no network, nothing shared.
    pub fn in_process(service: Arc<LocalService>) -> Self {
        Self {
            transport: Transport::Local(service),
            timeout: DEFAULT_TIMEOUT,
            cache: None,
            updates: None,
            durable: Arc::new(AtomicU8::new(DURABILITY_UNKNOWN)),
        }
    }

    /// Whether the session server keeps sessions across its own restarts, as its last watch
    /// hello said: `None` until a watch stream (the near cache's, or a
    /// [`subscribe`](Self::subscribe)r's) has connected once. Lets an app say truthfully what
    /// an outage of the session server costs its users.
    pub fn store_is_durable(&self) -> Option<bool> {
        match self.durable.load(Ordering::Relaxed) {
            NOT_DURABLE => Some(false),
            DURABLE => Some(true),
            _ => None,
        }
    }

    /// Records what a watch hello said of the store.
    pub(crate) fn heard_durable(&self, durable: bool) {
        let value = if durable { DURABLE } else { NOT_DURABLE };
        self.durable.store(value, Ordering::Relaxed);
    }

    /// Keeps the session a write returned in the near cache; `generation` is the cache's from
    /// before the call, so a write that raced with a reconnect is not kept.
    fn remember(
        &self,
        generation: Option<u64>,
        written: WriteResult,
    ) -> Result<WriteResult, Error> {
        if let (Some(cache), Some(generation), Some(session)) =
            (&self.cache, generation, &written.session)
        {
            cache.store(session, generation);
        }
        Ok(written)
    }

    /// Whether reads can be answered by a near cache.
    pub fn has_near_cache(&self) -> bool {
        self.cache.is_some()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Creates a session (the server makes its id) and applies `ops` to it atomically.
    pub async fn create(&self, ops: Ops) -> Result<WriteResult, Error> {
        self.create_with(ops, None, None, false).await
    }

    /// Creates a session with its own timeouts, optionally returning the whole session.
    pub async fn create_with(
        &self,
        ops: Ops,
        idle_timeout: Option<Duration>,
        max_lifetime: Option<Duration>,
        return_session: bool,
    ) -> Result<WriteResult, Error> {
        let ms = |d: Option<Duration>| d.map_or(0, |d| d.as_millis() as u64);
        let req = pb::CreateRequest {
            operations: ops.ops,
            idle_timeout_ms: ms(idle_timeout),
            max_lifetime_ms: ms(max_lifetime),
            returning: returning(return_session),
        };
        let generation = self.cache.as_ref().map(|c| c.generation());
        let changed = self.changed_names(&req.operations);
        let written: WriteResult = call!(self, create, req, Create, Write)?.try_into()?;
        self.announce(|| {
            own_event(
                EventKind::Created,
                &written.info.id,
                written.info.version,
                changed,
            )
        });
        self.remember(generation, written)
    }

    /// The whole session.
    pub async fn get(&self, id: &str) -> Result<Session, Error> {
        self.get_names(id, &[]).await
    }

    /// Only the named attributes (all when `names` is empty).
    pub async fn get_names(&self, id: &str, names: &[&str]) -> Result<Session, Error> {
        let req = pb::GetRequest {
            id: id.to_owned(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            known_version: 0,
        };
        let resp = call!(self, get, req, Get, Get)?;
        resp.session.unwrap_or_default().try_into()
    }

    /// `None` when the session is still at `known_version` (a cheap answer), else the session.
    pub async fn get_if_changed(
        &self,
        id: &str,
        known_version: u64,
    ) -> Result<Option<Session>, Error> {
        let req = pb::GetRequest {
            id: id.to_owned(),
            names: Vec::new(),
            known_version,
        };
        let resp = call!(self, get, req, Get, Get)?;
        if resp.not_modified {
            return Ok(None);
        }
        resp.session.unwrap_or_default().try_into().map(Some)
    }

    /// Applies `ops` atomically: all of them or, on any error, none.
    pub async fn apply(&self, id: &str, ops: Ops) -> Result<WriteResult, Error> {
        self.apply_with(id, ops, false).await
    }

    /// Like [`apply`](Self::apply), returning the whole session after the write in the same
    /// round trip.
    pub async fn apply_with(
        &self,
        id: &str,
        ops: Ops,
        return_session: bool,
    ) -> Result<WriteResult, Error> {
        let generation = self.cache.as_ref().map(|c| c.generation());
        let changed = self.changed_names(&ops.ops);
        let req = pb::ApplyRequest {
            id: id.to_owned(),
            operations: ops.ops,
            returning: returning(return_session),
        };
        let written = call!(self, apply, req, Apply, Write).and_then(WriteResult::try_from);
        let written = match written {
            Ok(written) => written,
            Err(e) => {
                self.doubt(id, &e);
                return Err(e);
            }
        };
        self.announce(|| own_event(EventKind::Changed, id, written.info.version, changed));
        self.remember(generation, written)
    }

    /// The attribute names a write touches, for the event it is announced by; none when
    /// nothing is announced.
    fn changed_names(&self, ops: &[pb::Operation]) -> Vec<String> {
        if self.own_writes().is_none() {
            return Vec::new();
        }
        ops.iter().map(|o| o.name.clone()).collect()
    }

    pub async fn invalidate(&self, id: &str) -> Result<(), Error> {
        let result = call!(
            self,
            invalidate,
            pb::InvalidateRequest { id: id.to_owned() },
            Invalidate,
            Invalidate
        );
        match result {
            Ok(_) => {
                self.announce(|| own_event(EventKind::Invalidated, id, 0, Vec::new()));
                Ok(())
            }
            Err(e) => {
                self.doubt(id, &e);
                Err(e)
            }
        }
    }

    /// Gives the session a new id (the old one is NOT_FOUND at once): call it on login.
    pub async fn rotate_id(&self, id: &str) -> Result<SessionInfo, Error> {
        let result = call!(
            self,
            rotate_id,
            pb::RotateIdRequest { id: id.to_owned() },
            RotateId,
            RotateId
        );
        let info: SessionInfo = match result {
            Ok(resp) => resp.info.unwrap_or_default().into(),
            Err(e) => {
                self.doubt(id, &e);
                return Err(e);
            }
        };
        self.announce(|| pb::Event {
            new_id: info.id.clone(),
            ..own_event(EventKind::IdRotated, id, info.version, Vec::new())
        });
        Ok(info)
    }

    /// Read-modify-write of one JSON attribute without locks: reads it, calls `f` with its
    /// current value, and writes the result only if nobody changed it meanwhile; on a
    /// conflict `f` runs again on the newer value, after a short random pause that spreads
    /// contending writers apart. Gives up after `MODIFY_ATTEMPTS` tries with the last conflict.
    pub async fn modify<T, F>(&self, id: &str, name: &str, mut f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> T,
    {
        const MODIFY_ATTEMPTS: u32 = 100;
        let session = self.get_names(id, &[name]).await?;
        let mut current: Option<T> = session.get_json(name)?;
        let mut version = session.attribute(name).map_or(0, |a| a.version);
        let mut last = None;
        for attempt in 0..MODIFY_ATTEMPTS {
            if attempt > 0 {
                // Up to 100 us doubling to 25.6 ms: contenders spread out, so each round one wins.
                let cap_us = 100 << attempt.min(8);
                tokio::time::sleep(Duration::from_micros(rand::random_range(0..=cap_us))).await;
            }
            let new = f(current.take());
            match self
                .apply(id, Ops::new().set_json_if(name, &new, version)?)
                .await
            {
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

    /// The raw event stream from `server_epoch`/`after_seq` (0/0: from now). Most apps want
    /// [`crate::watch::subscribe`], which reconnects and resumes by itself.
    pub async fn watch_raw(
        &self,
        server_epoch: u64,
        after_seq: u64,
    ) -> Result<BoxStream<'static, Result<pb::WatchResponse, Error>>, Error> {
        self.watch_skipping(server_epoch, after_seq, 0).await
    }

    /// [`watch_raw`](Self::watch_raw), leaving out the events caused by calls of `origin`.
    pub(crate) async fn watch_skipping(
        &self,
        server_epoch: u64,
        after_seq: u64,
        skip_origin: u64,
    ) -> Result<BoxStream<'static, Result<pb::WatchResponse, Error>>, Error> {
        let req = pb::WatchRequest {
            server_epoch,
            after_seq,
            skip_origin,
        };
        let stream = match &self.transport {
            Transport::Grpc { client, .. } => {
                let mut c = SessionServiceClient::clone(client);
                let open = c.watch(Request::new(req));
                let resp = tokio::time::timeout(self.timeout, open)
                    .await
                    .map_err(|_| {
                        Error::Unavailable(format!("no answer within {:?}", self.timeout))
                    })??;
                resp.into_inner().boxed()
            }
            Transport::Local(s) => s.watch(Request::new(req)).await?.into_inner(),
        };
        Ok(stream.map(|item| item.map_err(Error::from)).boxed())
    }
}

/// `host:port` of an endpoint, for a framed connection.
fn authority(endpoint: &Endpoint) -> Result<String, Error> {
    let uri = endpoint.uri();
    match (uri.host(), uri.port_u16()) {
        (Some(host), Some(port)) => Ok(format!("{host}:{port}")),
        _ => Err(Error::InvalidArgument(format!(
            "{uri} has no port (write http://HOST:PORT)"
        ))),
    }
}

/// An event of this client's own write, as the server would have sent it.
fn own_event(kind: EventKind, id: &str, version: u64, changed: Vec<String>) -> pb::Event {
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    pb::Event {
        seq: 0,
        kind: kind as i32,
        session_id: id.to_owned(),
        version,
        changed,
        new_id: String::new(),
        at_ms,
    }
}

fn returning(session: bool) -> i32 {
    if session {
        pb::Returning::Session as i32
    } else {
        pb::Returning::Info as i32
    }
}
