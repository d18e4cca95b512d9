//! A real session server for tests, this crate's and its users': in this process, on
//! loopback ports, serving once its health check says SERVING, and stopped cleanly. Behind
//! the `test-support` feature, which only dev-dependencies turn on.

#![allow(clippy::expect_used)] // a test fixture: a panic is how the test using it fails

use crate::{
    ServerError,
    apps::{Apps, Quota},
    auth::{Auth, Source},
    config::ServerConfig,
    probe,
    tls::{SESSION_ALPN, Tls, TlsFiles, TlsSettings},
};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    /// `http://` (or `https://` with TLS) and `addr`: what clients are given.
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
        Self::spawn_trusting(grpc, config, None).await
    }

    /// Serves TLS with the certificates of `certs` (see [`DevCerts`]).
    pub async fn spawn_tls(config: ServerConfig, certs: &DevCerts) -> Self {
        let config = ServerConfig {
            tls: certs.settings(),
            ..config
        };
        let grpc = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gRPC port");
        Self::spawn_trusting(grpc, config, Some(&certs.ca())).await
    }

    async fn spawn_trusting(grpc: TcpListener, config: ServerConfig, ca: Option<&Path>) -> Self {
        let admin = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind admin port");
        let addr = grpc.local_addr().expect("local addr");
        let admin_url = format!("http://{}", admin.local_addr().expect("local addr"));
        let scheme = if config.tls.session.is_some() {
            "https"
        } else {
            "http"
        };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(crate::run(grpc, admin, config, async {
            let _ = stopped.await;
        }));
        let url = format!("{scheme}://{addr}");
        wait_serving(&url, ca).await;
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
pub async fn wait_serving(url: &str, ca: Option<&Path>) {
    for _ in 0..500 {
        if probe::check(url, ca, Duration::from_millis(200))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("server at {url} never became SERVING");
}

/// Credentials for tests, in the credentials file's format (`Credentials::parse`): a server
/// configuration that requires them.
pub fn with_credentials(config: ServerConfig, text: &str) -> ServerConfig {
    let auth = Auth::new(
        Source::Text(text.to_owned()),
        Arc::new(Apps::new(Quota::default())),
    )
    .expect("valid credentials");
    ServerConfig {
        auth: Arc::new(auth),
        ..config
    }
}

/// A development CA, a server certificate for loopback and client certificates (the
/// `dev-cert` subcommand's), in a directory of their own removed on drop.
#[derive(Debug)]
pub struct DevCerts {
    pub dir: PathBuf,
}

impl DevCerts {
    /// With a client certificate for each of `clients`, its common name.
    pub fn new(clients: &[&str]) -> Self {
        let dir =
            std::env::temp_dir().join(format!("dev-certs-{}", crate::secrets::random_token()));
        let clients: Vec<String> = clients.iter().map(|c| (*c).to_owned()).collect();
        crate::setup::dev_cert(&dir, &[], &clients).expect("development certificates");
        Self { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join(crate::setup::CA_FILE)
    }

    /// The certificate and key of client `name`.
    pub fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("client-{name}.pem")),
            self.dir.join(format!("client-{name}.key")),
        )
    }

    /// The session port's TLS, verifying client certificates of this CA.
    pub fn settings(&self) -> TlsSettings {
        let files = TlsFiles {
            cert: self.dir.join(crate::setup::SERVER_CERT_FILE),
            key: self.dir.join(crate::setup::SERVER_KEY_FILE),
            client_ca: Some(self.ca()),
        };
        TlsSettings {
            session: Some(Arc::new(Tls::load(files, SESSION_ALPN).expect("TLS"))),
            admin: None,
        }
    }
}

impl Drop for DevCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
