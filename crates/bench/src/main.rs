//! `x402-bench`: the load generators behind `docs/benchmarks.md`, kept out of the product
//! binary. Each starts its own local chain and stack, drives it at a fixed concurrency, and
//! checks on chain that exactly what was charged moved. `svm` also runs the official TypeScript
//! facilitator beside ours, on the local Solana chain.
//!
//! ```sh
//! cargo run --release -p x402-bench -- facilitator --count 600 --concurrency 8
//! cargo run --release -p x402-bench -- gateway --count 300 --concurrency 8
//! cargo run --release -p x402-bench -- batch --count 4000 --concurrency 8
//! cargo run --release -p x402-bench -- svm --count 300 --concurrency 8
//! cargo run --release -p x402-bench -- dashboard --payments 100000
//! cargo run --release -p x402-bench -- costs
//! cargo run --release -p x402-bench -- facilitator-dashboard --settlements 100000
//! ```

mod batch;
mod costs;
mod dashboard;
mod facilitator;
mod facilitator_dashboard;
mod gateway;
mod load;
mod svm;

use clap::{Parser, Subcommand};

/// The product's allocator (`x402` links the same one), so that figures measured here are the
/// product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Paid calls per second through the gateway's paywall with `batch-settlement` vouchers
    /// against `exact` in the same run, and the transactions and gas per 1,000 calls.
    Batch(batch::BatchBench),
    /// The gateway's operator dashboard API's latency with 100,000 payments in its journal.
    Dashboard(dashboard::DashboardBench),
    /// What a typical LLM chat call costs paid with `exact`, `upto` and `batch-settlement`, in
    /// USD and gas.
    Costs(costs::CostsBench),
    /// How fast the facilitator's dashboard API answers with 100,000 settlements in its log
    /// (SQLite): p50 and p99 per route.
    FacilitatorDashboard(facilitator_dashboard::DashboardBench),
    /// Verify and settle throughput and latency of our facilitator against the official
    /// TypeScript one, `exact` on the local Solana chain, in the same run.
    Svm(svm::SvmBench),
}

impl Target {
    /// Runs this benchmark and prints its figures.
    async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Facilitator(args) => facilitator::run(args).await,
            Self::Gateway(args) => gateway::run(args).await,
            Self::Batch(args) => batch::run(args).await,
            Self::Dashboard(args) => dashboard::run(args).await,
            Self::Costs(args) => costs::run(args).await,
            Self::FacilitatorDashboard(args) => facilitator_dashboard::run(args).await,
            Self::Svm(args) => svm::run(args).await,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let target = Cli::parse().target;
    x402_cli::logging::init("warn");
    target.run().await
}
