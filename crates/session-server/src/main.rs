//! `session-server`: serves sessions (the default) or checks a running server's health.

use clap::{Parser, Subcommand};
use session_server::{
    Engine,
    args::{ServeArgs, StoreKind},
    config::ServerConfig,
    events::EventLog,
    probe, reload, serve as serve_engine,
    setup::{self, Setup},
    shutdown_signal,
    store::durable,
};
use std::sync::Arc;
use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};
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
    /// Exits 0 only if the server at ADDR answers grpc.health.v1 SERVING (no credential needed).
    Health {
        /// The server's gRPC address (https:// for a server with TLS).
        #[arg(long, env = "SESSION_SERVER", default_value_t = format!("http://127.0.0.1:{}", session_proto::DEFAULT_PORT))]
        addr: String,
        /// The CA that signed the server's certificate (PEM), for an https:// address;
        /// without it, the system's CAs.
        #[arg(long, env = "SESSION_CA", value_name = "FILE")]
        ca: Option<PathBuf>,
        /// How long to wait for an answer.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Makes, under DIR, what a first run needs and is missing, keeping what exists: an app
    /// token per --app, an admin token, the credentials file naming them (DIR/auth), the
    /// carts' CSRF key and, with --tls, a development CA and certificates.
    Setup {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// An app to make a token for (repeatable).
        #[arg(long = "app", value_name = "NAME", default_values_t = ["cart".to_owned()])]
        apps: Vec<String>,
        /// Make no admin token.
        #[arg(long)]
        no_admin: bool,
        /// Make a development CA and a server certificate too.
        #[arg(long)]
        tls: bool,
        /// A host name or address of the server certificate, besides localhost and loopback
        /// (repeatable).
        #[arg(long = "name", value_name = "HOST")]
        names: Vec<String>,
    },
    /// Makes, under DIR, what is missing of a development CA (ca.pem), a server certificate
    /// (server.pem, server.key) for localhost, loopback and each --name, and a client
    /// certificate per --client (mutual TLS), keeping what exists.
    DevCert {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// A host name or address of the server certificate (repeatable).
        #[arg(long = "name", value_name = "HOST")]
        names: Vec<String>,
        /// A client certificate's subject common name, which a cert:NAME credential names
        /// (repeatable).
        #[arg(long = "client", value_name = "NAME")]
        clients: Vec<String>,
    },
    /// Copies the durable store's data into DEST, a new directory (0700, files 0600) that a
    /// server started with `--data-dir DEST` serves: from the server at --addr while it
    /// runs (one consistent snapshot, written by the server on its own machine), or from
    /// --data-dir when no server has it open. docs/operations.md, "Backup and restore".
    Backup {
        /// Where the copy goes: a path that does not exist yet (on the server's machine).
        #[arg(long, value_name = "DEST")]
        to: PathBuf,
        /// Copy this data directory itself (no server may have it open) instead of asking
        /// a server.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// The server's gRPC address (https:// for a server with TLS).
        #[arg(long, env = "SESSION_SERVER", default_value_t = format!("http://127.0.0.1:{}", session_proto::DEFAULT_PORT))]
        addr: String,
        /// The CA that signed the server's certificate (PEM), for an https:// address.
        #[arg(long, env = "SESSION_CA", value_name = "FILE")]
        ca: Option<PathBuf>,
        /// A file holding the admin token (the sample's is target/sample/secrets/admin.token).
        #[arg(long, env = "SESSION_ADMIN_TOKEN_FILE", value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// How long the copy may take.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Reads a token on standard input and prints the line that names it in a credentials
    /// file's format, by its SHA-256 (so the file holds no token).
    Digest {
        /// Who the token is: app:NAME or admin.
        #[arg(long, default_value = "app:cart")]
        who: String,
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
    let fail = |command: &str, e: &dyn std::fmt::Display| {
        eprintln!("session-server {command}: {e}");
        ExitCode::FAILURE
    };
    let print = |lines: Vec<String>| {
        for line in lines {
            println!("{line}");
        }
        ExitCode::SUCCESS
    };
    match cli.command {
        Some(Command::Health { addr, ca, timeout }) => {
            match probe::check(&addr, ca.as_deref(), timeout).await {
                Ok(()) => {
                    println!("{addr}: SERVING");
                    ExitCode::SUCCESS
                }
                Err(e) => fail("health", &e),
            }
        }
        Some(Command::Setup {
            dir,
            apps,
            no_admin,
            tls,
            names,
        }) => {
            let what = Setup {
                apps,
                admin: !no_admin,
                tls_names: tls.then_some(names),
            };
            match setup::setup(&dir, &what) {
                Ok(lines) => print(lines),
                Err(e) => fail("setup", &e),
            }
        }
        Some(Command::DevCert {
            dir,
            names,
            clients,
        }) => match setup::dev_cert(&dir, &names, &clients) {
            Ok(lines) => print(lines),
            Err(e) => fail("dev-cert", &e),
        },
        Some(Command::Backup {
            to,
            data_dir,
            addr,
            ca,
            token_file,
            timeout,
        }) => backup(to, data_dir, &addr, ca, token_file, timeout).await,
        Some(Command::Digest { who }) => {
            let mut token = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut token) {
                return fail("digest", &e);
            }
            println!("{who} {}", session_server::auth::digest_line(token.trim()));
            ExitCode::SUCCESS
        }
        None => match serve(cli.serve).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("session-server: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn backup(
    to: PathBuf,
    data_dir: Option<PathBuf>,
    addr: &str,
    ca: Option<PathBuf>,
    token_file: Option<PathBuf>,
    timeout: Duration,
) -> ExitCode {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("session-server backup: {e}");
        ExitCode::FAILURE
    };
    // The server takes the path on its own machine: for one on this machine, from here.
    let to = match std::path::absolute(&to) {
        Ok(to) => to,
        Err(e) => return fail(&format!("{}: {e}", to.display())),
    };
    let (sessions, bytes) = match data_dir {
        Some(dir) => {
            #[cfg(unix)]
            rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o077));
            match tokio::task::spawn_blocking({
                let to = to.clone();
                move || durable::backup_offline(&dir, &to)
            })
            .await
            {
                Ok(Ok(copied)) => (copied.sessions, copied.bytes),
                Ok(Err(e)) => return fail(&e),
                Err(e) => return fail(&e),
            }
        }
        None => {
            let token = match token_file.as_deref() {
                None => None,
                Some(path) => match session_server::auth::read_token_file(path) {
                    Ok(token) => Some(token),
                    Err(e) => {
                        return fail(&format!("the admin token file {}: {e}", path.display()));
                    }
                },
            };
            match probe::backup(addr, ca.as_deref(), token.as_deref(), &to, timeout).await {
                Ok(copied) => (copied.sessions, copied.bytes),
                Err(e) => return fail(&e),
            }
        }
    };
    println!(
        "backup of {sessions} sessions ({}) written to {}",
        bytesize::ByteSize(bytes),
        to.display()
    );
    ExitCode::SUCCESS
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    session_server::telemetry::init();
    let config = args.config().map_err(anyhow::Error::msg)?;
    let kind = args.store_kind().map_err(anyhow::Error::msg)?;
    let grpc = bind(args.listen, "--listen").await?;
    let admin = bind(args.admin_listen, "--admin-listen").await?;
    tracing::info!(
        grpc = %grpc.local_addr()?,
        admin = %admin.local_addr()?,
        capacity = config.limits.capacity_bytes,
        idle_timeout = ?config.limits.default_idle_timeout,
        max_lifetime = ?config.limits.default_max_lifetime,
        auth = config.auth.enabled(),
        tls = config.tls.session.is_some(),
        store = ?kind,
        "session-server listening"
    );
    if !config.auth.enabled() {
        tracing::warn!(
            "no credentials (--auth-file): whoever reaches the session port can read and change every session"
        );
    } else if config.tls.session.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!(
            "tokens travel in clear text beyond loopback: give the session port a certificate (--tls-cert)"
        );
    }
    tokio::spawn(reload_on_hangup(config.clone()));
    match (kind, &args.data_dir) {
        (StoreKind::Durable, Some(dir)) => {
            // Files the durable store makes are the server user's alone.
            #[cfg(unix)]
            rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o077));
            let events = Arc::new(EventLog::new(
                config.watch_buffer,
                config.watch_buffer_bytes,
            ));
            let store = durable::open(
                dir,
                args.fsync,
                config.limits,
                Arc::clone(&config.clock),
                Arc::clone(&events),
                Arc::clone(config.auth.apps()),
            )?;
            tracing::info!(dir = %dir.display(), fsync = %args.fsync, "durable store");
            let engine = Engine::with_store(store, events, &config);
            serve_engine(engine, grpc, admin, config, shutdown_signal()).await?;
        }
        _ => {
            let engine = Engine::new(&config);
            serve_engine(engine, grpc, admin, config, shutdown_signal()).await?;
        }
    }
    Ok(())
}

/// Reads credentials and certificates again on each SIGHUP, saying what it found.
async fn reload_on_hangup(config: ServerConfig) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            match reload(&config) {
                Ok(summary) => {
                    tracing::info!(summary, "SIGHUP: credentials and certificates reloaded")
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "SIGHUP: reload failed; the credentials and certificates in force stay"
                ),
            }
        }
    }
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
