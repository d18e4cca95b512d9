//! `cart`: serves the sample shop (the default), or checks that a page answers.

use anyhow::Context;
use cart::{config::CartArgs, startup};
use clap::{Parser, Subcommand};
use std::{process::ExitCode, time::Duration};

#[derive(Debug, Parser)]
#[command(version, about = "The shopping-cart sample of clustered sessions.")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    args: CartArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Exits 0 only if URL answers 2xx: a health check for containers without curl.
    Check {
        #[arg(default_value = "http://127.0.0.1:9081/healthz")]
        url: String,
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Check { url, timeout }) => check(&url, timeout).await,
        None => serve(cli.args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cart: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn check(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let status = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?
        .status();
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    println!("{url}: {status}");
    Ok(())
}

async fn serve(args: CartArgs) -> anyhow::Result<()> {
    cart::telemetry::init();
    let settings = args.settings().map_err(anyhow::Error::msg)?;
    let listener = std::net::TcpListener::bind(args.listen).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "address in use: is this instance already running? stop it or pass another --listen"
                    .to_owned()
            }
            _ => e.to_string(),
        };
        anyhow::anyhow!("cannot listen on {}: {hint}", args.listen)
    })?;
    tracing::info!(
        listen = %listener.local_addr()?,
        public_port = settings.public_port,
        peer_port = settings.peer_port,
        sessions = ?settings.mode,
        session_server = %settings.session_servers.join(","),
        "cart listening"
    );
    startup::run(listener, settings)?
        .await
        .context("cart server failed")
}
