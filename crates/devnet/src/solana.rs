//! The local Solana chain: our JSON-RPC front over LiteSVM (`tools/solana/litesvm-rpc.mjs`),
//! posing as devnet, started by port 0 and stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::DevnetError;

const FRONT: &str = "tools/solana/litesvm-rpc.mjs";

/// What the local Solana chain holds, as its ready line tells it (addresses and 64-byte
/// secret keys in base58; amounts in atomic units).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SolanaChainState {
    /// Its JSON-RPC URL.
    pub rpc_url: String,
    /// The network it poses as (devnet, CAIP-2).
    pub network: String,
    /// The same as a v1 name (`solana-devnet`).
    pub v1_network: String,
    /// Devnet's genesis hash.
    pub genesis_hash: String,
    /// The USDC mint, at devnet's USDC address.
    pub mint: String,
    /// Its decimals.
    pub decimals: u8,
    /// Its token program.
    pub token_program: String,
    /// A facilitator's fee payer, funded with SOL.
    pub fee_payer: String,
    /// Its secret key.
    pub fee_payer_key: String,
    /// A seller.
    pub pay_to: String,
    /// Its secret key.
    pub pay_to_key: String,
    /// The seller's USDC account.
    pub pay_to_token_account: String,
    /// Payers holding USDC (and no SOL).
    pub payers: Vec<String>,
    /// Their secret keys.
    pub payer_keys: Vec<String>,
    /// Their USDC accounts.
    pub payer_token_accounts: Vec<String>,
    /// USDC each payer started with, in atomic units.
    pub payer_funds: String,
}

/// How to start the local Solana chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SolanaChainConfig {
    /// Funded payers.
    pub payers: u32,
    /// USDC per payer, in atomic units.
    pub payer_funds: u64,
    /// Derive every key from this (same seed, same keys); random keys otherwise.
    pub seed: Option<String>,
}

impl Default for SolanaChainConfig {
    fn default() -> Self {
        Self {
            payers: 4,
            payer_funds: 1_000_000_000,
            seed: None,
        }
    }
}

/// A running local Solana chain. It is killed when this is dropped, and exits by itself
/// if this process dies (its standard input closes).
#[derive(Debug)]
pub struct SolanaChain {
    child: Child,
    _stdin: ChildStdin,
    state: SolanaChainState,
}

/// The front's script: `$X402_SOLANA_FRONT`, else `tools/solana/litesvm-rpc.mjs` in this
/// directory or any parent (of the working directory or of this crate).
pub fn find_solana_front() -> Result<PathBuf, DevnetError> {
    if let Some(path) = std::env::var_os("X402_SOLANA_FRONT") {
        return Ok(PathBuf::from(path));
    }
    let starts = [
        std::env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    for start in starts.iter().flatten() {
        for dir in start.ancestors() {
            let candidate = dir.join(FRONT);
            if candidate.is_file() && dir.join("tools/node_modules/litesvm").is_dir() {
                return Ok(candidate);
            }
        }
    }
    Err(DevnetError::Spawn(
        "the local Solana chain needs tools/solana and `npm install` in tools/ (litesvm)".into(),
    ))
}

impl SolanaChain {
    /// Starts the chain found by [`find_solana_front`] with `node` (`$X402_NODE`, else `node`
    /// on `PATH`).
    pub async fn start(config: &SolanaChainConfig) -> Result<Self, DevnetError> {
        Self::start_script(&find_solana_front()?, config).await
    }

    /// Starts the front at `script`.
    pub async fn start_script(
        script: &Path,
        config: &SolanaChainConfig,
    ) -> Result<Self, DevnetError> {
        let node = std::env::var_os("X402_NODE").unwrap_or_else(|| "node".into());
        let mut command = Command::new(&node);
        command
            .arg(script)
            .args(["--port", "0", "--exit-on-stdin-close"])
            .args(["--payers", &config.payers.to_string()])
            .args(["--payer-funds", &config.payer_funds.to_string()]);
        if let Some(seed) = &config.seed {
            command.args(["--seed", seed]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| DevnetError::Spawn(format!("node {}: {e}", script.display())))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| DevnetError::Spawn("the Solana front's stdin not captured".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| DevnetError::Spawn("the Solana front's stdout not captured".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .map_err(|_| DevnetError::Spawn("the Solana front was not ready within 30 s".into()))?
            .map_err(|e| DevnetError::Spawn(format!("reading the Solana front: {e}")))?
            .ok_or_else(|| {
                DevnetError::Spawn("the Solana front exited before it was ready".into())
            })?;
        let state: SolanaChainState = serde_json::from_str(&line).map_err(|e| {
            DevnetError::Spawn(format!(
                "the Solana front's ready line is not its state: {e}"
            ))
        })?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            _stdin: stdin,
            state,
        })
    }

    /// What it holds.
    pub fn state(&self) -> &SolanaChainState {
        &self.state
    }

    /// Its JSON-RPC URL.
    pub fn rpc_url(&self) -> &str {
        &self.state.rpc_url
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops it and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
