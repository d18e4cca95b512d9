//! One framed connection, once its preface is read: the handshake (the first message's
//! hello, or its absence from a client of protocol 1), then each request message answered in
//! order, replies written in batches, and the connection closed when the client closes, sends
//! something that is not a message, stays idle too long, loses its credential to a reload, or
//! the server shuts down.

use super::codec;
use crate::{
    auth::{Caller, Refusal},
    convert,
    handshake::Peer,
    service::{Answering, SessionServiceImpl, refusal},
    store::SessionStore,
};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use prost::Message;
use session_proto::v1 as pb;
use std::{
    io,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::{Instant, Interval, MissedTickBehavior},
};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tonic::Code;

/// Replies held back for requests already buffered are written once they reach this size.
const WRITE_AT: usize = 256 * 1024;

/// Tells a connection that has been quiet for about its idle timeout (between one and one
/// and a half of it): a tick every half timeout, and two in a row without activity. No timer
/// is set per message; a message only bumps a count.
#[derive(Debug)]
struct Watchdog {
    tick: Interval,
    activity: u64,
    seen: u64,
    quiet_ticks: u8,
}

impl Watchdog {
    fn new(idle: Duration) -> Self {
        let half = idle / 2;
        let mut tick = tokio::time::interval_at(Instant::now() + half, half);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            tick,
            activity: 0,
            seen: 0,
            quiet_ticks: 0,
        }
    }

    fn active(&mut self) {
        self.activity = self.activity.wrapping_add(1);
    }

    /// Whether the connection is idle; while not, the next tick will wake `cx`.
    fn idle(&mut self, cx: &mut Context<'_>) -> bool {
        while self.tick.poll_tick(cx).is_ready() {
            if self.activity == self.seen {
                self.quiet_ticks += 1;
                if self.quiet_ticks >= 2 {
                    return true;
                }
            } else {
                self.quiet_ticks = 0;
                self.seen = self.activity;
            }
        }
        false
    }
}

/// Why a framed connection ends.
enum Next {
    Batch(pb::PipelineRequest),
    /// The client closed, or the server is shutting down.
    Close,
    /// The client sent something to answer with this error before closing.
    Refuse(pb::CallError),
}

/// Serves one framed connection (its preface read) from `read` and to `write`, its halves:
/// the handshake, then each request message answered in order, until the client closes,
/// sends something that is not a message, stays idle past `idle`, loses its credential, or
/// the server shuts down. `peer` is what TLS learnt of the client.
pub(super) async fn serve<S, R, W>(
    read: R,
    write: W,
    peer: Peer,
    service: SessionServiceImpl<S>,
    max_message: usize,
    idle: Duration,
) where
    S: SessionStore,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let _open = service.metrics().framed_connection();
    let mut requests = FramedRead::new(read, codec(max_message));
    let mut replies = FramedWrite::new(write, codec(usize::MAX));
    let mut watchdog = Watchdog::new(idle);
    // Shutdown wakes this task through a waiter registered once, here; from then on a look at
    // the token each time round will do. Polling the waiter every time took the token's lock
    // twice per message, about 3% of the server's work for a lone caller.
    let closing = service.closing();
    let waiter = closing.clone().cancelled_owned();
    tokio::pin!(waiter);
    if futures_util::poll!(&mut waiter).is_ready() {
        return;
    }
    let mut caller: Option<Caller> = None;
    loop {
        let frame = std::future::poll_fn(|cx| {
            if closing.is_cancelled() {
                return Poll::Ready(None); // ends the connection as the client closing would
            }
            match requests.poll_next_unpin(cx) {
                Poll::Pending if watchdog.idle(cx) => {
                    Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::TimedOut, "idle"))))
                }
                Poll::Pending => Poll::Pending,
                ready => {
                    watchdog.active();
                    ready
                }
            }
        })
        .await;
        let next = match frame {
            None => Next::Close,
            Some(Ok(bytes)) => match pb::PipelineRequest::decode(bytes.freeze()) {
                Ok(batch) => Next::Batch(batch),
                Err(e) => Next::Refuse(convert::refused(
                    Code::InvalidArgument,
                    format!("malformed message: not a PipelineRequest ({e})"),
                )),
            },
            Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut => {
                tracing::debug!(?idle, "framed connection closed: idle");
                Next::Close
            }
            Some(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                Next::Refuse(convert::refused(
                    Code::ResourceExhausted,
                    format!("a message may be at most {max_message} bytes ({e})"),
                ))
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "framed connection closed");
                Next::Close
            }
        };
        let mut batch = match next {
            Next::Batch(batch) => batch,
            Next::Close => break,
            Next::Refuse(error) => {
                tracing::debug!(
                    message = error.message,
                    "framed connection refused a message; closing it"
                );
                session_proto::put_frame(replies.write_buffer_mut(), &refusal(error));
                break;
            }
        };
        let hello = batch.hello.take();
        let has_calls = !batch.calls.is_empty();
        let out = replies.write_buffer_mut();
        let caller = match admit(&service, &mut caller, hello, has_calls, &peer, out) {
            Admitted::Calls(caller) => caller,
            Admitted::Hello => {
                if let Err(e) = flush(&mut replies, &mut watchdog).await {
                    tracing::debug!(error = %e, "framed connection closed in its handshake");
                    return;
                }
                continue;
            }
            Admitted::Refused => break,
        };
        let mut answering = match Answering::new(batch, caller) {
            Ok(answering) => Some(answering),
            Err(refused) => {
                session_proto::put_frame(replies.write_buffer_mut(), &refused);
                None
            }
        };
        while let Some(batch) = &mut answering {
            let Some(response) = service.next_response(batch).await else {
                break;
            };
            if !session_proto::put_frame(replies.write_buffer_mut(), &response) {
                // Responses are a chunk and one reply at most: far below 4 GiB.
                tracing::warn!(
                    "framed connection closed: a reply of 4 GiB or more cannot be framed"
                );
                return;
            }
            // A batch with many replies is sent a chunk at a time.
            if replies.write_buffer().len() >= WRITE_AT
                && let Err(e) = flush(&mut replies, &mut watchdog).await
            {
                tracing::debug!(error = %e, "framed connection closed while answering");
                return;
            }
        }
        // Replies to requests that arrived together leave together: one write, not one each
        // (up to a bound, so that a client that sends without reading cannot grow the buffer).
        if holds_a_frame(requests.read_buffer()) && replies.write_buffer().len() < WRITE_AT {
            continue;
        }
        if let Err(e) = flush(&mut replies, &mut watchdog).await {
            tracing::debug!(error = %e, "framed connection closed while answering");
            return;
        }
    }
    // Replies held back for a request that was then not answered still go out.
    let _ = flush(&mut replies, &mut watchdog).await;
}

/// What a message's handshake part decides.
enum Admitted {
    /// Answer the message's calls as this caller.
    Calls(Caller),
    /// A hello alone, answered by its reply alone: on to the next message.
    Hello,
    /// Refused, the answer saying why written to `out`: close.
    Refused,
}

/// The handshake of a connection's messages: the first makes the caller (from its hello, or
/// from its lack of one, protocol 1), a later one must bring no hello and finds the caller
/// still admitted (its credential not revoked by a reload). Answers go to `out`.
fn admit<S: SessionStore>(
    service: &SessionServiceImpl<S>,
    caller: &mut Option<Caller>,
    hello: Option<pb::Hello>,
    has_calls: bool,
    peer: &Peer,
    out: &mut bytes::BytesMut,
) -> Admitted {
    let checked = match caller {
        Some(_) if hello.is_some() => Err(Refusal {
            code: Code::InvalidArgument,
            message: "a hello comes once, in a connection's first message".into(),
        }),
        Some(known) => service.recheck(known).map(|()| known.clone()),
        None => {
            let (outcome, reply) = service.hello(hello.as_ref(), peer);
            if let Some(reply) = reply {
                let answer = pb::PipelineResponse {
                    replies: Vec::new(),
                    hello: Some(reply),
                };
                session_proto::put_frame(out, &answer);
                return match outcome {
                    Ok(known) if !has_calls => {
                        *caller = Some(known);
                        Admitted::Hello
                    }
                    Ok(known) => Admitted::Calls(caller.insert(known).clone()),
                    Err(_) => Admitted::Refused, // the reply says why
                };
            }
            outcome.map(|known| caller.insert(known).clone())
        }
    };
    match checked {
        Ok(caller) => Admitted::Calls(caller),
        Err(refused) => {
            let error = convert::refused(refused.code, refused.message);
            session_proto::put_frame(out, &refusal(error));
            Admitted::Refused
        }
    }
}

/// Writes what `replies` holds; a client that reads none of it for the idle timeout is
/// given up on.
async fn flush<W: AsyncWrite + Unpin>(
    replies: &mut FramedWrite<W, LengthDelimitedCodec>,
    watchdog: &mut Watchdog,
) -> io::Result<()> {
    if replies.write_buffer().is_empty() {
        return Ok(());
    }
    std::future::poll_fn(|cx| match SinkExt::<Bytes>::poll_flush_unpin(replies, cx) {
        Poll::Pending if watchdog.idle(cx) => Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read no reply within the idle timeout",
        ))),
        Poll::Pending => Poll::Pending,
        Poll::Ready(done) => {
            watchdog.active();
            Poll::Ready(done)
        }
    })
    .await
}

/// Whether `buffered` starts with a whole frame (its length, then that many bytes).
pub(crate) fn holds_a_frame(buffered: &[u8]) -> bool {
    match buffered.first_chunk::<4>() {
        Some(length) => buffered.len() - 4 >= u32::from_be_bytes(*length) as usize,
        None => false,
    }
}
