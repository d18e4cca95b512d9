//! Starts a real session server on 127.0.0.1:0 for a test, and stops it.
#![allow(dead_code)] // each test file uses a different part

use session_client::{ClientConfig, Protocol, SessionClient, watch::Update};

/// Every way a client can carry its calls: tests of connection handling run with each.
pub const PROTOCOLS: [Protocol; 2] = [Protocol::Framed, Protocol::Grpc];
use session_server::{ServerError, config::ServerConfig, probe};
use std::{net::SocketAddr, time::Duration};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub struct TestServer {
    pub addr: SocketAddr,
    pub url: String,
    pub admin_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

pub async fn spawn(config: ServerConfig) -> TestServer {
    let grpc = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gRPC port");
    spawn_on(grpc, config).await
}

/// Serves on a listener the caller bound, e.g. the port of a server it stopped before.
pub async fn spawn_on(grpc: TcpListener, config: ServerConfig) -> TestServer {
    let admin = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind admin port");
    let addr = grpc.local_addr().expect("local addr");
    let admin_url = format!("http://{}", admin.local_addr().expect("local addr"));
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(session_server::run(grpc, admin, config, async {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}");
    wait_serving(&url).await;
    TestServer {
        addr,
        url,
        admin_url,
        stop: Some(stop),
        task,
    }
}

/// The next update of a subscription, within 10 s.
pub async fn next_update(rx: &mut tokio::sync::broadcast::Receiver<Update>) -> Update {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an update within 10 s")
        .expect("open")
}

/// Polls the health check until SERVING: no sleeping for a guessed start-up time.
pub async fn wait_serving(url: &str) {
    for _ in 0..500 {
        if probe::check(url, Duration::from_millis(200)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("server at {url} never became SERVING");
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
        })
        .expect("valid address")
    }

    /// Stops the server and waits until its port is closed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("the server stops promptly, well inside its 10 s grace period")
            .expect("server task")
            .expect("server ran cleanly");
    }

    /// The admin port's metrics text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.admin_url))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// One sample's value from the metrics text.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
            .trim()
            .parse()
            .expect("numeric metric")
    }
}
