//! Credentials and TLS of the built binary: the safe default beyond loopback, a reload on
//! SIGHUP that revokes, and the sample's first-run set-up served over TLS.

use super::{run, start};
use session_client::{ClientConfig, Error, Ops, Protocol, SessionClient, TlsOptions, Token};
use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

const FIRST: &str = "first-token-0123456789abcdefghijklmnopqrstuv";
const SECOND: &str = "second-token-0123456789abcdefghijklmnopqrst";

/// A directory of the test's own, removed when it ends.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        Self(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn client(url: &str, token: &str, tls: TlsOptions, protocol: Protocol) -> SessionClient {
    SessionClient::connect_lazy(ClientConfig {
        endpoints: vec![url.to_owned()],
        timeout: Duration::from_secs(2),
        protocol,
        token: Some(Token::new(token)),
        tls,
        ..ClientConfig::default()
    })
    .expect("client")
}

fn hang_up(pid: u32) {
    let sent = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
}

#[test]
fn beyond_loopback_the_binary_refuses_to_serve_without_credentials_in_one_line() {
    let out = run(&["--listen", "0.0.0.0:0", "--admin-listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("without credentials")
            && err.contains("--auth-file")
            && err.contains("--insecure"),
        "{err}"
    );
}

#[tokio::test]
async fn a_sighup_reload_admits_new_tokens_and_revokes_old_ones_on_open_connections() {
    let dir = Dir::new("auth-reload");
    let file = dir.0.join("auth");
    std::fs::write(&file, format!("app:cart token:{FIRST}\n")).expect("write");
    let server = start(&["--auth-file", file.to_str().expect("utf-8")]);
    super::wait_serving(&server.grpc).await;
    let first = client(&server.grpc, FIRST, TlsOptions::default(), Protocol::Framed);
    let id = first
        .create(Ops::new())
        .await
        .expect("the first token")
        .info
        .id;
    let second = client(
        &server.grpc,
        SECOND,
        TlsOptions::default(),
        Protocol::Framed,
    );
    assert!(matches!(
        second.get(&id).await.expect_err("not yet"),
        Error::Unauthenticated(_)
    ));

    std::fs::write(&file, format!("app:cart token:{SECOND}\n")).expect("write");
    hang_up(server.child.id());
    let deadline = Instant::now() + Duration::from_secs(5);
    let fresh = loop {
        let fresh = client(
            &server.grpc,
            SECOND,
            TlsOptions::default(),
            Protocol::Framed,
        );
        if fresh.get(&id).await.is_ok() {
            break fresh;
        }
        assert!(Instant::now() < deadline, "the new token never worked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let revoked = first
        .get(&id)
        .await
        .expect_err("its connection is open, its token gone");
    assert!(
        matches!(&revoked, Error::Unauthenticated(m) if m.contains("revoked")),
        "{revoked}"
    );
    let anew = client(&server.grpc, FIRST, TlsOptions::default(), Protocol::Grpc);
    assert!(matches!(
        anew.get(&id).await.expect_err("gone"),
        Error::Unauthenticated(_)
    ));

    // A file that cannot be read leaves the credentials in force alone.
    std::fs::write(&file, "this is no credential\n").expect("write");
    hang_up(server.child.id());
    tokio::time::sleep(Duration::from_millis(300)).await;
    fresh.get(&id).await.expect("still the second token");
}

/// An HTTPS GET of `path` from the admin port, trusting `ca`: the admin port's TLS.
fn https_get(addr: &str, path: &str, ca: &Path) -> String {
    use tokio_rustls::rustls::{
        self,
        pki_types::{CertificateDer, ServerName, pem::PemObject},
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA") {
        roots.add(cert.expect("a certificate")).expect("add");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS");
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[tokio::test]
async fn the_samples_setup_serves_tls_and_tokens_that_the_client_and_health_check_use() {
    let dir = Dir::new("auth-setup");
    let secrets = dir.0.join("secrets");
    let path = |name: &str| secrets.join(name).to_str().expect("utf-8").to_owned();
    for _ in 0..2 {
        let out = run(&["setup", "--dir", &path(""), "--tls"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let server = start(&[
        "--auth-file",
        &path("auth"),
        "--tls-cert",
        &path("server.pem"),
        "--tls-key",
        &path("server.key"),
        "--admin-tls-cert",
        &path("server.pem"),
        "--admin-tls-key",
        &path("server.key"),
    ]);
    let url = server.grpc.replace("http://", "https://");
    let ca = path("ca.pem");
    let healthy = |extra: &[&str]| {
        let mut args = vec!["health", "--addr", &url, "--timeout", "1s"];
        args.extend_from_slice(extra);
        run(&args)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !healthy(&["--ca", &ca]).status.success() {
        assert!(Instant::now() < deadline, "never SERVING over TLS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let untrusting = healthy(&[]);
    assert!(
        !untrusting.status.success(),
        "the development CA is no system CA"
    );

    let token = std::fs::read_to_string(path("cart.token")).expect("the cart's token");
    let tls = TlsOptions::from_files(Some(Path::new(&ca)), None).expect("CA");
    for protocol in [Protocol::Framed, Protocol::Grpc] {
        let cart = client(&url, token.trim(), tls.clone(), protocol);
        let id = cart
            .create(Ops::new())
            .await
            .expect("over TLS with the token")
            .info
            .id;
        cart.get(&id).await.expect("read back");
    }
    let admin = server.admin.trim_start_matches("http://").to_owned();
    let answer = tokio::task::spawn_blocking(move || https_get(&admin, "/healthz", Path::new(&ca)))
        .await
        .expect("the admin port");
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("serving"),
        "{answer}"
    );
}
