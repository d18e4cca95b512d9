//! Disk space under steady churn (issue "Durable sessions": after an hour of churn, disk use
//! stays under 2x the live payload). A durable server holds a steady set of live sessions of
//! 1 KB while new ones are created, the oldest invalidated and the others rewritten; the data
//! directory's size is sampled every minute. Run by `--only churn` (an hour by default).

use crate::{
    durable::dir_bytes,
    procs,
    report::{Comparison, Report},
    scenarios::payload,
};
use session_client::{ClientConfig, Ops, SessionClient};
use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// Sessions alive at any time.
const LIVE: usize = 200_000;
/// Sessions replaced (one created, the oldest invalidated) per second.
const REPLACED_PER_SECOND: usize = 500;
/// Sessions rewritten (their 1 KB attribute set anew) per second.
const REWRITTEN_PER_SECOND: usize = 2_000;

pub async fn measure(
    release: &procs::Build,
    length: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    let data = procs::TempDir::new("durable-churn");
    let server = procs::durable_server(release, procs::free_addr(), &data, "everysec")?;
    let client = SessionClient::connect_lazy(ClientConfig {
        endpoints: vec![format!("http://{}", server.addr)],
        timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    })?;
    let one = || Ops::new().set_bytes("data", "application/octet-stream", payload(), None);
    let mut live: VecDeque<String> = VecDeque::with_capacity(LIVE);
    for ids in crate::scenarios::create_sessions(server.addr, LIVE).await? {
        live.push_back(ids);
    }
    let payload_bytes = (LIVE * 1024) as u64;
    eprintln!(
        "churn: {LIVE} live sessions of 1 KB, {REPLACED_PER_SECOND} replaced and {REWRITTEN_PER_SECOND} rewritten a second, for {}",
        humantime::format_duration(length)
    );
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut next_sample = started;
    let mut second = 0u64;
    let (mut written, mut rewrite_at) = (0u64, 0usize);
    while started.elapsed() < length {
        let tick = started + Duration::from_secs(second);
        tokio::time::sleep_until(tick.into()).await;
        second += 1;
        let mut calls = Vec::new();
        for _ in 0..REPLACED_PER_SECOND {
            let (c, old) = (client.clone(), live.pop_front().expect("live sessions"));
            calls.push(tokio::spawn(async move {
                c.invalidate(&old).await.map(|()| None)
            }));
            let (c, ops) = (client.clone(), one());
            calls.push(tokio::spawn(async move {
                c.create(ops)
                    .await
                    .map(|w| Some(w.info.id.as_str().to_owned()))
            }));
        }
        for _ in 0..REWRITTEN_PER_SECOND {
            rewrite_at = (rewrite_at + 7919) % live.len();
            let (client, id, ops) = (client.clone(), live[rewrite_at].clone(), one());
            calls.push(tokio::spawn(async move {
                client.apply(&id, ops).await.map(|_| None)
            }));
        }
        for call in calls {
            if let Some(id) = call.await?? {
                live.push_back(id);
            }
            written += 1;
        }
        if Instant::now() >= next_sample {
            let disk = dir_bytes(&data.0);
            eprintln!(
                "churn: {:>4} s, {written} writes, disk {:.1} MiB = {:.2}x the live payload",
                started.elapsed().as_secs(),
                disk as f64 / 1048576.0,
                disk as f64 / payload_bytes as f64
            );
            samples.push(disk);
            next_sample += Duration::from_secs(60);
        }
    }
    let last = dir_bytes(&data.0);
    let most = samples.iter().copied().chain([last]).max().unwrap_or(last);
    report.notes.push(format!(
        "Churn for {} ({LIVE} live sessions of 1 KB = {:.1} MiB of payload, {written} writes): disk {:.1} MiB at the end ({:.2}x), at most {:.1} MiB ({:.2}x) over the run's samples.",
        humantime::format_duration(length),
        payload_bytes as f64 / 1048576.0,
        last as f64 / 1048576.0,
        last as f64 / payload_bytes as f64,
        most as f64 / 1048576.0,
        most as f64 / payload_bytes as f64,
    ));
    report.comparisons.push(Comparison::at_most(
        "durable: disk after churn / live payload",
        last as f64,
        payload_bytes as f64,
        2.0,
    ));
    Ok(())
}
