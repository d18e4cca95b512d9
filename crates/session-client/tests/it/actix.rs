//! The actix-web integration, over real HTTP against a real session server.

use crate::common;

use actix_web::{App, HttpResponse, HttpServer, get, post, web};
use reqwest::{Client, Response, header};
use session_client::{
    Ops, SessionClient,
    actix::{RequestSession, SessionConfig, SessionMiddleware},
};
use session_server::config::ServerConfig;
use std::net::TcpListener;

#[get("/peek")]
async fn peek(session: RequestSession) -> actix_web::Result<String> {
    let loaded = session
        .load()
        .await
        .map_err(actix_web::error::ErrorServiceUnavailable)?;
    Ok(match loaded {
        Some(s) => s.counter("n").unwrap_or_default().to_string(),
        None => "none".into(),
    })
}

#[post("/inc")]
async fn inc(session: RequestSession) -> actix_web::Result<String> {
    let written = session
        .apply(Ops::new().counter_add("n", 1))
        .await
        .map_err(actix_web::error::ErrorServiceUnavailable)?;
    Ok(written.results[0].counter.to_string())
}

#[post("/login")]
async fn login(session: RequestSession) -> actix_web::Result<&'static str> {
    session
        .rotate_id()
        .await
        .map_err(actix_web::error::ErrorServiceUnavailable)?;
    Ok("rotated")
}

#[post("/logout")]
async fn logout(session: RequestSession) -> actix_web::Result<&'static str> {
    session
        .invalidate()
        .await
        .map_err(actix_web::error::ErrorServiceUnavailable)?;
    Ok("bye")
}

#[get("/static")]
async fn no_session() -> HttpResponse {
    HttpResponse::Ok().body("static")
}

struct App_ {
    base: String,
    http: Client,
    handle: actix_web::dev::ServerHandle,
}

async fn start_app(client: SessionClient, config: SessionConfig) -> App_ {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = HttpServer::new(move || {
        App::new()
            .wrap(SessionMiddleware::with_config(
                client.clone(),
                config.clone(),
            ))
            .service(peek)
            .service(inc)
            .service(login)
            .service(logout)
            .service(no_session)
            .default_service(web::to(HttpResponse::NotFound))
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    App_ {
        base,
        http: Client::new(),
        handle,
    }
}

impl App_ {
    async fn send(&self, method: reqwest::Method, path: &str, cookie: Option<&str>) -> Response {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, format!("sid={c}"));
        }
        req.send().await.expect("request")
    }
}

/// The Set-Cookie header of the cookie `name`, if the response sets it.
fn cookie_named(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .find(|c| c.starts_with(&format!("{name}=")))
}

fn set_cookie(resp: &Response) -> Option<String> {
    cookie_named(resp, "sid")
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("sid="))
        .expect("sid cookie")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_create_nothing_and_first_write_sets_a_hardened_cookie() {
    let server = common::spawn(ServerConfig::default()).await;
    let app = start_app(server.client(), SessionConfig::default()).await;

    let read = app.send(reqwest::Method::GET, "/peek", None).await;
    assert_eq!(set_cookie(&read), None);
    assert_eq!(read.text().await.expect("body"), "none");
    assert_eq!(
        server.metric("session_active").await,
        0.0,
        "a read created no session"
    );

    let write = app.send(reqwest::Method::POST, "/inc", None).await;
    let cookie = set_cookie(&write).expect("first write sets the cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP, not configured: {cookie}"
    );
    let sid = cookie_value(&cookie);
    assert_eq!(write.text().await.expect("body"), "1");

    let again = app.send(reqwest::Method::POST, "/inc", Some(&sid)).await;
    let version =
        cookie_named(&again, "sid_v").expect("a write tells the browser the version it made");
    assert!(
        version.starts_with("sid_v=2;") && version.contains("HttpOnly"),
        "{version}"
    );
    assert_eq!(
        set_cookie(&again),
        None,
        "an unchanged id needs no new cookie"
    );
    assert_eq!(again.text().await.expect("body"), "2");
    assert_eq!(
        app.send(reqwest::Method::GET, "/peek", Some(&sid))
            .await
            .text()
            .await
            .expect("body"),
        "2"
    );
    assert_eq!(server.metric("session_active").await, 1.0);
    app.handle.stop(true).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_unknown_cookie_starts_a_new_session() {
    let server = common::spawn(ServerConfig::default()).await;
    let app = start_app(server.client(), SessionConfig::default()).await;
    let forged = "A".repeat(43);

    let read = app.send(reqwest::Method::GET, "/peek", Some(&forged)).await;
    let cleared = set_cookie(&read).expect("the stale cookie is cleared");
    assert!(
        cleared.contains("Max-Age=0") || cleared.contains("expires"),
        "{cleared}"
    );
    assert_eq!(read.text().await.expect("body"), "none");

    let write = app.send(reqwest::Method::POST, "/inc", Some(&forged)).await;
    let sid = cookie_value(&set_cookie(&write).expect("new session"));
    assert_ne!(sid, forged, "the server never adopts a client's id");
    assert_eq!(write.text().await.expect("body"), "1");
    app.handle.stop(true).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_keeps_data_under_a_new_id_and_invalidate_clears_the_cookie() {
    let server = common::spawn(ServerConfig::default()).await;
    let app = start_app(
        server.client(),
        SessionConfig {
            secure: Some(true),
            ..SessionConfig::default()
        },
    )
    .await;
    let write = app.send(reqwest::Method::POST, "/inc", None).await;
    let first = set_cookie(&write).expect("cookie");
    assert!(first.contains("Secure"), "configured Secure: {first}");
    let old = cookie_value(&first);

    let rotated = app.send(reqwest::Method::POST, "/login", Some(&old)).await;
    let new = cookie_value(&set_cookie(&rotated).expect("new id"));
    assert_ne!(new, old);
    assert_eq!(
        app.send(reqwest::Method::GET, "/peek", Some(&new))
            .await
            .text()
            .await
            .expect("body"),
        "1"
    );
    assert_eq!(
        app.send(reqwest::Method::GET, "/peek", Some(&old))
            .await
            .text()
            .await
            .expect("body"),
        "none"
    );

    let out = app.send(reqwest::Method::POST, "/logout", Some(&new)).await;
    let version_cleared = cookie_named(&out, "sid_v").expect("the version cookie goes too");
    assert!(version_cleared.contains("Max-Age=0"), "{version_cleared}");
    assert!(set_cookie(&out).expect("removal").contains("Max-Age=0"));
    assert_eq!(
        app.send(reqwest::Method::GET, "/peek", Some(&new))
            .await
            .text()
            .await
            .expect("body"),
        "none"
    );
    app.handle.stop(true).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_never_touch_the_session_need_no_server() {
    let server = common::spawn(ServerConfig::default()).await;
    let client = server.client();
    server.stop().await;
    let app = start_app(client, SessionConfig::default()).await;
    let resp = app
        .send(reqwest::Method::GET, "/static", Some(&"A".repeat(43)))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(set_cookie(&resp), None);
    let session_page = app
        .send(reqwest::Method::GET, "/peek", Some(&"A".repeat(43)))
        .await;
    assert_eq!(
        session_page.status(),
        503,
        "but a page that reads the session says the server is away"
    );
    app.handle.stop(true).await;
}

/// The README's example as a newcomer runs it: it says where it listens and what to try, and
/// `GET /visit` shows the count that `POST /visit` raises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_says_where_it_listens_and_counts_visits() {
    use std::io::BufRead;
    let token = "the-visits-apps-token-0123456789abcdefghij";
    let credentials = format!("app:visits token:{token}");
    let config = session_server::testing::with_credentials(ServerConfig::default(), &credentials);
    let server = common::spawn(config).await;
    let token_file = std::env::temp_dir().join(format!("visits-token-{}", std::process::id()));
    std::fs::write(&token_file, format!("{token}\n")).expect("token file");
    // cargo test builds the examples next to the test binaries' folder.
    let exe = std::env::current_exe().expect("test binary");
    let example = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target folder")
        .join("examples/visits");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(
        std::process::Command::new(&example)
            .env("VISITS_LISTEN", "127.0.0.1:0")
            .env("SESSION_SERVER", &server.url)
            .env("SESSION_TOKEN_FILE", &token_file)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {} ({e}): `cargo test` builds it; alone, `cargo build -p session-client --example visits`",
                    example.display()
                )
            }),
    );
    let mut lines = std::io::BufReader::new(child.0.stdout.take().expect("stdout")).lines();
    let mut said = Vec::new();
    for _ in 0..3 {
        said.push(lines.next().expect("a line").expect("text"));
    }
    let url = said[0]
        .strip_prefix("Listening on ")
        .and_then(|rest| rest.strip_suffix(". Try:"))
        .unwrap_or_else(|| panic!("first line: {said:?}"))
        .to_owned();
    assert_eq!(said[1], format!("  curl -X POST -c jar -b jar {url}"));
    assert_eq!(said[2], format!("  curl -b jar {url}"));

    let browser = Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    let text = |r: Response| async move {
        assert_eq!(r.status(), 200);
        r.text().await.expect("body")
    };
    let count = || async { text(browser.get(&url).send().await.expect("GET")).await };
    assert_eq!(count().await, "0 visits so far; POST to count one\n");
    for n in 1..=2 {
        let posted = text(browser.post(&url).send().await.expect("POST")).await;
        assert_eq!(posted, format!("visit number {n}\n"));
    }
    assert_eq!(count().await, "2 visits so far; POST to count one\n");
    drop(child);
    let _ = std::fs::remove_file(token_file);
    server.stop().await;
}
