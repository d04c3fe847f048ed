//! `x402 wallet new|import|address|show|balance|approve-permit2`: one key per chain family,
//! an EVM key (`wallet.key`, hex) and a Solana key (`wallet-solana.key`, base58), both
//! owner-only.

use std::path::PathBuf;

use super::*;
use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;
use anyhow::bail;

/// `x402 wallet`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum WalletCommand {
    /// Create the key files (owner-only permissions): an EVM key, whose address is printed,
    /// and a Solana key, whose address goes to stderr. Refuses to replace a key; with
    /// `--solana`, creates only the Solana key (for a wallet made before it had one).
    New {
        /// Create only the Solana key, and print its address.
        #[arg(long)]
        solana: bool,
    },
    /// Import a key read from standard input (or `--file`): a 0x hex key for EVM, or with
    /// `--solana` a Solana secret key (base58 of 64 bytes, or `solana-keygen`'s JSON array).
    /// Refuses to replace a key. Prints the address.
    Import {
        /// The key is a Solana key.
        #[arg(long)]
        solana: bool,
        /// Read the key from this file instead of standard input.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Print the wallet's address (with `--solana`, its Solana address).
    Address {
        /// Print the Solana address instead.
        #[arg(long)]
        solana: bool,
    },
    /// Print each key's chain family and address, one per line (`evm 0x…`, `solana …`).
    Show,
    /// Print the wallet's USDC balance (and gas) on a chain; with a Solana key and a Solana
    /// RPC (`--solana-rpc`, else `X402_SOLANA_RPC`, else the `x402 dev` stack's), also its
    /// USDC and SOL on Solana.
    Balance {
        #[command(flatten)]
        chain: TokenOnChain,
        /// Token decimals.
        #[arg(long, default_value_t = 6)]
        decimals: u8,
        /// Solana JSON-RPC endpoint.
        #[arg(long, value_name = "URL")]
        solana_rpc: Option<String>,
        /// Solana token mint; default: the `x402 dev` mint, else USDC on the RPC's network.
        #[arg(long, value_name = "ADDRESS")]
        solana_mint: Option<String>,
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
        WalletCommand::New { solana: true } => {
            let keypair = x402_svm::Keypair::new();
            let address = write_solana_key(home, &keypair)?;
            println!("{address}");
        }
        WalletCommand::New { solana: false } => {
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
            if !home.solana_key_file()?.exists() {
                let address = write_solana_key(home, &x402_svm::Keypair::new())?;
                eprintln!("and this Solana address with USDC on Solana: {address}");
            }
        }
        WalletCommand::Import { solana, file } => {
            let text = match &file {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
                None => std::io::read_to_string(std::io::stdin()).context("reading stdin")?,
            };
            if solana {
                let keypair = parse_solana_key(&text)
                    .context("the key is not a Solana secret key (base58 of 64 bytes)")?;
                println!("{}", write_solana_key(home, &keypair)?);
            } else {
                let signer =
                    parse_key(&text).context("the key is not a 0x-prefixed 32-byte hex key")?;
                let path = home.key_file()?;
                if path.exists() {
                    bail!(
                        "{} already exists; it holds your wallet — remove it yourself to replace it",
                        path.display()
                    );
                }
                write_owner_only(&path, format!("{}\n", signer.to_bytes()).as_bytes())?;
                eprintln!("imported into {} (owner-only)", path.display());
                println!("{}", signer.address());
            }
        }
        WalletCommand::Address { solana: false } => println!("{}", home.signer()?.address()),
        WalletCommand::Address { solana: true } => println!("{}", solana_address(home)?),
        WalletCommand::Show => {
            let evm = home.signer().ok().map(|s| s.address().to_string());
            let solana = home.solana_keypair()?.map(|k| x402_svm::Signer::pubkey(&k));
            if evm.is_none() && solana.is_none() {
                bail!("no wallet: create one with `x402 wallet new` (or `x402 wallet import`)");
            }
            println!(
                "evm    {}",
                evm.as_deref().unwrap_or("(none: x402 wallet new)")
            );
            match solana {
                Some(address) => println!("solana {address}"),
                None => println!("solana (none: x402 wallet new --solana)"),
            }
        }
        WalletCommand::Balance {
            chain,
            decimals,
            solana_rpc,
            solana_mint,
        } => {
            let dev_dir = chain.dev_state.clone();
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
            if let Some(keypair) = home.solana_keypair()? {
                let dev = read_dev_solana(&dev_dir).unwrap_or_default();
                let Some(solana_rpc) = solana_rpc
                    .or_else(|| std::env::var(SOLANA_RPC_ENV).ok())
                    .or(dev.rpc_url)
                else {
                    eprintln!(
                        "(Solana: pass --solana-rpc or set {SOLANA_RPC_ENV} to see its balance)"
                    );
                    return Ok(());
                };
                let owner = x402_svm::Signer::pubkey(&keypair);
                let (usdc, sol) =
                    solana_balance(&solana_rpc, &owner, solana_mint.or(dev.mint)).await?;
                println!(
                    "{owner}: {} USDC ({} atomic), {} SOL",
                    usdc.to_human(6),
                    usdc,
                    sol.to_human(9)
                );
            }
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

/// Writes the Solana key file (owner-only; never replaced): the address.
fn write_solana_key(home: &Home, keypair: &x402_svm::Keypair) -> anyhow::Result<String> {
    let file = home.solana_key_file()?;
    if file.exists() {
        bail!(
            "{} already exists; it holds your Solana wallet — remove it yourself to start over",
            file.display()
        );
    }
    write_owner_only(
        &file,
        format!("{}\n", keypair.to_base58_string()).as_bytes(),
    )?;
    eprintln!("wrote the Solana key {} (owner-only)", file.display());
    Ok(x402_svm::Signer::pubkey(keypair).to_string())
}

fn solana_address(home: &Home) -> anyhow::Result<String> {
    let keypair = home.solana_keypair()?.ok_or_else(|| {
        anyhow::anyhow!(
            "no Solana wallet: set {SOLANA_KEY_ENV}, or create one with `x402 wallet new --solana`"
        )
    })?;
    Ok(x402_svm::Signer::pubkey(&keypair).to_string())
}

/// `owner`'s balance of `mint` (default: USDC on the RPC's network, found by its genesis
/// hash) and of SOL, in atomic units; an owner without a token account holds 0.
async fn solana_balance(
    rpc_url: &str,
    owner: &x402_svm::Pubkey,
    mint: Option<String>,
) -> anyhow::Result<(x402_proto::TokenAmount, x402_proto::TokenAmount)> {
    let rpc = x402_svm::SolanaRpc::new(rpc_url, Duration::from_secs(30));
    let mint: x402_svm::Pubkey = match mint {
        Some(mint) => mint
            .parse()
            .map_err(|_| anyhow::anyhow!("--solana-mint {mint:?} is not a Solana address"))?,
        None => {
            let genesis = rpc
                .call("getGenesisHash", serde_json::json!([]))
                .await
                .with_context(|| format!("cannot reach the Solana RPC at {rpc_url}"))?;
            let genesis = genesis.as_str().unwrap_or_default();
            let network = format!("solana:{}", genesis.get(..32).unwrap_or(genesis));
            x402_svm::usdc_mint(&network)
                .with_context(|| format!("no known USDC on {network}: pass --solana-mint"))?
        }
    };
    let sol = rpc
        .balance(owner)
        .await
        .with_context(|| format!("cannot reach the Solana RPC at {rpc_url}"))?;
    let program = match rpc.account(&mint).await? {
        Some(account) => account.owner,
        None => bail!("the mint {mint} does not exist on that chain"),
    };
    let account = x402_svm::associated_token_account(owner, &mint, &program);
    let usdc = match rpc.account(&account).await? {
        Some(_) => rpc.token_balance(&account).await?,
        None => 0,
    };
    Ok((
        x402_proto::TokenAmount::from_atomic(u128::from(usdc)),
        x402_proto::TokenAmount::from_atomic(u128::from(sol)),
    ))
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
