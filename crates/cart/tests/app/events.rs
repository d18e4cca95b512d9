//! Events are private: they name sessions by reference, never by the id a cookie holds, before
//! and after the id rotates, and live pages and near caches still follow them.

use crate::common::{Browser, SessionServer, start_pair};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use cart::config::SessionMode;
use futures_util::StreamExt;
use prost::Message;
use session_proto::v1 as pb;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

/// Everything a watcher of the cart's app receives, as the bytes on the wire.
fn record_the_watch(url: String) -> Arc<Mutex<Vec<Vec<u8>>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut client = pb::session_service_client::SessionServiceClient::connect(url)
            .await
            .expect("connect");
        let mut request = tonic::Request::new(pb::WatchRequest::default());
        let metadata = request.metadata_mut();
        metadata.insert(
            session_proto::metadata::PROTOCOL,
            "2".parse().expect("ascii"),
        );
        metadata.insert(session_proto::metadata::APP, "cart".parse().expect("ascii"));
        let mut stream = client.watch(request).await.expect("watch").into_inner();
        while let Some(Ok(item)) = stream.next().await {
            keep.lock().expect("lock").push(item.encode_to_vec());
        }
    });
    seen
}

/// Reads an open page's stream until an event says `what` (a page view writes the session
/// too: the hop bookkeeping, so a change may come as several events).
async fn hears(events: &mut reqwest::Response, what: &str) {
    tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            let chunk = events.chunk().await.expect("read").expect("open");
            if String::from_utf8_lossy(&chunk).contains(&format!("data: {what}")) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("a live event saying {what} within 2 s"))
}

async fn open_page(base: &str, cookie: &str) -> reqwest::Response {
    let mut events = reqwest::Client::new()
        .get(format!("{base}/Cart/events"))
        .header("cookie", format!("sid={cookie}"))
        .send()
        .await
        .expect("event stream");
    assert_eq!(events.status(), 200);
    events.chunk().await.expect("read").expect("hello");
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_carries_the_cookie_before_or_after_an_id_rotation_and_live_pages_follow() {
    let server = SessionServer::start().await;
    let seen = record_the_watch(server.url());
    let (a, b) = start_pair(SessionMode::Clustered, &server.url()).await;
    let browser = Browser::new();
    browser.submit(&a, "NIN CD", "add").await;
    let first = browser.cookie().expect("a session");
    let mut page = open_page(&a.base, &first).await;
    browser.submit(&b, "JSP Book", "add").await;
    hears(&mut page, "changed").await;

    // A login handler would rotate the id: the cookie then holds the new one.
    let client = session_client::SessionClient::connect_lazy(session_client::ClientConfig {
        endpoints: vec![server.url()],
        app: Some(cart::config::DEFAULT_APP.into()),
        ..Default::default()
    })
    .expect("client");
    let rotated = client.rotate_id(&first).await.expect("rotate").id;
    let second = rotated.as_str().to_owned();
    // The page open under the old id hears of the rotation.
    hears(&mut page, "rotated").await;
    browser.set_cookie(Some(second.clone()));
    let mut page = open_page(&a.base, &second).await;
    browser.submit(&b, "Love life", "add").await;
    hears(&mut page, "changed").await;
    let view = browser.get(&format!("{}/Cart", a.base)).await;
    assert_eq!(view.items_in_cart(), 3, "the near caches follow the new id");

    let seen = seen.lock().expect("lock").clone();
    assert!(
        seen.len() >= 6,
        "a hello and five events at least: {}",
        seen.len()
    );
    for id in [&first, &second] {
        let text = id.as_bytes();
        let raw = URL_SAFE_NO_PAD.decode(id).expect("an id is base64url");
        for message in &seen {
            assert!(
                !message.windows(text.len()).any(|w| w == text)
                    && !message.windows(raw.len()).any(|w| w == raw),
                "an event carried a session id"
            );
        }
    }
    server.stop().await;
}
