//! Finding out on chain what became of payments whose answer was lost.
//!
//! An EIP-3009 authorization is used at most once, and only in a block whose timestamp is
//! before its `validBefore`. So for a payment recorded `unknown`, the token's
//! `authorizationState(payer, nonce)` settles the question: used means the payment went
//! through (`paid`); unused, once `validBefore` is behind the chain, means it never can
//! (`released`). While it is unused and still valid, the row stays `unknown` and counted.

use alloy::primitives::{Address, B256, Bytes, keccak256};
use alloy::sol_types::SolCall;
use serde::Serialize;
use serde_json::{Value, json};
use x402_evm::IEip3009;
use x402_proto::Network;

use crate::ledger::{Ledger, LedgerError, PaymentRecord};

/// Seconds after `validBefore`, by this machine's clock, after which an unused authorization
/// is taken as expired even if the chain's latest block is older (an idle dev chain mines no
/// blocks; the first new block will be later still). It covers clock skew and a block that
/// was mined but not yet seen by the node asked.
pub const RELEASE_GRACE_SECS: u64 = 60;

/// How many blocks back to look for the `AuthorizationUsed` event of a used authorization, to
/// record its transaction. Nodes that refuse the range leave the transaction unknown.
const LOG_LOOKBACK_BLOCKS: u64 = 10_000;

/// Why a reconciliation could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The RPC endpoint could not be reached or answered something that is not JSON.
    #[error("cannot reach the chain: {0}")]
    Http(#[from] reqwest::Error),
    /// The node refused a call or answered something unexpected.
    #[error("the chain answered {0}")]
    Rpc(String),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// What reconciliation found for one ledger row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The authorization was used: the row is now `paid`.
    Paid {
        /// The transaction that used it, when found in recent logs.
        transaction: Option<String>,
    },
    /// The authorization was not used and has expired: the row is now `released`.
    Released,
    /// The authorization is unused and still valid: the row stays as it was, counted.
    StillValid {
        /// When it expires (Unix seconds).
        valid_before: u64,
    },
    /// This chain cannot answer for the row (another chain, or nothing recorded to ask).
    Skipped {
        /// Why.
        reason: String,
    },
}

/// One reconciled row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reconciled {
    /// The ledger row.
    pub id: i64,
    /// What became of it.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The decision for an authorization, from the chain's answers and this machine's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Paid,
    Released,
    StillValid,
}

/// `used` was read after a block with timestamp `chain_time`; `now` is this machine's clock.
pub(crate) fn decide(used: bool, valid_before: u64, chain_time: u64, now: u64) -> Decision {
    if used {
        Decision::Paid
    } else if valid_before <= chain_time || now >= valid_before.saturating_add(RELEASE_GRACE_SECS) {
        // The token requires block.timestamp < validBefore: no later block can use it.
        Decision::Released
    } else {
        Decision::StillValid
    }
}

async fn rpc(
    http: &reqwest::Client,
    url: &str,
    method: &str,
    params: Value,
) -> Result<Value, ReconcileError> {
    let answer: Value = http
        .post(url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await?
        .json()
        .await?;
    if let Some(error) = answer.get("error") {
        return Err(ReconcileError::Rpc(format!("{error} to {method}")));
    }
    Ok(answer["result"].clone())
}

fn quantity(value: &Value, what: &str) -> Result<u64, ReconcileError> {
    value
        .as_str()
        .and_then(|text| u64::from_str_radix(text.trim_start_matches("0x"), 16).ok())
        .ok_or_else(|| ReconcileError::Rpc(format!("{value} as {what}")))
}

/// The chain's id and its latest block's number and timestamp.
async fn chain_state(http: &reqwest::Client, url: &str) -> Result<(u64, u64, u64), ReconcileError> {
    let chain_id = quantity(&rpc(http, url, "eth_chainId", json!([])).await?, "chain id")?;
    let block = rpc(http, url, "eth_getBlockByNumber", json!(["latest", false])).await?;
    let number = quantity(&block["number"], "block number")?;
    let timestamp = quantity(&block["timestamp"], "block timestamp")?;
    Ok((chain_id, number, timestamp))
}

/// What is asked of the chain about one ledger row: whether `payer`'s authorization `nonce`
/// on the token `asset` was used, and whether it can still be (`valid_before`).
#[derive(Clone, Copy, Debug)]
struct Question {
    asset: Address,
    payer: Address,
    nonce: B256,
    valid_before: u64,
}

impl Question {
    /// What is needed to ask the chain with id `chain_id` about `record`, or why it cannot be
    /// asked.
    fn of(record: &PaymentRecord, chain_id: u64) -> Result<Self, String> {
        let network = Network::new(record.network.clone());
        match network.evm_chain_id() {
            Some(id) if id == chain_id => {}
            Some(id) => {
                return Err(format!(
                    "paid on chain {id}; this RPC serves chain {chain_id}"
                ));
            }
            None => return Err(format!("{} is not an EVM chain", record.network)),
        }
        let (Some(nonce), Some(valid_before)) = (&record.nonce, record.valid_before) else {
            return Err("no authorization was recorded for it".to_owned());
        };
        let nonce: B256 = nonce
            .parse()
            .map_err(|_| format!("recorded nonce {nonce:?} is not 32 bytes of hex"))?;
        let asset: Address = record
            .asset
            .parse()
            .map_err(|_| format!("asset {:?} is not an address", record.asset))?;
        let payer: Address = record
            .payer
            .parse()
            .map_err(|_| format!("payer {:?} is not an address", record.payer))?;
        Ok(Self {
            asset,
            payer,
            nonce,
            valid_before,
        })
    }

    /// The token's `authorizationState(payer, nonce)` at the latest block.
    async fn is_used(&self, http: &reqwest::Client, url: &str) -> Result<bool, ReconcileError> {
        let call = IEip3009::authorizationStateCall {
            authorizer: self.payer,
            nonce: self.nonce,
        };
        let data = Bytes::from(call.abi_encode());
        let out = rpc(
            http,
            url,
            "eth_call",
            json!([{"to": self.asset, "data": data}, "latest"]),
        )
        .await?;
        let out: Bytes = out
            .as_str()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| ReconcileError::Rpc(format!("{out} to authorizationState")))?;
        IEip3009::authorizationStateCall::abi_decode_returns(&out)
            .map_err(|e| ReconcileError::Rpc(format!("authorizationState undecodable: {e}")))
    }

    /// The transaction that emitted `AuthorizationUsed(payer, nonce)` in the
    /// [`LOG_LOOKBACK_BLOCKS`] blocks up to `latest`, if the node finds it.
    async fn used_in(
        &self,
        http: &reqwest::Client,
        url: &str,
        latest: u64,
    ) -> Result<Option<String>, ReconcileError> {
        let topic = keccak256("AuthorizationUsed(address,bytes32)");
        let filter = json!({
            "address": self.asset,
            "fromBlock": format!("0x{:x}", latest.saturating_sub(LOG_LOOKBACK_BLOCKS)),
            "toBlock": format!("0x{latest:x}"),
            "topics": [topic, self.payer.into_word(), self.nonce],
        });
        let logs = rpc(http, url, "eth_getLogs", json!([filter])).await?;
        Ok(logs
            .as_array()
            .and_then(|logs| logs.first())
            .and_then(|log| log["transactionHash"].as_str())
            .map(str::to_owned))
    }
}

impl Ledger {
    /// Settles what can be settled about payments whose outcome was not recorded, by asking
    /// the chain at `rpc_url` (the chain it serves; rows on other chains are skipped): every
    /// `unknown` row, and `reserved` rows whose authorization expired more than
    /// [`RELEASE_GRACE_SECS`] ago (their process ended before recording an outcome). A used
    /// authorization makes the row `paid` (with its transaction when the node's logs show it);
    /// an unused, expired one makes it `released`; an unused, valid one is left as it is.
    pub async fn reconcile(
        &self,
        http: &reqwest::Client,
        rpc_url: &str,
    ) -> Result<Vec<Reconciled>, ReconcileError> {
        let now = x402_evm::unix_now();
        let rows = self.unresolved(now.saturating_sub(RELEASE_GRACE_SECS))?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // The block is read before the authorizations, so "unused" holds at or after it.
        let (chain_id, latest, chain_time) = chain_state(http, rpc_url).await?;
        let mut outcomes = Vec::with_capacity(rows.len());
        for record in rows {
            let question = match Question::of(&record, chain_id) {
                Ok(question) => question,
                Err(reason) => {
                    outcomes.push(Reconciled {
                        id: record.id,
                        outcome: Outcome::Skipped { reason },
                    });
                    continue;
                }
            };
            let used = question.is_used(http, rpc_url).await?;
            let valid_before = question.valid_before;
            let outcome = match decide(used, valid_before, chain_time, now) {
                Decision::Paid => {
                    let transaction = question
                        .used_in(http, rpc_url, latest)
                        .await
                        .unwrap_or_else(|error| {
                            tracing::debug!(%error, id = record.id, "no AuthorizationUsed log");
                            None
                        });
                    let detail = match &transaction {
                        Some(_) => "reconciled: the authorization was used on chain",
                        None => {
                            "reconciled: the authorization was used on chain (transaction not found)"
                        }
                    };
                    self.settle_row(record.id, "paid", transaction.as_deref(), detail)?
                        .then_some(Outcome::Paid { transaction })
                }
                Decision::Released => self
                    .settle_row(
                        record.id,
                        "released",
                        None,
                        "reconciled: the authorization expired unused",
                    )?
                    .then_some(Outcome::Released),
                Decision::StillValid => Some(Outcome::StillValid { valid_before }),
            };
            outcomes.push(Reconciled {
                id: record.id,
                outcome: outcome.unwrap_or_else(|| Outcome::Skipped {
                    reason: "its outcome was recorded while reconciling".to_owned(),
                }),
            });
        }
        Ok(outcomes)
    }

    fn settle_row(
        &self,
        id: i64,
        status: &str,
        transaction: Option<&str>,
        detail: &str,
    ) -> Result<bool, LedgerError> {
        self.transition(
            id,
            &["unknown", "reserved"],
            status,
            transaction,
            Some(detail),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_is_paid_and_unused_is_released_only_once_expired() {
        let now = 1_000_000;
        assert_eq!(decide(true, now + 100, now, now), Decision::Paid);
        assert_eq!(decide(true, now - 100, now, now), Decision::Paid);
        assert_eq!(decide(false, now + 100, now, now), Decision::StillValid);
        // The chain's latest block is at validBefore: no block can include it any more.
        assert_eq!(decide(false, now, now, now), Decision::Released);
        // An idle chain: the clock decides, after the grace period only.
        assert_eq!(decide(false, now - 10, now - 50, now), Decision::StillValid);
        assert_eq!(
            decide(false, now - RELEASE_GRACE_SECS, now - 500, now),
            Decision::Released
        );
    }
}
