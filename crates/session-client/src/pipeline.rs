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
//! connection, so that their hops stay on one thread. App servers such as actix-web call from
//! threads that each run a current-thread runtime of their own: each such thread gets a framed
//! pipeline of its own ([`Pipeline::here`]), so that a call never crosses threads. Every hand-off between tasks is a wake-up, and past a few in a row Tokio moves
//! work to another thread: the relay task that used to sit on the sending side of the gRPC
//! stream cost a lone call two more.
//!
//! A broken stream fails the calls sent on it as unavailable; calls not yet sent go out on a
//! new stream, or fail if none can be opened. A call not answered within the timeout fails
//! too: the stream's reader checks deadlines a few times per timeout, so that a call costs
//! no timer of its own (only a caller on another runtime keeps one, in case the pipeline's
//! runtime stands still), and a server that hangs cannot fill the table of pending calls.

use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt, stream::BoxStream};
use parking_lot::{Mutex, MutexGuard};
use prost::Message;
use session_proto::v1::{self as pb, session_service_client::SessionServiceClient};
use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasherDefault, Hasher},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpStream, tcp::OwnedWriteHalf},
    sync::oneshot,
};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tonic::{Code, Status, transport::Channel};

/// Most calls sent in one message.
const MAX_BATCH: usize = 256;
/// Most bytes of calls in one message (a single larger call travels alone): the server
/// decodes a whole message under its limit of one session plus some room.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// The shortest timeout whose deadlines are checked at a quarter of it.
const MIN_CHECK: Duration = Duration::from_millis(20);
/// A stream with no call for this long (or 60 timeouts, if less) is closed by the client,
/// well before the server's idle timeout (5 minutes by default) closes it: the client closing
/// between calls cannot race with a call it sends, as the server closing can.
const IDLE_CLOSE: Duration = Duration::from_secs(60);
/// Marks a pending call that has not been sent on any stream yet.
const UNSENT: u64 = 0;

type Answer = oneshot::Sender<Result<pb::reply::Kind, Status>>;
/// The reply messages of one stream, until it ends.
type Replies = BoxStream<'static, Result<pb::PipelineResponse, Status>>;

/// How streams are opened: the `Pipeline` gRPC RPC, or a framed connection to the same port
/// (see `session_proto::FRAMED_PREFACE`), which carries the same messages without HTTP/2's
/// per-message work.
#[derive(Debug)]
pub(crate) enum Connector {
    Grpc(SessionServiceClient<Channel>),
    /// `host:port` of the server.
    Framed(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

/// Dropped with the last handle: ends the stream, whose reader then ends too.
#[derive(Debug)]
struct Owner(Arc<Shared>);

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
    /// calling thread's, see [`Pipeline::here`]), which runs its connection.
    runtime: tokio::runtime::Handle,
    /// Held while a stream is being opened, so that concurrent first calls open one.
    opening: tokio::sync::Mutex<()>,
    /// The pipelines of threads that call from runtimes of their own (see
    /// [`Pipeline::here`]): closed with this one.
    children: Mutex<Vec<std::sync::Weak<Shared>>>,
}

#[derive(Debug, Default)]
struct Calls {
    /// The generation of the open stream, once its reader is in place.
    stream: Option<u64>,
    /// The generation the outbox drains into: the newest stream, from the moment it is being
    /// opened until it ends (0: none). Older bodies end when they see it change.
    live: u64,
    /// Streams opened so far: the generation of the newest.
    opened: u64,
    next_tag: u64,
    /// Calls not sent yet, in order.
    outbox: VecDeque<pb::Call>,
    /// The request body's waker, while it waits for calls.
    waker: Option<Waker>,
    /// Calls not answered yet, by tag.
    pending: HashMap<u64, Pending, BuildHasherDefault<TagHasher>>,
    /// Every handle is gone.
    closed: bool,
    /// Why the server refused a whole message (a reply of tag 0, which no call carries): the
    /// error of the calls still waiting when the stream then ends.
    refusal: Option<Status>,
}

/// A call waiting for its answer.
#[derive(Debug)]
struct Pending {
    /// The stream that carried it ([`UNSENT`] until one has).
    generation: u64,
    /// When it fails unanswered: the stream's reader checks, so that a call costs no timer.
    deadline: Instant,
    answer: Answer,
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
            _owner: Arc::new(Owner(Arc::clone(&shared))),
            shared,
        }
    }

    /// Sends a call and waits for its answer, or fails it after the timeout.
    pub(crate) async fn call(&self, kind: pb::call::Kind) -> Result<pb::reply::Kind, Status> {
        let current = tokio::runtime::Handle::try_current().ok();
        if let Some(local) = self.here(current.as_ref()) {
            return local.send(kind).await;
        }
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

    /// The framed pipeline of the calling thread, when it runs a current-thread runtime other
    /// than the client's (an actix-web worker does): a call through the client's connection
    /// would cost two wake-ups across threads (the writer, then the caller), each a system
    /// call and often a sleeping core to wake; a connection of the thread's own keeps a call
    /// on it from end to end. Kept until the client goes or the thread runs another runtime.
    fn here(&self, current: Option<&tokio::runtime::Handle>) -> Option<Pipeline> {
        let Connector::Framed(addr) = &self.shared.connector else {
            return None; // HTTP/2 runs on the client's runtime whatever the caller's thread
        };
        let current = current?;
        if current.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread
            || current.id() == self.shared.runtime.id()
        {
            return None;
        }
        let runtime = current.id();
        let parent = Arc::as_ptr(&self._owner);
        HERE.with_borrow_mut(|here| {
            here.retain(|l| l.runtime == runtime && l.parent.strong_count() > 0);
            if let Some(local) = here.iter().find(|l| l.parent.as_ptr() == parent) {
                return Some(local.pipeline.clone());
            }
            let connector = Connector::Framed(addr.clone());
            let pipeline = Pipeline::start(connector, self.shared.timeout, self.shared.origin);
            let mut children = self.shared.children.lock();
            children.retain(|c| c.strong_count() > 0);
            children.push(Arc::downgrade(&pipeline.shared));
            here.push(Local {
                parent: Arc::downgrade(&self._owner),
                runtime,
                pipeline: pipeline.clone(),
            });
            Some(pipeline)
        })
    }

    async fn send(&self, kind: pb::call::Kind) -> Result<pb::reply::Kind, Status> {
        let shared = &self.shared;
        let (answer, reply) = oneshot::channel();
        let (waker, live) = {
            let mut calls = shared.lock();
            calls.next_tag += 1;
            let tag = calls.next_tag;
            let pending = Pending {
                generation: UNSENT,
                deadline: Instant::now() + shared.timeout,
                answer,
            };
            calls.pending.insert(tag, pending);
            calls.outbox.push_back(pb::Call {
                tag,
                kind: Some(kind),
            });
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
        answered(reply.await)
    }
}

thread_local! {
    /// This thread's own pipelines, one per client (see [`Pipeline::here`]).
    static HERE: std::cell::RefCell<Vec<Local>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A client's pipeline on one thread's current-thread runtime.
struct Local {
    /// The client's own pipeline: gone when every handle of the client is.
    parent: std::sync::Weak<Owner>,
    runtime: tokio::runtime::Id,
    pipeline: Pipeline,
}

fn answered(
    answer: Result<Result<pb::reply::Kind, Status>, oneshot::error::RecvError>,
) -> Result<pb::reply::Kind, Status> {
    answer.map_err(|_| Status::unavailable("pipeline closed"))?
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
            Ok(Ok(replies)) => {
                let mut calls = self.lock();
                if calls.live == generation {
                    calls.stream = Some(generation);
                    return Some((replies, generation));
                }
                Status::unavailable("the session server closed the pipeline")
            }
            Ok(Err(status)) => {
                Status::unavailable(format!("cannot open the pipeline: {}", status.message()))
            }
            Err(_) => self.too_late(),
        };
        self.broken(generation);
        self.fail_unsent(&failed);
        None
    }

    /// Opens a stream whose requests are `outbox`.
    async fn connect(&self, outbox: Outbox) -> Result<Replies, Status> {
        match &self.connector {
            Connector::Grpc(client) => {
                let replies = client.clone().pipeline(outbox).await?.into_inner();
                Ok(replies.boxed())
            }
            Connector::Framed(addr) => {
                // Connected on the pipeline's runtime, so that the connection's readiness
                // wakes the reader and writer there, whatever thread the caller is on.
                let connecting =
                    tokio::time::timeout(self.timeout, connect_framed(addr.clone(), self.timeout));
                let connected = match self.runtime.spawn(connecting).await {
                    Ok(Ok(connected)) => connected,
                    Ok(Err(_)) => Err(std::io::ErrorKind::TimedOut.into()),
                    Err(e) => Err(std::io::Error::other(e)),
                };
                match connected {
                    Ok(stream) => Ok(framed(stream, outbox, &self.runtime)),
                    Err(e) => Err(Status::unavailable(format!("{addr}: {e}"))),
                }
            }
        }
    }

    /// The error of a call not answered in time.
    fn too_late(&self) -> Status {
        Status::unavailable(format!("no answer within {:?}", self.timeout))
    }

    /// Fails the calls whose deadline has passed, and drops those of them not sent yet.
    fn expire(&self, now: Instant) {
        let mut calls = self.lock();
        let Calls {
            pending, outbox, ..
        } = &mut *calls;
        let late: Vec<Pending> = pending
            .extract_if(|_, p| p.deadline <= now)
            .map(|(_, p)| p)
            .collect();
        if late.is_empty() {
            return;
        }
        outbox.retain(|call| pending.contains_key(&call.tag));
        for p in late {
            // The caller may have given up already: nobody to tell is fine.
            let _ = p.answer.send(Err(self.too_late()));
        }
    }

    /// Fails the calls not sent yet.
    fn fail_unsent(&self, status: &Status) {
        let mut calls = self.lock();
        let unsent: Vec<u64> = calls.outbox.drain(..).map(|c| c.tag).collect();
        for tag in unsent {
            if let Some(pending) = calls.pending.remove(&tag) {
                let _ = pending.answer.send(Err(status.clone()));
            }
        }
    }

    /// Hands out the answers in `response`.
    fn answer(&self, response: pb::PipelineResponse) {
        let mut calls = self.lock();
        for reply in response.replies {
            if let (0, Some(pb::reply::Kind::Error(e))) = (reply.tag, &reply.kind) {
                calls.refusal = Some(Status::unavailable(format!(
                    "the session server refused: {}",
                    e.message
                )));
                continue;
            }
            if let (Some(pending), Some(kind)) = (calls.pending.remove(&reply.tag), reply.kind) {
                let _ = pending.answer.send(into_result(kind));
            }
        }
    }

    /// Ends stream `generation` if no call waits on it or for it, in one look at the calls,
    /// so that a call made meanwhile opens a new stream instead of failing on this one.
    fn close_idle(&self, generation: u64) -> bool {
        let mut calls = self.lock();
        if calls.stream != Some(generation)
            || calls.live != generation
            || !calls.pending.is_empty()
            || !calls.outbox.is_empty()
        {
            return false;
        }
        calls.stream = None;
        calls.live = 0;
        // The body of that stream (its writer) ends when it looks again.
        if let Some(waker) = calls.waker.take() {
            waker.wake();
        }
        true
    }

    /// Forgets stream `generation` and fails the calls it carried.
    fn broken(&self, generation: u64) {
        let mut calls = self.lock();
        if calls.stream == Some(generation) {
            calls.stream = None;
        }
        if calls.live == generation {
            calls.live = 0;
            // The body of that stream ends when it looks again.
            if let Some(waker) = calls.waker.take() {
                waker.wake();
            }
        }
        let failed: Vec<u64> = calls
            .pending
            .iter()
            .filter(|(_, p)| p.generation == generation)
            .map(|(tag, _)| *tag)
            .collect();
        let status = calls
            .refusal
            .take()
            .unwrap_or_else(|| Status::unavailable("the session server closed the pipeline"));
        for tag in failed {
            if let Some(pending) = calls.pending.remove(&tag) {
                let _ = pending.answer.send(Err(status.clone()));
            }
        }
    }
}

/// A TCP connection to `addr` that has sent the framed preface.
async fn connect_framed(addr: String, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    // No Nagle delay: a call's bytes must leave at once.
    stream.set_nodelay(true)?;
    // A server that vanishes without closing (a cut network) is noticed: idle connections
    // by keepalive probes, busy ones by unacknowledged data, each within a few timeouts.
    // (Keepalive counts whole seconds, at least one.)
    let probe_every = timeout.max(Duration::from_secs(1));
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(probe_every)
        .with_interval(probe_every);
    let socket = socket2::SockRef::from(&stream);
    #[cfg(target_os = "linux")]
    let keepalive = {
        socket.set_tcp_user_timeout(Some(timeout * 3))?;
        keepalive.with_retries(2)
    };
    socket.set_tcp_keepalive(&keepalive)?;
    stream.write_all(session_proto::FRAMED_PREFACE).await?;
    Ok(stream)
}

/// A framed stream on `stream`: a task on `runtime` writes what the outbox holds (every call
/// waiting as one message, flushed when the outbox runs dry); the replies are read by the
/// caller of this.
fn framed(stream: TcpStream, outbox: Outbox, runtime: &tokio::runtime::Handle) -> Replies {
    let (read, write) = stream.into_split();
    // No limit of its own either way (the codec's default is 8 MiB): the server bounds what it
    // takes and what it sends, and a large session travels alone.
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(usize::MAX)
        .new_codec();
    runtime.spawn(write_calls(outbox, FramedWrite::new(write, codec.clone())));
    FramedRead::new(read, codec)
        .map(|frame| {
            let frame = frame.map_err(|e| Status::unavailable(e.to_string()))?;
            pb::PipelineResponse::decode(frame.freeze())
                .map_err(|e| Status::internal(format!("the server sent a bad message: {e}")))
        })
        .boxed()
}

/// Writes what the outbox gives, encoded straight into the connection's buffer, and flushes
/// when it runs dry; ends, closing its half of the connection, when the outbox does.
async fn write_calls(
    mut outbox: Outbox,
    mut out: FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
) {
    while let Some(batch) = outbox.next().await {
        let mut framed = session_proto::put_frame(out.write_buffer_mut(), &batch);
        // More calls waited than one message holds: the rest go in this write too.
        let mut ended = false;
        while framed && !ended {
            match std::future::poll_fn(|cx| Poll::Ready(outbox.poll_next_unpin(cx))).await {
                Poll::Ready(Some(batch)) => {
                    framed = session_proto::put_frame(out.write_buffer_mut(), &batch);
                }
                Poll::Ready(None) => ended = true,
                Poll::Pending => break,
            }
        }
        // A message too large to frame ends the connection: the reader then fails the calls
        // it carried, as for any broken connection.
        if !framed || SinkExt::<Bytes>::flush(&mut out).await.is_err() || ended {
            break;
        }
    }
    let _ = SinkExt::<Bytes>::close(&mut out).await;
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
                    shared.answer(response);
                }
                Some(_) => break,
                None => {
                    shared.expire(Instant::now());
                    quiet += 1;
                    if quiet >= idle_ticks && shared.close_idle(generation) {
                        return; // the next call opens a new stream
                    }
                }
            }
        }
        shared.broken(generation);
        if shared.lock().outbox.is_empty() {
            return; // the next call opens a new stream
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
        if calls.outbox.is_empty() {
            calls.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let mut batch: Vec<pb::Call> = Vec::with_capacity(calls.outbox.len().min(MAX_BATCH));
        let mut bytes = 0;
        while let Some(call) = calls.outbox.front() {
            // Sizes matter only once a second call would join the first (a single larger call
            // travels alone): a lone caller's message is not measured here at all.
            if let Some(first) = batch.first() {
                if batch.len() == 1 {
                    bytes = first.encoded_len();
                }
                let size = call.encoded_len();
                if batch.len() == MAX_BATCH || bytes + size > MAX_BATCH_BYTES {
                    break;
                }
                bytes += size;
            }
            let call = calls.outbox.pop_front().expect("a call at the front");
            if let Some(pending) = calls.pending.get_mut(&call.tag) {
                pending.generation = self.generation;
            }
            batch.push(call);
        }
        Poll::Ready(Some(pb::PipelineRequest {
            calls: batch,
            origin: self.shared.origin,
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

/// Hashes the pipeline's own tags, which count up from 1: a multiplication spreads them over
/// the table at a fraction of SipHash's cost, and nobody else picks them, so there is no
/// flooding to resist.
#[derive(Default)]
struct TagHasher(u64);

impl Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // 2^64 divided by the golden ratio: consecutive tags land far apart.
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

fn into_result(kind: pb::reply::Kind) -> Result<pb::reply::Kind, Status> {
    match kind {
        pb::reply::Kind::Error(e) => Err(Status::with_details(
            Code::from_i32(e.code),
            e.message,
            e.details,
        )),
        other => Ok(other),
    }
}
