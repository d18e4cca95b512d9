//! `session-server`: serves sessions (the default) or checks a running server's health.

use anyhow::Context;
use clap::{Parser, Subcommand};
use session_server::{args::ServeArgs, probe, run, shutdown_signal};
use std::{net::SocketAddr, process::ExitCode, time::Duration};
use tokio::net::TcpListener;

/// jemalloc: size classes without per-block headers and less fragmentation across threads
/// than glibc's arenas, which matters when the heap is a million small sessions.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "The session server: HTTP session data shared by every app server."
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Exits 0 only if the server at ADDR answers grpc.health.v1 SERVING.
    Health {
        /// The server's gRPC address.
        #[arg(long, env = "SESSION_SERVER", default_value_t = format!("http://127.0.0.1:{}", session_proto::DEFAULT_PORT))]
        addr: String,
        /// How long to wait for an answer.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread needs no work stealing: the current-thread scheduler skips its bookkeeping.
    let mut runtime = match cli.serve.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        threads => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = threads {
                runtime.worker_threads(threads.into());
            }
            runtime
        }
    };
    match runtime.enable_all().build() {
        Ok(runtime) => runtime.block_on(run_command(cli)),
        Err(e) => {
            eprintln!("session-server: cannot start its runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_command(cli: Cli) -> ExitCode {
    match cli.command {
        Some(Command::Health { addr, timeout }) => match probe::check(&addr, timeout).await {
            Ok(()) => {
                println!("{addr}: SERVING");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("session-server health: {e}");
                ExitCode::FAILURE
            }
        },
        None => match serve(cli.serve).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("session-server: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    session_server::telemetry::init();
    let config = args.config().map_err(anyhow::Error::msg)?;
    let grpc = bind(args.listen, "--listen").await?;
    let admin = bind(args.admin_listen, "--admin-listen").await?;
    tracing::info!(
        grpc = %grpc.local_addr()?,
        admin = %admin.local_addr()?,
        capacity = config.limits.capacity_bytes,
        idle_timeout = ?config.limits.default_idle_timeout,
        max_lifetime = ?config.limits.default_max_lifetime,
        "session-server listening"
    );
    run(grpc, admin, config, shutdown_signal())
        .await
        .context("server stopped with an error")
}

/// Binds with an error that says what to do about the usual causes.
async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "address in use: another process listens there (another session-server?); stop it or pass another {flag}"
            ),
            std::io::ErrorKind::AddrNotAvailable => format!(
                "address not available on this machine; pass an address of one of its interfaces to {flag}"
            ),
            std::io::ErrorKind::PermissionDenied => format!(
                "permission denied; ports below 1024 need privileges, pass a higher port to {flag}"
            ),
            _ => e.to_string(),
        };
        anyhow::anyhow!("cannot listen on {addr}: {hint}")
    })
}
