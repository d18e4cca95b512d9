//! The tutorial, over real HTTP: a session server, two cart instances, one browser.

use crate::common::{Browser, SessionServer, start_pair};
use cart::config::SessionMode;
use futures_util::future::join_all;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_on_one_server_is_in_the_cart_on_the_other() {
    let server = SessionServer::start().await;
    let (a, b) = start_pair(SessionMode::Clustered, &server.url()).await;
    let browser = Browser::new();

    let first = browser.get(&format!("{}/Cart", a.base)).await;
    assert_eq!(first.status, 200);
    assert!(first.set_cookie.is_none(), "a mere visit makes no session");
    assert!(
        browser.has_cookie("cart_csrf"),
        "but gets its form token's cookie"
    );
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
        (303, Some("/Cart?item=twin-peaks")),
        "post/redirect/get, the item still selected"
    );
    let cookie = added.set_cookie.expect("the first add starts a session");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }

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
    // A browser gets "Recently viewed" once it has shown that it keeps cookies.
    browser.get(&format!("{}/Cart", a.base)).await;
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
    // The first add makes the session (adds racing without one would each make their own,
    // as two browsers would).
    let first = browser
        .post(
            &format!("{}/Cart", a.base),
            &[("item", items[0]), ("submit", "add"), ("csrf", &token)],
        )
        .await;
    assert_eq!(first.status, 303);

    let adds = (1..200).map(|i| {
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
        missing.text().contains("This page is out of date")
            && missing.text().contains("nothing changed")
            && !missing.text().contains("token"),
        "plain words for a shopper: {}",
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
    assert_eq!(
        browser.post(&url, &form).await.status,
        303,
        "the session's first add"
    );
    for chunk in 0..25 {
        let adds = (usize::from(chunk == 0)..20).map(|_| browser.post(&url, &form));
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
    assert_eq!(
        full.location.as_deref(),
        Some("/Cart?item=nin-cd&notice=full")
    );
    let page = browser.get(&format!("{url}?item=nin-cd&notice=full")).await;
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
            page.text().contains("session server cannot be reached")
                && page.text().contains("in memory only")
                && !page.text().contains("Nothing is lost"),
            "what is true of the memory store: {}",
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
    // As the box says, the cart stays behind: back on the first, after a cart of its own on
    // the second, each instance still has its own (each has a cookie of its own).
    browser.submit(&b, "NIN CD", "add").await;
    for (instance, item) in [(&a, "Love life"), (&b, "NIN CD")] {
        let page = browser.get(&format!("{}/Cart", instance.base)).await;
        assert_eq!(page.items_in_cart(), 1);
        assert!(page.text().contains(item), "{}", page.text());
        assert!(browser.has_cookie(&format!("sid_{}", instance.port)));
    }
    assert!(!browser.has_cookie("sid"), "not the clustered cookie");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_cookie_is_dropped_and_the_first_add_starts_a_new_session() {
    let server = SessionServer::start().await;
    let (a, _b) = start_pair(SessionMode::Clustered, &server.url()).await;
    let browser = Browser::new();
    browser.set_cookie(Some("A".repeat(43)));
    let page = browser.get(&format!("{}/Cart", a.base)).await;
    assert_eq!(page.status, 200);
    assert_eq!(browser.cookie(), None, "the forged cookie is removed");
    browser.submit(&a, "NIN CD", "add").await;
    let page = browser.get(&format!("{}/Cart", a.base)).await;
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
    browser.submit(&a, "NIN CD", "add").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_cookieless_views_makes_no_session_and_evicts_no_shopper() {
    use futures_util::StreamExt;
    let server = SessionServer::start().await;
    let (a, b) = start_pair(SessionMode::Clustered, &server.url()).await;
    let shopper = Browser::new();
    assert_eq!(shopper.submit(&a, "JSP Book", "add").await.status, 303);
    let created = server.metric("session_created_total").await;

    let crawler = reqwest::Client::new();
    let views = futures_util::stream::iter(0..10_000)
        .map(|i| {
            let (crawler, base) = (crawler.clone(), if i % 2 == 0 { &a.base } else { &b.base });
            let url = if i % 10 == 0 {
                format!("{base}/Cart/products/nin-cd")
            } else {
                format!("{base}/Cart")
            };
            async move { crawler.get(url).send().await.expect("view").status() }
        })
        .buffer_unordered(16);
    let statuses: Vec<_> = views.collect().await;
    assert!(statuses.iter().all(|s| s.is_success()));
    assert_eq!(
        server.metric("session_created_total").await,
        created,
        "no view made a session"
    );
    assert_eq!(server.metric("session_active").await, 1.0);
    assert_eq!(
        shopper
            .get(&format!("{}/Cart", b.base))
            .await
            .items_in_cart(),
        1
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_left_open_while_its_session_ended_still_adds_with_its_token() {
    let server = SessionServer::start().await;
    let (a, _b) = start_pair(SessionMode::Clustered, &server.url()).await;
    let browser = Browser::new();
    browser.submit(&a, "NIN CD", "add").await;
    let token = browser.get(&format!("{}/Cart", a.base)).await.csrf();
    let id = browser.cookie().expect("session");
    let client = session_client::SessionClient::connect_lazy(session_client::ClientConfig {
        endpoints: vec![server.url()],
        // The cart's sessions are app "cart"'s: to any other app they do not exist.
        app: Some(cart::config::DEFAULT_APP.into()),
        ..Default::default()
    })
    .expect("client");
    client.invalidate(&id).await.expect("the session ends");

    let added = browser
        .post(
            &format!("{}/Cart", a.base),
            &[("item", "JSP Book"), ("submit", "add"), ("csrf", &token)],
        )
        .await;
    assert_eq!(added.status, 303, "the old page's token still works");
    let page = browser.get(&format!("{}/Cart", a.base)).await;
    assert_ne!(browser.cookie(), Some(id), "in a new session");
    assert_eq!(page.items_in_cart(), 1, "with the add applied");

    // Another site's page cannot post, even with a valid token, and a stolen token is
    // worthless without its cookie.
    let token = page.csrf();
    for (header, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "http://evil.example"),
    ] {
        let refused = reqwest::Client::new()
            .post(format!("{}/Cart", a.base))
            .header(
                "cookie",
                format!("cart_csrf=x; sid={}", browser.cookie().expect("sid")),
            )
            .header(header, value)
            .form(&[("item", "JSP Book"), ("submit", "add"), ("csrf", &token)])
            .send()
            .await
            .expect("post");
        assert_eq!(refused.status(), 403, "{header}: {value}");
    }
    let no_cookie = reqwest::Client::new()
        .post(format!("{}/Cart", a.base))
        .form(&[("item", "JSP Book"), ("submit", "add"), ("csrf", &token)])
        .send()
        .await
        .expect("post");
    assert_eq!(no_cookie.status(), 403);
    assert_eq!(
        browser
            .get(&format!("{}/Cart", a.base))
            .await
            .items_in_cart(),
        1
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_edge_answers_methods_headers_and_forwarding_as_it_should() {
    let server = SessionServer::start().await;
    let (a, b) = start_pair(SessionMode::Clustered, &server.url()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for (method, path, allow) in [
        ("PUT", "/Cart", "GET, HEAD, POST"),
        ("DELETE", "/Cart/products/nin-cd", "GET, HEAD"),
        ("POST", "/healthz", "GET, HEAD"),
    ] {
        let answer = http
            .request(method.parse().expect("method"), format!("{}{path}", a.base))
            .send()
            .await
            .expect("request");
        assert_eq!(answer.status(), 405, "{method} {path}");
        assert_eq!(answer.headers()["allow"], allow);
    }
    let head = http
        .head(format!("{}/Cart", a.base))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "text/html; charset=utf-8");
    let page = http
        .get(format!("{}/Cart", a.base))
        .send()
        .await
        .expect("GET");
    let headers = page.headers().clone();
    let csp = headers["content-security-policy"].to_str().expect("ascii");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "same-origin");
    let script_src = csp
        .split(';')
        .find(|d| d.trim_start().starts_with("script-src"))
        .expect("a script-src directive");
    assert!(!script_src.contains("unsafe-inline"), "{script_src}");
    assert!(
        !page.text().await.expect("body").contains("<script>"),
        "no inline script for the policy to block"
    );

    // Forwarding headers from a peer that is no configured proxy change nothing.
    let spoofed = http
        .get(format!("{}/Cart", b.base))
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("GET");
    let set_cookie: Vec<_> = spoofed
        .headers()
        .get_all("set-cookie")
        .iter()
        .cloned()
        .collect();
    let html = spoofed.text().await.expect("body");
    assert!(
        !html.contains("evil.example"),
        "the peer link keeps the real host"
    );
    assert!(html.contains(&format!("http://127.0.0.1:{}/Cart", a.port)));
    assert!(
        set_cookie
            .iter()
            .all(|c| !c.to_str().expect("ascii").contains("Secure"))
    );
    server.stop().await;
}

#[test]
fn a_cart_given_two_session_servers_refuses_to_start_and_names_them() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cart"))
        .args(["--listen", "127.0.0.1:0"])
        .args([
            "--session-server",
            "http://127.0.0.1:9510,http://127.0.0.1:9511",
        ])
        .output()
        .expect("run cart");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("http://127.0.0.1:9510") && err.contains("http://127.0.0.1:9511"),
        "{err}"
    );
    assert!(err.contains("give one"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_count_from_trusted_proxies_and_event_streams_are_capped() {
    let server = SessionServer::start().await;
    let (a, _b) = crate::common::start_pair_with(SessionMode::Clustered, &server.url(), |s| {
        s.trusted_proxies = vec!["127.0.0.1".parse().expect("ip")];
        s.max_event_streams = 2;
    })
    .await;
    // This test's requests come from 127.0.0.1: a trusted proxy here.
    let forwarded = reqwest::Client::new()
        .get(format!("{}/Cart", a.base))
        .header("x-forwarded-host", "shop.example:443")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("GET");
    let cookie = forwarded.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(cookie.contains("Secure"), "{cookie}");
    let html = forwarded.text().await.expect("body");
    assert!(
        html.contains("https://shop.example:"),
        "the peer link uses the browser's host"
    );
    // The browser's Origin is the proxy's host, which is no cross-site request.
    let from_proxy_page = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{}/Cart", a.base))
        .header("x-forwarded-host", "shop.example:443")
        .header("origin", "https://shop.example:443")
        .form(&[("item", "NIN CD"), ("submit", "add"), ("csrf", "none")])
        .send()
        .await
        .expect("POST");
    assert_eq!(from_proxy_page.status(), 403, "refused by the token");
    assert!(
        !from_proxy_page
            .text()
            .await
            .expect("body")
            .contains("another web site"),
        "not by the origin check"
    );

    let browser = Browser::new();
    browser.submit(&a, "NIN CD", "add").await;
    let sid = browser.cookie().expect("session");
    let open = |_| {
        reqwest::Client::new()
            .get(format!("{}/Cart/events", a.base))
            .header("cookie", format!("sid={sid}"))
            .send()
    };
    let first = open(0).await.expect("stream");
    let second = open(1).await.expect("stream");
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    assert_eq!(open(2).await.expect("answer").status(), 503, "past the cap");
    // A stream the browser closed frees its place once a write to it fails: the second
    // keep-alive comment after the close (one every 15 s), so within 30 s.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let again = open(3).await.expect("answer");
        if again.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a closed stream never freed its place"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(second);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_small_things_a_shopper_notices() {
    let server = SessionServer::start().await;
    let (a, _b) = start_pair(SessionMode::Clustered, &server.url()).await;
    let browser = Browser::new();
    let cart = format!("{}/Cart", a.base);
    let selected = |page: &crate::common::Page| {
        page.html
            .lines()
            .filter(|l| l.contains(" selected>"))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("\n")
    };

    // Removing what is not there says so, and without a session makes none.
    let removed = browser.submit(&a, "NIN CD", "remove").await;
    assert_eq!(
        removed.location.as_deref(),
        Some("/Cart?item=nin-cd&notice=absent")
    );
    let page = browser
        .get(&format!("{cart}?item=nin-cd&notice=absent"))
        .await;
    assert!(
        page.text()
            .contains("NIN CD is not in your cart, so nothing was removed."),
        "{}",
        page.text()
    );
    assert_eq!(browser.cookie(), None, "no session for a remove of nothing");
    assert_eq!(server.metric("session_active").await, 0.0);

    // The item a form named stays selected on the page it lands on.
    let added = browser.submit(&a, "Concert tickets", "add").await;
    assert_eq!(
        added.location.as_deref(),
        Some("/Cart?item=concert-tickets")
    );
    let page = browser.get(&format!("{cart}?item=concert-tickets")).await;
    assert_eq!(
        selected(&page),
        r#"<option value="Concert tickets" selected>Concert tickets</option>"#
    );
    assert!(!page.text().contains("nothing was removed"));
    let removed = browser.submit(&a, "Love life", "remove").await;
    assert_eq!(
        removed.location.as_deref(),
        Some("/Cart?item=love-life&notice=absent"),
        "with a session too"
    );
    assert_eq!(browser.get(&cart).await.items_in_cart(), 1);
    assert!(
        selected(&browser.get(&cart).await).starts_with(r#"<option value="Beavis"#),
        "the first, by default"
    );

    // The cart page keeps the original's title; a product page is titled by its product.
    let title = |page: &crate::common::Page| {
        let start = page.html.find("<title>").expect("title") + "<title>".len();
        let end = page.html.find("</title>").expect("title end");
        page.html[start..end].to_owned()
    };
    assert_eq!(title(&browser.get(&cart).await), "carts");
    let product = browser.get(&format!("{cart}/products/jsp-book")).await;
    assert_eq!(title(&product), "JSP Book");

    // A favicon, where browsers look for it and where the pages link it.
    for path in ["/favicon.ico", "/Cart/static/favicon.svg"] {
        let icon = reqwest::get(format!("{}{path}", a.base))
            .await
            .expect("icon");
        assert_eq!(icon.status(), 200, "{path}");
        assert_eq!(icon.headers()["content-type"], "image/svg+xml", "{path}");
    }
    assert!(
        product
            .html
            .contains(r#"<link rel="icon" href="/Cart/static/favicon.svg""#)
    );
    server.stop().await;
}
