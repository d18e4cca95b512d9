//! Building and running a cart instance on an already-bound listener.

use crate::{
    catalog::Catalog,
    config::{SessionMode, Settings},
    live::Live,
    routes,
    state::AppState,
};
use actix_web::{App, HttpServer, dev::Server, middleware, web};
use session_client::{
    AnyClient, ClientConfig, SessionClient,
    actix::{SessionConfig, SessionMiddleware},
};
use session_server::{Engine, config::ServerConfig};
use std::{net::TcpListener, sync::Arc};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("session server address: {0}")]
    Client(#[from] session_client::Error),
    #[error("cannot serve HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// The session client for the configured mode: the session server (clustered), or a store in
/// this process (local) that nothing else can see.
pub fn session_client(settings: &Settings) -> Result<AnyClient, StartError> {
    Ok(match settings.mode {
        SessionMode::Clustered => {
            let client = SessionClient::connect_lazy(ClientConfig {
                endpoints: settings.session_servers.clone(),
                timeout: settings.session_timeout,
                protocol: settings.session_protocol,
                app: Some(settings.session_app.clone()),
                token: settings.session_token.clone(),
                node: Some(settings.node.clone()),
                tls: settings.session_tls.clone(),
            })?;
            match std::num::NonZeroUsize::new(settings.near_cache) {
                Some(capacity) => client.with_near_cache(capacity).into(),
                None => client.into(),
            }
        }
        SessionMode::Local => {
            let config = ServerConfig::default();
            let engine = Engine::new(&config);
            // Runs for the life of the process, like the store it sweeps.
            engine.spawn_sweeper(
                config.sweep_interval,
                tokio_util::sync::CancellationToken::new(),
            );
            SessionClient::in_process(Arc::new(engine.service())).into()
        }
    })
}

/// Starts serving on `listener`; the returned server runs until stopped (SIGTERM/Ctrl-C
/// included, handled by actix-web).
pub fn run(listener: TcpListener, settings: Settings) -> Result<Server, StartError> {
    let catalog = Catalog::load(&settings.catalog)?;
    let client = session_client(&settings)?;
    let workers = settings.workers;
    let session_config = SessionConfig {
        // Cookies belong to a host, not to a port: two local instances on one host would
        // overwrite each other's `sid` and lose both carts, where the box promises that each
        // keeps its own. Clustered instances share the cookie, as they share the session.
        cookie_name: match settings.mode {
            SessionMode::Clustered => session_client::actix::DEFAULT_COOKIE_NAME.into(),
            SessionMode::Local => format!(
                "{}_{}",
                session_client::actix::DEFAULT_COOKIE_NAME,
                settings.public_port
            ),
        },
        secure: settings.secure_cookie,
        trusted_proxies: settings.trusted_proxies.clone(),
        ..SessionConfig::default()
    };
    let state = web::Data::new(AppState {
        me: settings.public_port.to_string(),
        live: Live::start(&client, settings.max_event_streams),
        sessions: client.clone(),
        catalog,
        settings,
    });
    let log_requests =
        tracing::enabled!(target: "actix_web::middleware::logger", tracing::Level::INFO);
    let mut server =
        HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::FormConfig::default().error_handler(|err, _| {
                    crate::error::CartError::BadForm(err.to_string()).into()
                }))
                .wrap(middleware::ErrorHandlers::new().handler(
                    actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                    crate::error::explain_outage,
                ))
                .wrap(SessionMiddleware::with_config(
                    client.clone(),
                    session_config.clone(),
                ))
                // Only when its lines are wanted: it formats every request even when they
                // are filtered out.
                .wrap(middleware::Condition::new(
                    log_requests,
                    middleware::Logger::new("%s %r %Dms").exclude("/healthz"),
                ))
                .wrap(
                    routes::SECURITY_HEADERS
                        .into_iter()
                        .fold(middleware::DefaultHeaders::new(), |headers, header| {
                            headers.add(header)
                        }),
                )
                .configure(routes::configure)
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(crate::error::CartError::NotFound)
                }))
        })
        // Pages answer in milliseconds; what is still open after a second is idle keep-alive
        // connections and live-update streams, which browsers reopen elsewhere.
        .shutdown_timeout(1);
    if let Some(n) = workers {
        server = server.workers(n);
    }
    Ok(server.listen(listener)?.run())
}
