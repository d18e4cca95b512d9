//! Nonstop and rejoin: a missing server gives Unavailable within the deadline, never a hang,
//! and the same client works again once the server is back.

use crate::common;

use session_client::{ClientConfig, Error, Ops, Protocol, SessionClient};
use session_server::config::ServerConfig;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_millis(300);
/// What "within the timeout" allows for scheduling on a busy 2-core machine.
const SLACK: Duration = Duration::from_millis(700);

#[tokio::test]
async fn stopped_server_gives_unavailable_within_the_timeout() {
    for protocol in common::PROTOCOLS {
        let server = common::spawn(ServerConfig::default()).await;
        let client = server.client_with(TIMEOUT, protocol);
        let id = client.create(Ops::new()).await.expect("create").info.id;
        server.stop().await;

        for _ in 0..3 {
            let started = Instant::now();
            let result = bounded(client.get(&id)).await.map(drop);
            assert_unavailable_in_time(protocol, result, started);
        }
    }
}

#[tokio::test]
async fn silent_server_gives_unavailable_within_the_timeout() {
    for protocol in common::PROTOCOLS {
        // A port that accepts connections (the kernel's backlog) but never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", silent.local_addr().expect("addr"));
        let client = SessionClient::connect_lazy(ClientConfig {
            endpoints: vec![url],
            timeout: TIMEOUT,
            protocol,
            ..ClientConfig::default()
        })
        .expect("client");
        let started = Instant::now();
        let result = bounded(client.create(Ops::new())).await.map(drop);
        assert!(started.elapsed() >= TIMEOUT - Duration::from_millis(50));
        assert_unavailable_in_time(protocol, result, started);
    }
}

/// `call`'s result, or a failure if it hangs (well past the timeout) instead of failing.
async fn bounded<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT * 10 + SLACK, call)
        .await
        .expect("the call hung past its timeout")
}

/// `result` is `Unavailable`, and came within the timeout (plus scheduling slack) of `started`.
fn assert_unavailable_in_time(protocol: Protocol, result: Result<(), Error>, started: Instant) {
    assert!(
        matches!(result, Err(Error::Unavailable(_))),
        "{protocol}: {result:?}"
    );
    assert!(
        started.elapsed() < TIMEOUT + SLACK,
        "{protocol}: took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn restarted_server_serves_the_same_client_again() {
    for protocol in common::PROTOCOLS {
        restarted_server_serves_the_same_client_again_over(protocol).await;
    }
}

async fn restarted_server_serves_the_same_client_again_over(protocol: Protocol) {
    let server = common::spawn(ServerConfig::default()).await;
    let addr = server.addr;
    let client = server.client_with(TIMEOUT, protocol);
    let id = client.create(Ops::new()).await.expect("create").info.id;
    server.stop().await;
    let down = client.get(&id).await.expect_err("the server is down");
    assert!(down.is_unavailable(), "{protocol}: {down}");

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("rebind the same port");
    let restarted = common::spawn_on(listener, ServerConfig::default()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let created = loop {
        match client.create(Ops::new()).await {
            Ok(created) => break created,
            Err(e) if e.is_unavailable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("{protocol}: client did not rejoin: {e}"),
        }
    };
    assert_eq!(
        client.get(&created.info.id).await.expect("works").info.id,
        created.info.id
    );
    assert_eq!(
        client.get(&id).await,
        Err(Error::NotFound),
        "the in-memory server lost the old session"
    );
    restarted.stop().await;
}

#[test]
fn bad_addresses_are_refused_up_front() {
    let err = SessionClient::connect_lazy(ClientConfig {
        endpoints: vec!["not a url".into()],
        timeout: TIMEOUT,
        ..ClientConfig::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(ref m) if m.contains("http://HOST:PORT")),
        "{err}"
    );
    // A framed connection needs the port written out (gRPC alone would guess 80).
    let portless = SessionClient::connect_lazy(ClientConfig {
        endpoints: vec!["http://127.0.0.1".into()],
        timeout: TIMEOUT,
        ..ClientConfig::default()
    })
    .expect_err("no port");
    assert!(
        matches!(portless, Error::InvalidArgument(ref m) if m.contains("http://HOST:PORT")),
        "{portless}"
    );
    let none = SessionClient::connect_lazy(ClientConfig {
        endpoints: vec![],
        timeout: TIMEOUT,
        ..ClientConfig::default()
    })
    .unwrap_err();
    assert!(matches!(none, Error::InvalidArgument(_)));
}

/// Two session servers share no sessions: a client spread over both would split carts between
/// them without a word, so it refuses them and names both.
#[tokio::test]
async fn two_unrelated_servers_are_refused_with_both_addresses_named() {
    let one = common::spawn(ServerConfig::default()).await;
    let other = common::spawn(ServerConfig::default()).await;
    for protocol in common::PROTOCOLS {
        let err = SessionClient::connect_lazy(ClientConfig {
            endpoints: vec![one.url.clone(), other.url.clone()],
            timeout: TIMEOUT,
            protocol,
            ..ClientConfig::default()
        })
        .expect_err("two servers");
        assert!(
            matches!(err, Error::InvalidArgument(ref m)
                if m.contains(&one.url) && m.contains(&other.url) && m.contains("give one")),
            "{err}"
        );
    }
    one.stop().await;
    other.stop().await;
}
