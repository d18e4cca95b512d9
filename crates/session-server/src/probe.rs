//! A grpc.health.v1 check of a running server, for `session-server health`, scripts and
//! container health checks.

use std::time::Duration;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0} is not a valid server address (write it as http://HOST:PORT)")]
    BadAddress(String),
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("{addr} answered {status}")]
    NotServing { addr: String, status: String },
}

/// Returns `Ok` only when the server at `addr` answers SERVING within `timeout`.
pub async fn check(addr: &str, timeout: Duration) -> Result<(), ProbeError> {
    let endpoint = tonic::transport::Endpoint::from_shared(addr.to_owned())
        .map_err(|_| ProbeError::BadAddress(addr.to_owned()))?
        .connect_timeout(timeout)
        .timeout(timeout);
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
