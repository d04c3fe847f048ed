//! `/supported` and `/health`.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy::primitives::U256;
use serde::Serialize;
use x402_proto::{Network, SupportedResponse};

use super::FacilitatorService;

/// What the settlement log's health check found.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseHealthReport {
    /// What keeps the log: `sqlite` or `postgres`.
    pub backend: &'static str,
    /// Whether it answered.
    pub reachable: bool,
    /// How long it took to answer, in milliseconds, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// What went wrong, when unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What one chain's health check found.
#[derive(Debug, Clone, Serialize)]
pub struct ChainHealthReport {
    /// The chain.
    pub network: Network,
    /// Whether its RPC answered.
    pub reachable: bool,
    /// The latest block, when reachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_number: Option<u64>,
    /// The address paying settlement gas.
    pub signer: String,
    /// Its balance in wei, when reachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer_balance_wei: Option<String>,
    /// The balance below which the chain is unhealthy, in wei, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_signer_balance_wei: Option<String>,
    /// Solana: the fee payer's SOL balance in lamports, when reachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer_balance_lamports: Option<u64>,
    /// Solana: the balance below which the network is unhealthy, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_signer_balance_lamports: Option<u64>,
    /// What went wrong, when unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the chain can settle: reachable, with the signer's balance not below the floor.
    pub healthy: bool,
    /// Why it cannot, when not healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl FacilitatorService {
    /// What this facilitator serves: v2 and v1 `exact` on every chain, then every kind of the
    /// registered scheme plug-ins, with their signers.
    pub fn supported(&self) -> SupportedResponse {
        let mut kinds = Vec::new();
        let mut signers = Vec::new();
        for chain in self.inner.chains.values() {
            kinds.extend(x402_evm::exact_kinds(chain.scheme.network()));
            let signer = chain.scheme.signer_address().to_checksum(None);
            if !signers.contains(&signer) {
                signers.push(signer);
            }
        }
        let mut signers = BTreeMap::from([("eip155:*".to_owned(), signers)]);
        let mut extensions = Vec::new();
        for plugin in self.schemes.iter() {
            let theirs = &plugin.supported;
            for kind in &theirs.kinds {
                if !kinds.contains(kind) {
                    kinds.push(kind.clone());
                }
            }
            for (family, addresses) in &theirs.signers {
                let known = signers.entry(family.clone()).or_default();
                for address in addresses {
                    if !known.contains(address) {
                        known.push(address.clone());
                    }
                }
            }
            for extension in &theirs.extensions {
                if !extensions.contains(extension) {
                    extensions.push(extension.clone());
                }
            }
        }
        SupportedResponse {
            kinds,
            extensions,
            signers,
        }
    }

    /// Reads the settlement log once, bounded by `timeout`: without it nothing can settle.
    pub async fn database_health(&self, timeout: Duration) -> DatabaseHealthReport {
        let store = &self.inner.store;
        let started = std::time::Instant::now();
        let error = match tokio::time::timeout(timeout, store.check()).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some(format!("no answer within {timeout:?}")),
        };
        DatabaseHealthReport {
            backend: store.backend(),
            reachable: error.is_none(),
            latency_ms: error
                .is_none()
                .then(|| u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)),
            error,
        }
    }

    /// Asks every chain for its latest block and the signer's gas balance, concurrently,
    /// each bounded by `timeout`. A chain is unhealthy when unreachable, or when the signer's
    /// balance is below the chain's configured floor.
    pub async fn health(&self, timeout: Duration) -> Vec<ChainHealthReport> {
        let checks = self.inner.chains.values().map(|chain| async move {
            let scheme = &chain.scheme;
            let signer = scheme.signer_address().to_checksum(None);
            let result = tokio::time::timeout(timeout, scheme.health()).await;
            let (block_number, balance, error) = match result {
                Ok(Ok(health)) => (Some(health.block_number), Some(health.signer_balance), None),
                Ok(Err(error)) => (None, None, Some(error.to_string())),
                Err(_) => (None, None, Some(format!("no answer within {timeout:?}"))),
            };
            let reason = match (&error, balance, chain.min_signer_balance) {
                (Some(error), _, _) => Some(format!("the chain's RPC is unreachable: {error}")),
                (None, Some(balance), Some(floor)) if balance < floor => Some(format!(
                    "the signer {signer}'s gas balance of {balance} wei is below the floor of \
                     {floor} wei (min_signer_balance_wei); fund it to keep settling"
                )),
                _ => None,
            };
            ChainHealthReport {
                network: scheme.network().clone(),
                reachable: error.is_none(),
                block_number,
                signer,
                signer_balance_wei: balance.map(|b: U256| b.to_string()),
                min_signer_balance_wei: chain.min_signer_balance.map(|f| f.to_string()),
                signer_balance_lamports: None,
                min_signer_balance_lamports: None,
                error,
                healthy: reason.is_none(),
                reason,
            }
        });
        let solana = self.solana.iter().map(|network| network.health(timeout));
        let (mut reports, solana) = futures_util::future::join(
            futures_util::future::join_all(checks),
            futures_util::future::join_all(solana),
        )
        .await;
        reports.extend(solana);
        reports
    }
}

/// A Solana network served, as `/health` checks it: its RPC, and its fee payer's SOL.
#[derive(Debug)]
pub struct SolanaHealth {
    network: Network,
    rpc: x402_svm::SolanaRpc,
    fee_payer: x402_svm::Pubkey,
    min_lamports: Option<u64>,
}

impl SolanaHealth {
    /// `network`'s node at `rpc`, where `fee_payer` pays fees; unhealthy while its balance is
    /// below `min_lamports`, when set.
    pub fn new(
        network: Network,
        rpc: x402_svm::SolanaRpc,
        fee_payer: x402_svm::Pubkey,
        min_lamports: Option<u64>,
    ) -> Self {
        Self {
            network,
            rpc,
            fee_payer,
            min_lamports,
        }
    }

    /// The slot and the fee payer's balance, each asked within `timeout`.
    async fn health(&self, timeout: Duration) -> ChainHealthReport {
        let signer = self.fee_payer.to_string();
        let asked = tokio::time::timeout(timeout, async {
            let slot = self.rpc.call("getSlot", serde_json::json!([])).await?;
            let balance = self.rpc.balance(&self.fee_payer).await?;
            Ok::<_, x402_svm::RpcError>((slot.as_u64(), balance))
        })
        .await;
        let (slot, balance, error) = match asked {
            Ok(Ok((slot, balance))) => (slot, Some(balance), None),
            Ok(Err(error)) => (None, None, Some(error.to_string())),
            Err(_) => (None, None, Some(format!("no answer within {timeout:?}"))),
        };
        let reason = match (&error, balance, self.min_lamports) {
            (Some(error), _, _) => Some(format!("the Solana RPC is unreachable: {error}")),
            (None, Some(balance), Some(floor)) if balance < floor => Some(format!(
                "the fee payer {signer}'s SOL balance of {balance} lamports is below the floor of \
                 {floor} lamports (min_fee_payer_lamports); fund it to keep settling"
            )),
            _ => None,
        };
        ChainHealthReport {
            network: self.network.clone(),
            reachable: error.is_none(),
            block_number: slot,
            signer,
            signer_balance_wei: None,
            min_signer_balance_wei: None,
            signer_balance_lamports: balance,
            min_signer_balance_lamports: self.min_lamports,
            error,
            healthy: reason.is_none(),
            reason,
        }
    }
}
