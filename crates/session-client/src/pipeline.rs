//! Calls over one long-lived `Pipeline` stream instead of one unary RPC each.
//!
//! A unary gRPC call costs an HTTP/2 stream, two header blocks and a trip through the whole
//! tower stack at both ends: that, not the map lookup, is most of a session read's CPU. Here
//! one task per client owns a single stream; every call waiting when it looks is sent in one
//! message (so concurrent requests coalesce into batches), and replies are routed back by tag.
//! A broken stream fails the calls in flight as unavailable; the next call reconnects.

use prost::Message;
use session_proto::v1::{self as pb, session_service_client::SessionServiceClient};
use std::{collections::HashMap, time::Duration};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, transport::Channel};

/// Most calls sent in one message.
const MAX_BATCH: usize = 256;
/// Most bytes of calls in one message (a single larger call travels alone): the server
/// decodes a whole message under its limit of one session plus some room.
const MAX_BATCH_BYTES: usize = 256 * 1024;

type Answer = oneshot::Sender<Result<pb::reply::Kind, Status>>;

#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    calls: mpsc::UnboundedSender<(pb::call::Kind, Answer)>,
}

impl Pipeline {
    /// Starts the task that owns the stream; it ends when every handle is dropped.
    pub(crate) fn start(client: SessionServiceClient<Channel>, open_timeout: Duration) -> Self {
        let (calls, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(client, rx, open_timeout));
        Self { calls }
    }

    pub(crate) async fn call(&self, kind: pb::call::Kind) -> Result<pb::reply::Kind, Status> {
        let (answer, reply) = oneshot::channel();
        self.calls
            .send((kind, answer))
            .map_err(|_| Status::unavailable("client is shutting down"))?;
        reply
            .await
            .map_err(|_| Status::unavailable("pipeline closed"))?
    }
}

fn fail_all(pending: &mut HashMap<u64, Answer>, why: &str) {
    for (_, answer) in pending.drain() {
        let _ = answer.send(Err(Status::unavailable(why.to_owned())));
    }
}

async fn run(
    client: SessionServiceClient<Channel>,
    mut calls: mpsc::UnboundedReceiver<(pb::call::Kind, Answer)>,
    open_timeout: Duration,
) {
    let mut next_tag = 0u64;
    let mut pending: HashMap<u64, Answer> = HashMap::new();
    let mut carry = None;
    // Each turn of this loop is one connection of the stream, opened when a call needs it.
    loop {
        let first = match carry.take() {
            Some(call) => call,
            None => match calls.recv().await {
                Some(call) => call,
                None => return,
            },
        };
        let (out, out_rx) = mpsc::channel::<pb::PipelineRequest>(64);
        let batch = take_batch(first, &mut calls, &mut carry, &mut next_tag, &mut pending);
        let _ = out.try_send(batch);
        let opened = tokio::time::timeout(
            open_timeout,
            client.clone().pipeline(ReceiverStream::new(out_rx)),
        )
        .await;
        let mut replies = match opened {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                fail_all(
                    &mut pending,
                    &format!("cannot open the pipeline: {}", status.message()),
                );
                continue;
            }
            Err(_) => {
                fail_all(&mut pending, &format!("no answer within {open_timeout:?}"));
                continue;
            }
        };
        loop {
            tokio::select! {
                call = async { match carry.take() { Some(c) => Some(c), None => calls.recv().await } } => {
                    let Some(call) = call else { return };
                    let batch = take_batch(call, &mut calls, &mut carry, &mut next_tag, &mut pending);
                    if out.send(batch).await.is_err() {
                        break;
                    }
                }
                message = replies.message() => match message {
                    Ok(Some(response)) => {
                        for reply in response.replies {
                            if let (Some(answer), Some(kind)) = (pending.remove(&reply.tag), reply.kind) {
                                let _ = answer.send(into_result(kind));
                            }
                        }
                    }
                    Ok(None) | Err(_) => break,
                },
            }
        }
        fail_all(&mut pending, "the session server closed the pipeline");
    }
}

/// The call just received and every other one already waiting, as one message. A call that
/// would make the message too large is kept in `carry` to start the next one.
fn take_batch(
    first: (pb::call::Kind, Answer),
    calls: &mut mpsc::UnboundedReceiver<(pb::call::Kind, Answer)>,
    carry: &mut Option<(pb::call::Kind, Answer)>,
    next_tag: &mut u64,
    pending: &mut HashMap<u64, Answer>,
) -> pb::PipelineRequest {
    let mut batch: Vec<pb::Call> = Vec::new();
    let mut bytes = 0;
    let mut next = Some(first);
    while let Some((kind, answer)) = next.take() {
        *next_tag += 1;
        let call = pb::Call {
            tag: *next_tag,
            kind: Some(kind),
        };
        let size = call.encoded_len();
        if !batch.is_empty() && bytes + size > MAX_BATCH_BYTES {
            *next_tag -= 1;
            *carry = call.kind.map(|kind| (kind, answer));
            break;
        }
        bytes += size;
        pending.insert(call.tag, answer);
        batch.push(call);
        if batch.len() < MAX_BATCH {
            next = calls.try_recv().ok();
        }
    }
    pb::PipelineRequest { calls: batch }
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
