//! A small HTTP/1.1 keep-alive load generator: one task per connection, each with its own
//! session cookie, requests written from prebuilt bytes and responses parsed just enough to
//! find their end. It spends little CPU, which matters when it shares two cores with the
//! servers it measures.

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
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
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

    pub async fn send(&mut self, request: &[u8]) -> anyhow::Result<Response> {
        self.stream.write_all(request).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> anyhow::Result<Response> {
        self.buf.clear();
        let header_end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at + 4;
            }
            if self.fill().await? == 0 {
                bail!("connection closed before a response");
            }
        };
        let head =
            std::str::from_utf8(&self.buf[..header_end]).context("response head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .context("bad status line")?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(Ok(0), |(_, v)| v.parse())
            .context("bad content-length")?;
        while self.buf.len() < header_end + length {
            if self.fill().await? == 0 {
                bail!("connection closed inside a body");
            }
        }
        let body = self.buf[header_end..header_end + length].to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    async fn fill(&mut self) -> anyhow::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
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

/// Runs every connection for `duration`, each cycling through its requests; a request counts
/// when its response has the expected status.
pub async fn run(conns: Vec<(Conn, Vec<Vec<u8>>)>, expect: u16, duration: Duration) -> Measured {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks = conns.into_iter().map(|(mut conn, requests)| {
        tokio::spawn(async move {
            let mut hist = histogram();
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut i = 0;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match conn.send(&requests[i % requests.len()]).await {
                    Ok(r) if r.status == expect => {
                        ok += 1;
                        let _ = hist.record(t0.elapsed().as_micros() as u64);
                    }
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
                i += 1;
            }
            (ok, errors, hist)
        })
    });
    collect(started, tasks).await
}

/// Joins per-task counts and histograms into one measurement.
pub async fn collect(
    started: Instant,
    tasks: impl Iterator<Item = tokio::task::JoinHandle<(u64, u64, Histogram<u64>)>>,
) -> Measured {
    let mut total = Measured {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency: histogram(),
    };
    for done in futures_util::future::join_all(tasks).await {
        let (ok, errors, hist) = done.expect("load task");
        total.requests += ok;
        total.errors += errors;
        let _ = total.latency.add(hist);
    }
    total.elapsed = started.elapsed();
    total
}
