//! The gRPC face of a [`SessionStore`]: `session.v1.SessionService`.

use crate::{
    Engine,
    convert::{self, CallFailure, InvalidInput},
    id::{Prefix, SessionId},
    metrics::Metrics,
    store::{CreateOptions, GetOutcome, GetQuery, SessionStore, StoreError},
};
use futures_util::{StreamExt, stream::BoxStream};
use session_proto::v1::{self as pb, session_service_server::SessionService};
use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status, Streaming};

/// Serves one engine's store. Cheap to clone: everything is shared.
#[derive(Debug)]
pub struct SessionServiceImpl<S> {
    engine: Engine<S>,
}

impl<S> Clone for SessionServiceImpl<S> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
        }
    }
}

impl<S: SessionStore> SessionServiceImpl<S> {
    pub fn new(engine: Engine<S>) -> Self {
        Self { engine }
    }

    /// Runs one call, recording its outcome and latency.
    async fn observed<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, CallFailure>>,
    ) -> Result<T, CallFailure> {
        let started = Instant::now();
        let result = call.await;
        let code = result.as_ref().map_or_else(CallFailure::code, |_| Code::Ok);
        self.engine.metrics.observe(method, code, started.elapsed());
        if let Err(failure) = &result {
            tracing::debug!(method, ?code, %failure, "call failed");
        }
        result
    }
}

/// Most calls one pipeline message may hold (the client library sends at most 256).
pub const MAX_CALLS: usize = 1024;

/// A response message is sent once its replies reach this size, and the next one started:
/// the replies to one request message may be many sessions, and a connection should hold
/// one chunk of them at a time, not all.
pub const RESPONSE_CHUNK_BYTES: usize = 256 * 1024;

/// A pipeline message being answered, one response message at a time (see
/// [`SessionServiceImpl::next_response`]).
#[derive(Debug)]
pub struct Answering {
    calls: std::vec::IntoIter<pb::Call>,
    origin: u64,
    /// Bytes of replies given so far, against the batch's budget.
    spent: u64,
    /// Whether a response went out: even a message without calls gets one.
    started: bool,
}

impl Answering {
    /// A message to answer; one with more than [`MAX_CALLS`] calls is answered by a single
    /// reply of tag 0 (see docs/protocol.md), its calls left unrun.
    pub fn new(batch: pb::PipelineRequest) -> Result<Self, pb::PipelineResponse> {
        if batch.calls.len() > MAX_CALLS {
            return Err(refusal(convert::refused(
                Code::ResourceExhausted,
                format!(
                    "a pipeline message holds at most {MAX_CALLS} calls; this one holds {}",
                    batch.calls.len()
                ),
            )));
        }
        Ok(Self {
            calls: batch.calls.into_iter(),
            origin: batch.origin,
            spent: 0,
            started: false,
        })
    }
}

/// A response that answers a whole message with one error: a reply tagged 0, which no call
/// carries (clients number their calls from 1).
pub fn refusal(error: pb::CallError) -> pb::PipelineResponse {
    pb::PipelineResponse {
        replies: vec![pb::Reply {
            tag: 0,
            kind: Some(pb::reply::Kind::Error(error)),
        }],
    }
}

impl<S: SessionStore> SessionServiceImpl<S> {
    /// The next response message of `batch`: its calls answered in order until the replies
    /// reach [`RESPONSE_CHUNK_BYTES`] or the calls run out, their events tagged with the
    /// message's origin. `None` once every call has its reply.
    pub async fn next_response(&self, batch: &mut Answering) -> Option<pb::PipelineResponse> {
        if batch.started {
            if batch.calls.len() == 0 {
                return None;
            }
            // A batch of many large replies takes turns with other connections, a response
            // at a time: a client that reads fast must not keep a thread to itself.
            tokio::task::yield_now().await;
        }
        batch.started = true;
        let mut replies = Vec::with_capacity(batch.calls.len().min(64));
        let answers = async {
            let mut size = 0;
            while let Some(call) = batch.calls.next() {
                let reply = if batch.spent < self.engine.max_batch_reply_bytes {
                    self.answer(call).await
                } else {
                    let error = convert::refused(
                        Code::ResourceExhausted,
                        format!(
                            "this call's pipeline message was answered with {} bytes already, the limit (--max-batch-reply); send it again in a later message",
                            self.engine.max_batch_reply_bytes
                        ),
                    );
                    pb::Reply {
                        tag: call.tag,
                        kind: Some(pb::reply::Kind::Error(error)),
                    }
                };
                if batch.calls.len() == 0 {
                    // The last call: its size matters to no budget, and measuring it would
                    // cost every lone call a walk over its reply.
                    replies.push(reply);
                    break;
                }
                let bytes = prost::Message::encoded_len(&reply);
                batch.spent += bytes as u64;
                size += bytes;
                replies.push(reply);
                if size >= RESPONSE_CHUNK_BYTES {
                    break;
                }
            }
        };
        crate::events::ORIGIN.scope(batch.origin, answers).await;
        Some(pb::PipelineResponse { replies })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.engine.metrics
    }

    pub fn metrics_handle(&self) -> Arc<Metrics> {
        Arc::clone(&self.engine.metrics)
    }

    /// Cancelled when shutdown begins.
    pub fn closing(&self) -> &CancellationToken {
        &self.engine.closing
    }

    /// One call of a pipeline, answered exactly as its unary RPC would be.
    async fn answer(&self, call: pb::Call) -> pb::Reply {
        use pb::{call::Kind as C, reply::Kind as R};
        let result = match call.kind {
            Some(C::Create(r)) => self
                .observed("create", self.create_call(r))
                .await
                .map(R::Write),
            Some(C::Get(r)) => self.observed("get", self.get_call(r)).await.map(R::Get),
            Some(C::Apply(r)) => self
                .observed("apply", self.apply_call(r))
                .await
                .map(R::Write),
            Some(C::Invalidate(r)) => self
                .observed("invalidate", self.invalidate_call(r))
                .await
                .map(R::Invalidate),
            Some(C::RotateId(r)) => self
                .observed("rotate_id", self.rotate_id_call(r))
                .await
                .map(R::RotateId),
            None => Err(InvalidInput("call has no kind".into()).into()),
        };
        let kind = result.unwrap_or_else(|failure| R::Error(convert::call_error(&failure)));
        pb::Reply {
            tag: call.tag,
            kind: Some(kind),
        }
    }
}

/// A client-supplied id. Text that cannot be an id is answered exactly like an unknown one,
/// so forged ids learn nothing.
fn session_id(text: &str) -> Result<SessionId, CallFailure> {
    SessionId::parse(text).ok_or(CallFailure::Store(StoreError::NotFound))
}

fn duration_ms(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

fn returning_session(value: i32) -> bool {
    value == pb::Returning::Session as i32
}

/// The calls themselves, shared by the unary RPCs and the pipelines (which call them without
/// the RPCs' request wrappers and boxed futures).
impl<S: SessionStore> SessionServiceImpl<S> {
    #[tracing::instrument(level = "debug", name = "call", skip_all, fields(op = "create"))]
    async fn create_call(&self, req: pb::CreateRequest) -> Result<pb::WriteResponse, CallFailure> {
        let ops = convert::operations(req.operations)?;
        let options = CreateOptions {
            idle_timeout: duration_ms(req.idle_timeout_ms),
            max_lifetime: duration_ms(req.max_lifetime_ms),
            return_session: returning_session(req.returning),
        };
        let outcome = self.engine.store.create(options, ops).await?;
        tracing::debug!(session = %outcome.info.id, "created");
        Ok(outcome.into())
    }

    #[tracing::instrument(level = "debug", name = "call", skip_all, fields(op = "get", session = %Prefix(&req.id)))]
    async fn get_call(&self, mut req: pb::GetRequest) -> Result<pb::GetResponse, CallFailure> {
        let id = session_id(&req.id)?;
        // Only an id's one spelling parses, so the request's text is the reply's id as is.
        let text = std::mem::take(&mut req.id);
        let query = GetQuery::try_from(req)?;
        Ok(match self.engine.store.get(&id, query).await? {
            GetOutcome::Found(snapshot) => pb::GetResponse {
                not_modified: false,
                session: Some(convert::session(snapshot, text)),
            },
            GetOutcome::NotModified(info) => pb::GetResponse {
                not_modified: true,
                session: Some(pb::Session {
                    info: Some(convert::info(info, text)),
                    attributes: Vec::new(),
                }),
            },
        })
    }

    #[tracing::instrument(level = "debug", name = "call", skip_all, fields(op = "apply", session = %Prefix(&req.id)))]
    async fn apply_call(&self, req: pb::ApplyRequest) -> Result<pb::WriteResponse, CallFailure> {
        let id = session_id(&req.id)?;
        let ops = convert::operations(req.operations)?;
        let outcome = self
            .engine
            .store
            .apply(&id, ops, returning_session(req.returning))
            .await?;
        Ok(convert::write_response(outcome, req.id))
    }

    #[tracing::instrument(level = "debug", name = "call", skip_all, fields(op = "invalidate", session = %Prefix(&req.id)))]
    async fn invalidate_call(
        &self,
        req: pb::InvalidateRequest,
    ) -> Result<pb::InvalidateResponse, CallFailure> {
        let id = session_id(&req.id)?;
        self.engine.store.invalidate(&id).await?;
        tracing::debug!(session = %id, "invalidated");
        Ok(pb::InvalidateResponse {})
    }

    #[tracing::instrument(level = "debug", name = "call", skip_all, fields(op = "rotate_id", session = %Prefix(&req.id)))]
    async fn rotate_id_call(
        &self,
        req: pb::RotateIdRequest,
    ) -> Result<pb::RotateIdResponse, CallFailure> {
        let id = session_id(&req.id)?;
        let info = self.engine.store.rotate_id(&id).await?;
        tracing::debug!(session = %id, new = %info.id, "id rotated");
        Ok(pb::RotateIdResponse {
            info: Some(info.into()),
        })
    }
}

#[tonic::async_trait]
impl<S: SessionStore> SessionService for SessionServiceImpl<S> {
    async fn create(
        &self,
        request: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let call = self.create_call(request.into_inner());
        let answer = self.observed("create", call).await;
        answer.map(Response::new).map_err(Status::from)
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let call = self.get_call(request.into_inner());
        let answer = self.observed("get", call).await;
        answer.map(Response::new).map_err(Status::from)
    }

    async fn apply(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let call = self.apply_call(request.into_inner());
        let answer = self.observed("apply", call).await;
        answer.map(Response::new).map_err(Status::from)
    }

    async fn invalidate(
        &self,
        request: Request<pb::InvalidateRequest>,
    ) -> Result<Response<pb::InvalidateResponse>, Status> {
        let call = self.invalidate_call(request.into_inner());
        let answer = self.observed("invalidate", call).await;
        answer.map(Response::new).map_err(Status::from)
    }

    async fn rotate_id(
        &self,
        request: Request<pb::RotateIdRequest>,
    ) -> Result<Response<pb::RotateIdResponse>, Status> {
        let call = self.rotate_id_call(request.into_inner());
        let answer = self.observed("rotate_id", call).await;
        answer.map(Response::new).map_err(Status::from)
    }

    type PipelineStream = BoxStream<'static, Result<pb::PipelineResponse, Status>>;

    async fn pipeline(
        &self,
        request: Request<Streaming<pb::PipelineRequest>>,
    ) -> Result<Response<Self::PipelineStream>, Status> {
        let incoming = request.into_inner();
        let service = self.clone();
        // Each request message answered by one or more response messages, in order; a
        // response is made only when the previous one was taken, so a client that does not
        // read holds up its own stream and nothing else. The stream ends when the client's
        // does, or with the status of a message that does not decode.
        let state = Some((incoming, service, None::<Answering>));
        let replies = futures_util::stream::unfold(state, |state| {
            async move {
                let (mut incoming, service, mut batch) = state?;
                loop {
                    if let Some(answering) = &mut batch
                        && let Some(response) = service.next_response(answering).await
                    {
                        return Some((Ok(response), Some((incoming, service, batch))));
                    }
                    let message = tokio::select! {
                        _ = service.engine.closing.cancelled() => return None,
                        message = incoming.message() => message,
                    };
                    match message {
                        Ok(Some(request)) => match Answering::new(request) {
                            Ok(answering) => batch = Some(answering),
                            Err(refused) => {
                                return Some((Ok(refused), Some((incoming, service, None))));
                            }
                        },
                        Ok(None) => return None,
                        // The stream's last item.
                        Err(status) => return Some((Err(status), None)),
                    }
                }
            }
        });
        Ok(Response::new(replies.boxed()))
    }

    type WatchStream = BoxStream<'static, Result<pb::WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.observed("watch", async {
            let req = request.into_inner();
            let durable = self.engine.store.durable();
            let stream = self
                .engine
                .events
                .watch(req.server_epoch, req.after_seq, req.skip_origin)
                .map(move |item| Ok(convert::watch_response(item, durable)));
            Ok::<_, CallFailure>(stream.boxed())
        })
        .await
        .map(Response::new)
        .map_err(Status::from)
    }
}
