//! `[[solana_networks]]`: `exact` on Solana networks, each with its RPC endpoint, fee payer
//! and accepted mints.

use std::path::PathBuf;

use serde::Deserialize;
use x402_proto::Network;
use x402_svm::{Keypair, Pubkey};

use super::{ConfigError, invalid};

/// One Solana network served with `exact` (v2 on its CAIP-2 id, v1 on its v1 name).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SolanaNetworkConfig {
    /// The CAIP-2 network, `solana:<genesis hash prefix>`: mainnet
    /// `solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp`, devnet
    /// `solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1`, testnet
    /// `solana:4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z`.
    pub network: Network,
    /// The JSON-RPC endpoint.
    pub rpc_url: alloy::transports::http::reqwest::Url,
    /// An environment variable holding the fee payer's secret key (base58 of the 64-byte
    /// secret, as wallets export it).
    pub fee_payer_key_env: Option<String>,
    /// A file holding that key: base58, or the Solana CLI's JSON array of 64 bytes. Used
    /// when set, instead of the environment.
    pub fee_payer_key_file: Option<PathBuf>,
    /// The mints accepted (base58 addresses); the network's USDC when absent.
    pub mints: Option<Vec<String>>,
    /// `/health` fails while the fee payer's SOL balance is below this many lamports. Not
    /// checked when absent.
    pub min_fee_payer_lamports: Option<u64>,
}

impl SolanaNetworkConfig {
    /// The accepted mints: the configured ones, or the network's USDC.
    pub fn accepted_mints(&self) -> Result<Vec<Pubkey>, String> {
        match &self.mints {
            Some(mints) => mints
                .iter()
                .map(|mint| {
                    mint.parse::<Pubkey>()
                        .map_err(|_| format!("mint {mint:?} is not a base58 Solana address"))
                })
                .collect(),
            None => x402_svm::usdc_mint(self.network.as_str())
                .map(|usdc| vec![usdc])
                .ok_or_else(|| {
                    format!(
                        "{} has no default mint; list the accepted ones in `mints`",
                        self.network
                    )
                }),
        }
    }

    /// Checks what can be checked without the key: the network's spelling, the mints, where
    /// the key comes from.
    pub(super) fn problem(&self) -> Option<String> {
        let network = self.network.as_str();
        let reference = network.strip_prefix("solana:").unwrap_or_default();
        if reference.len() != 32 || bs58::decode(reference).into_vec().is_err() {
            return Some(format!(
                "network {network:?} is not a CAIP-2 Solana network (`solana:` and the first 32 characters of the genesis hash, e.g. {})",
                x402_svm::SOLANA_DEVNET
            ));
        }
        if let Err(problem) = self.accepted_mints() {
            return Some(problem);
        }
        if self.mints.as_ref().is_some_and(Vec::is_empty) {
            return Some("mints is empty; remove it for the network's USDC".into());
        }
        match (&self.fee_payer_key_env, &self.fee_payer_key_file) {
            (None, None) => Some(
                "no fee payer: set fee_payer_key_env (a variable holding a base58 secret key) or fee_payer_key_file".into(),
            ),
            (Some(_), Some(_)) => {
                Some("set fee_payer_key_env or fee_payer_key_file, not both".into())
            }
            (Some(name), None) if name.trim().is_empty() => {
                Some("fee_payer_key_env is empty; name the environment variable".into())
            }
            _ => None,
        }
    }

    /// Reads the fee payer's key from its file or the environment. The error never contains
    /// the key.
    pub fn fee_payer(&self) -> Result<Keypair, ConfigError> {
        let (text, source) = match (&self.fee_payer_key_file, &self.fee_payer_key_env) {
            (Some(path), _) => (
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?,
                format!("key file {}", path.display()),
            ),
            (None, Some(name)) => match std::env::var(name) {
                Ok(value) => (value, format!("environment variable {name}")),
                Err(_) => {
                    return Err(invalid(format!(
                        "no Solana fee payer key for {}: the environment variable {name} is not set",
                        self.network
                    )));
                }
            },
            (None, None) => {
                return Err(invalid(format!(
                    "no Solana fee payer key for {}: set fee_payer_key_env or fee_payer_key_file",
                    self.network
                )));
            }
        };
        x402_svm::parse_keypair(&text).map_err(|why| {
            invalid(format!(
                "the Solana fee payer key in {source} cannot be used: {why}"
            ))
        })
    }
}
