//! Logs and spans of the `session-server` binary: one line per event on stdout, filtered by
//! `RUST_LOG` (default `info`). Request paths carry `debug` spans (`session` = an id's first
//! characters, `op`), which cost next to nothing unless `RUST_LOG` asks for them
//! (docs/operations.md, "Logs").

/// Installs the subscriber; call once, first thing.
pub fn init() {
    tracing_subscriber::fmt()
        // Colour only for a terminal: logs in files and containers stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            // The storage engine's own lines (a database opened, a table written) are its
            // business: warnings and errors only, unless RUST_LOG says otherwise.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,fjall=warn,lsm_tree=warn".into()),
        )
        .init();
}
