//! What the `debug` spans on every call cost with logs at `info` (the default, where they are
//! off): a call wrapped in a span declared as the client's and the server's are, against the
//! same call without, next to the cheapest real call there is, a get from a session service
//! in this process (no network). A call crosses two spans, one in the app and one in the
//! server.

use session_client::{Ops, SessionClient};
use session_server::{Engine, config::ServerConfig};
use std::{fmt, hint::black_box, sync::Arc, time::Instant};

/// Calls measured each way, per round.
const CALLS: u32 = 5_000_000;
const GETS: u32 = 200_000;

/// Shows an id as the spans do: its first characters.
struct Prefix<'a>(&'a str);

impl fmt::Display for Prefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", &self.0[..8.min(self.0.len())])
    }
}

#[tracing::instrument(level = "debug", name = "session_call", skip_all, fields(op = "get", session = %Prefix(id)))]
#[inline(never)]
async fn spanned(id: &str) -> usize {
    black_box(id.len())
}

#[inline(never)]
async fn plain(id: &str) -> usize {
    black_box(id.len())
}

/// Nanoseconds per call: `(two disabled spans, an in-process get)`, the best of `rounds`.
pub async fn measure(rounds: usize) -> anyhow::Result<(f64, f64)> {
    // As the binaries run by default: a global subscriber, whose filter leaves spans off.
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .finish();
    tracing::subscriber::set_global_default(subscriber)?;
    let id = "Ab3dE9xQ-an-id-of-43-characters-as-the-server-makes";
    let (mut span_ns, mut get_ns) = (f64::MAX, f64::MAX);
    let engine = Engine::new(&ServerConfig::default());
    let client = SessionClient::in_process(Arc::new(engine.service()));
    let session = client
        .create(Ops::new().set_json("data", &"x".repeat(1000))?)
        .await?
        .info
        .id;
    for _ in 0..rounds {
        let started = Instant::now();
        for _ in 0..CALLS {
            black_box(plain(black_box(id)).await);
        }
        let without = started.elapsed().as_nanos() as f64 / f64::from(CALLS);
        let started = Instant::now();
        for _ in 0..CALLS {
            black_box(spanned(black_box(id)).await);
        }
        let with = started.elapsed().as_nanos() as f64 / f64::from(CALLS);
        span_ns = span_ns.min(2.0 * (with - without).max(0.0));

        let started = Instant::now();
        for _ in 0..GETS {
            black_box(client.get(&session).await?);
        }
        get_ns = get_ns.min(started.elapsed().as_nanos() as f64 / f64::from(GETS));
    }
    Ok((span_ns, get_ns))
}
