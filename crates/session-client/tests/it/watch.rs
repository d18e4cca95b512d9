//! The watch stream: every lifecycle event, in sequence, resumable after a reconnect.

use crate::common;

use futures_util::StreamExt;
use session_client::{Cursor, EventKind, Ops, SessionClient, WatchHello, WatchItem, watch};
use session_server::{clock::ManualClock, config::ServerConfig, store::Limits};
use std::{sync::Arc, time::Duration};

type Stream = futures_util::stream::BoxStream<'static, Result<WatchItem, session_client::Error>>;

async fn next(stream: &mut Stream) -> WatchItem {
    let item = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an item within 5 s");
    item.expect("stream open").expect("no error")
}

async fn hello(stream: &mut Stream) -> WatchHello {
    match next(stream).await {
        WatchItem::Hello(h) => h,
        other => panic!("expected hello, got {other:?}"),
    }
}

async fn events(stream: &mut Stream, n: usize) -> Vec<session_client::Event> {
    let mut out = Vec::new();
    while out.len() < n {
        match next(stream).await {
            WatchItem::Event(e) => out.push(e),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    out
}

#[tokio::test]
async fn watch_reports_every_lifecycle_event_in_sequence() {
    let clock = ManualClock::new(1_700_000_000_000);
    let limits = Limits {
        capacity_bytes: 16 * 1024,
        max_session_bytes: 8 * 1024,
        max_attribute_bytes: 8 * 1024,
        ..Limits::default()
    };
    let config = ServerConfig {
        clock: Arc::new(clock.clone()),
        limits,
        sweep_interval: Duration::from_secs(3600),
        ..ServerConfig::default()
    };
    let server = common::spawn(config).await;
    let client = server.client();
    let mut stream = client.watch_raw(&Cursor::default()).await.expect("watch");
    let h = hello(&mut stream).await;
    assert!(!h.resumed);

    let created = client
        .create(Ops::new().set_json("a", &1).unwrap())
        .await
        .expect("create")
        .info;
    let id = created.id;
    client
        .apply(
            &id,
            Ops::new()
                .counter_add("n", 1)
                .list_push_json("l", "x", None)
                .unwrap(),
        )
        .await
        .expect("apply");
    let rotated = client.rotate_id(&id).await.expect("rotate");
    assert_ne!(
        rotated.reference, created.reference,
        "a new id, a new reference"
    );
    client.invalidate(&rotated.id).await.expect("invalidate");
    let doomed = client.create(Ops::new()).await.expect("create").info;
    clock.advance(31 * 60_000);
    let _ = client.get(&doomed.id).await; // expiry is noticed on access
    let big = "x".repeat(6 * 1024);
    let first = client
        .create(Ops::new().set_json("p", &big).unwrap())
        .await
        .expect("create")
        .info
        .reference;
    for _ in 0..3 {
        client
            .create(Ops::new().set_json("p", &big).unwrap())
            .await
            .expect("create");
    }

    let got = events(&mut stream, 10).await;
    let kinds: Vec<EventKind> = got.iter().map(|e| e.kind).collect();
    use EventKind::*;
    assert_eq!(
        &kinds[..6],
        &[Created, Changed, IdRotated, Invalidated, Created, Expired]
    );
    assert_eq!(kinds[6], Created);
    assert!(kinds[7..].contains(&Evicted), "{kinds:?}");
    assert_eq!(got[1].changed, vec!["l".to_string(), "n".to_string()]);
    assert_eq!(got[0].reference, created.reference);
    assert_eq!(
        (got[2].reference, got[2].new_reference),
        (created.reference, Some(rotated.reference))
    );
    assert_eq!(got[3].reference, rotated.reference);
    assert_eq!(got[5].reference, doomed.reference);
    assert!(
        got.iter()
            .any(|e| e.kind == Evicted && e.reference == first)
    );
    for pair in got.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "sequence numbers have no gaps"
        );
    }
    assert_eq!(got[0].seq, h.next_seq);
    server.stop().await;
}

#[tokio::test]
async fn a_reconnecting_watcher_resumes_or_learns_it_missed_events() {
    let server = common::spawn(ServerConfig {
        watch_buffer: 8,
        ..ServerConfig::default()
    })
    .await;
    let client = server.client();
    let mut stream = client.watch_raw(&Cursor::default()).await.expect("watch");
    hello(&mut stream).await;
    let id = client.create(Ops::new()).await.expect("create").info.id;
    let seen = events(&mut stream, 1).await.remove(0);
    let (last_seen, cursor) = (seen.seq, seen.cursor);
    drop(stream);

    for i in 0..3 {
        client
            .apply(&id, Ops::new().counter_add("n", i + 1))
            .await
            .expect("apply");
    }
    let mut resumed = client.watch_raw(&cursor).await.expect("watch");
    assert!(hello(&mut resumed).await.resumed);
    let missed = events(&mut resumed, 3).await;
    assert_eq!(
        missed.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![last_seen + 1, last_seen + 2, last_seen + 3]
    );

    for _ in 0..20 {
        client
            .apply(&id, Ops::new().counter_add("n", 1))
            .await
            .expect("apply");
    }
    let mut too_late = client.watch_raw(&cursor).await.expect("watch");
    assert!(
        !hello(&mut too_late).await.resumed,
        "the ring no longer holds those events"
    );
    let restarted = common::spawn(ServerConfig::default()).await;
    let mut other_server = restarted.client().watch_raw(&cursor).await.expect("watch");
    assert!(
        !hello(&mut other_server).await.resumed,
        "another server's cursor resumes nothing"
    );
    restarted.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn subscription_survives_a_server_restart_and_says_reset() {
    let server = common::spawn(ServerConfig::default()).await;
    let addr = server.addr;
    let client: SessionClient = server.client();
    assert_eq!(client.store_is_durable(), None, "nothing heard yet");
    let mut updates = watch::subscribe(client.clone());
    assert_eq!(
        common::next_update(&mut updates).await,
        watch::Update::Reset,
        "first connection"
    );
    assert_eq!(
        client.store_is_durable(),
        Some(false),
        "the hello says the memory store keeps nothing across a restart"
    );
    let id = client
        .create(Ops::new())
        .await
        .expect("create")
        .info
        .reference;
    assert!(
        matches!(common::next_update(&mut updates).await, watch::Update::Event(e) if e.reference == id)
    );

    server.stop().await;
    assert_eq!(
        common::next_update(&mut updates).await,
        watch::Update::Disconnected
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("rebind the same port");
    let restarted = common::spawn_on(listener, ServerConfig::default()).await;
    assert_eq!(
        common::next_update(&mut updates).await,
        watch::Update::Reset,
        "a new epoch: caches must be dropped"
    );
    let id = client
        .create(Ops::new())
        .await
        .expect("the same client works again")
        .info
        .reference;
    assert!(
        matches!(common::next_update(&mut updates).await, watch::Update::Event(e) if e.reference == id)
    );
    restarted.stop().await;
}
