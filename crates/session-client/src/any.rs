//! [`AnyClient`]: a session client with or without a near cache, for code that lets its
//! configuration decide (the actix integration, the cart).

use crate::{
    cache::CachedClient,
    client::SessionClient,
    error::Error,
    ops::Ops,
    value::{Session, SessionInfo, WriteResult},
    watch::Update,
};
use std::time::Duration;
use tokio::sync::broadcast;

#[derive(Debug, Clone)]
pub enum AnyClient {
    Direct(SessionClient),
    Cached(CachedClient),
}

impl From<SessionClient> for AnyClient {
    fn from(client: SessionClient) -> Self {
        Self::Direct(client)
    }
}

impl From<CachedClient> for AnyClient {
    fn from(client: CachedClient) -> Self {
        Self::Cached(client)
    }
}

impl AnyClient {
    /// The client underneath the cache, if any.
    pub fn client(&self) -> &SessionClient {
        match self {
            Self::Direct(c) => c,
            Self::Cached(c) => c.client(),
        }
    }

    /// Whether reads can be answered by a near cache.
    pub fn has_near_cache(&self) -> bool {
        matches!(self, Self::Cached(_))
    }

    pub fn timeout(&self) -> Duration {
        self.client().timeout()
    }

    /// See [`SessionClient::store_is_durable`].
    pub fn store_is_durable(&self) -> Option<bool> {
        self.client().store_is_durable()
    }

    /// The events of the app's sessions: the near cache's stream when there is one, else a new one.
    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        match self {
            Self::Direct(c) => c.subscribe(),
            Self::Cached(c) => c.subscribe(),
        }
    }

    /// The session at `min_version` or newer: see [`CachedClient::get_fresh`]; without a near
    /// cache, the same as [`SessionClient::get`].
    pub async fn get_fresh(&self, id: &str, min_version: u64) -> Result<Session, Error> {
        match self {
            Self::Direct(c) => c.get(id).await,
            Self::Cached(c) => c.get_fresh(id, min_version).await,
        }
    }

    pub async fn create_with(
        &self,
        ops: Ops,
        idle_timeout: Option<Duration>,
        max_lifetime: Option<Duration>,
        return_session: bool,
    ) -> Result<WriteResult, Error> {
        match self {
            Self::Direct(c) => {
                c.create_with(ops, idle_timeout, max_lifetime, return_session)
                    .await
            }
            Self::Cached(c) => {
                c.create_with(ops, idle_timeout, max_lifetime, return_session)
                    .await
            }
        }
    }

    pub async fn apply_with(
        &self,
        id: &str,
        ops: Ops,
        return_session: bool,
    ) -> Result<WriteResult, Error> {
        match self {
            Self::Direct(c) => c.apply_with(id, ops, return_session).await,
            Self::Cached(c) => c.apply_with(id, ops, return_session).await,
        }
    }

    pub async fn invalidate(&self, id: &str) -> Result<(), Error> {
        match self {
            Self::Direct(c) => c.invalidate(id).await,
            Self::Cached(c) => c.invalidate(id).await,
        }
    }

    pub async fn rotate_id(&self, id: &str) -> Result<SessionInfo, Error> {
        match self {
            Self::Direct(c) => c.rotate_id(id).await,
            Self::Cached(c) => c.rotate_id(id).await,
        }
    }
}
