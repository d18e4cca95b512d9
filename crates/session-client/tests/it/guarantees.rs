//! The guarantee the service exists for: concurrent requests never overwrite each other.

use crate::common;

use session_client::{Error, Ops};
use session_server::config::ServerConfig;
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_pushes_from_two_clients_lose_nothing() {
    let server = common::spawn(ServerConfig::default()).await;
    let (a, b) = (server.client(), server.client());
    let id = a.create(Ops::new()).await.expect("create").info.id;

    let pushes = (0..1000u32).map(|i| {
        let client = if i % 2 == 0 { a.clone() } else { b.clone() };
        let id = id.clone();
        tokio::spawn(async move {
            client
                .apply(&id, Ops::new().list_push_json("items", &i, None)?)
                .await
        })
    });
    for push in futures_util::future::join_all(pushes).await {
        push.expect("task").expect("push");
    }

    let items: Vec<u32> = a
        .get(&id)
        .await
        .expect("get")
        .list_json("items")
        .expect("list");
    assert_eq!(items.len(), 1000);
    assert_eq!(
        items.iter().copied().collect::<BTreeSet<_>>(),
        (0..1000).collect(),
        "every push once, none twice"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_compare_and_set_gets_a_conflict_with_the_current_value() -> Result<(), Error> {
    let server = common::spawn(ServerConfig::default()).await;
    let (a, b) = (server.client(), server.client());
    let created = a.create(Ops::new().set_json("n", &1)?).await?;
    let id = created.info.id;
    let seen = a.get(&id).await?.attribute("n").expect("set").version;

    a.apply(&id, Ops::new().set_json_if("n", &2, seen)?).await?;
    match b.apply(&id, Ops::new().set_json_if("n", &3, seen)?).await {
        Err(Error::Conflict {
            name,
            current: Some(current),
        }) => {
            assert_eq!(name, "n");
            assert!(current.version > seen);
            assert_eq!(
                current.value,
                session_client::Value::Bytes {
                    content_type: "application/json".into(),
                    data: "2".into()
                }
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let must_be_absent = b.apply(&id, Ops::new().set_json_if("n", &9, 0)?).await;
    assert!(matches!(must_be_absent, Err(Error::Conflict { .. })));
    assert_eq!(a.get(&id).await?.get_json::<i32>("n")?, Some(2));
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modify_merges_and_retries_concurrent_read_modify_writes() -> Result<(), Error> {
    let server = common::spawn(ServerConfig::default()).await;
    let (a, b) = (server.client(), server.client());
    let id = a.create(Ops::new()).await?.info.id;

    let writers = (0..50u32).map(|i| {
        let client = if i % 2 == 0 { a.clone() } else { b.clone() };
        let id = id.clone();
        tokio::spawn(async move {
            client
                .modify(&id, "tags", |tags: Option<Vec<u32>>| {
                    let mut tags = tags.unwrap_or_default();
                    tags.push(i);
                    tags
                })
                .await
        })
    });
    for w in futures_util::future::join_all(writers).await {
        w.expect("task")?;
    }
    let tags: Vec<u32> = a.get(&id).await?.get_json("tags")?.expect("set");
    assert_eq!(
        tags.iter().copied().collect::<BTreeSet<_>>(),
        (0..50).collect(),
        "no read-modify-write lost"
    );
    server.stop().await;
    Ok(())
}
