//! A real session server on 127.0.0.1:0 for a test (the shared `session_server::testing`
//! fixture), with the clients the tests connect to it.

use session_client::{ClientConfig, Protocol, SessionClient, watch::Update};
use session_server::config::ServerConfig;
use std::{ops::Deref, time::Duration};
use tokio::net::TcpListener;

/// Every way a client can carry its calls: tests of connection handling run with each.
pub const PROTOCOLS: [Protocol; 2] = [Protocol::Framed, Protocol::Grpc];

/// The shared fixture, and clients of it.
pub struct TestServer(session_server::testing::TestServer);

impl Deref for TestServer {
    type Target = session_server::testing::TestServer;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

pub async fn spawn(config: ServerConfig) -> TestServer {
    TestServer(session_server::testing::TestServer::spawn(config).await)
}

/// Serves TLS with `certs`' server certificate, verifying client certificates of its CA.
pub async fn spawn_tls(
    config: ServerConfig,
    certs: &session_server::testing::DevCerts,
) -> TestServer {
    TestServer(session_server::testing::TestServer::spawn_tls(config, certs).await)
}

/// Serves on a listener the caller bound, e.g. the port of a server it stopped before.
pub async fn spawn_on(grpc: TcpListener, config: ServerConfig) -> TestServer {
    TestServer(session_server::testing::TestServer::spawn_on(grpc, config).await)
}

/// The next update of a subscription, within 10 s.
pub async fn next_update(rx: &mut tokio::sync::broadcast::Receiver<Update>) -> Update {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an update within 10 s")
        .expect("open")
}

impl TestServer {
    pub fn client(&self) -> SessionClient {
        self.client_with_timeout(Duration::from_secs(2))
    }

    pub fn client_with_timeout(&self, timeout: Duration) -> SessionClient {
        self.client_with(timeout, Protocol::default())
    }

    pub fn client_with(&self, timeout: Duration, protocol: Protocol) -> SessionClient {
        SessionClient::connect_lazy(ClientConfig {
            endpoints: vec![self.url.clone()],
            timeout,
            protocol,
            ..ClientConfig::default()
        })
        .expect("valid address")
    }

    /// Stops the server and waits until it has.
    pub async fn stop(self) {
        self.0.stop().await;
    }
}
