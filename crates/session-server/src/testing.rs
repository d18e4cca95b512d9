//! A real session server for tests, this crate's and its users': in this process, on
//! loopback ports, serving once its health check says SERVING, and stopped cleanly. Behind
//! the `test-support` feature, which only dev-dependencies turn on.

#![allow(clippy::expect_used)] // a test fixture: a panic is how the test using it fails

use crate::{ServerError, config::ServerConfig, probe};
use std::{net::SocketAddr, time::Duration};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    /// `http://` and `addr`: what clients are given.
    pub url: String,
    /// The admin port's base URL (metrics, health).
    pub admin_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl TestServer {
    /// Serves on a free loopback port.
    pub async fn spawn(config: ServerConfig) -> Self {
        let grpc = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gRPC port");
        Self::spawn_on(grpc, config).await
    }

    /// Serves on a listener the caller bound, e.g. the port of a server it stopped before.
    pub async fn spawn_on(grpc: TcpListener, config: ServerConfig) -> Self {
        let admin = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind admin port");
        let addr = grpc.local_addr().expect("local addr");
        let admin_url = format!("http://{}", admin.local_addr().expect("local addr"));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(crate::run(grpc, admin, config, async {
            let _ = stopped.await;
        }));
        let url = format!("http://{addr}");
        wait_serving(&url).await;
        Self {
            addr,
            url,
            admin_url,
            stop: Some(stop),
            task,
        }
    }

    /// Stops the server and waits until it has, well inside its 10 s grace period: nothing
    /// long-lived may hold a server open.
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

    /// One sample's value from the metrics text, by its full name.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
            .trim()
            .parse()
            .expect("numeric metric")
    }
}

/// Polls the health check until SERVING: no sleeping for a guessed start-up time.
pub async fn wait_serving(url: &str) {
    for _ in 0..500 {
        if probe::check(url, None, Duration::from_millis(200))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("server at {url} never became SERVING");
}
