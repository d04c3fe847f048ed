//! `x402 wallet new|address|balance`.

use std::path::PathBuf;

use super::*;
use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;
use anyhow::bail;

/// `x402 wallet`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum WalletCommand {
    /// Create a key file (owner-only permissions) and print its address. Refuses to replace one.
    New,
    /// Print the wallet's address.
    Address,
    /// Print the wallet's USDC balance (and gas) on a chain.
    Balance {
        /// JSON-RPC endpoint; default: the `x402 dev` chain from --dev-state.
        #[arg(long, value_name = "URL")]
        rpc: Option<String>,
        /// Token address; default: the `x402 dev` token (Base USDC's address).
        #[arg(long, value_name = "ADDRESS")]
        asset: Option<String>,
        /// Token decimals.
        #[arg(long, default_value_t = 6)]
        decimals: u8,
        /// The `x402 dev` state directory to read the chain from.
        #[arg(long, value_name = "DIR", default_value = ".x402/dev")]
        dev_state: PathBuf,
    },
}

pub(crate) async fn wallet(home: &Home, command: WalletCommand) -> anyhow::Result<()> {
    match command {
        WalletCommand::New => {
            let file = home.key_file()?;
            if file.exists() {
                bail!(
                    "{} already exists; it holds your wallet — remove it yourself to start over",
                    file.display()
                );
            }
            let signer = PrivateKeySigner::from_bytes(&B256::random())?;
            write_owner_only(&file, format!("{}\n", signer.to_bytes()).as_bytes())?;
            eprintln!(
                "created {} (owner-only); fund this address with USDC:",
                file.display()
            );
            println!("{}", signer.address());
        }
        WalletCommand::Address => println!("{}", home.signer()?.address()),
        WalletCommand::Balance {
            rpc,
            asset,
            decimals,
            dev_state,
        } => {
            let dev = read_dev_state(&dev_state).ok();
            let rpc = chain_rpc(rpc, dev.as_ref())?;
            let asset = asset
                .or_else(|| dev.as_ref().map(|d| d.asset.clone()))
                .unwrap_or_else(|| "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".to_owned());
            let address = home.signer()?.address();
            let http = reqwest::Client::new();
            let token =
                x402_client::token_balance(&http, &rpc, &asset, &address.to_string()).await?;
            let gas = rpc_call(
                &http,
                &rpc,
                "eth_getBalance",
                serde_json::json!([address.to_string(), "latest"]),
            )
            .await?;
            let gas = x402_proto::TokenAmount(parse_quantity(&gas)?);
            println!(
                "{address}: {} USDC ({} atomic), {} ETH for gas",
                token.to_human(decimals),
                token,
                gas.to_human(18)
            );
        }
    }
    Ok(())
}
