//! Calls to a running server from the command line: the grpc.health.v1 check of
//! `session-server health` (scripts, container health checks) and the admin call of
//! `session-server backup`.

use session_proto::v1::{BackupRequest, BackupResponse, admin_service_client::AdminServiceClient};
use std::{path::Path, time::Duration};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
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

    #[error("{addr} refused: {message}")]
    Refused { addr: String, message: String },
}

/// The endpoint of `addr`, over TLS for an `https://` address, trusting `ca` (or the
/// system's CAs).
fn endpoint(addr: &str, ca: Option<&Path>, timeout: Duration) -> Result<Endpoint, ProbeError> {
    let mut endpoint = Endpoint::from_shared(addr.to_owned())
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
    Ok(endpoint)
}

/// Returns `Ok` only when the server at `addr` answers SERVING within `timeout`; an
/// `https://` address is checked over TLS, trusting `ca` (or the system's CAs).
pub async fn check(addr: &str, ca: Option<&Path>, timeout: Duration) -> Result<(), ProbeError> {
    let endpoint = endpoint(addr, ca, timeout)?;
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

/// Asks the server at `addr` for a backup into `to` (a path on its machine), with the admin
/// `token`; what it copied.
pub async fn backup(
    addr: &str,
    ca: Option<&Path>,
    token: Option<&str>,
    to: &Path,
    timeout: Duration,
) -> Result<BackupResponse, ProbeError> {
    let endpoint = endpoint(addr, ca, timeout)?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| ProbeError::Unreachable {
            addr: addr.to_owned(),
            reason: source_chain(&e),
        })?;
    let mut request = tonic::Request::new(BackupRequest {
        to: to.display().to_string(),
    });
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ProbeError::Refused {
                addr: addr.to_owned(),
                message: "the token holds characters no header can carry".into(),
            })?;
        request
            .metadata_mut()
            .insert(session_proto::metadata::AUTHORIZATION, value);
    }
    AdminServiceClient::new(channel)
        .backup(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| ProbeError::Refused {
            addr: addr.to_owned(),
            message: s.message().to_owned(),
        })
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
