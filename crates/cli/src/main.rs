//! `x402`: one binary for the local dev chain and (in later releases) the facilitator, the
//! gateway and the paying client.

mod bench;
mod bench_gateway;
mod dev;
mod facilitator;
mod gateway;
mod signals;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// x402 payments for AI compute: dev chain, facilitator, gateway, paying client.
#[derive(Debug, Parser)]
#[command(name = "x402", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a local chain that looks like Base (USDC at its real address) until Ctrl-C,
    /// and describe it in DIR/dev.json.
    Dev(dev::DevArgs),
    /// Serve an x402 facilitator (/verify, /settle, /supported, /health, /metrics) that
    /// settles on the configured EVM chains.
    Facilitator(facilitator::FacilitatorArgs),
    /// Serve the pay-per-call AI gateway: POST /run {service, input}, GET /catalog,
    /// /v1/embeddings and /v1/chat/completions, paid per request with x402.
    Gateway(gateway::GatewayArgs),
    /// Load benchmarks against a local chain (figures for docs/benchmarks.md).
    #[command(subcommand)]
    Bench(bench::BenchTarget),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Dev(args) => dev::run(args).await,
        Command::Facilitator(args) => facilitator::run(args).await,
        Command::Gateway(args) => gateway::run(args).await,
        Command::Bench(target) => bench::run(target).await,
    }
}
