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
use tonic::{Request, Response, Status};

/// Serves one store. Cheap to clone: everything is shared.
#[derive(Debug)]
pub struct SessionServiceImpl<S> {
    store: Arc<S>,
    events: Arc<EventLog>,
    metrics: Arc<Metrics>,
}

impl<S> Clone for SessionServiceImpl<S> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            events: Arc::clone(&self.events),
            metrics: Arc::clone(&self.metrics),
        }
    }
}

impl<S: SessionStore> SessionServiceImpl<S> {
    pub fn new(store: Arc<S>, events: Arc<EventLog>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            events,
            metrics,
        }
    }

    /// Runs one call, recording its outcome and latency.
    async fn observed<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let result = call.await;
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        self.metrics.observe(method, code, started.elapsed());
        if let Err(status) = &result {
            tracing::debug!(method, code = ?status.code(), message = status.message(), "call failed");
        }
        result.map(Response::new)
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

#[tonic::async_trait]
impl<S: SessionStore> SessionService for SessionServiceImpl<S> {
    async fn create(
        &self,
        request: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        self.observed("create", async {
            let req = request.into_inner();
            let ops = convert::operations(req.operations)?;
            let options = CreateOptions {
                idle_timeout: duration_ms(req.idle_timeout_ms),
                max_lifetime: duration_ms(req.max_lifetime_ms),
                return_session: returning_session(req.returning),
            };
            let outcome = self.store.create(options, ops).await?;
            tracing::debug!(session = %outcome.info.id, "created");
            Ok(outcome.into())
        })
        .await
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        self.observed("get", async {
            let req = request.into_inner();
            let id = session_id(&req.id)?;
            Ok(match self.store.get(&id, req.into()).await? {
                GetOutcome::Found(snapshot) => pb::GetResponse {
                    not_modified: false,
                    session: Some(snapshot.into()),
                },
                GetOutcome::NotModified(info) => pb::GetResponse {
                    not_modified: true,
                    session: Some(pb::Session {
                        info: Some(info.into()),
                        attributes: Vec::new(),
                    }),
                },
            })
        })
        .await
    }

    async fn apply(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        self.observed("apply", async {
            let req = request.into_inner();
            let id = session_id(&req.id)?;
            let ops = convert::operations(req.operations)?;
            let outcome = self
                .store
                .apply(&id, ops, returning_session(req.returning))
                .await?;
            Ok(outcome.into())
        })
        .await
    }

    async fn invalidate(
        &self,
        request: Request<pb::InvalidateRequest>,
    ) -> Result<Response<pb::InvalidateResponse>, Status> {
        self.observed("invalidate", async {
            let id = session_id(&request.into_inner().id)?;
            self.store.invalidate(&id).await?;
            tracing::debug!(session = %id, "invalidated");
            Ok(pb::InvalidateResponse {})
        })
        .await
    }

    async fn rotate_id(
        &self,
        request: Request<pb::RotateIdRequest>,
    ) -> Result<Response<pb::RotateIdResponse>, Status> {
        self.observed("rotate_id", async {
            let id = session_id(&request.into_inner().id)?;
            let info = self.store.rotate_id(&id).await?;
            tracing::debug!(session = %id, new = %info.id, "id rotated");
            Ok(pb::RotateIdResponse {
                info: Some(info.into()),
            })
        })
        .await
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
                .watch(req.server_epoch, req.after_seq)
                .map(|item| Ok(item.into()));
            Ok(stream.boxed())
        })
        .await
    }
}
