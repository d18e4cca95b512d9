//! The in-process adapter: a session service in this process (the session server's own
//! service, embedded), called as the pipeline would call it, with the same deadline and no
//! network. Its sessions are the service's default app's: calls carry no metadata (the
//! cheapest request the service takes), the watch only the protocol version.

use super::handshake::{Handshake, Heard};
use crate::{config::ClientConfig, convert, error::Error};
use futures_util::stream::BoxStream;
use session_proto::v1::{
    self as pb, call::Kind as Call, reply::Kind as Reply, session_service_server::SessionService,
};
use std::{sync::Arc, time::Duration};
use tonic::{Request, Response, Status};

/// A session service running in this process (`session_server::Engine::service`), called
/// without a network hop: the one place the client takes the protocol's own service trait.
pub type LocalService = dyn SessionService<
        WatchStream = BoxStream<'static, Result<pb::WatchResponse, Status>>,
        PipelineStream = BoxStream<'static, Result<pb::PipelineResponse, Status>>,
    >;

#[derive(Clone)]
pub(crate) struct Local {
    service: Arc<LocalService>,
    timeout: Duration,
    heard: Arc<Heard>,
}

impl Local {
    pub(crate) fn new(service: Arc<LocalService>, timeout: Duration) -> Self {
        Self {
            service,
            timeout,
            heard: Arc::default(),
        }
    }

    pub(crate) fn heard(&self) -> &Heard {
        &self.heard
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// One call, answered as the pipeline answers it: a reply, or the service's status as the
    /// reply's `CallError`.
    pub(crate) async fn call(&self, call: Call) -> Result<Reply, Error> {
        let s = &self.service;
        let answer = async {
            match call {
                Call::Create(r) => reply(s.create(Request::new(r)).await, Reply::Write),
                Call::Get(r) => reply(s.get(Request::new(r)).await, Reply::Get),
                Call::Apply(r) => reply(s.apply(Request::new(r)).await, Reply::Write),
                Call::Invalidate(r) => {
                    reply(s.invalidate(Request::new(r)).await, Reply::Invalidate)
                }
                Call::RotateId(r) => reply(s.rotate_id(Request::new(r)).await, Reply::RotateId),
            }
        };
        tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| Error::Unavailable(format!("no answer within {:?}", self.timeout)))
    }

    pub(crate) async fn watch(
        &self,
        request: pb::WatchRequest,
    ) -> Result<BoxStream<'static, Result<pb::WatchResponse, Status>>, Error> {
        // The version alone: no token, no app (a default configuration cannot be invalid).
        let request = match Handshake::new(&ClientConfig::default()) {
            Ok(handshake) => handshake.request(request),
            Err(e) => return Err(e),
        };
        let response = self.service.watch(request).await;
        Ok(response.map_err(convert::status)?.into_inner())
    }
}

fn reply<T>(answer: Result<Response<T>, Status>, kind: impl FnOnce(T) -> Reply) -> Reply {
    match answer {
        Ok(response) => kind(response.into_inner()),
        Err(status) => Reply::Error(pb::CallError {
            code: status.code() as i32,
            message: status.message().to_owned(),
            details: status.details().to_vec().into(),
        }),
    }
}
