//! `x402 mcp`: GPU-Bridge's MCP tools over stdio, paid from the agent's wallet within its
//! budget. Stdout carries the MCP protocol; logs go to stderr.

use std::path::PathBuf;

use x402_proto::Price;

use crate::agent::{Home, client, read_dev_state};

/// Options of `x402 mcp`.
#[derive(Debug, clap::Args)]
pub(crate) struct McpArgs {
    /// The gateway to call.
    #[arg(
        long,
        env = "X402_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    gateway: String,
    /// The most one call may cost, in USD.
    #[arg(long, value_name = "PRICE", default_value = "0.10")]
    max: Price,
    /// JSON-RPC endpoint of the chain, for gpu_balance (default: the `x402 dev` chain, if running).
    #[arg(long, value_name = "URL")]
    rpc: Option<String>,
    /// Token address, for gpu_balance (default: the `x402 dev` token).
    #[arg(long, value_name = "ADDRESS")]
    asset: Option<String>,
    /// The token's decimals (default: the `x402 dev` token's, or 6 as USDC).
    #[arg(long, value_name = "N")]
    decimals: Option<u8>,
    /// The `x402 dev` state directory, read for the chain when --rpc is not given.
    #[arg(long, value_name = "DIR", default_value = ".x402/dev")]
    dev_state: PathBuf,
}

pub(crate) async fn run(home: &Home, args: McpArgs) -> anyhow::Result<()> {
    let dev = read_dev_state(&args.dev_state).ok();
    let rpc = args.rpc.or_else(|| dev.as_ref().map(|d| d.rpc_url.clone()));
    let (client, address) = client(home, args.max, rpc.as_deref())?;
    let asset = args
        .asset
        .or_else(|| dev.as_ref().map(|d| d.asset.clone()))
        .unwrap_or_else(|| "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".to_owned());
    let decimals = args
        .decimals
        .or_else(|| dev.as_ref().map(|d| d.decimals))
        .unwrap_or(6);
    tracing::info!(%address, gateway = %args.gateway, "MCP server on stdio");
    let chain = rpc.map(|rpc_url| x402_mcp::WalletChain {
        rpc_url,
        asset,
        decimals,
    });
    let tools = x402_mcp::GpuTools::wallet(client, &args.gateway, chain);
    x402_mcp::serve_stdio(tools).await?;
    Ok(())
}
