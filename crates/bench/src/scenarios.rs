//! The measurements: cart pages over HTTP, raw session operations, memory, and scale.

use crate::{
    load::{self, Conn, Measured},
    procs::Proc,
};
use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use redis::AsyncCommands;
use session_client::{ClientConfig, Ops, Protocol, SessionClient};
use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

/// Items put in each cart before page views are measured.
pub const CART_ITEMS: usize = 10;
const ITEMS: [&str; 5] = [
    "NIN CD",
    "JSP Book",
    "Love life",
    "X-files movie",
    "Twin peaks tapes",
];

/// One browser's session on a cart app: its cookies and form token.
struct Shopper {
    /// Every cookie the app set, newest value of each, as a browser keeps them.
    jar: Vec<(String, String)>,
    csrf: String,
}

impl Shopper {
    /// Keeps the cookies `response` sets, as a browser does.
    fn remember(&mut self, response: &load::Response) {
        let set = response
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"));
        for (_, header) in set {
            let pair = header.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            self.jar.retain(|(n, _)| n != name);
            self.jar.push((name.to_owned(), value.to_owned()));
        }
    }

    /// The Cookie header a browser would send.
    fn cookie(&self) -> String {
        let pairs: Vec<String> = self.jar.iter().map(|(n, v)| format!("{n}={v}")).collect();
        pairs.join("; ")
    }
}

async fn shopper(addr: SocketAddr) -> anyhow::Result<(Conn, Shopper)> {
    let mut conn = Conn::open(addr).await?;
    let first = conn.send(&load::get("/Cart", "")).await?;
    let html = first.text();
    let at = html
        .find("name=\"csrf\" value=\"")
        .context("the page has a token")?
        + "name=\"csrf\" value=\"".len();
    let csrf = html[at..].split('"').next().unwrap_or_default().to_owned();
    let mut shopper = Shopper {
        jar: Vec::new(),
        csrf,
    };
    shopper.remember(&first);
    anyhow::ensure!(!shopper.jar.is_empty(), "the first visit sets a cookie");
    Ok((conn, shopper))
}

fn form(item: &str, action: &str, csrf: &str) -> String {
    format!(
        "item={}&submit={action}&csrf={csrf}",
        item.replace(' ', "+").replace('&', "%26")
    )
}

/// `connections` browsers, each with its own session holding a 10-item cart, ready to send
/// `GET /Cart` (or add/remove posts).
pub async fn cart_loads(
    app: &Proc,
    connections: usize,
    posts: bool,
) -> anyhow::Result<Vec<load::Load>> {
    let mut loads = Vec::new();
    for _ in 0..connections {
        let (mut conn, mut s) = shopper(app.addr).await?;
        for i in 0..CART_ITEMS {
            let r = conn
                .send(&load::post_form(
                    "/Cart",
                    &s.cookie(),
                    &form(ITEMS[i % ITEMS.len()], "add", &s.csrf),
                ))
                .await?;
            if r.status != 303 {
                bail!("{}: setting up the cart got {}", app.name, r.status);
            }
            s.remember(&r);
        }
        // The cookies as a browser holds them now: each later request is sent as it is.
        let cookie = s.cookie();
        let requests = if posts {
            vec![
                load::post_form("/Cart", &cookie, &form("NIN CD", "add", &s.csrf)),
                load::post_form("/Cart", &cookie, &form("NIN CD", "remove", &s.csrf)),
            ]
        } else {
            let page = conn.send(&load::get("/Cart", &cookie)).await?;
            if !page
                .text()
                .contains(&format!("Items in Cart: <b id=\"count\">{CART_ITEMS}</b>"))
            {
                bail!(
                    "{}: the cart page does not show {CART_ITEMS} items",
                    app.name
                );
            }
            vec![load::get("/Cart", &cookie)]
        };
        loads.push(load::Load::new(conn, requests));
    }
    Ok(loads)
}

/// A 1 KB value, as the sessions of the raw comparison hold.
pub fn payload() -> Bytes {
    Bytes::from(vec![b'x'; 1024])
}

/// Raw operations: get or apply on random sessions among `sessions`, from `concurrency` callers.
pub struct OpsResult {
    pub get: Measured,
    pub apply: Measured,
}

/// A raw operation on a 1 KB session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    Apply,
}

/// A store under measurement, as its callers reach it.
pub enum Store {
    /// The session server through session-client with no cache, on the sessions `ids`.
    Ours {
        client: SessionClient,
        ids: Arc<Vec<String>>,
    },
    /// Redis hashes `s:0` to `s:{n - 1}` through the `redis` crate, a connection per caller (no
    /// pipelining).
    Redis {
        conns: Vec<redis::aio::MultiplexedConnection>,
        n: usize,
    },
    /// The loopback floor (see [`crate::floor`]): a ping of an apply's size and its pong, for
    /// either operation, from one caller.
    Floor(tokio::sync::Mutex<tokio::net::TcpStream>),
}

impl Store {
    pub fn ours(
        server: SocketAddr,
        protocol: Protocol,
        ids: &Arc<Vec<String>>,
    ) -> anyhow::Result<Self> {
        let client = SessionClient::connect_lazy(ClientConfig {
            endpoints: vec![format!("http://{server}")],
            timeout: Duration::from_secs(5),
            protocol,
            ..ClientConfig::default()
        })?;
        Ok(Self::Ours {
            client,
            ids: Arc::clone(ids),
        })
    }

    pub async fn redis(redis: SocketAddr, n: usize, concurrency: usize) -> anyhow::Result<Self> {
        let client = redis::Client::open(format!("redis://{redis}"))?;
        let mut conns = Vec::new();
        for _ in 0..concurrency {
            conns.push(client.get_multiplexed_async_connection().await?);
        }
        Ok(Self::Redis { conns, n })
    }

    pub async fn floor(echo: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self::Floor(crate::floor::connect(echo).await?.into()))
    }

    /// Call number `i`: an HGETALL or HSET for Redis, a get or apply for ours.
    async fn call(&self, op: Op, i: usize) -> anyhow::Result<()> {
        match self {
            Self::Ours { client, ids } => {
                let id = &ids[i % ids.len()];
                match op {
                    Op::Get => drop(client.get(id).await?),
                    Op::Apply => {
                        let ops = Ops::new().set_bytes(
                            "data",
                            "application/octet-stream",
                            payload(),
                            None,
                        );
                        drop(client.apply(id, ops).await?);
                    }
                }
            }
            Self::Redis { conns, n } => {
                let mut conn = conns[i % conns.len()].clone();
                let key = format!("s:{}", (i * 7919) % n);
                match op {
                    Op::Get => {
                        let _: std::collections::HashMap<String, Vec<u8>> =
                            conn.hgetall(key).await?;
                    }
                    Op::Apply => {
                        let () = conn.hset(key, "data", payload().as_ref()).await?;
                    }
                }
            }
            Self::Floor(stream) => crate::floor::ping(&mut *stream.lock().await).await?,
        }
        Ok(())
    }
}

/// Measures `op` on every store for `duration` each, the stores taking turns (see
/// [`load::in_turns`]). Each store's calls carry on from where its last slice stopped, so the
/// sessions walked are those of one long run.
pub async fn in_turns(
    stores: &[Arc<Store>],
    op: Op,
    concurrency: usize,
    duration: Duration,
) -> Vec<Measured> {
    let mut next = vec![0; stores.len()];
    load::in_turns(stores.len(), duration, async |k, slice| {
        let m = drive(concurrency, slice, next[k], Arc::clone(&stores[k]), op).await;
        next[k] += (m.requests + m.errors) as usize;
        m
    })
    .await
}

/// `op` on our server alone, over `protocol`.
pub async fn ours(
    server: SocketAddr,
    protocol: Protocol,
    ids: &Arc<Vec<String>>,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<OpsResult> {
    let store = [Arc::new(Store::ours(server, protocol, ids)?)];
    let get = in_turns(&store, Op::Get, concurrency, duration)
        .await
        .remove(0);
    let apply = in_turns(&store, Op::Apply, concurrency, duration)
        .await
        .remove(0);
    Ok(OpsResult { get, apply })
}

pub async fn create_sessions(server: SocketAddr, n: usize) -> anyhow::Result<Vec<String>> {
    let client = SessionClient::connect_lazy(ClientConfig {
        endpoints: vec![format!("http://{server}")],
        timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    })?;
    let mut ids = Vec::with_capacity(n);
    let batch = 64;
    for chunk in 0..n.div_ceil(batch) {
        let creates = (0..batch.min(n - chunk * batch)).map(|_| {
            let client = client.clone();
            async move {
                client
                    .create(Ops::new().set_bytes(
                        "data",
                        "application/octet-stream",
                        payload(),
                        None,
                    ))
                    .await
            }
        });
        for created in futures_util::future::join_all(creates).await {
            ids.push(created?.info.id.as_str().to_owned());
        }
    }
    Ok(ids)
}

pub async fn redis_load(redis: SocketAddr, n: usize) -> anyhow::Result<()> {
    let client = redis::Client::open(format!("redis://{redis}"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.hset(format!("s:{i}"), "data", payload().as_ref())
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await?;
    }
    Ok(())
}

pub async fn redis_used_memory(redis: SocketAddr) -> anyhow::Result<u64> {
    let client = redis::Client::open(format!("redis://{redis}"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .context("used_memory in INFO")
}

/// Runs `op` on `store` from `concurrency` callers, each waiting for its answer before the
/// next (caller c makes calls number first + c, first + c + concurrency, ...), for `duration`.
async fn drive(
    concurrency: usize,
    duration: Duration,
    first: usize,
    store: Arc<Store>,
    op: Op,
) -> Measured {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks = (0..concurrency).map(|c| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut hist: Histogram<u64> = load::histogram();
            let (mut ok, mut errors, mut i) = (0u64, 0u64, first + c);
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match store.call(op, i).await {
                    Ok(()) => {
                        ok += 1;
                        let _ = hist.record(t0.elapsed().as_micros() as u64);
                    }
                    Err(_) => errors += 1,
                }
                i += concurrency;
            }
            (ok, errors, hist, ())
        })
    });
    load::collect(started, tasks).await.0
}

/// What opening a connection costs a client: the first call of a fresh client (TCP, TLS if
/// any, the framed handshake, then the call) and a call on the connection then open, each
/// the median of `n` clients, in microseconds.
pub async fn connection_cost(
    url: &str,
    token: Option<session_client::Token>,
    tls: session_client::TlsOptions,
    n: usize,
) -> anyhow::Result<(f64, f64)> {
    let (mut first, mut open) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let client = SessionClient::connect_lazy(ClientConfig {
            endpoints: vec![url.to_owned()],
            timeout: Duration::from_secs(5),
            app: Some("cart".into()),
            token: token.clone(),
            tls: tls.clone(),
            ..ClientConfig::default()
        })?;
        let started = Instant::now();
        let answered = client.get("no such session").await;
        first.push(started.elapsed().as_secs_f64() * 1e6);
        if !matches!(answered, Err(session_client::Error::NotFound)) {
            bail!("{url}: the first call answered {answered:?}");
        }
        let started = Instant::now();
        let _ = client.get("no such session").await;
        open.push(started.elapsed().as_secs_f64() * 1e6);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok((median(first), median(open)))
}
