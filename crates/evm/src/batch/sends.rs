//! Sending a `batch-settlement` transaction at most once: a deposit (keyed by the payer, its
//! ERC-3009 nonce and its signature), a claim batch (by its EIP-712 digest) or a refund (by the
//! channel, its refund nonce and amount) is sent once however often and however concurrently it is asked; a repeat is
//! answered for the transaction sent. Sends are recorded through [`BatchSendLog`] before their
//! transaction is broadcast ([`MemoryBatchLog`], in memory, by default; a facilitator with a
//! durable log implements the seam over it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use alloy::primitives::{Address, B256, Bytes};
use alloy::rpc::types::TransactionReceipt;
use x402_proto::{BoxFuture, FacilitatorError, Network, ReasonCode, SettleResponse};

use super::onchain::{Mined, wait_mined};
use crate::scheme::ExactEvmScheme;
use crate::sender::{BroadcastError, Sent};

/// What makes two settle calls the same send: `deposit:<payer>:<erc3009 nonce>:<signature
/// digest>`, `claim:<claim batch digest>`, `refund:<channel id, refund nonce, amount>`, each on
/// one chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchSendKey(String);

impl BatchSendKey {
    /// The key of something sent on chain `chain_id`, named by `parts`.
    pub fn new(chain_id: u64, parts: &[&str]) -> Self {
        Self(format!("eip155:{chain_id}:{}", parts.join(":")))
    }

    /// As stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key as a log stored it.
    pub fn stored(text: impl Into<String>) -> Self {
        Self(text.into())
    }
}

/// A send as it is recorded: its transaction, then its answer once it is known.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSend {
    /// The transaction's hash.
    pub tx_hash: B256,
    /// The answer, once the transaction is mined (or refused).
    pub answer: Option<SettleResponse>,
}

/// Where batch-settlement sends are recorded. `record` is durable before it returns (the
/// transaction is broadcast right after).
pub trait BatchSendLog: Send + Sync + std::fmt::Debug {
    /// The send recorded under `key`, if any.
    fn find<'a>(
        &'a self,
        key: &'a BatchSendKey,
    ) -> BoxFuture<'a, Result<Option<BatchSend>, FacilitatorError>>;

    /// Records that `tx_hash` is about to be broadcast for `key`: `false` (nothing written)
    /// when a send is recorded under `key` already.
    fn record<'a>(
        &'a self,
        key: &'a BatchSendKey,
        tx_hash: B256,
    ) -> BoxFuture<'a, Result<bool, FacilitatorError>>;

    /// Ends the send under `key` with `answer`.
    fn finish<'a>(
        &'a self,
        key: &'a BatchSendKey,
        answer: &'a SettleResponse,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>>;

    /// Forgets the send under `key`: its transaction was refused, nothing is in the chain's
    /// hands, and asking again may send anew.
    fn forget<'a>(&'a self, key: &'a BatchSendKey) -> BoxFuture<'a, Result<(), FacilitatorError>>;
}

/// [`BatchSendLog`] in memory: lost at restart.
#[derive(Debug, Default)]
pub struct MemoryBatchLog {
    sends: Mutex<HashMap<BatchSendKey, BatchSend>>,
}

impl MemoryBatchLog {
    fn sends(&self) -> std::sync::MutexGuard<'_, HashMap<BatchSendKey, BatchSend>> {
        self.sends
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl BatchSendLog for MemoryBatchLog {
    fn find<'a>(
        &'a self,
        key: &'a BatchSendKey,
    ) -> BoxFuture<'a, Result<Option<BatchSend>, FacilitatorError>> {
        let found = self.sends().get(key).cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn record<'a>(
        &'a self,
        key: &'a BatchSendKey,
        tx_hash: B256,
    ) -> BoxFuture<'a, Result<bool, FacilitatorError>> {
        let mut sends = self.sends();
        let fresh = !sends.contains_key(key);
        if fresh {
            sends.insert(
                key.clone(),
                BatchSend {
                    tx_hash,
                    answer: None,
                },
            );
        }
        Box::pin(std::future::ready(Ok(fresh)))
    }

    fn finish<'a>(
        &'a self,
        key: &'a BatchSendKey,
        answer: &'a SettleResponse,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        if let Some(send) = self.sends().get_mut(key) {
            send.answer = Some(answer.clone());
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn forget<'a>(&'a self, key: &'a BatchSendKey) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        self.sends().remove(key);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A transaction to send: the escrow call, its gas, and how its answers are named.
pub(super) struct Planned {
    pub(super) input: Vec<u8>,
    pub(super) gas: u64,
    /// The code of a transaction refused or mined reverted.
    pub(super) failed: ReasonCode,
    /// The answer's `payer`.
    pub(super) payer: Option<String>,
}

/// What a settle's checks decided.
pub(super) enum Plan {
    /// Send this.
    Send(Planned),
    /// Refused: this answer, nothing sent.
    Refused(SettleResponse),
}

/// The sends of one facilitator: the log, and one turn at a time per key.
#[derive(Debug, Clone)]
pub(super) struct BatchSends {
    log: Arc<dyn BatchSendLog>,
    turns: Arc<Mutex<HashMap<BatchSendKey, Arc<tokio::sync::Mutex<()>>>>>,
}

impl BatchSends {
    pub(super) fn new(log: Arc<dyn BatchSendLog>) -> Self {
        Self {
            log,
            turns: Arc::default(),
        }
    }

    fn turn(&self, key: &BatchSendKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self
            .turns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Turns nobody holds or waits for are dropped as new ones are taken.
        turns.retain(|_, turn| Arc::strong_count(turn) > 1);
        turns.entry(key.clone()).or_default().clone()
    }

    /// Settles once under `key` on `chain`: in turn with other calls of the same key; for the
    /// send recorded already, when there is one (its answer, or the outcome of its
    /// transaction); otherwise as `plan` (the checks, run only then) decides. A mined
    /// transaction's answer is `success(receipt)`.
    pub(super) async fn once<S, F>(
        &self,
        chain: &ExactEvmScheme,
        network: &Network,
        key: Option<BatchSendKey>,
        plan: impl Future<Output = Result<Plan, FacilitatorError>>,
        success: S,
    ) -> Result<SettleResponse, FacilitatorError>
    where
        S: Fn(B256, Box<TransactionReceipt>, Option<String>) -> F,
        F: Future<Output = SettleResponse>,
    {
        let turn = key.as_ref().map(|key| self.turn(key));
        let _turn = match &turn {
            Some(turn) => Some(turn.lock().await),
            None => None,
        };
        if let Some(key) = &key
            && let Some(send) = self.log.find(key).await?
        {
            if let Some(answer) = send.answer {
                return Ok(answer);
            }
            // Sent before (by a call that gave up waiting, or before a restart): its outcome.
            let failed = ReasonCode::SETTLEMENT_PENDING;
            return self
                .conclude(chain, network, key, send.tx_hash, failed, None, &success)
                .await;
        }
        let planned = match plan.await? {
            Plan::Refused(answer) => return Ok(answer),
            Plan::Send(planned) => planned,
        };
        let slot = chain.reserve_send().await.map_err(unavailable)?;
        let signed = slot
            .sign_call(
                super::BATCH_SETTLEMENT_ADDRESS,
                planned.input.clone(),
                planned.gas,
            )
            .await
            .map_err(unavailable)?;
        if let Some(key) = &key
            && !self.log.record(key, signed.tx_hash).await?
        {
            return Err(FacilitatorError::Unavailable(
                "this settlement was sent concurrently; settle again for its outcome".into(),
            ));
        }
        let tx_hash = signed.tx_hash;
        match slot.broadcast(&signed).await {
            Ok(Sent::Mined(receipt)) => {
                let answer = judge(tx_hash, receipt, network, &planned, &success).await;
                if let Some(key) = &key {
                    self.log.finish(key, &answer).await?;
                }
                Ok(answer)
            }
            Ok(Sent::Pooled) | Err(BroadcastError::Uncertain { .. }) => match &key {
                Some(key) => {
                    let failed = planned.failed.clone();
                    let payer = planned.payer.clone();
                    self.conclude(chain, network, key, tx_hash, failed, payer, &success)
                        .await
                }
                None => Ok(match wait_mined(chain, tx_hash).await {
                    Mined::Receipt(receipt) => {
                        judge(tx_hash, receipt, network, &planned, &success).await
                    }
                    Mined::Pending => pending(network, tx_hash, planned.payer.clone()),
                }),
            },
            Err(BroadcastError::Refused { reason, .. }) => {
                if let Some(key) = &key {
                    self.log.forget(key).await?;
                }
                Ok(SettleResponse::failure(
                    network.clone(),
                    planned.failed,
                    reason,
                    planned.payer,
                    None,
                ))
            }
        }
    }

    /// Waits for `tx_hash` (recorded under `key`) and writes down its answer once mined.
    #[allow(clippy::too_many_arguments)]
    async fn conclude<S, F>(
        &self,
        chain: &ExactEvmScheme,
        network: &Network,
        key: &BatchSendKey,
        tx_hash: B256,
        failed: ReasonCode,
        payer: Option<String>,
        success: &S,
    ) -> Result<SettleResponse, FacilitatorError>
    where
        S: Fn(B256, Box<TransactionReceipt>, Option<String>) -> F,
        F: Future<Output = SettleResponse>,
    {
        match wait_mined(chain, tx_hash).await {
            Mined::Pending => Ok(pending(network, tx_hash, payer)),
            Mined::Receipt(receipt) => {
                let planned = Planned {
                    input: Vec::new(),
                    gas: 0,
                    failed,
                    payer,
                };
                let answer = judge(tx_hash, receipt, network, &planned, success).await;
                self.log.finish(key, &answer).await?;
                Ok(answer)
            }
        }
    }
}

/// The answer for a mined transaction: `success`'s when it did not revert.
async fn judge<S, F>(
    tx_hash: B256,
    receipt: Box<TransactionReceipt>,
    network: &Network,
    planned: &Planned,
    success: &S,
) -> SettleResponse
where
    S: Fn(B256, Box<TransactionReceipt>, Option<String>) -> F,
    F: Future<Output = SettleResponse>,
{
    if receipt.status() {
        return success(tx_hash, receipt, planned.payer.clone()).await;
    }
    SettleResponse::failure(
        network.clone(),
        planned.failed.clone(),
        "the transaction was mined and reverted",
        planned.payer.clone(),
        Some(tx_hash.to_string()),
    )
}

fn pending(network: &Network, tx_hash: B256, payer: Option<String>) -> SettleResponse {
    SettleResponse::failure(
        network.clone(),
        ReasonCode::SETTLEMENT_PENDING,
        "sent, not confirmed yet; settle again with the same payload for its outcome",
        payer,
        Some(tx_hash.to_string()),
    )
}

fn unavailable(error: impl std::fmt::Display) -> FacilitatorError {
    FacilitatorError::Unavailable(error.to_string())
}

/// The key of a deposit: its payer, its ERC-3009 nonce and a digest of its signature (another
/// authorization reusing the nonce is another send, which the token refuses).
pub(super) fn deposit_key(
    chain_id: u64,
    payer: Address,
    nonce: &B256,
    signature: &[u8],
) -> BatchSendKey {
    let signed = alloy::primitives::keccak256(signature);
    let (payer, nonce, signed) = (format!("{payer:#x}"), nonce.to_string(), signed.to_string());
    BatchSendKey::new(chain_id, &["deposit", &payer, &nonce, &signed])
}

/// The key of anything else: its kind and a digest of what it does.
pub(super) fn digest_key(chain_id: u64, kind: &str, digest: &[u8]) -> BatchSendKey {
    BatchSendKey::new(
        chain_id,
        &[kind, &Bytes::copy_from_slice(digest).to_string()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_recorded_once_and_forgotten_only_when_asked() {
        let log = MemoryBatchLog::default();
        let key = deposit_key(8453, Address::repeat_byte(1), &B256::repeat_byte(2), &[7]);
        assert_ne!(
            key,
            deposit_key(8453, Address::repeat_byte(1), &B256::repeat_byte(2), &[8])
        );
        assert!(log.record(&key, B256::repeat_byte(3)).await.unwrap());
        assert!(!log.record(&key, B256::repeat_byte(4)).await.unwrap());
        let sent = log.find(&key).await.unwrap().unwrap();
        assert_eq!(sent.tx_hash, B256::repeat_byte(3));
        log.forget(&key).await.unwrap();
        assert!(log.find(&key).await.unwrap().is_none());
        assert_ne!(key, digest_key(8453, "deposit", &[1]));
    }
}
