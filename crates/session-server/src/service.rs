//! The gRPC face of a [`SessionStore`]: `session.v1.SessionService`. Every call runs as a
//! [`Caller`]: the app a framed connection's hello or a gRPC request's metadata authenticated.

use crate::{
    Engine,
    auth::{Caller, Refusal},
    convert::{self, CallFailure, InvalidInput},
    events::Cursor,
    handshake::{self, Peer, ServerFacts},
    id::{Prefix, SessionId},
    metrics::Metrics,
    store::{
        CreateOptions, GetOutcome, GetQuery, SessionStore, StoreError, memory::journal::deferring,
    },
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
    /// Who a request without any metadata is on a server without authentication (tools, the
    /// in-process adapter's calls): made once, not per call.
    anonymous: Option<Caller>,
}

impl<S> Clone for SessionServiceImpl<S> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
            anonymous: self.anonymous.clone(),
        }
    }
}

impl<S: SessionStore> SessionServiceImpl<S> {
    pub fn new(engine: Engine<S>) -> Self {
        let anonymous = (!engine.auth.enabled())
            .then(|| engine.auth.authenticate(Default::default()).ok())
            .flatten();
        Self { engine, anonymous }
    }

    /// Runs one call of `caller`'s, within its app's rate, recording its outcome and latency.
    async fn observed<T>(
        &self,
        caller: &Caller,
        method: &'static str,
        call: impl Future<Output = Result<T, CallFailure>>,
    ) -> Result<T, CallFailure> {
        let started = Instant::now();
        let result = if self
            .engine
            .loading
            .load(std::sync::atomic::Ordering::Acquire)
        {
            Err(CallFailure::Store(StoreError::Storage(
                "the session server is loading its sessions from disk; try again in a moment"
                    .into(),
            )))
        } else if caller.app.admit() {
            call.await
        } else {
            Err(CallFailure::RateLimited {
                app: caller.app.name.to_string(),
                rate: caller.app.quota().rate.unwrap_or_default(),
            })
        };
        let code = result.as_ref().map_or_else(CallFailure::code, |_| Code::Ok);
        self.engine.metrics.observe(method, code, started.elapsed());
        if let Err(failure) = &result {
            tracing::debug!(method, app = %caller.app, node = %caller.node, ?code, %failure, "call failed");
        }
        result
    }

    /// The caller a gRPC request makes, from its metadata and its connection's TLS.
    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        if let Some(anonymous) = &self.anonymous
            && request.metadata().is_empty()
        {
            return Ok(anonymous.clone());
        }
        let peer = request.extensions().get::<Peer>();
        let presented = handshake::from_metadata(request.metadata(), peer);
        self.engine.auth.authenticate(presented).map_err(refused)
    }

    /// Answers a framed connection's first message: the caller its hello (or, from a client
    /// of protocol 1, its lack of one) makes, and what to answer the hello with.
    pub fn hello(
        &self,
        hello: Option<&pb::Hello>,
        peer: &Peer,
    ) -> (Result<Caller, Refusal>, Option<pb::HelloReply>) {
        let outcome = self
            .engine
            .auth
            .authenticate(handshake::from_hello(hello, peer));
        match &outcome {
            Ok(caller) => tracing::debug!(
                app = %caller.app,
                node = %caller.node,
                protocol = caller.protocol,
                "framed connection"
            ),
            Err(refusal) => tracing::debug!(
                code = ?refusal.code,
                reason = refusal.message,
                "framed connection refused"
            ),
        }
        let reply = hello.map(|_| handshake::reply(&outcome, &self.facts()));
        (outcome, reply)
    }

    /// Checks `caller` again if the credentials were reloaded since it was last checked.
    pub fn recheck(&self, caller: &mut Caller) -> Result<(), Refusal> {
        self.engine.auth.recheck(caller)
    }

    /// What the store says of itself in every answer to a hello.
    pub fn facts(&self) -> ServerFacts {
        ServerFacts {
            store_id: self.engine.store.store_id().to_owned(),
            epoch: self.engine.events.epoch(),
            durable: self.engine.store.durable(),
        }
    }
}

/// A refusal as a gRPC status.
pub fn refused(refusal: Refusal) -> Status {
    Status::new(refusal.code, refusal.message)
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
    caller: Caller,
    /// Bytes of replies given so far, against the batch's budget.
    spent: u64,
    /// Whether a response went out: even a message without calls gets one.
    started: bool,
}

impl Answering {
    /// A message of `caller`'s to answer; one with more than [`MAX_CALLS`] calls is answered
    /// by a single reply of tag 0 (see docs/protocol.md), its calls left unrun.
    pub fn new(batch: pb::PipelineRequest, caller: Caller) -> Result<Self, pb::PipelineResponse> {
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
            caller,
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
        hello: None,
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
                    self.answer(&batch.caller, call).await
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
        // The writes' waits for the disk put off, then shared: one before the replies go out.
        let ((), ticket) = deferring(crate::events::ORIGIN.scope(batch.origin, answers)).await;
        if let Err(e) = self.engine.store.settle(ticket).await {
            let error = convert::call_error(&CallFailure::Store(e));
            for reply in &mut replies {
                use pb::reply::Kind as R;
                if matches!(
                    reply.kind,
                    Some(R::Write(_) | R::Invalidate(_) | R::RotateId(_))
                ) {
                    reply.kind = Some(R::Error(error.clone()));
                }
            }
        }
        Some(pb::PipelineResponse {
            replies,
            hello: None,
        })
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
    async fn answer(&self, caller: &Caller, call: pb::Call) -> pb::Reply {
        use pb::{call::Kind as C, reply::Kind as R};
        let result = match call.kind {
            Some(C::Create(r)) => self
                .observed(caller, "create", self.create_call(caller, r))
                .await
                .map(R::Write),
            Some(C::Get(r)) => self
                .observed(caller, "get", self.get_call(caller, r))
                .await
                .map(R::Get),
            Some(C::Apply(r)) => self
                .observed(caller, "apply", self.apply_call(caller, r))
                .await
                .map(R::Write),
            Some(C::Invalidate(r)) => self
                .observed(caller, "invalidate", self.invalidate_call(caller, r))
                .await
                .map(R::Invalidate),
            Some(C::RotateId(r)) => self
                .observed(caller, "rotate_id", self.rotate_id_call(caller, r))
                .await
                .map(R::RotateId),
            None => Err(InvalidInput::unknown(
                "the call's kind".into(),
                "create, get, apply, invalidate, rotate_id",
            )
            .into()),
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
    async fn create_call(
        &self,
        caller: &Caller,
        req: pb::CreateRequest,
    ) -> Result<pb::WriteResponse, CallFailure> {
        let ops = convert::operations(req.operations)?;
        let options = CreateOptions {
            idle_timeout: duration_ms(req.idle_timeout_ms),
            max_lifetime: duration_ms(req.max_lifetime_ms),
            return_session: returning_session(req.returning),
        };
        let outcome = self
            .engine
            .store
            .create(caller.app.id, options, ops)
            .await?;
        tracing::debug!(session = %outcome.info.id, "created");
        Ok(outcome.into())
    }

    #[tracing::instrument(level = "debug", name = "call", skip_all, fields(op = "get", session = %Prefix(&req.id)))]
    async fn get_call(
        &self,
        caller: &Caller,
        mut req: pb::GetRequest,
    ) -> Result<pb::GetResponse, CallFailure> {
        let id = session_id(&req.id)?;
        // Only an id's one spelling parses, so the request's text is the reply's id as is.
        let text = std::mem::take(&mut req.id);
        let query = GetQuery::try_from(req)?;
        Ok(
            match self.engine.store.get(caller.app.id, &id, query).await? {
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
            },
        )
    }

    #[tracing::instrument(level = "debug", name = "call", skip_all, fields(op = "apply", session = %Prefix(&req.id)))]
    async fn apply_call(
        &self,
        caller: &Caller,
        req: pb::ApplyRequest,
    ) -> Result<pb::WriteResponse, CallFailure> {
        let id = session_id(&req.id)?;
        let ops = convert::operations(req.operations)?;
        let outcome = self
            .engine
            .store
            .apply(caller.app.id, &id, ops, returning_session(req.returning))
            .await?;
        Ok(convert::write_response(outcome, req.id))
    }

    #[tracing::instrument(level = "debug", name = "call", skip_all, fields(op = "invalidate", session = %Prefix(&req.id)))]
    async fn invalidate_call(
        &self,
        caller: &Caller,
        req: pb::InvalidateRequest,
    ) -> Result<pb::InvalidateResponse, CallFailure> {
        let id = session_id(&req.id)?;
        let reference = self.engine.store.invalidate(caller.app.id, &id).await?;
        tracing::debug!(session = %id, "invalidated");
        Ok(pb::InvalidateResponse { reference })
    }

    #[tracing::instrument(level = "debug", name = "call", skip_all, fields(op = "rotate_id", session = %Prefix(&req.id)))]
    async fn rotate_id_call(
        &self,
        caller: &Caller,
        req: pb::RotateIdRequest,
    ) -> Result<pb::RotateIdResponse, CallFailure> {
        let id = session_id(&req.id)?;
        let rotated = self.engine.store.rotate_id(caller.app.id, &id).await?;
        tracing::debug!(session = %id, new = %rotated.info.id, "id rotated");
        Ok(pb::RotateIdResponse {
            info: Some(rotated.info.into()),
            previous_reference: rotated.previous_reference,
        })
    }
}

#[tonic::async_trait]
impl<S: SessionStore> SessionService for SessionServiceImpl<S> {
    async fn create(
        &self,
        request: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let caller = self.caller(&request)?;
        let call = self.create_call(&caller, request.into_inner());
        let answer = self.observed(&caller, "create", call).await;
        answer.map(Response::new).map_err(Status::from)
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let caller = self.caller(&request)?;
        let call = self.get_call(&caller, request.into_inner());
        let answer = self.observed(&caller, "get", call).await;
        answer.map(Response::new).map_err(Status::from)
    }

    async fn apply(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let caller = self.caller(&request)?;
        let call = self.apply_call(&caller, request.into_inner());
        let answer = self.observed(&caller, "apply", call).await;
        answer.map(Response::new).map_err(Status::from)
    }

    async fn invalidate(
        &self,
        request: Request<pb::InvalidateRequest>,
    ) -> Result<Response<pb::InvalidateResponse>, Status> {
        let caller = self.caller(&request)?;
        let call = self.invalidate_call(&caller, request.into_inner());
        let answer = self.observed(&caller, "invalidate", call).await;
        answer.map(Response::new).map_err(Status::from)
    }

    async fn rotate_id(
        &self,
        request: Request<pb::RotateIdRequest>,
    ) -> Result<Response<pb::RotateIdResponse>, Status> {
        let caller = self.caller(&request)?;
        let call = self.rotate_id_call(&caller, request.into_inner());
        let answer = self.observed(&caller, "rotate_id", call).await;
        answer.map(Response::new).map_err(Status::from)
    }

    type PipelineStream = BoxStream<'static, Result<pb::PipelineResponse, Status>>;

    async fn pipeline(
        &self,
        request: Request<Streaming<pb::PipelineRequest>>,
    ) -> Result<Response<Self::PipelineStream>, Status> {
        let caller = self.caller(&request)?;
        let incoming = request.into_inner();
        let service = self.clone();
        let mut metadata = tonic::metadata::MetadataMap::new();
        handshake::add_metadata(&mut metadata, &self.facts(), &caller);
        // Each request message answered by one or more response messages, in order; a
        // response is made only when the previous one was taken, so a client that does not
        // read holds up its own stream and nothing else. The stream ends when the client's
        // does, with the status of a message that does not decode, or when the caller's
        // credential is revoked.
        let state = Some((incoming, service, caller, None::<Answering>));
        let replies = futures_util::stream::unfold(state, |state| {
            async move {
                let (mut incoming, service, mut caller, mut batch) = state?;
                loop {
                    if let Some(answering) = &mut batch
                        && let Some(response) = service.next_response(answering).await
                    {
                        return Some((Ok(response), Some((incoming, service, caller, batch))));
                    }
                    let message = tokio::select! {
                        _ = service.engine.closing.cancelled() => return None,
                        message = incoming.message() => message,
                    };
                    if let Err(refusal) = service.recheck(&mut caller) {
                        return Some((Err(refused(refusal)), None));
                    }
                    match message {
                        Ok(Some(request)) => match Answering::new(request, caller.clone()) {
                            Ok(answering) => batch = Some(answering),
                            Err(refused) => {
                                return Some((
                                    Ok(refused),
                                    Some((incoming, service, caller, None)),
                                ));
                            }
                        },
                        Ok(None) => return None,
                        // The stream's last item.
                        Err(status) => return Some((Err(status), None)),
                    }
                }
            }
        });
        let mut response = Response::new(replies.boxed());
        *response.metadata_mut() = metadata;
        Ok(response)
    }

    type WatchStream = BoxStream<'static, Result<pb::WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let caller = self.caller(&request)?;
        if caller.protocol < 2 {
            return Err(Status::failed_precondition(
                "this server's events name sessions by reference, never by id (protocol 2): a client of protocol 1 cannot follow them; upgrade it (docs/protocol.md, \"Compatibility\")",
            ));
        }
        let stream = self
            .observed(&caller, "watch", async {
                let req = request.into_inner();
                let durable = self.engine.store.durable();
                let epoch = self.engine.events.epoch();
                let from = Cursor::from_bytes(&req.cursor);
                let service = self.clone();
                let mut caller = caller.clone();
                let stream = self
                    .engine
                    .events
                    .watch(caller.app.id, from, req.skip_origin)
                    .map(move |item| {
                        // A watcher whose credential was revoked hears nothing more.
                        service.recheck(&mut caller).map_err(refused)?;
                        Ok(convert::watch_response(item, epoch, durable))
                    })
                    .scan(false, |ended, item: Result<_, Status>| {
                        let last = std::mem::replace(ended, item.is_err());
                        std::future::ready((!last).then_some(item))
                    });
                Ok::<_, CallFailure>(stream.boxed())
            })
            .await?;
        let mut response = Response::new(stream);
        handshake::add_metadata(response.metadata_mut(), &self.facts(), &caller);
        Ok(response)
    }
}
