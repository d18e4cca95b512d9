//! The network server (feature `server`): [`run`] serves the session port (framed and gRPC,
//! with health and reflection) and the admin port on listeners the caller bound, until a
//! shutdown future resolves.

use crate::admin_service::AdminServiceImpl;
use crate::{
    Engine,
    admin::{self, AdminState},
    config::ServerConfig,
    framed,
    service::SessionServiceImpl,
    store::SessionStore,
};
use session_proto::v1::{
    admin_service_server::AdminServiceServer, session_service_server::SessionServiceServer,
};
use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store could not load what it kept: the message names the data and what to do.
    #[error("{0}")]
    Recovery(String),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection service could not be built: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("admin server failed: {0}")]
    Admin(#[from] std::io::Error),
}

/// Serves gRPC (sessions, health, reflection) on `grpc` and HTTP admin on `admin` until
/// `shutdown` resolves; then health turns NOT_SERVING, watch streams end, and in-flight calls
/// get `config.shutdown_grace` to finish.
pub async fn run(
    grpc: TcpListener,
    admin: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve(Engine::new(&config), grpc, admin, config, shutdown).await
}

/// [`run`] with an engine the caller made, on any store.
pub async fn serve<S: SessionStore>(
    engine: Engine<S>,
    grpc: TcpListener,
    admin: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // No call is answered before a store that keeps sessions has loaded them (below); one
    // that keeps nothing has nothing to load and answers at once.
    let durable = engine.store.durable();
    engine.loading.store(durable, Ordering::Release);
    let stop = CancellationToken::new();
    let sweeper = engine.spawn_sweeper(config.sweep_interval, stop.clone());

    // NOT_SERVING until the store has loaded what it kept.
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_not_serving::<SessionServiceServer<SessionServiceImpl<S>>>()
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(session_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(session_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let max_message = config.max_message_bytes();
    let sessions = SessionServiceServer::new(engine.service())
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);

    let admin_service = AdminServiceServer::new(AdminServiceImpl::new(engine.clone()))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);

    let serving = Arc::new(AtomicBool::new(false));
    let admin_app = admin::router(AdminState {
        engine: engine.clone(),
        serving: Arc::clone(&serving),
    });

    // One port, two protocols: the accept loop serves framed connections and hands the
    // others to tonic (those over the connection limit to a server of health checks only).
    let (to_grpc, grpc_connections) = tokio::sync::mpsc::channel(64);
    let (to_health, health_connections) = tokio::sync::mpsc::channel(framed::HEALTH_RESERVE);
    let connections = TaskTracker::new();
    let limits = config.connections;
    let session_port = framed::Serving {
        max_message,
        limits,
        tls: config.tls.session.clone(),
    };
    tokio::spawn(framed::accept(
        grpc,
        engine.service(),
        session_port,
        framed::Routes {
            grpc: to_grpc,
            health: to_health,
        },
        connections.clone(),
        stop.clone(),
    ));
    // A peer that stops answering pings (or reading) is let go within the idle timeout.
    let grpc_builder = || {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(limits.idle_timeout / 2))
            .http2_keepalive_timeout(Some(limits.idle_timeout / 2))
    };
    let grpc_stop = stop.clone();
    let grpc_server = grpc_builder()
        .add_service(health_service.clone())
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(sessions)
        .add_service(admin_service)
        .serve_with_incoming_shutdown(ReceiverStream::new(grpc_connections), async move {
            grpc_stop.cancelled().await
        });
    let health_stop = stop.clone();
    let health_server = grpc_builder()
        .add_service(health_service)
        .serve_with_incoming_shutdown(ReceiverStream::new(health_connections), async move {
            health_stop.cancelled().await
        });
    let admin_server = admin::serve(admin, admin_app, config.tls.admin.clone(), stop.clone());

    let grpc_task = tokio::spawn(grpc_server);
    let health_task = tokio::spawn(health_server);
    let admin_task = tokio::spawn(admin_server);

    // What the store kept from an earlier process, loaded before any call is answered (health
    // says NOT_SERVING meanwhile, and calls UNAVAILABLE), unless shutdown comes first.
    let store = Arc::clone(&engine.store);
    let loading =
        tokio::task::spawn_blocking(move || if durable { store.recover() } else { Ok(None) });
    tokio::pin!(shutdown);
    let recovered = tokio::select! {
        loaded = loading => loaded.map_err(|e| ServerError::Recovery(e.to_string()))?,
        () = &mut shutdown => {
            stop.cancel();
            return Ok(());
        }
    };
    match recovered {
        Ok(Some(said)) => tracing::info!(said, "store loaded"),
        Ok(None) => {}
        Err(e) => {
            stop.cancel();
            return Err(ServerError::Recovery(e.to_string()));
        }
    }
    engine.loading.store(false, Ordering::Release);
    serving.store(true, Ordering::Relaxed);
    health
        .set_serving::<SessionServiceServer<SessionServiceImpl<S>>>()
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    tracing::info!("serving");

    shutdown.await;
    tracing::info!("shutting down: health NOT_SERVING, draining in-flight calls");
    serving.store(false, Ordering::Relaxed);
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    health
        .set_not_serving::<SessionServiceServer<SessionServiceImpl<S>>>()
        .await;
    engine.events.close();
    engine.closing.cancel();
    stop.cancel();

    // Framed connections end between batches; the grace period covers the batch in hand.
    connections.close();
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        let grpc = grpc_task.await;
        let admin = admin_task.await;
        let _ = health_task.await;
        connections.wait().await;
        (grpc, admin)
    })
    .await;
    sweeper.abort();
    // Everything acknowledged, on disk.
    engine.store.flush().await;
    match drained {
        Ok((grpc, admin)) => {
            if let Ok(result) = grpc {
                result?;
            }
            if let Ok(result) = admin {
                result?;
            }
            tracing::info!("stopped");
        }
        Err(_) => tracing::warn!(
            grace = ?config.shutdown_grace,
            "in-flight calls did not finish within the grace period; stopping anyway"
        ),
    }
    Ok(())
}

/// The next connection on `listener`, or `None` once `stop` is cancelled. An error (out of
/// file descriptors and the like) is logged, and waited out rather than spun on.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    stop: &CancellationToken,
    port: &str,
) -> Option<tokio::net::TcpStream> {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => return Some(stream),
            Err(e) => {
                tracing::warn!(error = %e, port, "cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads credentials, quotas and certificates again (what SIGHUP does): new ones take effect
/// at once, and a connection whose credential is gone is refused from its next call. What
/// cannot be read is reported and leaves what is in force alone.
pub fn reload(config: &ServerConfig) -> Result<String, String> {
    let summary = if config.auth.enabled() {
        config.auth.reload().map_err(|e| e.to_string())?
    } else {
        "authentication off".to_owned()
    };
    config.tls.reload().map_err(|e| e.to_string())?;
    Ok(summary)
}

/// Resolves on Ctrl-C or SIGTERM: what a terminal and a container manager each send.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        apps::AppId,
        events::EventLog,
        id::SessionId,
        store::{
            CreateOptions, GetOutcome, GetQuery, Operation, Rotated, StoreError, Usage,
            WriteOutcome, memory::MemoryStore,
        },
    };
    use session_client::{ClientConfig, Ops, Protocol, SessionClient};
    use std::time::{Duration, Instant};

    /// The memory store, with writes that take as long as a store doing I/O might.
    struct SlowStore {
        inner: MemoryStore,
        write_time: Duration,
    }

    impl SessionStore for SlowStore {
        async fn create(
            &self,
            app: AppId,
            options: CreateOptions,
            ops: Vec<Operation>,
        ) -> Result<WriteOutcome, StoreError> {
            self.inner.create(app, options, ops).await
        }

        async fn get(
            &self,
            app: AppId,
            id: &SessionId,
            query: GetQuery,
        ) -> Result<GetOutcome, StoreError> {
            self.inner.get(app, id, query).await
        }

        async fn apply(
            &self,
            app: AppId,
            id: &SessionId,
            ops: Vec<Operation>,
            return_session: bool,
        ) -> Result<WriteOutcome, StoreError> {
            tokio::time::sleep(self.write_time).await;
            self.inner.apply(app, id, ops, return_session).await
        }

        async fn invalidate(&self, app: AppId, id: &SessionId) -> Result<u64, StoreError> {
            self.inner.invalidate(app, id).await
        }

        async fn rotate_id(&self, app: AppId, id: &SessionId) -> Result<Rotated, StoreError> {
            self.inner.rotate_id(app, id).await
        }

        async fn sweep(&self) -> usize {
            self.inner.sweep().await
        }

        fn usage(&self) -> Usage {
            self.inner.usage()
        }

        fn usage_by_app(&self) -> Vec<Usage> {
            self.inner.usage_by_app()
        }

        fn durable(&self) -> bool {
            false
        }

        fn store_id(&self) -> &str {
            self.inner.store_id()
        }
    }

    /// A batch in the store when shutdown begins is finished and answered within the grace
    /// period, not cut off: a store doing I/O would otherwise lose the write or its reply.
    #[tokio::test]
    async fn shutdown_waits_for_the_framed_batch_in_flight() {
        let write_time = Duration::from_millis(600);
        let config = ServerConfig {
            shutdown_grace: Duration::from_secs(5),
            ..ServerConfig::default()
        };
        let events = Arc::new(EventLog::new(
            config.watch_buffer,
            config.watch_buffer_bytes,
        ));
        let inner = MemoryStore::new(
            config.limits,
            Arc::clone(&config.clock),
            Arc::clone(&events),
            Arc::clone(config.auth.apps()),
        );
        let store = Arc::new(SlowStore { inner, write_time });
        let engine = Engine::with_store(store, events, &config);
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", grpc.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(engine, grpc, admin, config, async {
            let _ = stopped.await;
        }));

        let client = SessionClient::connect_lazy(ClientConfig {
            endpoints: vec![url],
            timeout: Duration::from_secs(5),
            protocol: Protocol::Framed,
            ..ClientConfig::default()
        })
        .expect("valid address");
        let id = client.create(Ops::new()).await.expect("create").info.id;
        let write = tokio::spawn({
            let client = client.clone();
            async move { client.apply(&id, Ops::new().counter_add("n", 1)).await }
        });
        tokio::time::sleep(write_time / 4).await; // the batch is in the store now
        let shutdown_began = Instant::now();
        let _ = stop.send(());

        let written = write
            .await
            .expect("the writer")
            .expect("the write in flight is answered, not cut off by shutdown");
        assert_eq!(written.results[0].counter, 1);
        server
            .await
            .expect("the server task")
            .expect("a clean stop");
        let took = shutdown_began.elapsed();
        assert!(
            took >= write_time / 2 && took < Duration::from_secs(5),
            "shutdown waited for the batch, and only for it: {took:?}"
        );
    }
}
