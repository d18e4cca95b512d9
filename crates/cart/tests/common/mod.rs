//! A real session server and two real cart instances on ephemeral ports, and a browser-like
//! HTTP client that keeps its session cookie.
#![allow(dead_code)] // each test file uses a different part

use cart::config::{SessionMode, Settings};
use reqwest::{Client, StatusCode, header, redirect};
use session_server::config::ServerConfig;
use std::{
    ops::Deref,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::net::TcpListener;

/// The repository root, where the scripts and docker-compose.yml live.
pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The shared in-process session server (`session_server::testing`), as these tests name it.
pub struct SessionServer(session_server::testing::TestServer);

impl Deref for SessionServer {
    type Target = session_server::testing::TestServer;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl SessionServer {
    pub async fn start() -> Self {
        Self(session_server::testing::TestServer::spawn(ServerConfig::default()).await)
    }

    /// Serves on a listener the caller bound, e.g. the port of a server it stopped before.
    pub async fn start_on(grpc: TcpListener) -> Self {
        Self(session_server::testing::TestServer::spawn_on(grpc, ServerConfig::default()).await)
    }

    pub fn url(&self) -> String {
        self.0.url.clone()
    }

    pub async fn stop(self) {
        self.0.stop().await;
    }
}

pub struct Instance {
    pub port: u16,
    pub base: String,
    handle: actix_web::dev::ServerHandle,
}

impl Instance {
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

/// The CSRF key both instances of a pair share, as the start scripts and compose give them.
pub fn shared_key() -> cart::csrf::Key {
    cart::csrf::Key::new("the tests' shared key, at least 32 characters").expect("key")
}

/// Two cart instances that know each other's port, like 9081 and 9082 in the tutorial.
pub async fn start_pair(mode: SessionMode, session_server: &str) -> (Instance, Instance) {
    start_pair_with(mode, session_server, |_| {}).await
}

/// [`start_pair`] with settings changed by `tweak`.
pub async fn start_pair_with(
    mode: SessionMode,
    session_server: &str,
    tweak: impl Fn(&mut Settings),
) -> (Instance, Instance) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let (pa, pb) = (
        a.local_addr().expect("addr").port(),
        b.local_addr().expect("addr").port(),
    );
    (
        start(a, pa, pb, "goldenrod", mode, session_server, &tweak).await,
        start(b, pb, pa, "darkseagreen", mode, session_server, &tweak).await,
    )
}

async fn start(
    listener: std::net::TcpListener,
    port: u16,
    peer: u16,
    color: &str,
    mode: SessionMode,
    session_server: &str,
    tweak: impl Fn(&mut Settings),
) -> Instance {
    let mut settings = Settings::for_port(port, peer);
    settings.color = color.to_owned();
    settings.mode = mode;
    settings.session_servers = vec![session_server.to_owned()];
    settings.session_timeout = Duration::from_millis(500);
    settings.workers = Some(2);
    settings.csrf_key = shared_key();
    tweak(&mut settings);
    let server = cart::startup::run(listener, settings).expect("cart starts");
    let handle = server.handle();
    tokio::spawn(server);
    let base = format!("http://127.0.0.1:{port}");
    let probe = Client::new();
    for _ in 0..500 {
        if probe
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Instance { port, base, handle };
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("cart on {port} never answered");
}

/// A browser: one cookie jar across both instances (same host, different ports share cookies),
/// no automatic redirects so tests see the post/redirect/get.
#[derive(Clone)]
pub struct Browser {
    http: Client,
    /// Cookie name to value, as a browser's jar for 127.0.0.1 (shared by both ports).
    jar: Arc<Mutex<Vec<(String, String)>>>,
}

pub struct Page {
    pub status: StatusCode,
    pub html: String,
    pub location: Option<String>,
    pub set_cookie: Option<String>,
}

impl Page {
    /// The page's text without tags, whitespace folded: what a reader sees.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in self.html.chars() {
            match c {
                '<' => in_tag = true,
                '>' => {
                    in_tag = false;
                    out.push(' ');
                }
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace("&#38;", "&")
            .replace("&#39;", "'")
            .replace("&#34;", "\"")
    }

    pub fn csrf(&self) -> String {
        let at = self
            .html
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("page has a csrf field: {}", self.html))
            + "name=\"csrf\" value=\"".len();
        self.html[at..].split('"').next().expect("token").to_owned()
    }

    pub fn items_in_cart(&self) -> usize {
        let text = self.text();
        let at =
            text.find("Items in Cart: ").expect("box shows the count") + "Items in Cart: ".len();
        text[at..]
            .split(' ')
            .next()
            .expect("count")
            .parse()
            .expect("number")
    }
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        let http = Client::builder()
            .redirect(redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            http,
            jar: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The session cookie's value.
    pub fn cookie(&self) -> Option<String> {
        self.jar
            .lock()
            .expect("lock")
            .iter()
            .find(|(n, _)| n == "sid")
            .map(|(_, v)| v.clone())
    }

    pub fn has_cookie(&self, name: &str) -> bool {
        self.jar
            .lock()
            .expect("lock")
            .iter()
            .any(|(n, _)| n == name)
    }

    pub fn set_cookie(&self, value: Option<String>) {
        self.store("sid", value);
    }

    fn store(&self, name: &str, value: Option<String>) {
        let mut jar = self.jar.lock().expect("lock");
        jar.retain(|(n, _)| n != name);
        if let Some(v) = value {
            jar.push((name.to_owned(), v));
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Page {
        let cookies = self
            .jar
            .lock()
            .expect("lock")
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = if cookies.is_empty() {
            req
        } else {
            req.header(header::COOKIE, cookies)
        };
        let resp = req.send().await.expect("request");
        let mut set_cookie = None;
        for sc in resp.headers().get_all(header::SET_COOKIE) {
            let sc = sc.to_str().expect("ascii").to_owned();
            let (name, value) = sc
                .split(';')
                .next()
                .and_then(|kv| kv.split_once('='))
                .expect("name=value");
            let removed = value.is_empty() || sc.contains("Max-Age=0");
            self.store(name, (!removed).then(|| value.to_owned()));
            if name == "sid" {
                set_cookie = Some(sc.clone());
            }
        }
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().expect("ascii").to_owned());
        Page {
            status: resp.status(),
            location,
            set_cookie,
            html: resp.text().await.expect("body"),
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        self.send(self.http.get(url)).await
    }

    pub async fn post(&self, url: &str, form: &[(&str, &str)]) -> Page {
        self.send(self.http.post(url).form(form)).await
    }

    /// Adds or removes through the page's form, the way a person would.
    pub async fn submit(&self, instance: &Instance, item: &str, action: &str) -> Page {
        let token = self.get(&format!("{}/Cart", instance.base)).await.csrf();
        self.post(
            &format!("{}/Cart", instance.base),
            &[("item", item), ("submit", action), ("csrf", &token)],
        )
        .await
    }
}
