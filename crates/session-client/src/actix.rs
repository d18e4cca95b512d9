//! actix-web integration: [`SessionMiddleware`] and the [`RequestSession`] extractor.
//!
//! - Nothing is loaded for requests that never touch the session.
//! - A session is created on the first write, never by a read.
//! - Writes send only the operations the handler made, never the whole session.
//! - The cookie is HttpOnly, SameSite=Lax, Path=/, and Secure when the request came over TLS
//!   or when configured. A forged, unknown or expired cookie simply starts a new session.
//! - A second cookie (`<name>_v`) carries the newest session version the browser has seen, so
//!   that with a near cache ([`crate::SessionClient::with_near_cache`]) an app server answers from its
//!   cache only with a copy at least that new: a write on one server is always visible on the
//!   next read on another.
//!
//! ```no_run
//! use actix_web::{App, HttpServer, get, web};
//! use session_client::{ClientConfig, Ops, SessionClient, actix::{RequestSession, SessionMiddleware}};
//!
//! #[get("/visit")]
//! async fn visit(session: RequestSession) -> actix_web::Result<String> {
//!     let written = session.apply(Ops::new().counter_add("visits", 1)).await
//!         .map_err(actix_web::error::ErrorServiceUnavailable)?;
//!     Ok(format!("visit {}", written.results[0].counter))
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let client = SessionClient::connect_lazy(ClientConfig::default()).map_err(std::io::Error::other)?;
//! HttpServer::new(move || App::new().wrap(SessionMiddleware::new(client.clone())).service(visit))
//!     .bind(("127.0.0.1", 8080))?
//!     .run()
//!     .await
//! # }
//! ```

use crate::{
    any::AnyClient,
    error::Error,
    id::SessionId,
    ops::Ops,
    value::{Session, SessionInfo, WriteResult},
};
use actix_web::{
    FromRequest, HttpMessage, HttpRequest,
    cookie::{Cookie, SameSite},
    dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
};
use futures_util::future::{LocalBoxFuture, Ready, ready};
use std::{cell::RefCell, rc::Rc, time::Duration};

/// The cookie name when none is configured.
pub const DEFAULT_COOKIE_NAME: &str = "sid";
/// Cookie values longer than this cannot be ids and are ignored without asking the server.
const MAX_COOKIE_LEN: usize = 128;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub cookie_name: String,
    /// `Some(true)` always sets Secure; `None` sets it when the request came over TLS, to
    /// this app or (as `X-Forwarded-Proto`/`Forwarded` say) to one of `trusted_proxies`.
    pub secure: Option<bool>,
    /// Reverse proxies whose forwarding headers are believed; anyone can send them.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Timeouts of sessions this app creates; `None` takes the server's defaults.
    pub idle_timeout: Option<Duration>,
    pub max_lifetime: Option<Duration>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            cookie_name: DEFAULT_COOKIE_NAME.into(),
            secure: None,
            trusted_proxies: Vec::new(),
            idle_timeout: None,
            max_lifetime: None,
        }
    }
}

/// Middleware that gives every request a lazily loaded [`RequestSession`] and keeps the
/// session cookie in step with it.
#[derive(Debug, Clone)]
pub struct SessionMiddleware {
    shared: Rc<Shared>,
}

#[derive(Debug)]
struct Shared {
    client: AnyClient,
    config: SessionConfig,
    /// `<cookie_name>_v`: the newest version the browser has seen.
    version_cookie: String,
}

impl SessionMiddleware {
    /// Over a [`crate::SessionClient`], or a [`crate::CachedClient`] for a near cache.
    pub fn new(client: impl Into<AnyClient>) -> Self {
        Self::with_config(client, SessionConfig::default())
    }

    pub fn with_config(client: impl Into<AnyClient>, config: SessionConfig) -> Self {
        let version_cookie = format!("{}_v", config.cookie_name);
        Self {
            shared: Rc::new(Shared {
                client: client.into(),
                config,
                version_cookie,
            }),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for SessionMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = SessionService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SessionService {
            service: Rc::new(service),
            shared: Rc::clone(&self.shared),
        }))
    }
}

#[doc(hidden)]
#[derive(Debug)]
pub struct SessionService<S> {
    service: Rc<S>,
    shared: Rc<Shared>,
}

impl<S, B> Service<ServiceRequest> for SessionService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let config = &self.shared.config;
        let raw_id = req
            .cookie(&config.cookie_name)
            .map(|c| c.value().to_owned());
        let had_cookie = raw_id.is_some();
        let cookie_id = raw_id
            .filter(|v| !v.is_empty() && v.len() <= MAX_COOKIE_LEN)
            .map(SessionId::from);
        let version_cookie = self.shared.version_cookie.clone();
        let min_version = req
            .cookie(&version_cookie)
            .and_then(|c| c.value().parse().ok())
            .unwrap_or(0);
        let secure = config.secure.unwrap_or_else(|| {
            let from_proxy = req
                .peer_addr()
                .is_some_and(|peer| config.trusted_proxies.contains(&peer.ip()));
            req.app_config().secure() || from_proxy && req.connection_info().scheme() == "https"
        });
        let session = RequestSession {
            client: self.shared.client.clone(),
            state: Rc::new(RefCell::new(State {
                id: cookie_id,
                had_cookie,
                min_version,
                seen_version: min_version,
                changed: false,
                cached: None,
                idle_timeout: config.idle_timeout,
                max_lifetime: config.max_lifetime,
            })),
        };
        req.extensions_mut().insert(session.clone());
        let cookie_name = config.cookie_name.clone();
        let fut = self.service.call(req);
        Box::pin(async move {
            let mut res = fut.await?;
            let state = session.state.borrow();
            // The browser holds a cookie that names no session (any more): clear it.
            let gone = state.id.is_none() && (state.had_cookie || state.changed);
            let cookie = match &state.id {
                Some(id) if state.changed => {
                    Some(session_cookie(&cookie_name, id.as_str().to_owned(), secure))
                }
                None if gone => Some(removal(&cookie_name, secure)),
                _ => None,
            };
            // The newest version this browser has seen, for read-your-writes elsewhere; with the
            // session gone, the version it reached means nothing either.
            let version = match &state.id {
                Some(_) if state.seen_version > state.min_version || state.changed => Some(
                    session_cookie(&version_cookie, state.seen_version.to_string(), secure),
                ),
                None if gone => Some(removal(&version_cookie, secure)),
                _ => None,
            };
            for cookie in cookie.iter().chain(version.iter()) {
                if let Err(e) = res.response_mut().add_cookie(cookie) {
                    tracing::warn!(error = %e, "could not set the session cookie");
                }
            }
            Ok(res)
        })
    }
}

fn removal(name: &str, secure: bool) -> Cookie<'static> {
    let mut cookie = session_cookie(name, String::new(), secure);
    cookie.make_removal();
    cookie
}

fn session_cookie(name: &str, value: String, secure: bool) -> Cookie<'static> {
    Cookie::build(name.to_owned(), value)
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(secure)
        .finish()
}

#[derive(Debug)]
struct State {
    /// The session's id as far as this request knows; `None` when it has none (yet).
    id: Option<SessionId>,
    had_cookie: bool,
    /// The oldest version this request may be shown: the newest the browser has seen.
    min_version: u64,
    /// The newest version this request has seen.
    seen_version: u64,
    /// The id changed during this request (created, rotated, invalidated): send a cookie.
    changed: bool,
    /// The session as last read or written during this request.
    cached: Option<Session>,
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
}

/// The request's session, for handlers. Clones share state within the request.
#[derive(Debug, Clone)]
pub struct RequestSession {
    client: AnyClient,
    state: Rc<RefCell<State>>,
}

impl FromRequest for RequestSession {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<RequestSession>()
                .cloned()
                .ok_or_else(|| {
                    actix_web::error::ErrorInternalServerError(
                        "SessionMiddleware is not installed on this app",
                    )
                }),
        )
    }
}

impl RequestSession {
    /// The session id, if the request has a session. It is a credential: it prints only its
    /// first characters.
    pub fn id(&self) -> Option<SessionId> {
        self.state.borrow().id.clone()
    }

    /// The session, read once per request; `None` when there is none (no cookie, or one
    /// naming an unknown, expired or invalidated session).
    pub async fn load(&self) -> Result<Option<Session>, Error> {
        let (id, cached, min_version) = {
            let s = self.state.borrow();
            (s.id.clone(), s.cached.clone(), s.min_version)
        };
        if cached.is_some() {
            return Ok(cached);
        }
        let Some(id) = id else { return Ok(None) };
        match self.client.get_fresh(&id, min_version).await {
            Ok(session) => {
                let mut s = self.state.borrow_mut();
                s.seen_version = s.seen_version.max(session.info.version);
                s.cached = Some(session.clone());
                Ok(Some(session))
            }
            Err(Error::NotFound) => {
                self.forget(&id);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Applies `ops` to the session, creating it first if the request has none.
    pub async fn apply(&self, ops: Ops) -> Result<WriteResult, Error> {
        self.write(ops, false).await
    }

    /// Like [`apply`](Self::apply), and returns the session after the write in the same
    /// round trip (later [`load`](Self::load)s in this request are then free).
    pub async fn apply_and_load(&self, ops: Ops) -> Result<Session, Error> {
        let written = self.write(ops, true).await?;
        written.session.ok_or_else(|| Error::Server {
            code: tonic::Code::Internal,
            message: "server did not return the session".into(),
        })
    }

    async fn write(&self, ops: Ops, return_session: bool) -> Result<WriteResult, Error> {
        // With a near cache, the session after the write comes back in the same round trip
        // and warms the cache for the request that follows (post/redirect/get).
        let return_session = return_session || self.client.has_near_cache();
        if let Some(id) = self.id() {
            match self
                .client
                .apply_with(&id, ops.clone(), return_session)
                .await
            {
                Ok(written) => {
                    let mut s = self.state.borrow_mut();
                    s.seen_version = s.seen_version.max(written.info.version);
                    s.cached = written.session.clone();
                    return Ok(written);
                }
                Err(Error::NotFound) => self.forget(&id),
                Err(e) => return Err(e),
            }
        }
        let (idle, lifetime) = {
            let s = self.state.borrow();
            (s.idle_timeout, s.max_lifetime)
        };
        let written = self
            .client
            .create_with(ops, idle, lifetime, return_session)
            .await?;
        let mut s = self.state.borrow_mut();
        s.id = Some(written.info.id.clone());
        s.changed = true;
        // A new session's versions start again from 1.
        s.min_version = 0;
        s.seen_version = written.info.version;
        s.cached = written.session.clone();
        Ok(written)
    }

    /// Gives the session a new id, keeping its data: call it when a user logs in, so an id
    /// planted before login (session fixation) is worthless afterwards.
    pub async fn rotate_id(&self) -> Result<Option<SessionInfo>, Error> {
        let Some(id) = self.id() else { return Ok(None) };
        let info = self.client.rotate_id(&id).await?;
        let mut s = self.state.borrow_mut();
        s.id = Some(info.id.clone());
        s.changed = true;
        s.cached = None;
        Ok(Some(info))
    }

    /// Ends the session on the server and clears the cookie.
    pub async fn invalidate(&self) -> Result<(), Error> {
        let Some(id) = self.id() else { return Ok(()) };
        match self.client.invalidate(&id).await {
            Ok(()) | Err(Error::NotFound) => {
                self.forget(&id);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn forget(&self, id: &str) {
        let mut s = self.state.borrow_mut();
        if s.id.as_deref() == Some(id) {
            s.id = None;
            s.cached = None;
            s.changed = true;
            s.min_version = 0;
            s.seen_version = 0;
        }
    }
}
