//! A small HTTP/1.1 keep-alive load generator: one task per connection, each with its own
//! session cookie, requests written from prebuilt bytes and responses parsed just enough to
//! find their status and end. It shares two cores with the servers it measures, and whatever
//! it spends is spent by every variant alike, which pulls every ratio towards 1; so the
//! measured path reads into one reused buffer and allocates nothing.

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Headers a response may have; the apps measured send fewer than ten.
const MAX_HEADERS: usize = 32;

/// One keep-alive connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Where a response ends in the buffer.
struct Head {
    status: u16,
    body_start: usize,
    body_len: usize,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Sends a request and returns the whole response (for setting up).
    pub async fn send(&mut self, request: &[u8]) -> anyhow::Result<Response> {
        self.stream.write_all(request).await?;
        let head = self.read_response().await?;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        parsed.parse(&self.buf)?;
        Ok(Response {
            status: head.status,
            headers: parsed
                .headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value).into_owned();
                    (h.name.to_owned(), value)
                })
                .collect(),
            body: self.buf[head.body_start..head.body_start + head.body_len].to_vec(),
        })
    }

    /// Sends a request and returns only the response's status (the measured path).
    pub async fn status(&mut self, request: &[u8]) -> anyhow::Result<u16> {
        self.stream.write_all(request).await?;
        Ok(self.read_response().await?.status)
    }

    /// Reads one response into the buffer, which then holds exactly it.
    async fn read_response(&mut self) -> anyhow::Result<Head> {
        self.buf.clear();
        let head = loop {
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed before a response");
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(body_start) = parsed.parse(&self.buf)? {
                let length = parsed
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .unwrap_or(Some(0))
                    .context("bad content-length")?;
                break Head {
                    status: parsed.code.context("no status")?,
                    body_start,
                    body_len: length,
                };
            }
        };
        while self.buf.len() < head.body_start + head.body_len {
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed inside a body");
            }
        }
        Ok(head)
    }
}

pub fn get(path: &str, cookie: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n").into_bytes()
}

pub fn post_form(path: &str, cookie: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Throughput and latency of one run.
#[derive(Debug, Clone)]
pub struct Measured {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Microseconds.
    pub latency: Histogram<u64>,
}

impl Measured {
    pub fn empty() -> Self {
        Self {
            requests: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            latency: histogram(),
        }
    }

    /// Adds `other`, measured in a later slice of the same run, to this one.
    pub fn absorb(&mut self, other: Measured) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(other.latency);
    }

    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn p50_us(&self) -> u64 {
        self.latency.value_at_quantile(0.5)
    }

    pub fn p99_us(&self) -> u64 {
        self.latency.value_at_quantile(0.99)
    }
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// How long a variant runs before the next takes its turn: a shared virtual machine's speed
/// drifts by several percent from one minute to the next, and variants measured a whole run
/// each, one after the other, would each get a different machine, while slices this short
/// give every variant the same.
pub const SLICE: Duration = Duration::from_millis(500);

/// Gives each of `variants` variants `duration` of measurement in all, in turns of [`SLICE`]
/// (the last one cut to fit), each turn begun by the next variant in line: `measure(k, slice)`
/// measures variant `k` for one slice. Returns each variant's measurement.
pub async fn in_turns(
    variants: usize,
    duration: Duration,
    mut measure: impl AsyncFnMut(usize, Duration) -> Measured,
) -> Vec<Measured> {
    let mut measured: Vec<Measured> = (0..variants).map(|_| Measured::empty()).collect();
    let (mut done, mut turn) = (Duration::ZERO, 0);
    while done < duration {
        let slice = SLICE.min(duration - done);
        for k in (0..variants).map(|k| (turn + k) % variants) {
            measured[k].absorb(measure(k, slice).await);
        }
        done += slice;
        turn += 1;
    }
    measured
}

/// One keep-alive connection under load: the requests it sends in turn, and which is next.
pub struct Load {
    conn: Conn,
    requests: Vec<Vec<u8>>,
    next: usize,
}

impl Load {
    pub fn new(conn: Conn, requests: Vec<Vec<u8>>) -> Self {
        Self {
            conn,
            requests,
            next: 0,
        }
    }
}

/// Runs each variant's connections, each cycling through its requests, for `duration` in
/// each of `rounds` rounds, the variants taking turns (see [`in_turns`]); a request counts
/// when its response has the status `expect`. Returns each variant's measurement of each
/// round.
///
/// The connections run on a thread of their own with a single-threaded runtime, as `wrk -t1`
/// does: on a shared multi-threaded runtime, idle workers woken to steal tasks cost more CPU
/// than the requests themselves, CPU the servers measured then lack.
pub async fn run_in_turns(
    variants: Vec<Vec<Load>>,
    expect: u16,
    duration: Duration,
    rounds: usize,
) -> anyhow::Result<Vec<Vec<Measured>>> {
    // A Tokio stream belongs to the runtime that made it: each goes over as a std one.
    let variants = variants
        .into_iter()
        .map(|loads| {
            loads
                .into_iter()
                .map(|l| Ok((l.conn.stream.into_std()?, l.conn.buf, l.requests)))
                .collect::<std::io::Result<Vec<_>>>()
        })
        .collect::<std::io::Result<Vec<_>>>()
        .context("the load generator could not take its connections")?;
    isolated(move || async move {
        let mut variants = variants
            .into_iter()
            .map(|loads| {
                loads
                    .into_iter()
                    .map(|(stream, buf, requests)| {
                        let stream = TcpStream::from_std(stream)?;
                        Ok(Load::new(Conn { stream, buf }, requests))
                    })
                    .collect::<std::io::Result<Vec<_>>>()
            })
            .collect::<std::io::Result<Vec<_>>>()
            .context("the load generator could not take its connections")?;
        let mut measured = vec![Vec::new(); variants.len()];
        for _ in 0..rounds {
            let round = in_turns(variants.len(), duration, async |k, slice| {
                let (m, kept) = run_for(std::mem::take(&mut variants[k]), expect, slice).await;
                variants[k] = kept;
                m
            })
            .await;
            for (runs, m) in measured.iter_mut().zip(round) {
                runs.push(m);
            }
        }
        Ok(measured)
    })
    .await
}

/// Runs `loads` for `duration`; returns the measurement and the connections still open.
async fn run_for(loads: Vec<Load>, expect: u16, duration: Duration) -> (Measured, Vec<Load>) {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks = loads.into_iter().map(|mut load| {
        tokio::spawn(async move {
            let mut hist = histogram();
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut t0 = Instant::now();
            while t0 < deadline {
                let request = &load.requests[load.next % load.requests.len()];
                let result = load.conn.status(request).await;
                let t1 = Instant::now();
                match result {
                    Ok(status) if status == expect => {
                        ok += 1;
                        let _ = hist.record((t1 - t0).as_micros() as u64);
                    }
                    Ok(_) => errors += 1,
                    // The connection is gone: counted, and left out of later slices.
                    Err(_) => return (ok, errors + 1, hist, None),
                }
                load.next += 1;
                t0 = t1;
            }
            (ok, errors, hist, Some(load))
        })
    });
    let (measured, kept) = collect(started, tasks).await;
    (measured, kept.into_iter().flatten().collect())
}

/// Runs `work` on a thread of its own with a single-threaded runtime, as an actix-web worker
/// runs its handlers: the clients measured then hand work between tasks, not between threads.
pub async fn isolated<F, Fut, T>(work: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
    T: Send + 'static,
{
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(work()));
        let _ = done_tx.send(result);
    });
    done_rx
        .await
        .context("the measuring thread ended without a result")?
}

/// Joins per-task counts and histograms into one measurement, and hands back what else each
/// task returned.
pub async fn collect<T>(
    started: Instant,
    tasks: impl Iterator<Item = tokio::task::JoinHandle<(u64, u64, Histogram<u64>, T)>>,
) -> (Measured, Vec<T>) {
    let mut total = Measured::empty();
    let mut rest = Vec::new();
    for done in futures_util::future::join_all(tasks).await {
        let (ok, errors, hist, other) = done.expect("load task");
        total.requests += ok;
        total.errors += errors;
        let _ = total.latency.add(hist);
        rest.push(other);
    }
    total.elapsed = started.elapsed();
    (total, rest)
}
