//! How calls reach the session service: one call takes a request and gives its reply or an
//! [`Error`], whichever way it travelled.
//!
//! - [`pipeline`]: calls of a client multiplexed on one long-lived stream, coalesced into
//!   batches; [`calls`] holds its table of pending calls and the outbox.
//! - [`framed`]: the framed connection (length-prefixed messages on TCP) that stream is by
//!   default, or the `Pipeline` gRPC RPC.
//! - [`pool`]: a pipeline per calling thread, for app servers whose threads each run a
//!   runtime of their own (actix-web).
//! - [`local`]: a session service in this process, called without a network.
//!
//! Replies are still protobuf here; `crate::convert` turns them into the client's types.

mod calls;
mod framed;
mod local;
mod pipeline;
mod pool;

use crate::{
    config::{ClientConfig, Protocol},
    convert,
    error::Error,
};
use futures_util::{StreamExt, stream::BoxStream};
use session_proto::v1::{self as pb, session_service_client::SessionServiceClient};
use std::{sync::Arc, time::Duration};
use tonic::transport::{Channel, Endpoint};

pub use local::LocalService;

/// A stream of watch messages, until the server or the connection ends it.
pub(crate) type WatchStream = BoxStream<'static, Result<pb::WatchResponse, Error>>;

#[derive(Clone)]
pub(crate) enum Transport {
    /// Calls go over the pipeline; the plain gRPC client serves the watch stream.
    Remote {
        /// Shared: cloning a tonic client costs several allocations and atomics, and an app
        /// clones its client for every request (the actix middleware does).
        grpc: Arc<SessionServiceClient<Channel>>,
        pipeline: pipeline::Pipeline,
        /// Tags this client's calls, so its own watch can leave out the events of its own
        /// writes (see `crate::cache`).
        origin: u64,
        timeout: Duration,
    },
    Local(local::Local),
}

impl Transport {
    /// Connects on first use (and reconnects after failures), so an app can start before the
    /// session server does.
    pub(crate) fn connect_lazy(config: &ClientConfig) -> Result<Self, Error> {
        let url = match config.endpoints.as_slice() {
            [] => {
                return Err(Error::InvalidArgument(
                    "no session server address given".into(),
                ));
            }
            [one] => one,
            many => {
                return Err(Error::InvalidArgument(format!(
                    "{} session server addresses given ({}): give one. Session servers share no sessions, so a client spread over several would split them and lose carts",
                    many.len(),
                    many.join(", ")
                )));
            }
        };
        let endpoint = Endpoint::from_shared(url.clone())
            .map(|e| {
                // Pings find a dead or silent server within about two timeouts, so the watch
                // stream notices and the near cache stops trusting itself.
                e.connect_timeout(config.timeout)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(config.timeout)
                    .keep_alive_timeout(config.timeout)
                    .keep_alive_while_idle(true)
            })
            .map_err(|_| {
                Error::InvalidArgument(format!(
                    "{url:?} is not a valid address (write http://HOST:PORT)"
                ))
            })?;
        // Taken before the endpoint goes into the channel.
        let framed_addr = match config.protocol {
            Protocol::Framed => Some(authority(&endpoint)?),
            Protocol::Grpc => None,
        };
        let channel = endpoint.connect_lazy();
        // The reply to a batch may exceed tonic's 4 MiB default; the server bounds what it sends.
        let grpc = SessionServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let origin = rand::random_range(1..=u64::MAX);
        let connector = match framed_addr {
            Some(addr) => pipeline::Connector::Framed(addr),
            None => pipeline::Connector::Grpc(grpc.clone()),
        };
        Ok(Self::Remote {
            pipeline: pipeline::Pipeline::start(connector, config.timeout, origin),
            grpc: Arc::new(grpc),
            origin,
            timeout: config.timeout,
        })
    }

    pub(crate) fn in_process(service: Arc<LocalService>, timeout: Duration) -> Self {
        Self::Local(local::Local::new(service, timeout))
    }

    /// Sends a call and waits for its reply, within the client's deadline. A reply may be the
    /// server's error (`reply::Kind::Error`), which `crate::convert` maps; the errors here are
    /// the transport's own (no answer in time, a broken connection).
    pub(crate) async fn call(&self, call: pb::call::Kind) -> Result<pb::reply::Kind, Error> {
        match self {
            // The pipeline fails a call not answered within the timeout.
            Self::Remote { pipeline, .. } => match pool::here(pipeline) {
                Some(mine) => mine.call(call).await,
                None => pipeline.call(call).await,
            },
            Self::Local(local) => local.call(call).await,
        }
    }

    /// Opens a watch stream.
    pub(crate) async fn watch(&self, request: pb::WatchRequest) -> Result<WatchStream, Error> {
        let stream = match self {
            Self::Remote { grpc, timeout, .. } => {
                let mut c = SessionServiceClient::clone(grpc);
                let open = c.watch(request);
                let response = tokio::time::timeout(*timeout, open)
                    .await
                    .map_err(|_| Error::Unavailable(format!("no answer within {timeout:?}")))?
                    .map_err(convert::status)?;
                response.into_inner().boxed()
            }
            Self::Local(local) => local.watch(request).await?,
        };
        Ok(stream.map(|item| item.map_err(convert::status)).boxed())
    }

    /// Tags this client's pipeline calls; 0 for an in-process service, whose calls are not
    /// tagged.
    pub(crate) fn origin(&self) -> u64 {
        match self {
            Self::Remote { origin, .. } => *origin,
            Self::Local(_) => 0,
        }
    }

    /// The deadline of each call.
    pub(crate) fn timeout(&self) -> Duration {
        match self {
            Self::Remote { timeout, .. } => *timeout,
            Self::Local(local) => local.timeout(),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Remote { .. } => "remote",
            Self::Local(_) => "in-process",
        }
    }
}

/// `host:port` of an endpoint, for a framed connection.
fn authority(endpoint: &Endpoint) -> Result<String, Error> {
    let uri = endpoint.uri();
    match (uri.host(), uri.port_u16()) {
        (Some(host), Some(port)) => Ok(format!("{host}:{port}")),
        _ => Err(Error::InvalidArgument(format!(
            "{uri} has no port (write http://HOST:PORT)"
        ))),
    }
}
