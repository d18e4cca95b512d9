//! The built `session-server` binary, as scripts and containers run it.

#![allow(clippy::expect_used)] // tests: a panic is how a test fails

use session_proto::v1::{
    CreateRequest, Operation, SetOp, Value, operation,
    session_service_client::SessionServiceClient, value,
};
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

const BIN: &str = env!("CARGO_BIN_EXE_session-server");

struct Running {
    child: Child,
    grpc: String,
    admin: String,
    log: Vec<String>,
}

/// Starts the binary on ephemeral ports and reads the addresses from its start-up line.
fn start(extra: &[&str]) -> Running {
    let child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start session-server");
    // Owned by the guard from here on, so any panic below still stops the process.
    let mut server = Running {
        child,
        grpc: String::new(),
        admin: String::new(),
        log: Vec::new(),
    };
    let mut lines = BufReader::new(server.child.stdout.take().expect("stdout")).lines();
    let field = |line: &str, key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(str::to_owned)
    };
    loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .expect("read log");
        server.log.push(line.clone());
        if line.contains("session-server listening") {
            server.grpc = format!(
                "http://{}",
                field(&line, "grpc=").expect("grpc address in log")
            );
            server.admin = format!(
                "http://{}",
                field(&line, "admin=").expect("admin address in log")
            );
            // Keep draining stdout so the server never blocks on a full pipe; its lines go
            // to the test's output, which a failing test shows.
            std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| eprintln!("{l}")));
            return server;
        }
    }
}

/// A failing assertion must not leave the server running (it would also hold the test's
/// output pipe open).
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run session-server")
}

fn health(addr: &str) -> Output {
    run(&["health", "--addr", addr, "--timeout", "1s"])
}

async fn wait_serving(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !health(addr).status.success() {
        assert!(Instant::now() < deadline, "never SERVING");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn binary_serves_health_reflection_and_metrics_and_stops_on_sigterm() {
    let mut server = start(&["--threads", "1"]);
    wait_serving(&server.grpc).await;
    assert!(String::from_utf8_lossy(&health(&server.grpc).stdout).contains("SERVING"));

    // Reflection lists the session service, as `grpcurl -plaintext ADDR list` would.
    let channel = tonic::transport::Endpoint::from_shared(server.grpc.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = answers
        .message()
        .await
        .expect("answer")
        .expect("one")
        .message_response
    else {
        panic!("not a service list");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"session.v1.SessionService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );

    let mut client = SessionServiceClient::connect(server.grpc.clone())
        .await
        .expect("connect");
    client
        .create(CreateRequest::default())
        .await
        .expect("create");
    let metrics = reqwest::get(format!("{}/metrics", server.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    for name in [
        "session_active",
        "session_bytes_used",
        "session_created_total",
        "session_expired_total",
        "session_evicted_total",
        "session_invalidated_total",
        "session_requests_total",
        "session_request_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}:\n{metrics}");
    }
    // Prometheus gets OpenMetrics; a browser gets the same text shown as text.
    let http = reqwest::Client::new();
    let content_type = |accept: &'static str| {
        let request = http
            .get(format!("{}/metrics", server.admin))
            .header("accept", accept);
        async move {
            let response = request.send().await.expect("metrics");
            assert_eq!(response.status(), 200);
            response.headers()["content-type"]
                .to_str()
                .expect("ascii")
                .to_owned()
        }
    };
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let chromium =
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
    assert!(
        content_type(prometheus)
            .await
            .starts_with("application/openmetrics-text")
    );
    assert_eq!(content_type(chromium).await, "text/plain; charset=utf-8");
    assert_eq!(
        reqwest::get(format!("{}/healthz", server.admin))
            .await
            .expect("healthz")
            .status(),
        200
    );

    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "did not stop promptly on SIGTERM"
        );
        // Async, so this runtime's client connections can answer the server's GOAWAY.
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    assert!(!health(&server.grpc).status.success());
    assert!(server.log.iter().any(|l| l.contains("listening")));
}

#[tokio::test]
async fn garbage_and_oversized_messages_leave_the_server_serving() {
    let server = start(&[
        "--max-session-size",
        "64KiB",
        "--max-attribute-size",
        "32KiB",
    ]);
    wait_serving(&server.grpc).await;
    let addr = server.grpc.trim_start_matches("http://").to_owned();

    for garbage in [
        &b"\x00\x01\x02garbage\xff\xfe"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    ] {
        let mut conn = TcpStream::connect(&addr).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        conn.write_all(garbage).expect("write");
        let mut sink = Vec::new();
        let _ = conn.read_to_end(&mut sink); // the server answers or hangs up; it must not die
    }

    let mut client = SessionServiceClient::connect(server.grpc.clone())
        .await
        .expect("connect");
    let huge = Value {
        content_type: String::new(),
        kind: Some(value::Kind::Bytes(vec![7u8; 512 * 1024].into())),
    };
    let op = Operation {
        name: "huge".into(),
        kind: Some(operation::Kind::Set(SetOp {
            value: Some(huge),
            expected_version: None,
        })),
    };
    let status = client
        .create(CreateRequest {
            operations: vec![op],
            ..Default::default()
        })
        .await
        .expect_err("too large");
    assert!(
        matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{status:?}"
    );

    assert!(health(&server.grpc).status.success(), "still SERVING");
    client
        .create(CreateRequest::default())
        .await
        .expect("still answers");
}

#[test]
fn start_up_errors_are_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = run(&["--listen", &addr, "--admin-listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("address in use") && err.contains("--listen"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let out = run(&["--capacity", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--capacity"));

    let out = run(&["--threads", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"));

    let out = run(&["--listen", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid socket address"));

    let out = run(&[
        "--max-session-size",
        "2MiB",
        "--capacity",
        "1MiB",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("one session must fit"));
}

#[test]
fn health_fails_when_nothing_answers() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("http://{}", free.local_addr().expect("addr"));
    drop(free);
    let started = Instant::now();
    let out = health(&addr);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Hostile input against the built binary: each attack gets a clear status or a closed
/// connection, while other clients keep being answered and memory stays bounded.
#[path = "binary/hostile.rs"]
mod hostile;

/// Credentials and TLS of the built binary.
#[path = "binary/auth.rs"]
mod auth;

/// The durable store of the built binary: crashes, damaged data, a full disk.
#[path = "binary/durable.rs"]
mod durable;
