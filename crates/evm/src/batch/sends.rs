//! Sending a `batch-settlement` transaction at most once: a deposit (keyed by the payer, its
//! ERC-3009 or Permit2 nonce and its signature), a claim batch (by its EIP-712 digest), a
//! refund (by the channel, its refund nonce and amount) or a settle (by the receiver, the
//! token and what the receiver had claimed when it was sent) is sent once however often and
//! however concurrently it is asked; a repeat is answered for the transaction sent.
//!
//! Sends are recorded through [`BatchSendLog`] with their signed transaction and their
//! request before the transaction is broadcast ([`MemoryBatchLog`], in memory, by default; a
//! facilitator with a durable log implements the seam over it). A transaction left unmined is
//! followed in the background: rebroadcast when the node lost it, replaced with higher fees on
//! its nonce once stuck (as the `exact` path's), forgotten once its nonce went to another
//! transaction (nothing moved: asking again sends anew). At start, what a previous run left
//! unfinished is reconciled the same way ([`super::BatchEvmFacilitator::reconcile`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionReceipt;
use x402_proto::{BoxFuture, FacilitatorError, Network, ReasonCode, SettleResponse};

use crate::chain::PollBackoff;
use crate::permit2::{Turns, unavailable};
use crate::scheme::ExactEvmScheme;
use crate::sender::{BroadcastError, Replacement, Sent};

/// What makes two settle calls the same send: `deposit:<payer>:<erc3009 nonce>:<signature
/// digest>`, `deposit-permit2:<owner>:<permit2 nonce>:<signature digest>`, `claim:<claim batch
/// digest>`, `refund:<channel id, refund nonce, amount>`, `settle:<receiver>:<token>:<total
/// claimed>`, each on one chain.
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

/// One signed transaction of a send: the first, or a replacement with higher fees on its
/// nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchTx {
    /// The transaction's hash.
    pub tx_hash: B256,
    /// The signed transaction, EIP-2718 encoded (empty when a log from before kept none).
    pub raw: Bytes,
    /// The signer's nonce it uses.
    pub signer_nonce: u64,
}

/// A send as it is recorded: its transactions, its request, then its answer once it is known.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSend {
    /// Its transactions, oldest first (never empty).
    pub txs: Vec<BatchTx>,
    /// The `/settle` request it answers, as JSON (empty when a log from before kept none).
    pub request: String,
    /// The answer, once the transaction is mined (or refused).
    pub answer: Option<SettleResponse>,
}

impl BatchSend {
    /// The newest transaction (the one to rebroadcast or replace).
    pub fn newest(&self) -> Option<&BatchTx> {
        self.txs.last()
    }
}

/// Where batch-settlement sends are recorded. `record` and `add_transaction` are durable
/// before they return (the transaction is broadcast right after).
pub trait BatchSendLog: Send + Sync + std::fmt::Debug {
    /// The send recorded under `key`, if any.
    fn find<'a>(
        &'a self,
        key: &'a BatchSendKey,
    ) -> BoxFuture<'a, Result<Option<BatchSend>, FacilitatorError>>;

    /// Records that `tx` is about to be broadcast for `key`, answering `request` (JSON):
    /// `false` (nothing written) when a send is recorded under `key` already.
    fn record<'a>(
        &'a self,
        key: &'a BatchSendKey,
        tx: &'a BatchTx,
        request: &'a str,
    ) -> BoxFuture<'a, Result<bool, FacilitatorError>>;

    /// Adds `tx` (a replacement with higher fees) to the send under `key`.
    fn add_transaction<'a>(
        &'a self,
        key: &'a BatchSendKey,
        tx: &'a BatchTx,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>>;

    /// Ends the send under `key` with `answer`.
    fn finish<'a>(
        &'a self,
        key: &'a BatchSendKey,
        answer: &'a SettleResponse,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>>;

    /// Forgets the send under `key`: its transaction was refused or can no longer be mined,
    /// nothing is in the chain's hands, and asking again may send anew.
    fn forget<'a>(&'a self, key: &'a BatchSendKey) -> BoxFuture<'a, Result<(), FacilitatorError>>;

    /// The sends without an answer yet (to reconcile at start).
    fn unfinished(&self)
    -> BoxFuture<'_, Result<Vec<(BatchSendKey, BatchSend)>, FacilitatorError>>;
}

/// [`BatchSendLog`] in memory: lost at restart.
#[derive(Debug, Default)]
pub struct MemoryBatchLog {
    sends: Mutex<HashMap<BatchSendKey, BatchSend>>,
}

impl MemoryBatchLog {
    fn sends(&self) -> std::sync::MutexGuard<'_, HashMap<BatchSendKey, BatchSend>> {
        self.sends.lock().unwrap_or_else(PoisonError::into_inner)
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
        tx: &'a BatchTx,
        request: &'a str,
    ) -> BoxFuture<'a, Result<bool, FacilitatorError>> {
        let mut sends = self.sends();
        let fresh = !sends.contains_key(key);
        if fresh {
            let send = BatchSend {
                txs: vec![tx.clone()],
                request: request.to_owned(),
                answer: None,
            };
            sends.insert(key.clone(), send);
        }
        Box::pin(std::future::ready(Ok(fresh)))
    }

    fn add_transaction<'a>(
        &'a self,
        key: &'a BatchSendKey,
        tx: &'a BatchTx,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        if let Some(send) = self.sends().get_mut(key) {
            send.txs.push(tx.clone());
        }
        Box::pin(std::future::ready(Ok(())))
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

    fn unfinished(
        &self,
    ) -> BoxFuture<'_, Result<Vec<(BatchSendKey, BatchSend)>, FacilitatorError>> {
        let open = self
            .sends()
            .iter()
            .filter(|(_, send)| send.answer.is_none())
            .map(|(key, send)| (key.clone(), send.clone()))
            .collect();
        Box::pin(std::future::ready(Ok(open)))
    }
}

/// A transaction to send: the escrow call and its gas.
pub(super) struct Planned {
    pub(super) input: Vec<u8>,
    pub(super) gas: u64,
}

/// How a send's answers are named.
#[derive(Clone)]
pub(super) struct Naming {
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

/// Where a recorded send's transactions stand on chain.
pub(super) enum Standing {
    /// One of them is mined.
    Mined,
    /// None is mined and the signer's nonce they use went to another transaction: none can
    /// be mined any more.
    Dead,
    /// None is mined yet; they may be.
    Pending,
}

/// How often a followed send checks that the node still has its transaction.
const LIVENESS_CHECK_EVERY: Duration = Duration::from_secs(2);

/// The sends of one facilitator: the log, one turn at a time per key, the sends followed in
/// the background, and the claims not known mined per (receiver, token).
#[derive(Debug, Clone)]
pub(super) struct BatchSends {
    pub(super) log: Arc<dyn BatchSendLog>,
    turns: Arc<Turns<BatchSendKey>>,
    followed: Arc<Mutex<HashSet<BatchSendKey>>>,
    claims: Arc<Mutex<Claiming>>,
}

/// The sends claiming for each (receiver, token), until known mined.
type Claiming = HashMap<(Address, Address), HashSet<BatchSendKey>>;

impl BatchSends {
    pub(super) fn new(log: Arc<dyn BatchSendLog>) -> Self {
        Self {
            log,
            turns: Arc::default(),
            followed: Arc::default(),
            claims: Arc::default(),
        }
    }

    /// Settles once under `key` on `chain`, for `request` (recorded with the send): in turn
    /// with other calls of the same key; for the send recorded already, when there is one (its
    /// answer, or the outcome of its transactions); otherwise as `plan` (the checks, run only
    /// then) decides. A mined transaction's answer is `success(receipt)`. A transaction not
    /// mined within the chain's receipt timeout is answered `settlement_pending` and followed
    /// in the background.
    pub(super) async fn once<S, F>(
        &self,
        chain: &Arc<ExactEvmScheme>,
        network: &Network,
        key: BatchSendKey,
        (request, naming): (&str, &Naming),
        plan: impl Future<Output = Result<Plan, FacilitatorError>>,
        success: S,
    ) -> Result<SettleResponse, FacilitatorError>
    where
        S: Fn(B256, Box<TransactionReceipt>, Option<String>) -> F,
        F: Future<Output = SettleResponse>,
    {
        let _turn = self.turns.take(key.clone()).await;
        if let Some(send) = self.log.find(&key).await? {
            if let Some(answer) = send.answer {
                return Ok(answer);
            }
            // Sent before (by a call that gave up waiting, or before a restart): its outcome.
            return self.conclude(chain, network, &key, naming, &success).await;
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
        let tx = BatchTx {
            tx_hash: signed.tx_hash,
            raw: signed.raw.clone(),
            signer_nonce: signed.signer_nonce,
        };
        // Recorded before the broadcast: whatever happens next, the transaction is found
        // again. A slot dropped without a broadcast gives its nonce back.
        if !self.log.record(&key, &tx, request).await? {
            return Err(FacilitatorError::Unavailable(
                "this settlement was sent concurrently; settle again for its outcome".into(),
            ));
        }
        let tx_hash = signed.tx_hash;
        match slot.broadcast(&signed).await {
            Ok(Sent::Mined(receipt)) => {
                let answer = judge(tx_hash, receipt, network, naming, &success).await;
                self.log.finish(&key, &answer).await?;
                Ok(answer)
            }
            Ok(Sent::Pooled) | Err(BroadcastError::Uncertain { .. }) => {
                self.conclude(chain, network, &key, naming, &success).await
            }
            Err(BroadcastError::Refused { reason, .. }) => {
                self.log.forget(&key).await?;
                Ok(SettleResponse::failure(
                    network.clone(),
                    naming.failed.clone(),
                    reason,
                    naming.payer.clone(),
                    None,
                ))
            }
        }
    }

    /// Waits (within the chain's receipt timeout) for one of the transactions recorded under
    /// `key` to be mined and writes down its answer; else answers `settlement_pending` and
    /// follows the send in the background.
    async fn conclude<S, F>(
        &self,
        chain: &Arc<ExactEvmScheme>,
        network: &Network,
        key: &BatchSendKey,
        naming: &Naming,
        success: &S,
    ) -> Result<SettleResponse, FacilitatorError>
    where
        S: Fn(B256, Box<TransactionReceipt>, Option<String>) -> F,
        F: Future<Output = SettleResponse>,
    {
        match self.wait_mined(chain, key).await? {
            Waited::Pending(tx_hash) => {
                self.follow(chain, key.clone());
                Ok(pending(network, tx_hash, naming.payer.clone()))
            }
            Waited::Forgotten => Ok(SettleResponse::failure(
                network.clone(),
                naming.failed.clone(),
                "the transaction sent was dropped and can no longer be mined; nothing moved, settle again",
                naming.payer.clone(),
                None,
            )),
            Waited::Mined(tx_hash, receipt) => {
                let answer = judge(tx_hash, receipt, network, naming, success).await;
                self.log.finish(key, &answer).await?;
                Ok(answer)
            }
        }
    }

    /// Polls the receipts of every transaction recorded under `key` (read again from the log
    /// each round: a replacement may come) for at most the chain's receipt timeout.
    async fn wait_mined(
        &self,
        chain: &ExactEvmScheme,
        key: &BatchSendKey,
    ) -> Result<Waited, FacilitatorError> {
        let started = Instant::now();
        let mut backoff = PollBackoff::new(chain.poll_interval());
        loop {
            let Some(send) = self.log.find(key).await? else {
                return Ok(Waited::Forgotten);
            };
            if let Some((tx_hash, receipt)) = mined(chain, &send).await {
                return Ok(Waited::Mined(tx_hash, receipt));
            }
            if started.elapsed() >= chain.receipt_timeout() {
                let newest = send.newest().map(|tx| tx.tx_hash).unwrap_or_default();
                return Ok(Waited::Pending(newest));
            }
            tokio::time::sleep(backoff.next_wait()).await;
        }
    }

    /// Where the transactions of `send` stand: one mined, all dead (the nonce they share went
    /// to another transaction), or pending. `None` when the chain could not be asked.
    pub(super) async fn standing(
        &self,
        chain: &ExactEvmScheme,
        send: &BatchSend,
    ) -> Option<Standing> {
        // The nonce first: a transaction mined after the receipts were asked is not taken
        // for dead.
        let mined_nonce = chain.mined_nonce().await.ok()?;
        if mined(chain, send).await.is_some() {
            return Some(Standing::Mined);
        }
        let nonce = send.newest()?.signer_nonce;
        Some(if mined_nonce > nonce {
            Standing::Dead
        } else {
            Standing::Pending
        })
    }

    /// Follows the send under `key` in the background until one of its transactions is mined
    /// or none can be: rebroadcasts it when the node lost it, replaces it with higher fees on
    /// its nonce once it waited the chain's `stuck_after` (at most `max_bumps` times, never
    /// above the cap), forgets it once its nonce went to another transaction. Once per key
    /// at a time.
    pub(super) fn follow(&self, chain: &Arc<ExactEvmScheme>, key: BatchSendKey) {
        {
            let mut followed = self.followed.lock().unwrap_or_else(PoisonError::into_inner);
            if !followed.insert(key.clone()) {
                return;
            }
        }
        let (sends, chain) = (self.clone(), Arc::clone(chain));
        tokio::spawn(async move {
            if let Err(error) = sends.track(&chain, &key).await {
                tracing::warn!(key = key.as_str(), %error, "stopped following a batch-settlement send");
            }
            sends
                .followed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        });
    }

    async fn track(
        &self,
        chain: &ExactEvmScheme,
        key: &BatchSendKey,
    ) -> Result<(), FacilitatorError> {
        let mut since = Instant::now();
        let mut last_check = Instant::now();
        let mut bumps_done = false;
        let mut backoff = PollBackoff::new(chain.poll_interval());
        loop {
            let Some(send) = self.log.find(key).await? else {
                return Ok(());
            };
            if send.answer.is_some() {
                return Ok(());
            }
            if last_check.elapsed() >= LIVENESS_CHECK_EVERY {
                last_check = Instant::now();
                match self.standing(chain, &send).await {
                    Some(Standing::Mined) => return Ok(()),
                    Some(Standing::Dead) => {
                        tracing::info!(
                            key = key.as_str(),
                            "a batch-settlement transaction lost its nonce to another; forgetting it"
                        );
                        return self.log.forget(key).await;
                    }
                    Some(Standing::Pending) => keep_in_pool(chain, &send).await,
                    None => {}
                }
            } else if mined(chain, &send).await.is_some() {
                return Ok(());
            }
            if !bumps_done && since.elapsed() >= chain.stuck_after() {
                since = Instant::now();
                bumps_done = self.bump(chain, key, &send).await?;
            }
            tokio::time::sleep(backoff.next_wait()).await;
        }
    }

    /// Replaces the newest transaction of `send` with higher fees on its nonce, recorded
    /// before it is broadcast. `true` when no further bump is possible.
    async fn bump(
        &self,
        chain: &ExactEvmScheme,
        key: &BatchSendKey,
        send: &BatchSend,
    ) -> Result<bool, FacilitatorError> {
        let Some(newest) = send.newest().filter(|tx| !tx.raw.is_empty()) else {
            return Ok(true);
        };
        let bumps = send
            .txs
            .iter()
            .filter(|tx| tx.signer_nonce == newest.signer_nonce)
            .count()
            - 1;
        let max_bumps = usize::try_from(chain.fee_bump().max_bumps).unwrap_or(usize::MAX);
        if bumps >= max_bumps {
            tracing::warn!(key = key.as_str(), tx_hash = %newest.tx_hash, bumps, "batch-settlement transaction still unmined and out of fee bumps; waiting for it");
            return Ok(true);
        }
        let signed = match chain.replacement(&newest.raw).await {
            Ok(Replacement::Signed(signed)) => signed,
            Ok(Replacement::AtCap { .. }) => {
                tracing::warn!(key = key.as_str(), tx_hash = %newest.tx_hash, "batch-settlement transaction still unmined and its fees are at the cap; waiting for it");
                return Ok(true);
            }
            Err(error) => {
                tracing::warn!(key = key.as_str(), %error, "could not prepare a fee bump; trying again later");
                return Ok(false);
            }
        };
        let tx = BatchTx {
            tx_hash: signed.tx_hash,
            raw: signed.raw.clone(),
            signer_nonce: signed.signer_nonce,
        };
        self.log.add_transaction(key, &tx).await?;
        match chain.rebroadcast(&signed.raw).await {
            Ok(()) => {
                tracing::info!(key = key.as_str(), replaced = %newest.tx_hash, tx_hash = %tx.tx_hash, "replaced an unmined batch-settlement transaction with higher fees")
            }
            Err(error) => {
                tracing::info!(key = key.as_str(), tx_hash = %tx.tx_hash, %error, "fee bump not accepted")
            }
        }
        Ok(false)
    }

    /// Notes that the send under `key` claims for each of `receivers` (receiver, token): a
    /// settle of one waits for it to be mined first.
    pub(super) fn claiming(
        &self,
        key: &BatchSendKey,
        receivers: impl IntoIterator<Item = (Address, Address)>,
    ) {
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        for receiver in receivers {
            claims.entry(receiver).or_default().insert(key.clone());
        }
    }

    /// Waits (within the chain's receipt timeout each) for the claims sent for `receiver`
    /// and `token` to be mined: a settle read before them would pay less, or nothing. `Err`
    /// names a claim's transaction still not mined.
    pub(super) async fn claims_mined(
        &self,
        chain: &ExactEvmScheme,
        receiver: Address,
        token: Address,
    ) -> Result<Result<(), B256>, FacilitatorError> {
        let keys: Vec<BatchSendKey> = {
            let claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
            claims
                .get(&(receiver, token))
                .map(|keys| keys.iter().cloned().collect())
                .unwrap_or_default()
        };
        for key in keys {
            let settled = match self.log.find(&key).await? {
                None => true,
                Some(send) if send.answer.is_some() => true,
                Some(_) => match self.wait_mined(chain, &key).await? {
                    Waited::Pending(tx_hash) => return Ok(Err(tx_hash)),
                    Waited::Mined(..) | Waited::Forgotten => true,
                },
            };
            if settled {
                let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(keys) = claims.get_mut(&(receiver, token)) {
                    keys.remove(&key);
                    if keys.is_empty() {
                        claims.remove(&(receiver, token));
                    }
                }
            }
        }
        Ok(Ok(()))
    }
}

/// What waiting for a send's transactions gave.
enum Waited {
    /// This one was mined.
    Mined(B256, Box<TransactionReceipt>),
    /// None was mined in time; the newest is this.
    Pending(B256),
    /// The send is no longer recorded.
    Forgotten,
}

/// The receipt of whichever transaction of `send` is mined, if one is.
async fn mined(
    chain: &ExactEvmScheme,
    send: &BatchSend,
) -> Option<(B256, Box<TransactionReceipt>)> {
    for tx in send.txs.iter().rev() {
        match chain.provider().get_transaction_receipt(tx.tx_hash).await {
            Ok(Some(receipt)) => return Some((tx.tx_hash, Box::new(receipt))),
            Ok(None) => {}
            Err(error) => tracing::debug!(tx_hash = %tx.tx_hash, %error, "receipt poll failed"),
        }
    }
    None
}

/// Rebroadcasts the newest transaction of `send` when the node does not know it.
pub(super) async fn keep_in_pool(chain: &ExactEvmScheme, send: &BatchSend) {
    let Some(newest) = send.newest().filter(|tx| !tx.raw.is_empty()) else {
        return;
    };
    if let Ok(None) = chain
        .provider()
        .get_transaction_by_hash(newest.tx_hash)
        .await
    {
        match chain.rebroadcast(&newest.raw).await {
            Ok(()) => {
                tracing::info!(tx_hash = %newest.tx_hash, "rebroadcast a batch-settlement transaction the node had lost")
            }
            Err(error) => tracing::info!(tx_hash = %newest.tx_hash, %error, "rebroadcast refused"),
        }
    }
}

/// The answer for a mined transaction: `success`'s when it did not revert.
async fn judge<S, F>(
    tx_hash: B256,
    receipt: Box<TransactionReceipt>,
    network: &Network,
    naming: &Naming,
    success: &S,
) -> SettleResponse
where
    S: Fn(B256, Box<TransactionReceipt>, Option<String>) -> F,
    F: Future<Output = SettleResponse>,
{
    if receipt.status() {
        return success(tx_hash, receipt, naming.payer.clone()).await;
    }
    SettleResponse::failure(
        network.clone(),
        naming.failed.clone(),
        "the transaction was mined and reverted",
        naming.payer.clone(),
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

/// The key of a Permit2 deposit: its owner, its Permit2 nonce and a digest of its signature.
pub(super) fn permit2_deposit_key(
    chain_id: u64,
    owner: Address,
    nonce: alloy::primitives::U256,
    signature: &[u8],
) -> BatchSendKey {
    let signed = alloy::primitives::keccak256(signature);
    let (owner, nonce, signed) = (format!("{owner:#x}"), nonce.to_string(), signed.to_string());
    BatchSendKey::new(chain_id, &["deposit-permit2", &owner, &nonce, &signed])
}

/// The key of a settle: the receiver, the token, and what the receiver had claimed in all
/// when it was sent (a settle after more claims is another send).
pub(super) fn settle_key(
    chain_id: u64,
    receiver: Address,
    token: Address,
    total_claimed: u128,
) -> BatchSendKey {
    let (receiver, token) = (format!("{receiver:#x}"), format!("{token:#x}"));
    BatchSendKey::new(
        chain_id,
        &["settle", &receiver, &token, &total_claimed.to_string()],
    )
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

    fn tx(byte: u8) -> BatchTx {
        BatchTx {
            tx_hash: B256::repeat_byte(byte),
            raw: Bytes::from(vec![byte]),
            signer_nonce: 4,
        }
    }

    #[tokio::test]
    async fn a_key_is_recorded_once_and_forgotten_only_when_asked() {
        let log = MemoryBatchLog::default();
        let key = deposit_key(8453, Address::repeat_byte(1), &B256::repeat_byte(2), &[7]);
        assert_ne!(
            key,
            deposit_key(8453, Address::repeat_byte(1), &B256::repeat_byte(2), &[8])
        );
        assert!(log.record(&key, &tx(3), "{}").await.unwrap());
        assert!(!log.record(&key, &tx(4), "{}").await.unwrap());
        log.add_transaction(&key, &tx(5)).await.unwrap();
        let sent = log.find(&key).await.unwrap().unwrap();
        assert_eq!(sent.txs, vec![tx(3), tx(5)]);
        assert_eq!(log.unfinished().await.unwrap().len(), 1);
        let answer = SettleResponse::success(Network::eip155(8453), None, "0x05");
        log.finish(&key, &answer).await.unwrap();
        assert!(log.unfinished().await.unwrap().is_empty());
        log.forget(&key).await.unwrap();
        assert!(log.find(&key).await.unwrap().is_none());
        assert_ne!(key, digest_key(8453, "deposit", &[1]));
        assert_ne!(
            settle_key(8453, Address::repeat_byte(1), Address::repeat_byte(2), 10),
            settle_key(8453, Address::repeat_byte(1), Address::repeat_byte(2), 11)
        );
    }
}
