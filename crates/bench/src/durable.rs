//! The durable store's targets (issue "Durable sessions"): the cart with `durable --fsync
//! everysec` beside `memory`, raw applies beside Redis with its append-only file at the same
//! sync policy, and a restart with many sessions beside Redis loading its AOF.

use crate::{
    ADD, Cli, PAGE_VIEW, cart_rows, load, median, procs,
    report::{Comparison, Report, Row},
    scenarios::{self, Op, Store},
};
use anyhow::Context;
use session_client::{ClientConfig, Protocol, SessionClient};
use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

/// The cart on a durable server beside one on a memory server, and beside local sessions.
pub async fn cart(
    cli: &Cli,
    release: &procs::Build,
    duration: Duration,
    rounds: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let data = procs::TempDir::new("durable-cart");
    let memory = procs::session_server(release, "4GiB")?;
    let durable = procs::durable_server(release, procs::free_addr(), &data, "everysec")?;
    let local = procs::cart(release, "cart (local)", "local", None)?;
    let on_memory = procs::cart(
        release,
        "cart (clustered, memory store)",
        "clustered",
        Some(memory.addr),
    )?;
    let on_durable = procs::cart(
        release,
        "cart (clustered, durable everysec)",
        "clustered",
        Some(durable.addr),
    )?;
    cart_rows(
        cli,
        &[&local, &on_memory, &on_durable],
        duration,
        rounds,
        report,
    )
    .await?;
    report.comparisons.push(Comparison::at_least(
        "durable: add, durable everysec / memory",
        report.rps(ADD, "cart (clustered, durable everysec)"),
        report.rps(ADD, "cart (clustered, memory store)"),
        0.9,
    ));
    report.comparisons.push(Comparison::at_least(
        "durable: page view, clustered (durable everysec) / local",
        report.rps(PAGE_VIEW, "cart (clustered, durable everysec)"),
        report.rps(PAGE_VIEW, "cart (local)"),
        0.95,
    ));
    Ok(())
}

/// Raw applies at c=64 on `small` sessions of 1 KB: the durable store against Redis with
/// `appendonly yes`, at `everysec` and at `always`, each pair taking turns.
pub async fn ops(
    release: &procs::Build,
    small: usize,
    duration: Duration,
    rounds: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    const CONCURRENCY: usize = 64;
    for fsync in ["everysec", "always"] {
        let data = procs::TempDir::new(&format!("durable-ops-{fsync}"));
        let aof = procs::TempDir::new(&format!("redis-aof-{fsync}"));
        std::fs::create_dir_all(&aof.0)?;
        let server = procs::durable_server(release, procs::free_addr(), &data, fsync)?;
        let redis = procs::redis_with_aof(procs::free_addr(), &aof.0, fsync)?;
        eprintln!("durable {fsync}: creating {small} sessions of 1 KB on each...");
        let ids = Arc::new(scenarios::create_sessions(server.addr, small).await?);
        scenarios::redis_load(redis.addr, small).await?;
        let mut runs = [Vec::new(), Vec::new()];
        for round in 1..=rounds {
            eprintln!("apply c={CONCURRENCY}, fsync {fsync} (round {round} of {rounds})...");
            let measured = load::isolated({
                let (addr, redis, ids) = (server.addr, redis.addr, Arc::clone(&ids));
                move || async move {
                    let stores = vec![
                        Arc::new(Store::ours(addr, Protocol::Framed, &ids)?),
                        Arc::new(Store::redis(redis, small, CONCURRENCY).await?),
                    ];
                    anyhow::Ok(scenarios::in_turns(&stores, Op::Apply, CONCURRENCY, duration).await)
                }
            })
            .await?;
            for (runs, m) in runs.iter_mut().zip(measured) {
                runs.push(m);
            }
        }
        let [ours, theirs] = runs.map(median);
        let label = format!("apply (c={CONCURRENCY}, {small} sessions, fsync {fsync})");
        report.rows.push(Row::new(
            &label,
            &format!("session-server, durable {fsync}"),
            CONCURRENCY,
            &ours,
        ));
        report.rows.push(Row::new(
            &label,
            &format!("Redis HSET, appendfsync {fsync}"),
            CONCURRENCY,
            &theirs,
        ));
        report.comparisons.push(Comparison::at_least(
            &format!("durable: apply c={CONCURRENCY}, {fsync}: ours / Redis AOF"),
            ours.per_second(),
            theirs.per_second(),
            1.0,
        ));
    }
    Ok(())
}

/// A restart with `big` sessions of 1 KB: how long until the first Get is answered, and the
/// RSS then, beside Redis loading the same data from its AOF.
pub async fn restart(
    release: &procs::Build,
    big: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let data = procs::TempDir::new("durable-restart");
    let addr = procs::free_addr();
    let server = procs::durable_server(release, addr, &data, "everysec")?;
    eprintln!("restart: creating {big} sessions of 1 KB on a durable server...");
    let ids = scenarios::create_sessions(server.addr, big).await?;
    server.stop()?;
    let disk = dir_bytes(&data.0);
    let started = Instant::now();
    let server = procs::durable_server(release, addr, &data, "everysec")?;
    first_get(addr, &ids[ids.len() / 2]).await?;
    let ours = started.elapsed();
    let ours_rss = server.rss_bytes()?;
    drop(server);

    let aof = procs::TempDir::new("redis-restart");
    std::fs::create_dir_all(&aof.0)?;
    let redis_addr = procs::free_addr();
    let redis = procs::redis_with_aof(redis_addr, &aof.0, "everysec")?;
    eprintln!("restart: loading {big} hashes of 1 KB into Redis with its AOF...");
    scenarios::redis_load(redis.addr, big).await?;
    redis.stop()?;
    let started = Instant::now();
    let redis = procs::redis_with_aof(redis_addr, &aof.0, "everysec")?;
    redis_first_get(redis_addr, big / 2).await?;
    let theirs = started.elapsed();
    let redis_rss = redis.rss_bytes()?;

    let payload = (big * 1024) as f64;
    report.notes.push(format!(
        "Restart with {big} sessions of 1 KB (time from start to the first answered get; RSS then): \
         durable store {:.2} s, RSS {} ({} on disk); Redis loading its AOF {:.2} s, RSS {}.",
        ours.as_secs_f64(),
        mib(ours_rss),
        mib(disk),
        theirs.as_secs_f64(),
        mib(redis_rss),
    ));
    report.comparisons.push(Comparison::at_most(
        "durable: restart, time to the first get: ours / Redis AOF",
        ours.as_secs_f64(),
        theirs.as_secs_f64(),
        1.0,
    ));
    report.comparisons.push(Comparison::at_most(
        &format!("durable: restart, RSS / payload ({big} x 1 KB)"),
        ours_rss as f64,
        payload,
        1.3,
    ));
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Bytes of the files under `dir`.
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Gets `id` until it is answered (within five minutes).
async fn first_get(addr: SocketAddr, id: &str) -> anyhow::Result<()> {
    let client = SessionClient::connect_lazy(ClientConfig {
        endpoints: vec![format!("http://{addr}")],
        timeout: Duration::from_secs(2),
        ..ClientConfig::default()
    })?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        match client.get(id).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e).context("no answered get within 5 minutes of the restart");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// HGETALLs hash `n` until Redis answers it (it says LOADING meanwhile).
async fn redis_first_get(addr: SocketAddr, n: usize) -> anyhow::Result<()> {
    let client = redis::Client::open(format!("redis://{addr}"))?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let answer = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            let found: std::collections::HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
                .arg(format!("s:{n}"))
                .query_async(&mut conn)
                .await?;
            anyhow::Ok(found)
        }
        .await;
        match answer {
            Ok(found) if !found.is_empty() => return Ok(()),
            Ok(_) => anyhow::bail!("Redis came back without s:{n}"),
            Err(e) if Instant::now() > deadline => {
                return Err(e).context("Redis answered no get within 5 minutes of its restart");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}
