//! A grpc.health.v1 check of a running server, for `session-server health`, scripts and
//! container health checks.

use std::{path::Path, time::Duration};
use tonic::transport::{Certificate, ClientTlsConfig};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "{0} is not a valid server address (write it as http://HOST:PORT or https://HOST:PORT)"
    )]
    BadAddress(String),
    #[error("CA file {path}: {error}")]
    Ca { path: String, error: String },
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("{addr} answered {status}")]
    NotServing { addr: String, status: String },
}

/// Returns `Ok` only when the server at `addr` answers SERVING within `timeout`; an
/// `https://` address is checked over TLS, trusting `ca` (or the system's CAs).
pub async fn check(addr: &str, ca: Option<&Path>, timeout: Duration) -> Result<(), ProbeError> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(addr.to_owned())
        .map_err(|_| ProbeError::BadAddress(addr.to_owned()))?
        .connect_timeout(timeout)
        .timeout(timeout);
    if addr.starts_with("https://") {
        let tls = match ca {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| ProbeError::Ca {
                    path: path.display().to_string(),
                    error: e.to_string(),
                })?;
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
            }
            None => ClientTlsConfig::new().with_native_roots(),
        };
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| ProbeError::BadAddress(format!("{addr} ({e})")))?;
    }
    let unreachable = |reason: String| ProbeError::Unreachable {
        addr: addr.to_owned(),
        reason,
    };
    let call = async {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| unreachable(source_chain(&e)))?;
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|s| unreachable(s.message().to_owned()))
    };
    let response = tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| unreachable(format!("no answer within {timeout:?}")))??;
    let status = response.into_inner().status();
    if status == ServingStatus::Serving {
        Ok(())
    } else {
        Err(ProbeError::NotServing {
            addr: addr.to_owned(),
            status: status.as_str_name().to_owned(),
        })
    }
}

/// The innermost cause of an error: transport errors put the useful part ("Connection
/// refused") at the bottom.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}
