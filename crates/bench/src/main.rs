//! `bench`: measures the cart and the session service side by side with what an actix-web
//! user would pick instead (actix-session with Redis) and with in-process sessions, in one run,
//! and prints (and with `--write`, records in docs/performance.md) the figures and ratios.
//!
//! ```sh
//! cargo run --release -p bench -- --quick      # under a minute, figures only (CI smoke test)
//! cargo run --release -p bench -- --write      # the full run that docs/performance.md reports
//! ```

// A measuring tool run by hand and in CI, never on a request path: it stops with the reason.
#![allow(clippy::expect_used)]

mod attacks;
mod churn;
mod durable;
mod floor;
mod load;
mod procs;
mod redis_cart;
mod report;
mod scenarios;
mod spans;

use clap::{Parser, Subcommand, ValueEnum};
use load::Measured;
use report::{Comparison, Report, Row};
use scenarios::{Op, Store};
use session_client::Protocol;
use std::{net::SocketAddr, sync::Arc, time::Duration};

#[derive(Debug, Parser)]
#[command(about = "Side-by-side benchmark of clustered sessions.")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Short runs and small data: a smoke test that finishes in under a minute.
    #[arg(long)]
    quick: bool,
    /// Seconds per measurement (default 10, or 2 with --quick).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Concurrent HTTP connections, each with its own session.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Sessions for the memory and scale measurements (default 1,000,000, or 50,000 with --quick).
    #[arg(long)]
    sessions: Option<usize>,
    /// Rounds of the cart and raw-operation measurements (default 3, or 1 with --quick): in
    /// each round the variants take turns in half-second slices, so that drift in the
    /// machine's speed falls on all of them alike, and the median round counts.
    #[arg(long)]
    rounds: Option<usize>,
    /// Run only these parts (repeatable); all by default.
    #[arg(long, value_enum)]
    only: Vec<Part>,
    /// How long the churn part runs (default an hour, or a minute with --quick).
    #[arg(long, value_parser = humantime::parse_duration)]
    churn: Option<Duration>,
    /// Write the results into docs/performance.md and docs/images/performance.svg.
    #[arg(long)]
    write: bool,
}

/// The parts of a run, by the targets they measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// Targets 1 and 2: cart page views and adds, three ways.
    Cart,
    /// Target 3: raw get and apply against Redis.
    Ops,
    /// Targets 4 and 5: memory and latency with many sessions.
    Memory,
    /// No target: a lone caller's reads while the server is under each hostile input.
    Attacks,
    /// Cart page views and adds with the binaries the sample scripts and the images build
    /// (profile `sample`) against the fully optimised ones (`release`).
    Profiles,
    /// No target of the issues' list, one of the code's: what the `debug` spans on every call
    /// cost while logs are at `info` (under 2% of the cheapest call).
    Spans,
    /// Cart page views and adds with the session server's TLS and an app token, against
    /// plaintext, and what opening a connection costs each.
    Tls,
    /// The durable store: the cart on it beside the memory store, raw applies beside Redis
    /// with its AOF (everysec and always), and a restart with many sessions beside Redis's.
    Durable,
    /// Disk space of the durable store under an hour of steady churn (`--churn` long); only
    /// when asked for by `--only churn`.
    Churn,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The actix-session + Redis variant of the cart page (started by the benchmark itself).
    #[command(hide = true)]
    RedisCart {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        redis: String,
    },
    /// The loopback floor's answering server (started by the benchmark itself).
    #[command(hide = true)]
    EchoServer {
        #[arg(long)]
        listen: SocketAddr,
    },
}

/// The run with the median throughput.
fn median(mut runs: Vec<Measured>) -> Measured {
    runs.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
    let middle = runs.len() / 2;
    runs.swap_remove(middle)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::RedisCart { listen, redis }) => {
            let catalog = std::path::Path::new(procs::ROOT).join("samples/cart");
            return actix_web::rt::System::new()
                .block_on(redis_cart::serve(listen, redis, catalog, 9082));
        }
        Some(Command::EchoServer { listen }) => {
            return tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(floor::serve(listen));
        }
        None => {}
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let duration = cli
        .duration
        .unwrap_or(Duration::from_secs(if cli.quick { 2 } else { 10 }));
    if cli.write && !cli.only.is_empty() {
        anyhow::bail!("--write records a whole run: leave out --only");
    }
    // Churn takes an hour: only when asked for by name.
    let wanted = |part| (cli.only.is_empty() && part != Part::Churn) || cli.only.contains(&part);
    let rounds = cli.rounds.unwrap_or(if cli.quick { 1 } else { 3 }).max(1);
    let mut report = Report::new(duration, cli.connections, rounds);
    if wanted(Part::Spans) {
        eprintln!("the cost of disabled spans...");
        let (spans, get) = spans::measure(rounds).await?;
        eprintln!("two disabled spans: {spans:.1} ns a call; an in-process get: {get:.0} ns");
        report.comparisons.push(Comparison::at_most(
            "spans: two disabled / an in-process get",
            spans,
            get,
            0.02,
        ));
        // Nothing else asked for (an empty --only asks for everything).
        if !cli.only.is_empty() && cli.only.iter().all(|p| *p == Part::Spans) {
            print!("{}", report.text());
            return Ok(());
        }
    }
    let big = cli
        .sessions
        .unwrap_or(if cli.quick { 50_000 } else { 1_000_000 });
    let small = 10_000.min(big);
    eprintln!("building release binaries...");
    let release = procs::build_release()?;

    if wanted(Part::Churn) {
        let length = cli
            .churn
            .unwrap_or(Duration::from_secs(if cli.quick { 60 } else { 3600 }));
        churn::measure(&release, length, &mut report).await?;
    }
    let redis = procs::redis_server()?;
    if wanted(Part::Cart) {
        cart(&cli, &release, &redis, duration, rounds, &mut report).await?;
    }
    if wanted(Part::Profiles) {
        profiles(&cli, &release, duration, rounds, &mut report).await?;
    }
    if wanted(Part::Tls) {
        tls(&cli, &release, duration, rounds, &mut report).await?;
    }
    if wanted(Part::Durable) {
        durable::cart(&cli, &release, duration, rounds, &mut report).await?;
        durable::ops(&release, small, duration, rounds, &mut report).await?;
        durable::restart(&release, big, &mut report).await?;
    }
    let server = procs::session_server(&release, "4GiB")?;
    let mut ids = Vec::new();
    if wanted(Part::Ops) || wanted(Part::Memory) || wanted(Part::Attacks) {
        eprintln!("creating {small} sessions of 1 KB...");
        ids = scenarios::create_sessions(server.addr, small).await?;
    }
    if wanted(Part::Ops) {
        ops(&server, &redis, &ids, duration, rounds, &mut report).await?;
    }
    if wanted(Part::Attacks) {
        // A server of its own, so that the attacks leave the others' figures alone.
        let attacked = procs::session_server(&release, "4GiB")?;
        let bystander =
            Arc::new(scenarios::create_sessions(attacked.addr, small.min(1_000)).await?);
        for (attack, m) in attacks::measure(attacked.addr, &bystander, duration).await? {
            let label = "get (c=1) during an attack";
            report.rows.push(Row::new(label, attack, 1, &m));
        }
    }
    if wanted(Part::Memory) {
        memory(&server, &redis, ids, big, duration, &mut report).await?;
    }

    print!("{}", report.text());
    if cli.write {
        report.write()?;
        eprintln!("wrote docs/performance.md and docs/images/performance.svg");
    }
    Ok(())
}

const PAGE_VIEW: &str = "GET /Cart (10-item cart)";
const ADD: &str = "POST /Cart (add/remove, CSRF)";

/// 1 and 2: the cart page and the add, three ways.
async fn cart(
    cli: &Cli,
    release: &procs::Build,
    redis: &procs::Proc,
    duration: Duration,
    rounds: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let server = procs::session_server(release, "4GiB")?;
    let local = procs::cart(release, "cart (local)", "local", None)?;
    let clustered = procs::cart(release, "cart (clustered)", "clustered", Some(server.addr))?;
    let with_redis = procs::redis_cart(redis.addr)?;
    cart_rows(
        cli,
        &[&local, &clustered, &with_redis],
        duration,
        rounds,
        report,
    )
    .await?;
    let view = |name: &str| report.rps(PAGE_VIEW, name);
    let post = |name: &str| report.rps(ADD, name);
    let comparisons = vec![
        Comparison::at_least(
            "1. page view: clustered / local",
            view("cart (clustered)"),
            view("cart (local)"),
            0.8,
        ),
        Comparison::at_least(
            "1. page view: clustered / actix-session + Redis",
            view("cart (clustered)"),
            view("cart (actix-session + Redis)"),
            1.3,
        ),
        Comparison::at_least(
            "2. add: clustered / actix-session + Redis",
            post("cart (clustered)"),
            post("cart (actix-session + Redis)"),
            1.0,
        ),
    ];
    let ceiling = format!(
        "For reference, page view local / actix-session + Redis: {:.2} (sessions in the app's own memory, no network at all: the most a clustered page can reach).",
        view("cart (local)") / view("cart (actix-session + Redis)").max(f64::MIN_POSITIVE)
    );
    report.comparisons.extend(comparisons);
    report.notes.push(ceiling);
    Ok(())
}

/// The page view and the add on each of `apps`, the apps taking turns.
async fn cart_rows(
    cli: &Cli,
    apps: &[&procs::Proc],
    duration: Duration,
    rounds: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    for (posts, scenario) in [(false, PAGE_VIEW), (true, ADD)] {
        // All set up before any runs: the first app's connections wait out the others' setup
        // (under a second here), well within actix-web's keep-alive; a connection closed
        // meanwhile would show in the errors column.
        let mut variants = Vec::new();
        for app in apps {
            variants.push(scenarios::cart_loads(app, cli.connections, posts).await?);
        }
        eprintln!(
            "{scenario}: {} apps in turns, {rounds} rounds...",
            apps.len()
        );
        let expect = if posts { 303 } else { 200 };
        let measured = load::run_in_turns(variants, expect, duration, rounds).await?;
        for (app, runs) in apps.iter().zip(measured) {
            let m = median(runs);
            report
                .rows
                .push(Row::new(scenario, &app.name, cli.connections, &m));
        }
    }
    Ok(())
}

/// No target of the project's own: the build a newcomer runs (the scripts' and the images'
/// `sample` profile) against the fully optimised one, clustered, each with its own server.
/// The first-hour issue asked for pages and adds within 10%.
async fn profiles(
    cli: &Cli,
    release: &procs::Build,
    duration: Duration,
    rounds: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    eprintln!("building the sample profile as the scripts do...");
    let sample = procs::build_sample()?;
    let mut servers = Vec::new();
    let mut apps = Vec::new();
    for build in [release, &sample] {
        let server = procs::session_server(build, "4GiB")?;
        let name = format!("cart (clustered, {} build)", build.profile);
        apps.push(procs::cart(build, &name, "clustered", Some(server.addr))?);
        servers.push(server);
    }
    cart_rows(
        cli,
        &apps.iter().collect::<Vec<_>>(),
        duration,
        rounds,
        report,
    )
    .await?;
    for (scenario, what) in [(PAGE_VIEW, "page view"), (ADD, "add")] {
        report.comparisons.push(Comparison::at_least(
            &format!("build profiles, {what}: sample / release"),
            report.rps(scenario, "cart (clustered, sample build)"),
            report.rps(scenario, "cart (clustered, release build)"),
            0.9,
        ));
    }
    Ok(())
}

/// The issue of authentication and TLS asked for: the cart with the session server's TLS and
/// the carts' token, beside plaintext (page view at least 0.95x, add at least 0.9x), each with
/// its own server; and what a connection's opening costs with and without TLS.
async fn tls(
    cli: &Cli,
    release: &procs::Build,
    duration: Duration,
    rounds: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let secrets = procs::Secrets::make(release)?;
    let plain_server = procs::session_server(release, "4GiB")?;
    let flags = |pairs: &[(&str, &str)]| -> Vec<String> {
        pairs
            .iter()
            .flat_map(|(flag, file)| [flag.to_string(), secrets.path(file)])
            .collect()
    };
    let tls_server = procs::session_server_with(
        release,
        "4GiB",
        &flags(&[
            ("--auth-file", "auth"),
            ("--tls-cert", "server.pem"),
            ("--tls-key", "server.key"),
        ]),
    )?;
    let tls_url = format!("https://{}", tls_server.addr);
    let plain = procs::cart(
        release,
        "cart (clustered, plaintext)",
        "clustered",
        Some(plain_server.addr),
    )?;
    let secured = procs::cart_with(
        release,
        "cart (clustered, TLS + token)",
        "clustered",
        Some(&tls_url),
        &flags(&[
            ("--session-ca", "ca.pem"),
            ("--session-token-file", "cart.token"),
        ]),
    )?;
    cart_rows(cli, &[&plain, &secured], duration, rounds, report).await?;
    for (scenario, what, target) in [(PAGE_VIEW, "page view", 0.95), (ADD, "add", 0.9)] {
        report.comparisons.push(Comparison::at_least(
            &format!("TLS + token, {what}: TLS / plaintext"),
            report.rps(scenario, "cart (clustered, TLS + token)"),
            report.rps(scenario, "cart (clustered, plaintext)"),
            target,
        ));
    }

    eprintln!("what a connection's opening costs...");
    let clients = if cli.quick { 50 } else { 300 };
    let plain_url = format!("http://{}", plain_server.addr);
    let none = session_client::TlsOptions::default();
    let (plain_first, plain_open) =
        scenarios::connection_cost(&plain_url, None, none, clients).await?;
    let token =
        session_client::Token::from_file(std::path::Path::new(&secrets.path("cart.token")))?;
    let ca = session_client::TlsOptions::from_files(
        Some(std::path::Path::new(&secrets.path("ca.pem"))),
        None,
    )?;
    let (tls_first, tls_open) =
        scenarios::connection_cost(&tls_url, Some(token), ca, clients).await?;
    report.notes.push(format!(
        "Opening a connection (a fresh client's first call less a call on the open connection, median of {clients}): \
         plaintext with the handshake {:.0} µs ({plain_first:.0} µs, then {plain_open:.0} µs a call), \
         TLS with the handshake and a token {:.0} µs ({tls_first:.0} µs, then {tls_open:.0} µs a call).",
        plain_first - plain_open,
        tls_first - tls_open,
    ));
    Ok(())
}

/// 3: raw operations, no client cache, on `ids` (sessions of 1 KB).
async fn ops(
    server: &procs::Proc,
    redis: &procs::Proc,
    ids: &[String],
    duration: Duration,
    rounds: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let small = ids.len();
    let ids = Arc::new(ids.to_vec());
    scenarios::redis_load(redis.addr, small).await?;
    let echo = procs::echo_server()?;
    let mut floor = Vec::new();
    for concurrency in [1, 64] {
        let mut runs = [(); 6].map(|_| Vec::new());
        for round in 1..=rounds {
            eprintln!(
                "session operations at concurrency {concurrency} (round {round} of {rounds})..."
            );
            // Ours and Redis take turns within the round, and with them, for a lone caller's
            // applies, the loopback floor; the same calls over the gRPC pipeline (no target)
            // run after them.
            let (get, mut apply) = load::isolated({
                let (addr, redis, echo, ids) =
                    (server.addr, redis.addr, echo.addr, Arc::clone(&ids));
                move || async move {
                    let mut stores = vec![
                        Arc::new(Store::ours(addr, Protocol::Framed, &ids)?),
                        Arc::new(Store::redis(redis, small, concurrency).await?),
                    ];
                    let get = scenarios::in_turns(&stores, Op::Get, concurrency, duration).await;
                    if concurrency == 1 {
                        stores.push(Arc::new(Store::floor(echo).await?));
                    }
                    let apply =
                        scenarios::in_turns(&stores, Op::Apply, concurrency, duration).await;
                    anyhow::Ok((get, apply))
                }
            })
            .await?;
            if concurrency == 1 {
                floor.extend(apply.pop());
            }
            let over_grpc = load::isolated({
                let (addr, ids) = (server.addr, Arc::clone(&ids));
                move || async move {
                    scenarios::ours(addr, Protocol::Grpc, &ids, concurrency, duration).await
                }
            })
            .await?;
            let both = |m: Vec<Measured>| <[Measured; 2]>::try_from(m).expect("ours and Redis");
            let ([get, their_get], [apply, their_apply]) = (both(get), both(apply));
            for (runs, m) in runs.iter_mut().zip([
                get,
                apply,
                their_get,
                their_apply,
                over_grpc.get,
                over_grpc.apply,
            ]) {
                runs.push(m);
            }
        }
        let [get, apply, their_get, their_apply, grpc_get, grpc_apply] = runs.map(median);
        let ours = scenarios::OpsResult { get, apply };
        let theirs = scenarios::OpsResult {
            get: their_get,
            apply: their_apply,
        };
        for (op, command, mine, other, grpc) in [
            ("get", "Redis HGETALL", &ours.get, &theirs.get, &grpc_get),
            (
                "apply",
                "Redis HSET",
                &ours.apply,
                &theirs.apply,
                &grpc_apply,
            ),
        ] {
            let label = format!("{op} (c={concurrency}, {small} sessions)");
            report
                .rows
                .push(Row::new(&label, "session-server", concurrency, mine));
            // The same calls over the gRPC pipeline, for comparison (no target).
            report.rows.push(Row::new(
                &label,
                "session-server, gRPC pipeline",
                concurrency,
                grpc,
            ));
            report
                .rows
                .push(Row::new(&label, command, concurrency, other));
            report.comparisons.push(Comparison::at_least(
                &format!("3. {op} throughput c={concurrency}: ours / Redis"),
                mine.per_second(),
                other.per_second(),
                1.0,
            ));
        }
        if concurrency == 1 {
            // No target: what a lone caller of any store pays before the store does anything.
            report.rows.push(Row::new(
                "ping-pong (c=1, 1.1 KB out, 64 B back)",
                "TCP, loopback floor",
                1,
                &median(std::mem::take(&mut floor)),
            ));
            report.comparisons.push(Comparison::at_most(
                "3. get p50 c=1: ours / Redis",
                ours.get.p50_us() as f64,
                theirs.get.p50_us() as f64,
                1.2,
            ));
            report.small_get = Some(ours.get);
        }
    }
    Ok(())
}

/// 4 and 5: memory at `big` sessions, and get latency there against `small` (the sessions
/// already in `ids`, measured by [`ops`] when it ran).
async fn memory(
    server: &procs::Proc,
    redis: &procs::Proc,
    mut ids: Vec<String>,
    big: usize,
    duration: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    let small = ids.len();
    eprintln!("creating {big} sessions of 1 KB (memory and scale)...");
    ids.extend(scenarios::create_sessions(server.addr, big - small).await?);
    let all = Arc::new(ids);
    let rss = server.rss_bytes()?;
    scenarios::redis_load(redis.addr, big).await?;
    let redis_mem = scenarios::redis_used_memory(redis.addr).await?;
    let payload = (big * 1024) as f64;
    report.memory = Some((big, rss, redis_mem));
    report.comparisons.push(Comparison::at_most(
        &format!("4. memory: server RSS / payload ({big} x 1 KB)"),
        rss as f64,
        payload,
        1.3,
    ));
    report.comparisons.push(Comparison::at_most(
        "4. memory: server RSS / Redis used_memory",
        rss as f64,
        redis_mem as f64,
        1.0,
    ));
    // Measured as the 10k-session figure it is compared with was.
    let at_big = load::isolated({
        let addr = server.addr;
        move || async move { scenarios::ours(addr, Protocol::default(), &all, 1, duration).await }
    })
    .await?
    .get;
    report.rows.push(Row::new(
        &format!("get (c=1, {big} sessions)"),
        "session-server",
        1,
        &at_big,
    ));
    if let Some(at_small) = &report.small_get {
        report.comparisons.push(Comparison::at_most(
            &format!("5. get p50 at {big} / at {small}"),
            at_big.p50_us() as f64,
            at_small.p50_us() as f64,
            1.1,
        ));
        report.comparisons.push(Comparison::at_most(
            &format!("5. get p99 at {big} / at {small}"),
            at_big.p99_us() as f64,
            at_small.p99_us() as f64,
            1.1,
        ));
    }
    Ok(())
}
