//! `x402-bench`: the load generators behind `docs/benchmarks.md`, kept out of the product
//! binary. Each starts its own local chain and stack, drives it at a fixed concurrency, and
//! checks on chain that exactly what was charged moved.
//!
//! ```sh
//! cargo run --release -p x402-bench -- facilitator --count 600 --concurrency 8
//! cargo run --release -p x402-bench -- gateway --count 300 --concurrency 8
//! ```

mod facilitator;
mod gateway;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Load benchmarks against a local chain (figures for docs/benchmarks.md).
#[derive(Debug, Parser)]
#[command(name = "x402-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    target: Target,
}

#[derive(Debug, Subcommand)]
enum Target {
    /// Verify and settle throughput and latency of our facilitator over HTTP, on anvil.
    Facilitator(facilitator::FacilitatorBench),
    /// Paid requests per second through the paywall and the gateway (settled on anvil), and
    /// the latency the paywall adds over the same route unpaid.
    Gateway(gateway::GatewayBench),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().target {
        Target::Facilitator(args) => facilitator::run(args).await,
        Target::Gateway(args) => gateway::run(args).await,
    }
}
