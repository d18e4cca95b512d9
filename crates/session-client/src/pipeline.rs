//! Calls over one long-lived `Pipeline` stream instead of one unary RPC each.
//!
//! A unary gRPC call costs an HTTP/2 stream, two header blocks and a trip through the whole
//! tower stack at both ends: that, not the map lookup, is most of a session read's CPU. Here
//! all calls of a client share a single stream; replies are routed back by tag.
//!
//! No task of its own sits between a caller and the stream: each caller writes its call to the
//! stream itself, and whichever caller is waiting reads replies for everyone (the *reader*, one
//! at a time) until its own has come. Every hand-off between tasks is a wake-up, and past a few
//! in a row Tokio moves tasks to another thread, so a relay task in each direction made a lone
//! call cross threads several times (measured: two futex wake-ups per call, none now).
//! Concurrent calls still share HTTP/2 frames: tonic encodes every message waiting on the
//! stream into one write.
//!
//! A broken stream fails the calls in flight as unavailable; the next call opens a new one.

use session_proto::v1::{self as pb, session_service_client::SessionServiceClient};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming, transport::Channel};

/// Calls that may wait to be written before a caller waits for room.
const QUEUE: usize = 1024;

type Answer = oneshot::Sender<Result<pb::reply::Kind, Status>>;

#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    client: SessionServiceClient<Channel>,
    open_timeout: Duration,
    calls: Mutex<Calls>,
    /// The reading end of the current stream; whoever holds the lock reads for everyone.
    reader: tokio::sync::Mutex<Option<Reader>>,
    /// Held while a stream is being opened, so that concurrent first calls open one.
    opening: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Calls {
    stream: Option<Writer>,
    /// Streams opened so far: the generation of the newest.
    opened: u64,
    next_tag: u64,
    /// Calls written and not yet answered, by tag, with the generation of their stream.
    pending: HashMap<u64, (u64, Answer)>,
}

#[derive(Debug, Clone)]
struct Writer {
    out: mpsc::Sender<pb::PipelineRequest>,
    generation: u64,
}

#[derive(Debug)]
struct Reader {
    replies: Streaming<pb::PipelineResponse>,
    generation: u64,
}

impl Pipeline {
    pub(crate) fn start(client: SessionServiceClient<Channel>, open_timeout: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                client,
                open_timeout,
                calls: Mutex::default(),
                reader: tokio::sync::Mutex::new(None),
                opening: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub(crate) async fn call(&self, kind: pb::call::Kind) -> Result<pb::reply::Kind, Status> {
        let shared = &self.shared;
        let (answer, mut reply) = oneshot::channel();
        let mut call = Some((kind, answer));
        // A stream that ended unseen (the server restarted while nobody was waiting) refuses
        // the write, so the call was not sent: it goes out once more on a new stream.
        let mut attempts = 2;
        let tag = loop {
            attempts -= 1;
            let (kind, answer) = call.take().expect("a call to send");
            let writer = shared.writer().await?;
            let tag = {
                let mut calls = shared.lock();
                calls.next_tag += 1;
                let tag = calls.next_tag;
                calls.pending.insert(tag, (writer.generation, answer));
                tag
            };
            let request = pb::PipelineRequest {
                calls: vec![pb::Call {
                    tag,
                    kind: Some(kind),
                }],
            };
            match writer.out.send(request).await {
                Ok(()) => break tag,
                Err(mpsc::error::SendError(request)) => {
                    let answer = shared.lock().pending.remove(&tag).map(|(_, a)| a);
                    shared.broken(writer.generation, "the session server closed the pipeline");
                    match (
                        answer,
                        request.calls.into_iter().next().and_then(|c| c.kind),
                    ) {
                        (Some(answer), Some(kind)) if attempts > 0 => call = Some((kind, answer)),
                        _ => {
                            return Err(Status::unavailable(
                                "the session server closed the pipeline",
                            ));
                        }
                    }
                }
            }
        };
        loop {
            tokio::select! {
                biased;
                answer = &mut reply => return answered(answer),
                mut reader = shared.reader.lock() => {
                    let Some(r) = reader.as_mut() else {
                        // No stream to read: ours broke, which has answered us, unless our
                        // call went out just after; either way there is nothing to wait for.
                        drop(reader);
                        if shared.lock().pending.remove(&tag).is_some() {
                            return Err(Status::unavailable("the session server closed the pipeline"));
                        }
                        return answered(reply.await);
                    };
                    // Our turn to read for everyone, until our own answer comes.
                    loop {
                        tokio::select! {
                            biased;
                            answer = &mut reply => return answered(answer),
                            message = r.replies.message() => match message {
                                Ok(Some(response)) => {
                                    let mut calls = shared.lock();
                                    let mut ours = None;
                                    for reply in response.replies {
                                        let (Some((_, answer)), Some(kind)) = (calls.pending.remove(&reply.tag), reply.kind) else {
                                            continue;
                                        };
                                        if reply.tag == tag {
                                            // Taken directly: sending it would wake this very
                                            // task, which Tokio treats as a yield and hands
                                            // other work to another thread.
                                            ours = Some(kind);
                                        } else {
                                            let _ = answer.send(into_result(kind));
                                        }
                                    }
                                    if let Some(kind) = ours {
                                        return into_result(kind);
                                    }
                                }
                                Ok(None) | Err(_) => {
                                    let generation = r.generation;
                                    *reader = None;
                                    shared.broken(generation, "the session server closed the pipeline");
                                    break;
                                }
                            },
                        }
                    }
                }
            }
        }
    }
}

fn answered(
    answer: Result<Result<pb::reply::Kind, Status>, oneshot::error::RecvError>,
) -> Result<pb::reply::Kind, Status> {
    answer.map_err(|_| Status::unavailable("pipeline closed"))?
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Calls> {
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current stream, opened first if there is none.
    async fn writer(&self) -> Result<Writer, Status> {
        if let Some(writer) = self.live_writer() {
            return Ok(writer);
        }
        let _opening = self.opening.lock().await;
        if let Some(writer) = self.live_writer() {
            return Ok(writer); // opened while we waited
        }
        let (out, out_rx) = mpsc::channel(QUEUE);
        let opened = tokio::time::timeout(
            self.open_timeout,
            self.client.clone().pipeline(ReceiverStream::new(out_rx)),
        )
        .await;
        let replies = match opened {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                return Err(Status::unavailable(format!(
                    "cannot open the pipeline: {}",
                    status.message()
                )));
            }
            Err(_) => {
                return Err(Status::unavailable(format!(
                    "no answer within {:?}",
                    self.open_timeout
                )));
            }
        };
        let generation = {
            let mut calls = self.lock();
            calls.opened += 1;
            calls.opened
        };
        // The reader goes in before any call can be written to the stream.
        *self.reader.lock().await = Some(Reader {
            replies,
            generation,
        });
        let writer = Writer { out, generation };
        self.lock().stream = Some(writer.clone());
        Ok(writer)
    }

    /// The current stream, unless there is none or it has ended (which fails its calls).
    fn live_writer(&self) -> Option<Writer> {
        let writer = self.lock().stream.clone()?;
        if writer.out.is_closed() {
            self.broken(writer.generation, "the session server closed the pipeline");
            return None;
        }
        Some(writer)
    }

    /// Forgets stream `generation` and fails the calls waiting on it.
    fn broken(&self, generation: u64, why: &str) {
        let mut calls = self.lock();
        if calls
            .stream
            .as_ref()
            .is_some_and(|w| w.generation == generation)
        {
            calls.stream = None;
        }
        let failed: Vec<u64> = calls
            .pending
            .iter()
            .filter(|(_, (g, _))| *g == generation)
            .map(|(tag, _)| *tag)
            .collect();
        for tag in failed {
            if let Some((_, answer)) = calls.pending.remove(&tag) {
                let _ = answer.send(Err(Status::unavailable(why.to_owned())));
            }
        }
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
