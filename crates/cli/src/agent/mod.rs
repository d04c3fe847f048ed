//! The agent's commands: `x402 wallet`, `x402 pay`, `x402 run`, `x402 catalog`,
//! `x402 receipts`, `x402 budget`, `x402 channels`, a module each. Shared here: the agent's home (key file and
//! ledger), the paying client, the chain helpers and the words for a payment's outcome. State
//! lives in `$X402_HOME` (default `~/.x402`): the key file `wallet.key` (owner-only) and the
//! ledger `ledger.db`.

mod budget;
mod channels;
mod pay;
mod receipts;
mod report;
mod run;
mod wallet;

pub(crate) use budget::{BudgetCommand, budget};
pub(crate) use channels::{ChannelsArgs, channels};
pub(crate) use pay::{PayArgs, pay};
pub(crate) use receipts::{ReceiptsArgs, receipts};
pub(crate) use run::{CatalogArgs, RunArgs, catalog, run, run_service};
pub(crate) use wallet::{WalletCommand, wallet};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use x402_cli::stack::DevState;
use x402_client::{Ledger, MicroUsd, PaidResponse, PayError, PayingClient, Policy};
use x402_proto::Price;

/// The environment variable holding the wallet key (takes precedence over the key file).
pub(crate) const KEY_ENV: &str = "X402_PRIVATE_KEY";

/// The environment variable holding the Solana key, base58 of its 64-byte secret (takes
/// precedence over the Solana key file).
pub(crate) const SOLANA_KEY_ENV: &str = "X402_SOLANA_KEY";

/// The environment variable naming the Solana JSON-RPC to pay Solana offers through (else the
/// `x402 dev` stack's, when it runs one).
pub(crate) const SOLANA_RPC_ENV: &str = "X402_SOLANA_RPC";

/// Where the agent keeps its key file and ledger.
#[derive(Debug, clap::Args)]
pub(crate) struct Home {
    /// The agent's state directory (key file, ledger).
    #[arg(long, env = "X402_HOME", value_name = "DIR", global = true)]
    home: Option<PathBuf>,
}

impl Home {
    pub(crate) fn dir(&self) -> anyhow::Result<PathBuf> {
        let dir = match &self.home {
            Some(dir) => dir.clone(),
            None => {
                PathBuf::from(std::env::var_os("HOME").context("HOME is not set; pass --home")?)
                    .join(".x402")
            }
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    fn key_file(&self) -> anyhow::Result<PathBuf> {
        Ok(self.dir()?.join("wallet.key"))
    }

    /// The Solana key file: `wallet-solana.key`, base58 of the 64-byte secret (as Solana
    /// tools write keys), owner-only.
    fn solana_key_file(&self) -> anyhow::Result<PathBuf> {
        Ok(self.dir()?.join("wallet-solana.key"))
    }

    /// The Solana wallet: `X402_SOLANA_KEY`, else the Solana key file; `None` when neither.
    pub(crate) fn solana_keypair(&self) -> anyhow::Result<Option<x402_svm::Keypair>> {
        if let Ok(key) = std::env::var(SOLANA_KEY_ENV) {
            return parse_solana_key(&key)
                .map(Some)
                .with_context(|| format!("{SOLANA_KEY_ENV} is not a base58 64-byte secret key"));
        }
        let file = self.solana_key_file()?;
        let Ok(text) = std::fs::read_to_string(&file) else {
            return Ok(None);
        };
        parse_solana_key(&text)
            .map(Some)
            .with_context(|| format!("{} does not hold a valid Solana key", file.display()))
    }

    pub(crate) fn ledger(&self) -> anyhow::Result<Ledger> {
        let path = self.dir()?.join("ledger.db");
        Ledger::open(&path).with_context(|| format!("opening the ledger {}", path.display()))
    }

    /// The wallet: `X402_PRIVATE_KEY`, else the key file.
    pub(crate) fn signer(&self) -> anyhow::Result<PrivateKeySigner> {
        if let Ok(key) = std::env::var(KEY_ENV) {
            return parse_key(&key)
                .with_context(|| format!("{KEY_ENV} is not a 0x-prefixed 32-byte hex key"));
        }
        let file = self.key_file()?;
        let text = std::fs::read_to_string(&file).map_err(|_| {
            anyhow!(
                "no wallet: set {KEY_ENV}, or create one with `x402 wallet new` (it writes {})",
                file.display()
            )
        })?;
        parse_key(text.trim())
            .with_context(|| format!("{} does not hold a valid key", file.display()))
    }
}

fn parse_key(text: &str) -> anyhow::Result<PrivateKeySigner> {
    let bytes: B256 = text
        .trim()
        .parse()
        .map_err(|_| anyhow!("not 32 bytes of hex"))?;
    Ok(PrivateKeySigner::from_bytes(&bytes)?)
}

/// A Solana secret key: base58 of 64 bytes, or the JSON byte array `solana-keygen` writes.
fn parse_solana_key(text: &str) -> anyhow::Result<x402_svm::Keypair> {
    let text = text.trim();
    let bytes: Vec<u8> = if text.starts_with('[') {
        serde_json::from_str(text).map_err(|_| anyhow!("not a JSON array of bytes"))?
    } else {
        bs58::decode(text)
            .into_vec()
            .map_err(|_| anyhow!("not base58"))?
    };
    x402_svm::Keypair::try_from(bytes.as_slice())
        .map_err(|_| anyhow!("not a 64-byte Solana secret key"))
}

// ---------------------------------------------------------------------------------------
// wallet

/// The `x402 dev` stack described in `home`'s directory, if one runs there.
fn dev_state(home: &Home) -> Option<DevState> {
    home.dir().ok().and_then(|dir| read_dev_state(&dir).ok())
}

/// The Solana side of the `x402 dev` stack described in `home`'s directory (its `dev.json`
/// keys `solana_rpc_url`, `solana_network`, `solana_mint`), if any.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct DevSolana {
    #[serde(rename = "solana_rpc_url")]
    pub(crate) rpc_url: Option<String>,
    #[serde(rename = "solana_network")]
    pub(crate) network: Option<String>,
    #[serde(rename = "solana_mint")]
    pub(crate) mint: Option<String>,
}

/// [`DevSolana`] read from `dir/dev.json`.
pub(crate) fn read_dev_solana(dir: &Path) -> Option<DevSolana> {
    let text = std::fs::read_to_string(dir.join("dev.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn dev_solana(home: &Home) -> Option<DevSolana> {
    home.dir().ok().and_then(|dir| read_dev_solana(&dir))
}

/// The chain a paying command checks channels against: `--rpc`, else the `x402 dev` chain,
/// else none.
fn paying_rpc(home: &Home, rpc: Option<String>) -> Option<String> {
    rpc.or_else(|| dev_state(home).map(|dev| dev.rpc_url))
}

/// The chain to read: `--rpc`, else the `x402 dev` chain described in `dev`.
fn chain_rpc(rpc: Option<String>, dev: Option<&DevState>) -> anyhow::Result<String> {
    rpc.or_else(|| dev.map(|d| d.rpc_url.clone()))
        .context("no chain: pass --rpc (or run `x402 dev`)")
}

fn parse_quantity(value: &Value) -> anyhow::Result<alloy::primitives::U256> {
    let text = value.as_str().context("RPC answered a non-string")?;
    let digits = text.trim_start_matches("0x");
    Ok(alloy::primitives::U256::from_str_radix(
        if digits.is_empty() { "0" } else { digits },
        16,
    )?)
}

async fn rpc_call(
    http: &reqwest::Client,
    url: &str,
    method: &str,
    params: Value,
) -> anyhow::Result<Value> {
    let answer: Value = http
        .post(url)
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .with_context(|| format!("cannot reach the chain at {url}"))?
        .json()
        .await?;
    if let Some(error) = answer.get("error") {
        bail!("{method} failed: {error}");
    }
    Ok(answer["result"].clone())
}

fn write_owner_only(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)?;
    Ok(())
}

pub(crate) fn read_dev_state(dir: &Path) -> anyhow::Result<DevState> {
    DevState::read(dir).map_err(|e| anyhow!(e))
}

// ---------------------------------------------------------------------------------------
// pay

/// Explains a payment failure with what to do about it.
pub(crate) fn explain(error: &PayError, address: &str) -> anyhow::Error {
    let hint = match error {
        PayError::Refused { reason, .. } if reason.contains("insufficient") => {
            format!(
                "\n  hint: the wallet {address} lacks the USDC; fund it (see `x402 wallet balance`)"
            )
        }
        PayError::Refused { reason, .. } if reason.contains("permit2_allowance_required") => {
            "\n  hint: the offer pays through Permit2: run `x402 wallet approve-permit2 --rpc <URL> --asset <token>` once (it costs gas)".to_owned()
        }
        PayError::Budget(_) => {
            "\n  hint: `x402 budget show` lists the limits; `x402 budget set` changes them"
                .to_owned()
        }
        PayError::Policy(x402_client::PolicyError::AboveMax { .. }) => {
            "\n  hint: pass a higher --max if the price is worth it".to_owned()
        }
        PayError::Policy(_) => {
            "\n  hint: the server wants an asset or network this client does not pay".to_owned()
        }
        PayError::Http(_) => {
            "\n  hint: is the server (or its facilitator) running and reachable?".to_owned()
        }
        PayError::AnswerLost { .. } => "\n  hint: `x402 receipts --reconcile` asks the chain whether it settled (a paid or an expired authorization settles it)".to_owned(),
        _ => String::new(),
    };
    anyhow!("{error}{hint}")
}

/// The paying client of `home`'s wallet, paying at most `max` a request. With a chain
/// (`rpc`), `batch-settlement` channels are read on it: a server's corrective 402 is adopted
/// only when the chain agrees (without one it never is, and the channel stays as the ledger
/// has it).
pub(crate) fn client(
    home: &Home,
    max: Price,
    rpc: Option<&str>,
) -> anyhow::Result<(PayingClient, String)> {
    let signer = home.signer()?;
    let address = signer.address().to_checksum(None);
    let policy = Policy {
        max_per_payment: max,
        ..Policy::default()
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let mut client = PayingClient::new(http, signer, policy, home.ledger()?);
    // Solana offers, with a Solana key and a Solana RPC to read mints and blockhashes from.
    if let Some(keypair) = home.solana_keypair()? {
        let dev = dev_solana(home);
        let solana_rpc = std::env::var(SOLANA_RPC_ENV)
            .ok()
            .or_else(|| dev.as_ref().and_then(|d| d.rpc_url.clone()));
        if let Some(solana_rpc) = solana_rpc {
            // Only on the network that RPC serves, when known.
            let networks = match dev.and_then(|d| d.network) {
                Some(network) => vec![x402_proto::Network::new(network)],
                None => vec![
                    x402_proto::Network::new(x402_svm::SOLANA_MAINNET),
                    x402_proto::Network::new(x402_svm::SOLANA_DEVNET),
                ],
            };
            client = client.with_solana(keypair, &solana_rpc, networks);
        }
    }
    if let Some(rpc) = rpc {
        client = client.with_chain(
            rpc.parse()
                .with_context(|| format!("--rpc {rpc:?} is not a URL"))?,
        );
    }
    Ok((client, address))
}

/// What a failed answer means for the payment sent with it.
fn charge_note(paid: &PaidResponse) -> String {
    match paid.unknown {
        Some(id) => format!(
            "the payment may have settled: ledger row {id} is unknown until `x402 receipts --reconcile`"
        ),
        None => "not charged".to_owned(),
    }
}

fn usd(micro: MicroUsd) -> String {
    x402_client::format_micro_usd(micro)
}
