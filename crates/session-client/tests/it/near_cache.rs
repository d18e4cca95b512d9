//! The near cache: reads without a round trip, and never an older copy than allowed.

use crate::common;

use session_client::{CachedClient, Error, Ops, SessionId, watch::Update};
use session_server::config::ServerConfig;
use std::{
    num::NonZeroUsize,
    time::{Duration, Instant},
};

const GETS: &str = "session_requests_total{method=\"get\",code=\"ok\"}";

fn cached(server: &common::TestServer) -> CachedClient {
    server
        .client()
        .with_near_cache(NonZeroUsize::new(1000).expect("non-zero"))
}

/// Waits until a read is answered locally: the cache trusts nothing before its watch stream
/// is connected, and stores a copy on the first read after that.
async fn warm_up(server: &common::TestServer, client: &CachedClient, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let before = gets(server).await;
        client.get_fresh(id, 0).await.expect("read");
        if gets(server).await == before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the near cache never served a read"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A new session made with `ops`, which `client` then answers from its cache.
async fn cached_session(server: &common::TestServer, client: &CachedClient, ops: Ops) -> SessionId {
    let id = client.create(ops).await.expect("create").info.id;
    warm_up(server, client, &id).await;
    id
}

async fn gets(server: &common::TestServer) -> f64 {
    let text = server.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(GETS))
        .map_or(0.0, |v| v.trim().parse().expect("number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_reads_are_answered_without_a_round_trip() {
    let server = common::spawn(ServerConfig::default()).await;
    let client = cached(&server);
    let id = cached_session(
        &server,
        &client,
        Ops::new().set_json("a", &1).expect("json"),
    )
    .await;
    let before = gets(&server).await;
    for _ in 0..100 {
        assert_eq!(
            client
                .get_fresh(&id, 0)
                .await
                .expect("read")
                .get_json::<i32>("a")
                .expect("json"),
            Some(1)
        );
    }
    assert!(
        gets(&server).await - before <= 1.0,
        "100 reads, at most one reached the server"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_elsewhere_replaces_the_cached_copy() {
    let server = common::spawn(ServerConfig::default()).await;
    let (cached, other) = (cached(&server), server.client());
    let id = cached_session(&server, &cached, Ops::new().counter_add("n", 1)).await;

    // A caller that knows the new version (read-your-writes) gets it at once.
    let written = other
        .apply(&id, Ops::new().counter_add("n", 1))
        .await
        .expect("apply");
    let fresh = cached
        .get_fresh(&id, written.info.version)
        .await
        .expect("read");
    assert_eq!(fresh.counter("n").expect("counter"), 2);

    // One that does not know sees it as soon as the change event arrives.
    other
        .apply(&id, Ops::new().counter_add("n", 1))
        .await
        .expect("apply");
    let deadline = Instant::now() + Duration::from_secs(1);
    while cached
        .get_fresh(&id, 0)
        .await
        .expect("read")
        .counter("n")
        .expect("counter")
        != 3
    {
        assert!(
            Instant::now() < deadline,
            "the cached copy outlived the change by a second"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    other.invalidate(&id).await.expect("invalidate");
    let deadline = Instant::now() + Duration::from_secs(1);
    while cached.get_fresh(&id, 0).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "an invalidated session stayed readable"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_cached_survives_a_server_restart() {
    let server = common::spawn(ServerConfig::default()).await;
    let addr = server.addr;
    let client = cached(&server);
    let id = cached_session(
        &server,
        &client,
        Ops::new().set_json("a", &1).expect("json"),
    )
    .await;
    server.stop().await;

    let restarted = common::spawn_on(
        tokio::net::TcpListener::bind(addr).await.expect("rebind"),
        ServerConfig::default(),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.get_fresh(&id, 0).await {
            Err(Error::NotFound) => break,
            Err(e) if e.is_unavailable() => {}
            other => panic!(
                "the old session must not be served from the cache after a restart: {other:?}"
            ),
        }
        assert!(Instant::now() < deadline, "client did not rejoin");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    restarted.stop().await;
}

/// The server leaves a near-cache client's own writes out of its watch stream; the client
/// announces them itself, at once, so its subscribers miss nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_writes_are_announced_by_the_client_and_not_sent_back_by_the_server() {
    let server = common::spawn(ServerConfig::default()).await;
    let mine = cached(&server);
    let other = server.client();
    let mut updates = mine.subscribe();
    assert_eq!(common::next_update(&mut updates).await, Update::Reset);
    let created = other.create(Ops::new()).await.expect("create").info;
    let id = created.id;
    assert!(
        matches!(common::next_update(&mut updates).await, Update::Event(e) if e.reference == created.reference && e.seq > 0),
        "another client's write comes from the server"
    );

    let written = mine
        .apply(&id, Ops::new().set_json("a", &1).expect("json"))
        .await
        .expect("apply");
    match updates.try_recv() {
        Ok(Update::Event(e)) => {
            assert_eq!(
                (e.reference, e.seq, e.version),
                (created.reference, 0, written.info.version),
                "announced by the client before the call returned"
            );
            assert_eq!(e.kind, session_client::EventKind::Changed);
            assert_eq!(e.changed, vec!["a".to_owned()]);
        }
        other => panic!("expected the client's own event at once, got {other:?}"),
    }

    other
        .apply(&id, Ops::new().set_json("b", &2).expect("json"))
        .await
        .expect("apply");
    match common::next_update(&mut updates).await {
        Update::Event(e) => assert_eq!(
            (e.seq > 0, e.version),
            (true, written.info.version + 1),
            "the next event from the server is the other client's, not an echo of ours"
        ),
        other => panic!("expected an event, got {other:?}"),
    }
    server.stop().await;
}

/// A write whose reply carries no session drops the cached copy before it returns, so the
/// same client never reads its own write back older (no event needs to arrive first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reads_its_own_writes_from_its_cache_at_once() {
    let server = common::spawn(ServerConfig::default()).await;
    let client = cached(&server);
    let id = cached_session(
        &server,
        &client,
        Ops::new().set_json("n", &0).expect("json"),
    )
    .await;
    for n in 1..=300 {
        client
            .apply(&id, Ops::new().set_json("n", &n).expect("json"))
            .await
            .expect("apply");
        let read = client.get_fresh(&id, 0).await.expect("read");
        assert_eq!(read.get_json::<i32>("n").expect("json"), Some(n));
    }
    server.stop().await;
}
