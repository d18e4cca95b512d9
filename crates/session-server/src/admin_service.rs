//! `session.v1.AdminService`: what an operator asks of the server, with the admin credential.
//! It listens on the session port, beside the session service, so it has that port's TLS and
//! credentials; the admin HTTP port (`crate::admin`) only serves what needs no credential.

use crate::{
    Engine, handshake,
    service::refused,
    store::{BackupError, SessionStore},
};
use session_proto::v1::{self as pb, admin_service_server::AdminService};
use std::{path::PathBuf, sync::Arc};
use tonic::{Request, Response, Status};

/// The admin service over `engine`.
#[derive(Debug)]
pub struct AdminServiceImpl<S> {
    engine: Engine<S>,
}

impl<S> AdminServiceImpl<S> {
    pub fn new(engine: Engine<S>) -> Self {
        Self { engine }
    }
}

impl<S: SessionStore> AdminServiceImpl<S> {
    fn admit<T>(&self, request: &Request<T>, what: &str) -> Result<(), Status> {
        let peer = request.extensions().get::<handshake::Peer>();
        let presented = handshake::from_metadata(request.metadata(), peer);
        let admitted = self.engine.auth.authenticate_admin(presented);
        match &admitted {
            Ok(()) => tracing::info!(what, "admin call"),
            Err(refusal) => tracing::warn!(what, reason = refusal.message, "admin call refused"),
        }
        admitted.map_err(refused)
    }
}

#[tonic::async_trait]
impl<S: SessionStore> AdminService for AdminServiceImpl<S> {
    async fn backup(
        &self,
        request: Request<pb::BackupRequest>,
    ) -> Result<Response<pb::BackupResponse>, Status> {
        self.admit(&request, "backup")?;
        let to = PathBuf::from(request.into_inner().to);
        if !to.is_absolute() {
            return Err(Status::invalid_argument(format!(
                "{}: give an absolute path on the server's machine",
                to.display()
            )));
        }
        let store = Arc::clone(&self.engine.store);
        let target = to.clone();
        let started = std::time::Instant::now();
        let copied = tokio::task::spawn_blocking(move || store.backup(&target))
            .await
            .map_err(|_| Status::internal("the backup stopped unexpectedly"))?;
        match copied {
            Ok(copied) => {
                tracing::info!(
                    to = %to.display(),
                    sessions = copied.sessions,
                    bytes = copied.bytes,
                    took = ?started.elapsed(),
                    "backup written"
                );
                Ok(Response::new(pb::BackupResponse {
                    to: to.display().to_string(),
                    sessions: copied.sessions,
                    bytes: copied.bytes,
                }))
            }
            Err(e) => {
                tracing::warn!(to = %to.display(), error = %e, "backup failed");
                Err(match e {
                    BackupError::Unsupported | BackupError::Destination(_) => {
                        Status::failed_precondition(e.to_string())
                    }
                    BackupError::Busy | BackupError::Failed(_) => {
                        Status::unavailable(e.to_string())
                    }
                })
            }
        }
    }
}
