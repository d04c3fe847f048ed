//! Logs to stderr, filtered by `RUST_LOG`, for the `x402` binary and the benchmarks.

use tracing_subscriber::EnvFilter;

/// Sends logs to stderr, filtered by `RUST_LOG` or else at `default_level` (`info`, `warn`).
pub fn init(default_level: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
