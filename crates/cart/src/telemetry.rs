//! Logs of the `cart` binary: one line per event on stdout, filtered by `RUST_LOG` (default
//! `info`; `actix_web::middleware::logger=info` adds a line per request, see
//! [`crate::startup::run`]).

/// Installs the subscriber; call once, first thing.
pub fn init() {
    tracing_subscriber::fmt()
        // Colour only for a terminal: logs in files and containers stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}
