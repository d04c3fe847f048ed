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
        #[command(flatten)]
        chain: TokenOnChain,
        /// Token decimals.
        #[arg(long, default_value_t = 6)]
        decimals: u8,
    },
    /// Let Permit2 move this wallet's tokens, once per token and chain (a transaction this
    /// wallet pays gas for): what `upto` offers (pay for what was used) and `exact` offers in
    /// tokens without EIP-3009 need; without it they answer 412 `permit2_allowance_required`.
    ApprovePermit2 {
        #[command(flatten)]
        chain: TokenOnChain,
    },
}

/// A token on a chain: given, or the `x402 dev` stack's.
#[derive(Debug, clap::Args)]
pub(crate) struct TokenOnChain {
    /// JSON-RPC endpoint; default: the `x402 dev` chain from --dev-state.
    #[arg(long, value_name = "URL")]
    rpc: Option<String>,
    /// Token address; default: the `x402 dev` token (Base USDC's address).
    #[arg(long, value_name = "ADDRESS")]
    asset: Option<String>,
    /// The `x402 dev` state directory to read the chain from.
    #[arg(long, value_name = "DIR", default_value = ".x402/dev")]
    dev_state: PathBuf,
}

impl TokenOnChain {
    /// The RPC endpoint and the token address.
    fn resolve(self) -> anyhow::Result<(String, String)> {
        let dev = read_dev_state(&self.dev_state).ok();
        let rpc = chain_rpc(self.rpc, dev.as_ref())?;
        let asset = self
            .asset
            .or_else(|| dev.as_ref().map(|d| d.asset.clone()))
            .unwrap_or_else(|| "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".to_owned());
        Ok((rpc, asset))
    }
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
        WalletCommand::Balance { chain, decimals } => {
            let (rpc, asset) = chain.resolve()?;
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
        WalletCommand::ApprovePermit2 { chain } => {
            let (rpc, asset) = chain.resolve()?;
            let tx = approve_permit2(home.signer()?, &rpc, &asset).await?;
            eprintln!("Permit2 may now move {asset} for this wallet");
            println!("{tx}");
        }
    }
    Ok(())
}

/// Sends `approve(Permit2, max)` on `asset` from `signer` and waits for it: the transaction.
async fn approve_permit2(signer: PrivateKeySigner, rpc: &str, asset: &str) -> anyhow::Result<B256> {
    use alloy::network::EthereumWallet;
    use alloy::providers::{Provider, ProviderBuilder};
    use alloy::sol_types::SolCall;
    alloy::sol! {
        function approve(address spender, uint256 value) external returns (bool);
    }
    let token: alloy::primitives::Address = asset
        .parse()
        .with_context(|| format!("--asset {asset:?} is not an address"))?;
    let input = approveCall {
        spender: x402_devnet::PERMIT2_ADDRESS,
        value: alloy::primitives::U256::MAX,
    }
    .abi_encode();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(
            rpc.parse()
                .with_context(|| format!("--rpc {rpc:?} is not a URL"))?,
        );
    let request = alloy::rpc::types::TransactionRequest::default()
        .to(token)
        .input(input.into());
    let receipt = provider
        .send_transaction(request)
        .await
        .context("sending the approval (does the wallet hold ETH for gas?)")?
        .get_receipt()
        .await
        .context("waiting for the approval")?;
    if !receipt.status() {
        bail!("the approval reverted: {}", receipt.transaction_hash);
    }
    Ok(receipt.transaction_hash)
}
