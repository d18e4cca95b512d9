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
//! - [`handshake`]: who this client is, as every connection (framed) or request (gRPC) says,
//!   and what the server answered.
//!
//! Replies are still protobuf here; `crate::convert` turns them into the client's types.

mod calls;
mod framed;
pub(crate) mod handshake;
mod local;
mod pipeline;
mod pool;

use crate::{
    config::{ClientConfig, Protocol, TlsOptions},
    convert,
    error::Error,
};
use futures_util::{StreamExt, stream::BoxStream};
use handshake::{Handshake, Heard};
use session_proto::v1::{self as pb, session_service_client::SessionServiceClient};
use std::{sync::Arc, time::Duration};
use tokio_rustls::rustls::{
    self, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

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
        /// The watch's metadata.
        handshake: Arc<Handshake>,
        heard: Arc<Heard>,
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
        let mut endpoint = Endpoint::from_shared(url.clone())
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
                    "{url:?} is not a valid address (write http://HOST:PORT, or https://HOST:PORT for TLS)"
                ))
            })?;
        let (addr, host) = authority(&endpoint)?;
        let tls = match endpoint.uri().scheme_str() {
            Some("https") => {
                let name = config.tls.server_name.clone().unwrap_or(host);
                endpoint = endpoint
                    .tls_config(grpc_tls(&config.tls, &name))
                    .map_err(|e| Error::InvalidArgument(format!("TLS for {url}: {e}")))?;
                Some(framed_tls(&config.tls, name)?)
            }
            Some("http") => None,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "{url:?}: write http://HOST:PORT, or https://HOST:PORT for TLS"
                )));
            }
        };
        let handshake = Handshake::new(config)?;
        let heard = Arc::new(Heard::default());
        let channel = endpoint.connect_lazy();
        // The reply to a batch may exceed tonic's 4 MiB default; the server bounds what it sends.
        let grpc = SessionServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let origin = rand::random_range(1..=u64::MAX);
        let connector = match config.protocol {
            Protocol::Framed => pipeline::Connector::Framed(Arc::new(framed::Target {
                addr,
                tls,
                handshake: handshake.clone(),
                heard: Arc::clone(&heard),
            })),
            Protocol::Grpc => pipeline::Connector::Grpc {
                client: grpc.clone(),
                handshake: Box::new(handshake.clone()),
                heard: Arc::clone(&heard),
            },
        };
        Ok(Self::Remote {
            pipeline: pipeline::Pipeline::start(connector, config.timeout, origin),
            grpc: Arc::new(grpc),
            origin,
            timeout: config.timeout,
            handshake: Arc::new(handshake),
            heard,
        })
    }

    pub(crate) fn in_process(service: Arc<LocalService>, timeout: Duration) -> Self {
        Self::Local(local::Local::new(service, timeout))
    }

    /// What the server said of itself.
    pub(crate) fn heard(&self) -> &Heard {
        match self {
            Self::Remote { heard, .. } => heard,
            Self::Local(local) => local.heard(),
        }
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
            Self::Remote {
                grpc,
                timeout,
                handshake,
                heard,
                ..
            } => {
                let mut c = SessionServiceClient::clone(grpc);
                let open = c.watch(handshake.request(request));
                let response = tokio::time::timeout(*timeout, open)
                    .await
                    .map_err(|_| Error::Unavailable(format!("no answer within {timeout:?}")))?
                    .map_err(convert::status)?;
                if let Some(hello) = handshake::from_metadata(response.metadata()) {
                    heard.hello(hello);
                }
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

/// `host:port` of an endpoint, for a framed connection, and its host.
fn authority(endpoint: &Endpoint) -> Result<(String, String), Error> {
    let uri = endpoint.uri();
    match (uri.host(), uri.port_u16()) {
        (Some(host), Some(port)) => Ok((
            format!("{host}:{port}"),
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        )),
        _ => Err(Error::InvalidArgument(format!(
            "{uri} has no port (write http://HOST:PORT)"
        ))),
    }
}

/// tonic's TLS for the watch stream (and the `Pipeline` RPC): the same trust as the framed
/// connection's.
fn grpc_tls(options: &TlsOptions, name: &str) -> ClientTlsConfig {
    let mut tls = ClientTlsConfig::new().domain_name(name);
    tls = match &options.ca_pem {
        Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
        None => tls.with_native_roots(),
    };
    if let Some((cert, key)) = &options.identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    tls
}

/// The framed connection's TLS: trusting the given CA (or the system's), presenting the
/// client certificate if any, checking the server's certificate against `name`.
fn framed_tls(options: &TlsOptions, name: String) -> Result<framed::Tls, Error> {
    let invalid =
        |what: &str, e: &dyn std::fmt::Display| Error::InvalidArgument(format!("TLS: {what}: {e}"));
    let mut roots = RootCertStore::empty();
    match &options.ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| invalid("the CA file", &e))?;
                roots.add(cert).map_err(|e| invalid("the CA file", &e))?;
            }
            if roots.is_empty() {
                return Err(invalid("the CA file", &"it holds no certificate"));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert); // one odd system certificate is no reason to fail
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("protocol versions", &e))?
        .with_root_certificates(roots);
    let config = match &options.identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid("the client certificate", &e))?;
            let key =
                PrivateKeyDer::from_pem_slice(key).map_err(|e| invalid("the client key", &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid("the client certificate", &e))?
        }
        None => builder.with_no_client_auth(),
    };
    let server_name = ServerName::try_from(name.clone())
        .map_err(|_| invalid("the server name", &format!("{name:?} is no host name")))?;
    Ok(framed::Tls {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        name: server_name,
    })
}
