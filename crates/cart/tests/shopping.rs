//! The tutorial, over real HTTP: a session server, two cart instances, one browser.

mod common;

use cart::config::SessionMode;
use common::{Browser, SessionServer, start_pair};
use futures_util::future::join_all;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_on_one_server_is_in_the_cart_on_the_other() {
    let server = SessionServer::start().await;
    let (a, b) = start_pair(SessionMode::Clustered, &server.url()).await;
    let browser = Browser::new();

    let first = browser.get(&format!("{}/Cart", a.base)).await;
    assert_eq!(first.status, 200);
    let cookie = first.set_cookie.expect("a visit starts a session");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(first.html.contains("<title>carts</title>"));
    assert!(
        first
            .html
            .contains("Beavis &#38; Butt-head Video collection")
            && first.html.contains("Rex, Rugs &#38; Rock n&#39; Roll"),
        "names escaped"
    );

    let added = browser.submit(&a, "Twin peaks tapes", "add").await;
    assert_eq!(
        (added.status.as_u16(), added.location.as_deref()),
        (303, Some("/Cart")),
        "post/redirect/get"
    );

    let there = browser.get(&format!("{}/Cart", b.base)).await;
    let text = there.text();
    assert!(
        text.contains("You have the following items in your cart: Twin peaks tapes"),
        "{text}"
    );
    assert!(text.contains(&format!("Current Server: {}", b.port)));
    assert!(text.contains("Clustered Sessions: On"));
    assert_eq!(there.items_in_cart(), 1);
    assert!(
        there.html.contains("background-color: darkseagreen"),
        "second instance is darkseagreen"
    );
    assert!(
        there
            .html
            .contains(&format!("href=\"http://127.0.0.1:{}/Cart\"", a.port)),
        "link back to the first"
    );
    assert!(text.contains(&format!("Go to: Server {}", a.port)));
    assert!(
        browser
            .get(&format!("{}/Cart", a.base))
            .await
            .html
            .contains("background-color: goldenrod")
    );

    // Quantities: a second add counts up, a remove counts down, on either server.
    browser.submit(&b, "Twin peaks tapes", "add").await;
    let two = browser.get(&format!("{}/Cart", a.base)).await;
    assert!(
        two.text().contains("Twin peaks tapes × 2"),
        "{}",
        two.text()
    );
    assert_eq!(two.items_in_cart(), 2);
    browser.submit(&a, "Twin peaks tapes", "remove").await;
    assert_eq!(
        browser
            .get(&format!("{}/Cart", b.base))
            .await
            .items_in_cart(),
        1
    );
    let hops = browser.get(&format!("{}/Cart", b.base)).await.text();
    assert!(hops.contains("Hops between servers"), "{hops}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsing_history_is_the_last_five_newest_first_on_both_servers() {
    let server = SessionServer::start().await;
    let (a, b) = start_pair(SessionMode::Clustered, &server.url()).await;
    let browser = Browser::new();
    for id in ["x-files", "nin-cd"] {
        let page = browser.get(&format!("{}/Cart/products/{id}", a.base)).await;
        assert_eq!(page.status, 200);
    }
    let there = browser.get(&format!("{}/Cart", b.base)).await.text();
    assert!(
        there.contains("Recently viewed NIN CD X-files movie Our products"),
        "{there}"
    );

    for id in [
        "jsp-book",
        "love-life",
        "x-files",
        "switch-blade",
        "concert-tickets",
        "x-files",
    ] {
        browser.get(&format!("{}/Cart/products/{id}", b.base)).await;
    }
    let text = browser.get(&format!("{}/Cart", a.base)).await.text();
    assert!(
        text.contains("Recently viewed X-files movie Concert tickets Switch blade Love life JSP Book Our products"),
        "{text}"
    );
    assert_eq!(
        browser
            .get(&format!("{}/Cart/products/no-such", a.base))
            .await
            .status,
        404
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_adds_on_both_servers_lose_nothing() {
    let server = SessionServer::start().await;
    let (a, b) = start_pair(SessionMode::Clustered, &server.url()).await;
    let browser = Browser::new();
    let token = browser.get(&format!("{}/Cart", a.base)).await.csrf();
    let items = ["NIN CD", "JSP Book", "Love life", "X-files movie"];

    let adds = (0..200).map(|i| {
        let browser = browser.clone();
        let url = format!("{}/Cart", if i % 2 == 0 { &a.base } else { &b.base });
        let token = token.clone();
        async move {
            browser
                .post(
                    &url,
                    &[
                        ("item", items[i % items.len()]),
                        ("submit", "add"),
                        ("csrf", &token),
                    ],
                )
                .await
                .status
        }
    });
    for status in join_all(adds).await {
        assert_eq!(status, 303);
    }
    let page = browser.get(&format!("{}/Cart", b.base)).await;
    assert!(
        page.text().contains("Items in Cart: 200"),
        "{}",
        page.text()
    );
    for item in items {
        assert!(page.text().contains(&format!("{item} × 50")), "{item}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_csrf_token_is_refused_and_changes_nothing() {
    let server = SessionServer::start().await;
    let (a, _b) = start_pair(SessionMode::Clustered, &server.url()).await;
    let browser = Browser::new();
    let token = browser.get(&format!("{}/Cart", a.base)).await.csrf();
    let url = format!("{}/Cart", a.base);

    let missing = browser
        .post(&url, &[("item", "NIN CD"), ("submit", "add")])
        .await;
    assert_eq!(missing.status, 403);
    assert!(
        missing.text().contains("security token"),
        "{}",
        missing.text()
    );
    let wrong = browser
        .post(
            &url,
            &[("item", "NIN CD"), ("submit", "add"), ("csrf", "forged")],
        )
        .await;
    assert_eq!(wrong.status, 403);
    let other_session = Browser::new();
    let stranger = other_session
        .post(
            &url,
            &[("item", "NIN CD"), ("submit", "add"), ("csrf", &token)],
        )
        .await;
    assert_eq!(
        stranger.status, 403,
        "a token from another session is no token"
    );
    assert_eq!(browser.get(&url).await.items_in_cart(), 0);

    let unknown = browser
        .post(
            &url,
            &[
                ("item", "Flux capacitor"),
                ("submit", "add"),
                ("csrf", &token),
            ],
        )
        .await;
    assert_eq!(unknown.status, 400);
    assert!(
        unknown
            .text()
            .contains("\"Flux capacitor\" is not one of our nine items"),
        "{}",
        unknown.text()
    );
    let action = browser
        .post(
            &url,
            &[("item", "NIN CD"), ("submit", "steal"), ("csrf", &token)],
        )
        .await;
    assert_eq!(action.status, 400);
    assert_eq!(browser.get(&url).await.items_in_cart(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_large_cart_gets_a_clear_message() {
    let server = SessionServer::start().await;
    let (a, _b) = start_pair(SessionMode::Clustered, &server.url()).await;
    let browser = Browser::new();
    let token = browser.get(&format!("{}/Cart", a.base)).await.csrf();
    let url = format!("{}/Cart", a.base);
    let form = [
        ("item", "NIN CD"),
        ("submit", "add"),
        ("csrf", token.as_str()),
    ];
    for chunk in 0..25 {
        let adds = (0..20).map(|_| browser.post(&url, &form));
        assert!(
            join_all(adds).await.iter().all(|p| p.status == 303),
            "chunk {chunk}"
        );
    }
    let full = browser
        .post(
            &url,
            &[("item", "NIN CD"), ("submit", "add"), ("csrf", &token)],
        )
        .await;
    assert_eq!(full.location.as_deref(), Some("/Cart?notice=full"));
    let page = browser.get(&format!("{url}?notice=full")).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("Your cart is full"));
    assert_eq!(page.items_in_cart(), 500);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_answer_503_while_the_session_server_is_down_and_recover_after() {
    let server = SessionServer::start().await;
    let addr = server.addr;
    let (a, b) = start_pair(SessionMode::Clustered, &server.url()).await;
    let browser = Browser::new();
    browser.submit(&a, "NIN CD", "add").await;
    server.stop().await;

    // Pages may come from an instance's near cache only while its watch stream is alive; once
    // the loss is noticed (within about the client's timeout), every session page says 503.
    let stopped = Instant::now();
    for instance in [&a, &b] {
        let page = loop {
            let page = browser.get(&format!("{}/Cart", instance.base)).await;
            if page.status != 200 || stopped.elapsed() > Duration::from_secs(3) {
                break page;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(page.status, 503);
        assert!(
            stopped.elapsed() < Duration::from_secs(3),
            "503 within about the client's timeout (500 ms here)"
        );
        assert!(
            page.text().contains("session server cannot be reached"),
            "{}",
            page.text()
        );
        let started = Instant::now();
        assert_eq!(
            browser.get(&format!("{}/Cart", instance.base)).await.status,
            503
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "each 503 comes within the client's timeout"
        );
    }
    for asset in [
        "/Cart/static/cart.css",
        "/Cart/static/live.js",
        "/Cart/pictures/nin-cd.svg",
        "/healthz",
    ] {
        assert_eq!(
            browser.get(&format!("{}{asset}", a.base)).await.status,
            200,
            "{asset} served without sessions"
        );
    }

    let restarted =
        SessionServer::start_on(tokio::net::TcpListener::bind(addr).await.expect("rebind")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = browser.get(&format!("{}/Cart", b.base)).await;
        if page.status == 200 {
            // The in-memory server lost the old session; a fresh one works normally.
            browser.submit(&b, "JSP Book", "add").await;
            assert_eq!(
                browser
                    .get(&format!("{}/Cart", a.base))
                    .await
                    .items_in_cart(),
                1
            );
            break;
        }
        assert!(Instant::now() < deadline, "carts did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_sessions_are_not_shared_and_the_box_says_so() {
    let (a, b) = start_pair(SessionMode::Local, "http://127.0.0.1:1").await;
    let browser = Browser::new();
    browser.submit(&a, "Love life", "add").await;
    let here = browser.get(&format!("{}/Cart", a.base)).await;
    assert_eq!(here.items_in_cart(), 1);
    assert!(here.text().contains("Clustered Sessions: Off"));
    assert!(here.text().contains("share nothing"), "{}", here.text());
    let there = browser.get(&format!("{}/Cart", b.base)).await;
    assert_eq!(
        there.items_in_cart(),
        0,
        "the other instance has its own sessions"
    );
    assert!(there.text().contains("that is why your cart is empty"));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_cookie_starts_a_new_session() {
    let server = SessionServer::start().await;
    let (a, _b) = start_pair(SessionMode::Clustered, &server.url()).await;
    let browser = Browser::new();
    browser.set_cookie(Some("A".repeat(43)));
    let page = browser.get(&format!("{}/Cart", a.base)).await;
    assert_eq!(page.status, 200);
    let fresh = browser.cookie().expect("new cookie");
    assert_ne!(fresh, "A".repeat(43));
    assert!(
        !page.html.contains(&fresh),
        "the id never appears in a page"
    );
    assert!(
        page.html.contains(&fresh[..8]),
        "only its first characters, in the panel"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_page_hears_about_a_change_made_on_the_other_server() {
    let server = SessionServer::start().await;
    let (a, b) = start_pair(SessionMode::Clustered, &server.url()).await;
    let browser = Browser::new();
    browser.get(&format!("{}/Cart", a.base)).await;
    let cookie = browser.cookie().expect("session");

    let mut events = reqwest::Client::new()
        .get(format!("{}/Cart/events", a.base))
        .header("cookie", format!("sid={cookie}"))
        .send()
        .await
        .expect("event stream");
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let hello = events.chunk().await.expect("read").expect("hello");
    assert!(String::from_utf8_lossy(&hello).contains("connected"));

    let started = Instant::now();
    browser.submit(&b, "Switch blade", "add").await;
    let event = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            let chunk = events.chunk().await.expect("read").expect("open");
            let text = String::from_utf8_lossy(&chunk).into_owned();
            if text.contains("event: session") {
                return text;
            }
        }
    })
    .await
    .expect("an event within a second");
    assert!(event.contains("data: changed"), "{event}");
    assert!(started.elapsed() < Duration::from_secs(1));

    let refreshed = reqwest::Client::new()
        .get(format!("{}/Cart", a.base))
        .header("cookie", format!("sid={cookie}"))
        .header(cart::LIVE_REFRESH_HEADER, "1")
        .send()
        .await
        .expect("refresh")
        .text()
        .await
        .expect("body");
    assert!(refreshed.contains("Switch blade</a>"));
    let no_session = reqwest::Client::new()
        .get(format!("{}/Cart/events", a.base))
        .send()
        .await
        .expect("events");
    assert_eq!(
        no_session.status(),
        204,
        "nothing to watch without a session"
    );
    server.stop().await;
}
