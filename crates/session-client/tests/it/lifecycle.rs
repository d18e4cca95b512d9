//! Ids, expiry, rotation, invalidation and limits, through the real gRPC server.

use crate::common;

use session_client::{Error, Ops};
use session_server::{clock::ManualClock, config::ServerConfig, store::Limits};
use std::{sync::Arc, time::Duration};

const MINUTE: u64 = 60_000;

fn manual_clock_config() -> (ServerConfig, ManualClock) {
    let clock = ManualClock::new(1_700_000_000_000);
    let config = ServerConfig {
        clock: Arc::new(clock.clone()),
        // Long enough that no sweep runs during the test: expiry must hold on access alone.
        sweep_interval: Duration::from_secs(3600),
        ..ServerConfig::default()
    };
    (config, clock)
}

#[tokio::test]
async fn ids_are_server_made_long_and_url_safe() -> Result<(), Error> {
    let server = common::spawn(ServerConfig::default()).await;
    let client = server.client();
    let a = client.create(Ops::new()).await?.info.id;
    let b = client.create(Ops::new()).await?.info.id;
    assert_ne!(a, b);
    assert!(a.len() >= 43, "256 bits need at least 43 base64 characters");
    assert!(
        a.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn unknown_and_forged_ids_are_not_found_and_never_created() -> Result<(), Error> {
    let server = common::spawn(ServerConfig::default()).await;
    let client = server.client();
    let well_formed_unknown = "A".repeat(43);
    for id in [
        "",
        "forged",
        "../../etc/passwd",
        well_formed_unknown.as_str(),
        &"x".repeat(10_000),
    ] {
        assert_eq!(client.get(id).await, Err(Error::NotFound), "get {id:.20}");
        assert_eq!(
            client
                .apply(id, Ops::new().set_json("a", &1)?)
                .await
                .map(drop),
            Err(Error::NotFound)
        );
        assert_eq!(client.rotate_id(id).await.map(drop), Err(Error::NotFound));
        assert_eq!(client.invalidate(id).await, Err(Error::NotFound));
        assert_eq!(
            client.get(id).await,
            Err(Error::NotFound),
            "the write above created nothing"
        );
    }
    assert_eq!(server.metric("session_active").await, 0.0);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn idle_and_absolute_expiry_hold_on_access_before_any_sweep() -> Result<(), Error> {
    let (config, clock) = manual_clock_config();
    let server = common::spawn(config).await;
    let client = server.client();

    let idle = client.create(Ops::new().set_json("a", &1)?).await?.info.id;
    clock.advance(29 * MINUTE);
    client.get(&idle).await?;
    clock.advance(29 * MINUTE);
    client
        .get(&idle)
        .await
        .expect("the read above refreshed the idle timeout");
    clock.advance(30 * MINUTE);
    assert_eq!(client.get(&idle).await, Err(Error::NotFound));
    assert_eq!(
        client
            .apply(&idle, Ops::new().set_json("a", &2)?)
            .await
            .map(drop),
        Err(Error::NotFound)
    );

    let busy = client.create(Ops::new()).await?.info.id;
    for _ in 0..23 {
        clock.advance(20 * MINUTE);
        client
            .apply(&busy, Ops::new().counter_add("hits", 1))
            .await?;
    }
    clock.advance(20 * MINUTE); // 8 hours after creation
    assert_eq!(client.get(&busy).await, Err(Error::NotFound));

    let short = client
        .create_with(Ops::new(), Some(Duration::from_secs(10)), None, false)
        .await?;
    assert_eq!(short.info.idle_timeout, Duration::from_secs(10));
    clock.advance(10_000);
    assert_eq!(client.get(&short.info.id).await, Err(Error::NotFound));
    assert_eq!(server.metric("session_expired_total").await, 3.0);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn rotate_id_keeps_data_and_kills_the_old_id_at_once() -> Result<(), Error> {
    let server = common::spawn(ServerConfig::default()).await;
    let client = server.client();
    let old = client
        .create(Ops::new().set_json("user", "ann")?)
        .await?
        .info
        .id;
    let new = client.rotate_id(&old).await?.id;
    assert_ne!(old, new);
    assert_eq!(client.get(&old).await, Err(Error::NotFound));
    assert_eq!(
        client
            .get(&new)
            .await?
            .get_json::<String>("user")?
            .as_deref(),
        Some("ann")
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn invalidated_session_is_gone_for_good() -> Result<(), Error> {
    let server = common::spawn(ServerConfig::default()).await;
    let client = server.client();
    let id = client.create(Ops::new().set_json("a", &1)?).await?.info.id;
    client.invalidate(&id).await?;
    assert_eq!(client.get(&id).await, Err(Error::NotFound));
    assert_eq!(
        client
            .apply(&id, Ops::new().set_json("a", &2)?)
            .await
            .map(drop),
        Err(Error::NotFound)
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn each_size_limit_fails_with_a_message_naming_it() -> Result<(), Error> {
    let limits = Limits {
        max_session_bytes: 8 * 1024,
        max_attribute_bytes: 4 * 1024,
        capacity_bytes: 1 << 20,
        ..Limits::default()
    };
    let server = common::spawn(ServerConfig {
        limits,
        ..ServerConfig::default()
    })
    .await;
    let client = server.client();
    let id = client.create(Ops::new()).await?.info.id;

    let big = "x".repeat(5 * 1024);
    match client.apply(&id, Ops::new().set_json("big", &big)?).await {
        Err(Error::LimitExceeded(msg)) => assert!(
            msg.contains("--max-attribute-size") && msg.contains("\"big\""),
            "{msg}"
        ),
        other => panic!("expected the attribute limit, got {other:?}"),
    }
    let three = "x".repeat(3 * 1024);
    let ops = Ops::new()
        .set_json("a", &three)?
        .set_json("b", &three)?
        .set_json("c", &three)?;
    match client.apply(&id, ops).await {
        Err(Error::LimitExceeded(msg)) => assert!(msg.contains("--max-session-size"), "{msg}"),
        other => panic!("expected the session limit, got {other:?}"),
    }
    assert!(
        client.get(&id).await?.attributes.is_empty(),
        "failed batches changed nothing"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn least_recently_used_sessions_are_evicted_at_capacity() -> Result<(), Error> {
    let limits = Limits {
        capacity_bytes: 64 * 1024,
        max_session_bytes: 8 * 1024,
        max_attribute_bytes: 8 * 1024,
        ..Limits::default()
    };
    let server = common::spawn(ServerConfig {
        limits,
        ..ServerConfig::default()
    })
    .await;
    let client = server.client();
    let payload = "x".repeat(4 * 1024);
    let first = client
        .create(Ops::new().set_json("p", &payload)?)
        .await?
        .info
        .id;
    let mut last = session_client::SessionId::from("");
    for _ in 0..40 {
        client.get(&first).await.expect("kept alive by use");
        last = client
            .create(Ops::new().set_json("p", &payload)?)
            .await?
            .info
            .id;
    }
    assert!(server.metric("session_bytes_used").await <= 64.0 * 1024.0);
    assert!(server.metric("session_evicted_total").await > 0.0);
    client
        .get(&first)
        .await
        .expect("recently used, so not evicted");
    client.get(&last).await.expect("newest, so not evicted");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn get_answers_not_modified_for_a_known_version() -> Result<(), Error> {
    let server = common::spawn(ServerConfig::default()).await;
    let client = server.client();
    let created = client.create(Ops::new().set_json("a", &1)?).await?;
    let id = created.info.id;
    assert_eq!(
        client.get_if_changed(&id, created.info.version).await?,
        None
    );
    client.apply(&id, Ops::new().set_json("a", &2)?).await?;
    let changed = client
        .get_if_changed(&id, created.info.version)
        .await?
        .expect("changed");
    assert_eq!(changed.get_json::<i32>("a")?, Some(2));
    let only = client.get_names(&id, &["missing"]).await?;
    assert!(only.attributes.is_empty());
    server.stop().await;
    Ok(())
}
