//! `x402`: one binary for the local dev stack, the facilitator, the gateway and the paying
//! agent.

mod agent;
mod demo;
mod dev;
mod facilitator;
mod gateway;
mod mcp;
mod signals;

use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's malloc: the paid path allocates and frees many small JSON
/// values per request, and mimalloc does that with less work (see `docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// x402 payments for AI compute: dev chain, facilitator, gateway, paying client.
#[derive(Debug, Parser)]
#[command(name = "x402", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    home: agent::Home,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the local stack until Ctrl-C: a chain that looks like Base (USDC at its real
    /// address), our facilitator and the inference gateway; described in DIR/dev.json.
    Dev(dev::DevArgs),
    /// Serve an x402 facilitator (/verify, /settle, /supported, /health, /metrics) that
    /// settles on the configured EVM chains.
    Facilitator(facilitator::FacilitatorArgs),
    /// Serve the pay-per-call AI gateway: POST /run {service, input}, GET /catalog,
    /// /v1/embeddings and /v1/chat/completions, paid per request with x402.
    Gateway(gateway::GatewayArgs),
    /// The agent's wallet: X402_PRIVATE_KEY, or a key file in $X402_HOME (default ~/.x402).
    #[command(subcommand)]
    Wallet(agent::WalletCommand),
    /// Request a URL like curl, paying its x402 challenge within --max and the budget: the
    /// body goes to stdout, the payment to stderr.
    Pay(agent::PayArgs),
    /// Run a gateway service (POST /run), paying for it; waits for long jobs.
    Run(agent::RunArgs),
    /// List a gateway's services and prices.
    Catalog(agent::CatalogArgs),
    /// The ledger: every payment and its state (paid, failed, unknown, released, reserved), or
    /// totals by day, service or payee; --reconcile first asks the chain about unknown ones.
    Receipts(agent::ReceiptsArgs),
    /// Show or set spending limits (per payment, hour, day, total).
    #[command(subcommand)]
    Budget(agent::BudgetCommand),
    /// The wallet's batch-settlement payment channels (deposits held in escrow): list them
    /// (network, id, receiver, balance, charged, claimed), `refund <id|--all>` through the
    /// server each was opened with, or `withdraw <id>` (then `--finalize` after the delay).
    Channels(agent::ChannelsArgs),
    /// An MCP server (stdio) with GPU-Bridge's tools (gpu_run, gpu_catalog, gpu_status,
    /// gpu_balance, gpu_estimate), paid from this wallet within its budget.
    Mcp(mcp::McpArgs),
    /// An autonomous agent doing a small research task on the `x402 dev` stack within a budget.
    Demo(demo::DemoArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    x402_cli::logging::init("info");
    let cli = Cli::parse();
    let home = cli.home;
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Facilitator(args) => facilitator::run(args).await,
        Command::Gateway(args) => gateway::run(args).await,
        Command::Wallet(command) => agent::wallet(&home, command).await,
        Command::Pay(args) => agent::pay(&home, args).await,
        Command::Run(args) => agent::run(&home, args).await,
        Command::Catalog(args) => agent::catalog(args).await,
        Command::Receipts(args) => agent::receipts(&home, args).await,
        Command::Budget(command) => agent::budget(&home, command),
        Command::Channels(args) => agent::channels(&home, args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Mcp(args) => mcp::run(&home, args).await,
    }
}
