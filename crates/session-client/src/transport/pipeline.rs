//! Calls over one long-lived stream instead of one unary RPC each.
//!
//! A unary gRPC call costs an HTTP/2 stream, two header blocks and a trip through the whole
//! tower stack at both ends: that, not the map lookup, is most of a session read's CPU. Here
//! all calls of a client share a single stream; replies are routed back by tag. The stream is
//! a framed connection by default ([`Connector::Framed`]: the same messages without HTTP/2,
//! whose per-message work still cost as much as the rest of a lone call), or the `Pipeline`
//! gRPC RPC.
//!
//! A caller puts its call in the outbox, a stream of request messages: each time it is polled
//! it gives every call waiting as one message (so concurrent calls coalesce into batches).
//! On gRPC the outbox is the request body, polled by HTTP/2; on a framed connection a writer
//! task polls it and flushes when it runs dry. One task per stream reads the replies and
//! hands them out. Both run on the runtime where the pipeline was made, next to the
//! connection, so that their hops stay on one thread (see `super::pool` for app servers whose
//! threads each run a runtime of their own). Every hand-off between tasks is a wake-up, and
//! past a few in a row Tokio moves work to another thread: the relay task that used to sit on
//! the sending side of the gRPC stream cost a lone call two more.
//!
//! A broken stream fails the calls sent on it as unavailable; calls not yet sent go out on a
//! new stream, or fail if none can be opened. A call not answered within the timeout fails
//! too: the stream's reader checks deadlines a few times per timeout, so that a call costs
//! no timer of its own (only a caller on another runtime keeps one, in case the pipeline's
//! runtime stands still), and a server that hangs cannot fill the table of pending calls.

use super::{
    calls::Calls,
    framed,
    handshake::{self, Handshake, Heard},
};
use crate::{convert, error::Error};
use futures_util::{Stream, StreamExt, stream::BoxStream};
use parking_lot::{Mutex, MutexGuard};
use session_proto::v1::{self as pb, session_service_client::SessionServiceClient};
use std::{
    pin::Pin,
    sync::{Arc, Weak},
    task::{Context, Poll},
    time::{Duration, Instant},
};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// The shortest timeout whose deadlines are checked at a quarter of it.
const MIN_CHECK: Duration = Duration::from_millis(20);
/// A stream with no call for this long (or 60 timeouts, if less) is closed by the client,
/// well before the server's idle timeout (5 minutes by default) closes it: the client closing
/// between calls cannot race with a call it sends, as the server closing can.
const IDLE_CLOSE: Duration = Duration::from_secs(60);

/// The reply messages of one stream, until it ends.
type Replies = BoxStream<'static, Result<pb::PipelineResponse, Error>>;

/// How streams are opened: the `Pipeline` gRPC RPC (its request carrying the handshake's
/// metadata), or a framed connection to the same port, which carries the same messages
/// without HTTP/2's per-message work.
#[derive(Debug)]
pub(crate) enum Connector {
    Grpc {
        client: SessionServiceClient<Channel>,
        handshake: Box<Handshake>,
        heard: Arc<Heard>,
    },
    Framed(Arc<framed::Target>),
}

#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    shared: Arc<Shared>,
    owner: Arc<Owner>,
}

/// Dropped with the last handle: ends the stream, whose reader then ends too.
#[derive(Debug)]
pub(super) struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.close();
        for child in self.0.children.lock().drain(..) {
            if let Some(child) = child.upgrade() {
                child.close();
            }
        }
    }
}

#[derive(Debug)]
struct Shared {
    connector: Connector,
    /// How long a stream may take to open, and a call to be answered.
    timeout: Duration,
    /// Tags every message, and so the events its calls cause (see `PipelineRequest.origin`).
    origin: u64,
    calls: Mutex<Calls>,
    /// Where the stream's tasks run: the runtime that made this pipeline (the client's, or a
    /// calling thread's, see `super::pool`), which runs its connection.
    runtime: tokio::runtime::Handle,
    /// Held while a stream is being opened, so that concurrent first calls open one.
    opening: tokio::sync::Mutex<()>,
    /// The pipelines of threads that call from runtimes of their own (see `super::pool`):
    /// closed with this one.
    children: Mutex<Vec<Weak<Shared>>>,
}

/// The requests of stream `generation`: the outbox, drained by HTTP/2 or the writer task as
/// they send.
struct Outbox {
    shared: Arc<Shared>,
    generation: u64,
}

impl Pipeline {
    pub(crate) fn start(connector: Connector, timeout: Duration, origin: u64) -> Self {
        let shared = Arc::new(Shared {
            connector,
            timeout,
            origin,
            calls: Mutex::default(),
            runtime: tokio::runtime::Handle::current(),
            opening: tokio::sync::Mutex::new(()),
            children: Mutex::default(),
        });
        Self {
            owner: Arc::new(Owner(Arc::clone(&shared))),
            shared,
        }
    }

    /// Sends a call and waits for its answer, or fails it after the timeout.
    pub(crate) async fn call(&self, kind: pb::call::Kind) -> Result<pb::reply::Kind, Error> {
        let current = tokio::runtime::Handle::try_current().ok();
        if current.is_some_and(|c| c.id() == self.shared.runtime.id()) {
            // The stream's reader runs where the caller does, and fails the call in time.
            return self.send(kind).await;
        }
        // From elsewhere the pipeline's runtime might not be running: a timer of the caller's
        // own bounds the wait.
        match tokio::time::timeout(self.shared.timeout, self.send(kind)).await {
            Ok(answer) => answer,
            Err(_) => Err(self.shared.too_late()),
        }
    }

    /// Where framed connections go, when this pipeline runs on them.
    pub(super) fn framed_target(&self) -> Option<&Arc<framed::Target>> {
        match &self.shared.connector {
            Connector::Framed(target) => Some(target),
            Connector::Grpc { .. } => None,
        }
    }

    pub(super) fn runtime_id(&self) -> tokio::runtime::Id {
        self.shared.runtime.id()
    }

    /// Gone when every handle of this pipeline is.
    pub(super) fn owner(&self) -> Weak<Owner> {
        Arc::downgrade(&self.owner)
    }

    /// Tells this pipeline's owner apart without touching its counts.
    pub(super) fn owner_ptr(&self) -> *const Owner {
        Arc::as_ptr(&self.owner)
    }

    /// A pipeline to the same server with the same deadline and origin, on the calling
    /// thread's runtime, closed with this one.
    pub(super) fn child(&self, target: &Arc<framed::Target>) -> Pipeline {
        let connector = Connector::Framed(Arc::clone(target));
        let child = Pipeline::start(connector, self.shared.timeout, self.shared.origin);
        let mut children = self.shared.children.lock();
        children.retain(|c| c.strong_count() > 0);
        children.push(Arc::downgrade(&child.shared));
        child
    }

    async fn send(&self, kind: pb::call::Kind) -> Result<pb::reply::Kind, Error> {
        let shared = &self.shared;
        let (answer, reply) = oneshot::channel();
        let (waker, live) = {
            let mut calls = shared.lock();
            calls.push(kind, Instant::now() + shared.timeout, answer);
            (calls.waker.take(), calls.live != 0)
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        if !live {
            // No stream is open or being opened: open one, which sends the outbox (or, if it
            // cannot be opened, fails every call in it, ours included).
            shared.open().await;
        }
        reply
            .await
            .map_err(|_| Error::Unavailable("pipeline closed".into()))?
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Calls> {
        self.calls.lock()
    }

    /// No more calls: the stream ends (its writer, then its reader).
    fn close(&self) {
        let waker = {
            let mut calls = self.lock();
            calls.closed = true;
            calls.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Opens a stream unless one is open (waiting while another caller opens one), with a
    /// task to read it.
    async fn open(self: &Arc<Self>) {
        if let Some((replies, generation)) = self.open_stream().await {
            self.runtime
                .spawn(read(Arc::clone(self), replies, generation));
        }
    }

    /// Opens a stream unless one is open; returns its replies and generation if it did. If it
    /// cannot, the calls in the outbox fail with the reason.
    async fn open_stream(self: &Arc<Self>) -> Option<(Replies, u64)> {
        if self.lock().stream.is_some() {
            return None;
        }
        let _opening = self.opening.lock().await;
        {
            let calls = self.lock();
            if calls.stream.is_some() || calls.closed {
                return None; // opened while we waited, or no longer wanted
            }
        }
        let generation = {
            let mut calls = self.lock();
            calls.opened += 1;
            calls.live = calls.opened;
            calls.live
        };
        let outbox = Outbox {
            shared: Arc::clone(self),
            generation,
        };
        let opened = tokio::time::timeout(self.timeout, self.connect(outbox)).await;
        let failed = match opened {
            Ok(Ok(mut replies)) => {
                {
                    let mut calls = self.lock();
                    if calls.live == generation {
                        calls.stream = Some(generation);
                        return Some((replies, generation));
                    }
                }
                // The stream ended as it opened (the server refused it, say): its first item
                // tells why.
                match tokio::time::timeout(self.timeout, replies.next()).await {
                    Ok(Some(Err(e))) => e,
                    _ => Error::Unavailable("the session server closed the pipeline".into()),
                }
            }
            Ok(Err(Error::Unavailable(e))) => {
                Error::Unavailable(format!("cannot open the pipeline: {e}"))
            }
            Ok(Err(e)) => e,
            Err(_) => self.too_late(),
        };
        let mut calls = self.lock();
        // Calls the stream took before it failed fail with the same reason.
        calls.ended_by(failed.clone());
        calls.broken(generation);
        calls.fail_unsent(&failed);
        None
    }

    /// Opens a stream whose requests are `outbox`, after the handshake; the error says why
    /// it could not (the server's refusal of the credential included).
    async fn connect(&self, outbox: Outbox) -> Result<Replies, Error> {
        match &self.connector {
            Connector::Grpc {
                client,
                handshake,
                heard,
            } => {
                let response = client
                    .clone()
                    .pipeline(handshake.request(outbox))
                    .await
                    .map_err(convert::status)?;
                if let Some(hello) = handshake::from_metadata(response.metadata()) {
                    heard.hello(hello);
                }
                let replies = response.into_inner();
                Ok(replies.map(|r| r.map_err(convert::status)).boxed())
            }
            Connector::Framed(target) => {
                // Connected on the pipeline's runtime, so that the connection's readiness
                // wakes the reader and writer there, whatever thread the caller is on.
                let timeout = self.timeout;
                let target = Arc::clone(target);
                let connecting = async move {
                    tokio::time::timeout(timeout, framed::connect(&target, timeout)).await
                };
                let connected = match self.runtime.spawn(connecting).await {
                    Ok(Ok(connected)) => connected?,
                    Ok(Err(_)) => return Err(self.too_late()),
                    Err(e) => return Err(Error::Unavailable(e.to_string())),
                };
                Ok(framed::stream(connected, outbox, &self.runtime))
            }
        }
    }

    /// The error of a call not answered in time.
    fn too_late(&self) -> Error {
        Error::Unavailable(format!("no answer within {:?}", self.timeout))
    }
}

/// Reads the replies of stream `generation` until it ends; then sends what the outbox still
/// holds on a new stream.
async fn read(shared: Arc<Shared>, mut replies: Replies, mut generation: u64) {
    // Deadlines are checked a few times per timeout: a call fails at most a quarter of the
    // timeout after its deadline.
    let period = shared.timeout.max(MIN_CHECK) / 4;
    let mut check = tokio::time::interval(period);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let idle_close = IDLE_CLOSE.min(shared.timeout * 60);
    let idle_ticks = (idle_close.as_millis() / period.as_millis().max(1)).max(2) as u64;
    // Checks in a row that found no reply: the stream's idle time, roughly.
    let mut quiet = 0;
    loop {
        loop {
            // Replies first: the deadlines need a look only while no reply is waiting (and
            // replies arrive in order, so one waiting means the calls before it were answered).
            let next = std::future::poll_fn(|cx| match replies.poll_next_unpin(cx) {
                Poll::Ready(reply) => Poll::Ready(Some(reply)),
                Poll::Pending => check.poll_tick(cx).map(|_| None),
            })
            .await;
            match next {
                Some(Some(Ok(response))) => {
                    quiet = 0;
                    shared.lock().answer(response);
                }
                // Why the stream ended (a refused credential, say) is what its calls fail with.
                Some(Some(Err(e))) => {
                    shared.lock().ended_by(e);
                    break;
                }
                Some(None) => break,
                None => {
                    shared.lock().expire(Instant::now(), || shared.too_late());
                    quiet += 1;
                    if quiet >= idle_ticks && shared.lock().close_idle(generation) {
                        return; // the next call opens a new stream
                    }
                }
            }
        }
        {
            let mut calls = shared.lock();
            calls.broken(generation);
            if !calls.has_unsent() {
                return; // the next call opens a new stream
            }
        }
        // Calls that did not make it out go on a new stream (or fail if none opens); if a
        // caller opened one first, it has its own reader.
        match shared.open_stream().await {
            Some(next) => (replies, generation) = next,
            None => return,
        }
    }
}

impl Stream for Outbox {
    type Item = pb::PipelineRequest;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut calls = self.shared.lock();
        if calls.live != self.generation || calls.closed {
            return Poll::Ready(None); // this stream broke, a newer one took over, or all is done
        }
        if !calls.has_unsent() {
            calls.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Some(pb::PipelineRequest {
            calls: calls.next_batch(self.generation),
            origin: self.shared.origin,
            hello: None,
        }))
    }
}

impl Drop for Outbox {
    /// The stream can take no more calls; those still in the outbox wait for the next one.
    fn drop(&mut self) {
        let mut calls = self.shared.lock();
        if calls.stream == Some(self.generation) {
            calls.stream = None;
        }
        if calls.live == self.generation {
            calls.live = 0;
        }
    }
}
