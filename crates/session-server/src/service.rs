//! The gRPC face of a [`SessionStore`]: `session.v1.SessionService`.

use crate::{
    convert,
    events::EventLog,
    id::SessionId,
    metrics::Metrics,
    store::{CreateOptions, GetOutcome, SessionStore, StoreError},
};
use futures_util::{StreamExt, stream::BoxStream};
use session_proto::v1::{self as pb, session_service_server::SessionService};
use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// Serves one store. Cheap to clone: everything is shared.
#[derive(Debug)]
pub struct SessionServiceImpl<S> {
    store: Arc<S>,
    events: Arc<EventLog>,
    metrics: Arc<Metrics>,
    /// Cancelled when shutdown begins: long-lived pipeline streams end between batches, so
    /// clients move on instead of holding the server open through its grace period.
    closing: CancellationToken,
}

impl<S> Clone for SessionServiceImpl<S> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            events: Arc::clone(&self.events),
            metrics: Arc::clone(&self.metrics),
            closing: self.closing.clone(),
        }
    }
}

impl<S: SessionStore> SessionServiceImpl<S> {
    pub fn new(
        store: Arc<S>,
        events: Arc<EventLog>,
        metrics: Arc<Metrics>,
        closing: CancellationToken,
    ) -> Self {
        Self {
            store,
            events,
            metrics,
            closing,
        }
    }

    /// Runs one call, recording its outcome and latency.
    async fn observed<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let started = Instant::now();
        let result = call.await;
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        self.metrics.observe(method, code, started.elapsed());
        if let Err(status) = &result {
            tracing::debug!(method, code = ?status.code(), message = status.message(), "call failed");
        }
        result
    }
}

impl<S: SessionStore> SessionServiceImpl<S> {
    /// One message of a pipeline: its calls answered in order, their events tagged with the
    /// message's origin.
    pub async fn answer_batch(&self, batch: pb::PipelineRequest) -> pb::PipelineResponse {
        let mut replies = Vec::with_capacity(batch.calls.len());
        let answers = async {
            for call in batch.calls {
                replies.push(self.answer(call).await);
            }
        };
        crate::events::ORIGIN.scope(batch.origin, answers).await;
        pb::PipelineResponse { replies }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Cancelled when shutdown begins.
    pub fn closing(&self) -> &CancellationToken {
        &self.closing
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
            None => Err(Status::invalid_argument("call has no kind")),
        };
        let kind = result.unwrap_or_else(|status| {
            R::Error(pb::CallError {
                code: status.code() as i32,
                message: status.message().to_owned(),
                details: status.details().to_vec().into(),
            })
        });
        pb::Reply {
            tag: call.tag,
            kind: Some(kind),
        }
    }
}

/// A client-supplied id. Text that cannot be an id is answered exactly like an unknown one,
/// so forged ids learn nothing.
fn session_id(text: &str) -> Result<SessionId, Status> {
    SessionId::parse(text).ok_or_else(|| Status::from(StoreError::NotFound))
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
    async fn create_call(&self, req: pb::CreateRequest) -> Result<pb::WriteResponse, Status> {
        let ops = convert::operations(req.operations)?;
        let options = CreateOptions {
            idle_timeout: duration_ms(req.idle_timeout_ms),
            max_lifetime: duration_ms(req.max_lifetime_ms),
            return_session: returning_session(req.returning),
        };
        let outcome = self.store.create(options, ops).await?;
        tracing::debug!(session = %outcome.info.id, "created");
        Ok(outcome.into())
    }

    async fn get_call(&self, mut req: pb::GetRequest) -> Result<pb::GetResponse, Status> {
        let id = session_id(&req.id)?;
        // Only an id's one spelling parses, so the request's text is the reply's id as is.
        let text = std::mem::take(&mut req.id);
        Ok(match self.store.get(&id, req.into()).await? {
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

    async fn apply_call(&self, req: pb::ApplyRequest) -> Result<pb::WriteResponse, Status> {
        let id = session_id(&req.id)?;
        let ops = convert::operations(req.operations)?;
        let outcome = self
            .store
            .apply(&id, ops, returning_session(req.returning))
            .await?;
        Ok(convert::write_response(outcome, req.id))
    }

    async fn invalidate_call(
        &self,
        req: pb::InvalidateRequest,
    ) -> Result<pb::InvalidateResponse, Status> {
        let id = session_id(&req.id)?;
        self.store.invalidate(&id).await?;
        tracing::debug!(session = %id, "invalidated");
        Ok(pb::InvalidateResponse {})
    }

    async fn rotate_id_call(
        &self,
        req: pb::RotateIdRequest,
    ) -> Result<pb::RotateIdResponse, Status> {
        let id = session_id(&req.id)?;
        let info = self.store.rotate_id(&id).await?;
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
        self.observed("create", call).await.map(Response::new)
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let call = self.get_call(request.into_inner());
        self.observed("get", call).await.map(Response::new)
    }

    async fn apply(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let call = self.apply_call(request.into_inner());
        self.observed("apply", call).await.map(Response::new)
    }

    async fn invalidate(
        &self,
        request: Request<pb::InvalidateRequest>,
    ) -> Result<Response<pb::InvalidateResponse>, Status> {
        let call = self.invalidate_call(request.into_inner());
        self.observed("invalidate", call).await.map(Response::new)
    }

    async fn rotate_id(
        &self,
        request: Request<pb::RotateIdRequest>,
    ) -> Result<Response<pb::RotateIdResponse>, Status> {
        let call = self.rotate_id_call(request.into_inner());
        self.observed("rotate_id", call).await.map(Response::new)
    }

    type PipelineStream = BoxStream<'static, Result<pb::PipelineResponse, Status>>;

    async fn pipeline(
        &self,
        request: Request<Streaming<pb::PipelineRequest>>,
    ) -> Result<Response<Self::PipelineStream>, Status> {
        let incoming = request.into_inner();
        let service = self.clone();
        // One reply message per batch, in order; the stream ends when the client's does.
        let replies = futures_util::stream::unfold(
            (incoming, service),
            |(mut incoming, service)| async move {
                let batch = tokio::select! {
                    _ = service.closing.cancelled() => return None,
                    message = incoming.message() => message.ok()??,
                };
                let replies = service.answer_batch(batch).await;
                Some((Ok(replies), (incoming, service)))
            },
        );
        Ok(Response::new(replies.boxed()))
    }

    type WatchStream = BoxStream<'static, Result<pb::WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.observed("watch", async {
            let req = request.into_inner();
            let stream = self
                .events
                .watch(req.server_epoch, req.after_seq, req.skip_origin)
                .map(|item| Ok(item.into()));
            Ok(stream.boxed())
        })
        .await
        .map(Response::new)
    }
}
