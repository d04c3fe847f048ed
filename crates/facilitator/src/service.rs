//! The facilitator: verification, and settlement that is recorded before it is broadcast, runs
//! once per payment however many callers ask, and is tracked to its end.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256, keccak256};
use serde::Serialize;
use tokio::sync::watch;
use x402_evm::{
    BroadcastError, ExactEvmPayload, ExactEvmScheme, PollBackoff, Replacement, SettleError,
    TransferExpectation, TxStatus, VerifiedPayment, VerifyError, claimed_payer, verify_refusal,
};
use x402_proto::{
    BoxFuture, Facilitator, FacilitatorError, IdempotencyKey, Network, PaymentId, PaymentIdError,
    PaymentRequest, ReasonCode, Scheme, SettleResponse, SupportedKind, SupportedResponse,
    VerifyResponse,
};

use crate::config::AssetConfig;
use crate::metrics::Metrics;
use crate::store::{
    Claim, NewSettlement, SettlementKey, SettlementRecord, SettlementState, SettlementStore,
    StoreError, TxRecord,
};

/// How often a settlement whose receipt has not come checks that the node still has its
/// transaction (and rebroadcasts it when not).
const LIVENESS_CHECK_EVERY: Duration = Duration::from_secs(2);

/// How many signer nonces one settlement may use in all (the first, plus new transactions
/// for ones the chain dropped). Fee bumps reuse their transaction's nonce and do not count.
const MAX_SENDS: usize = 3;

/// How many distinct signer nonces `txs` use.
fn nonces_used(txs: &[TxRecord]) -> usize {
    let mut nonces: Vec<u64> = txs.iter().map(|tx| tx.signer_nonce).collect();
    nonces.sort_unstable();
    nonces.dedup();
    nonces.len()
}

/// One chain served.
#[derive(Debug)]
pub struct ChainService {
    scheme: ExactEvmScheme,
    assets: Vec<AssetConfig>,
    min_signer_balance: Option<U256>,
}

impl ChainService {
    /// Serves `scheme`'s chain, accepting `assets`.
    pub fn new(scheme: ExactEvmScheme, assets: Vec<AssetConfig>) -> Self {
        Self {
            scheme,
            assets,
            min_signer_balance: None,
        }
    }

    /// Makes the health check fail while the signer's gas balance is below `floor` wei.
    pub fn with_min_signer_balance(mut self, floor: U256) -> Self {
        self.min_signer_balance = Some(floor);
        self
    }

    /// The scheme.
    pub fn scheme(&self) -> &ExactEvmScheme {
        &self.scheme
    }
}

/// Where a settlement in flight stands, as its waiters see it.
#[derive(Debug, Clone)]
enum Progress {
    Working,
    Submitted(B256),
    Done(Result<SettleResponse, FacilitatorError>),
}

#[derive(Debug)]
struct InFlight {
    fingerprint: B256,
    progress: watch::Receiver<Progress>,
    answer: Arc<Mutex<AnswerSlot>>,
}

/// Who may take a settlement's success while it is in flight.
#[derive(Debug, Default)]
struct AnswerSlot {
    /// The caller waiting for the answer (`key:<idempotency key>` or `call:<id>`); others
    /// asking meanwhile are refused.
    holder: Option<String>,
    /// The settlement is being written as confirmed, handed to `holder`: nobody may take or
    /// leave the slot any more.
    sealed: bool,
}

fn lock_slot(slot: &Mutex<AnswerSlot>) -> std::sync::MutexGuard<'_, AnswerSlot> {
    // Single-field updates only: a poisoned lock holds a consistent slot.
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why [`FacilitatorService::send`] stopped before a broadcast.
enum SendStop {
    /// The settlement's answer; nothing is in the chain's hands.
    Answer(Result<SettleResponse, FacilitatorError>),
    /// Someone else recorded the settlement first: follow their record.
    Existing(Box<SettlementRecord>),
}

/// Ends an in-flight entry however its settlement task ends. A task that panics (or is
/// cancelled) leaves no entry for later callers to wait on forever: they are told it stopped,
/// and the log record is reconciled at the next start or by the next settle.
struct InFlightEntry {
    service: FacilitatorService,
    key: SettlementKey,
    sender: watch::Sender<Progress>,
}

impl Drop for InFlightEntry {
    fn drop(&mut self) {
        if !matches!(*self.sender.borrow(), Progress::Done(_)) {
            self.sender
                .send_replace(Progress::Done(Err(FacilitatorError::Unavailable(
                    "the settlement stopped unexpectedly; settle again for its outcome".into(),
                ))));
        }
        self.service.lock_in_flight().remove(&self.key);
    }
}

/// A name for one anonymous `/settle` call, unique across restarts.
fn anonymous_caller() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("call:{started:x}-{}-{n}", std::process::id())
}

#[derive(Debug)]
struct Inner {
    chains: BTreeMap<u64, ChainService>,
    store: Arc<dyn SettlementStore>,
    in_flight: Mutex<HashMap<SettlementKey, InFlight>>,
    settle_wait: Duration,
    metrics: Metrics,
}

/// The facilitator service, cheap to clone.
#[derive(Debug, Clone)]
pub struct FacilitatorService {
    inner: Arc<Inner>,
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
    /// What went wrong, when unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the chain can settle: reachable, with the signer's balance not below the floor.
    pub healthy: bool,
    /// Why it cannot, when not healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What reconciliation at start did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Settlements found confirmed on chain.
    pub confirmed: usize,
    /// Settlements found mined without moving the payment.
    pub failed: usize,
    /// Settlements recorded but never sent, given up.
    pub abandoned: usize,
    /// Settlements still in flight, tracked in the background (rebroadcast when the node had
    /// lost them).
    pub tracking: usize,
}

/// When the newest transaction of a tracked settlement was last sent or bumped.
struct BumpClock {
    since: Instant,
    /// How many transactions the settlement had then.
    seen: usize,
    /// No further bump is possible (out of bumps, or at the fee cap).
    done: bool,
}

impl BumpClock {
    fn new(seen: usize) -> Self {
        Self {
            since: Instant::now(),
            seen,
            done: false,
        }
    }
}

/// A settlement's identity and what it must do on chain, from a request alone.
struct Identity {
    key: SettlementKey,
    fingerprint: B256,
    payload: ExactEvmPayload,
}

impl FacilitatorService {
    /// A facilitator over `chains`, logging settlements in `store`. `/settle` answers within
    /// `settle_wait` (then `settlement_pending`).
    pub fn new(
        chains: Vec<ChainService>,
        store: Arc<dyn SettlementStore>,
        settle_wait: Duration,
        metrics: Metrics,
    ) -> Self {
        let chains = chains
            .into_iter()
            .map(|c| (c.scheme.chain_id(), c))
            .collect();
        Self {
            inner: Arc::new(Inner {
                chains,
                store,
                in_flight: Mutex::new(HashMap::new()),
                settle_wait,
                metrics,
            }),
        }
    }

    /// The metrics this service records.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The chains served.
    pub fn chains(&self) -> impl Iterator<Item = &ChainService> {
        self.inner.chains.values()
    }

    /// Settlements being worked on or tracked right now.
    pub fn in_flight(&self) -> usize {
        self.lock_in_flight().len()
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<SettlementKey, InFlight>> {
        // A panic while holding this lock cannot leave the map half-updated (single inserts
        // and removes), so a poisoned lock is still usable.
        self.inner
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until no settlement is in flight, or `grace` passes. Returns how many are left
    /// (they stay `submitted` in the log and are reconciled at the next start).
    pub async fn drain(&self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        loop {
            let left = self.in_flight();
            if left == 0 || Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn chain_for(&self, request: &PaymentRequest) -> Result<&ChainService, VerifyError> {
        let network = request.requirements().network.clone();
        network
            .evm_chain_id()
            .and_then(|id| self.inner.chains.get(&id))
            .ok_or_else(|| VerifyError::UnsupportedNetwork {
                network: request.wire_network().clone(),
            })
    }

    /// Refuses assets this facilitator does not accept on the chain.
    fn check_asset(chain: &ChainService, request: &PaymentRequest) -> Option<VerifyResponse> {
        let requirements = request.requirements();
        let asset: Address = requirements.asset.parse().ok()?;
        if chain.assets.iter().any(|a| a.address == asset) {
            return None;
        }
        let accepted: Vec<String> = chain
            .assets
            .iter()
            .map(|a| format!("{} ({})", a.address, a.name))
            .collect();
        Some(VerifyResponse::invalid(
            ReasonCode::INVALID_PAYMENT_REQUIREMENTS,
            format!(
                "asset {asset} is not accepted on {}; accepted: {}",
                requirements.network,
                accepted.join(", ")
            ),
            claimed_payer(request),
        ))
    }

    /// Verifies a payment: every check of the reference facilitator, one chain round trip.
    pub async fn verify(
        &self,
        request: &PaymentRequest,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let started = Instant::now();
        let result = self.verify_inner(request).await;
        self.inner.metrics.record_verify(&result, started.elapsed());
        result
    }

    async fn verify_inner(
        &self,
        request: &PaymentRequest,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let chain = match self.chain_for(request) {
            Ok(chain) => chain,
            Err(error) => return verify_refusal(&error, request),
        };
        if let Some(refused) = Self::check_asset(chain, request) {
            return Ok(refused);
        }
        match chain.scheme.verify(request).await {
            Ok(payment) => Ok(VerifyResponse::valid(payment.payer().to_checksum(None))),
            Err(error) => verify_refusal(&error, request),
        }
    }

    /// Settles a payment: at most one transaction per (asset, payer, nonce) however often and
    /// however concurrently it is asked. Its success goes to one caller: the call that
    /// settled it, or when that call was answered `settlement_pending`, the first later one;
    /// calls with the same `idempotency_key` share it. Every other call is refused with
    /// `duplicate_settlement`. A failure is everyone's answer.
    pub async fn settle(
        &self,
        request: &PaymentRequest,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let started = Instant::now();
        let asker = match idempotency_key {
            Some(key) => format!("key:{key}"),
            None => anonymous_caller(),
        };
        let result = self.settle_inner(request, &asker).await;
        self.inner.metrics.record_settle(&result, started.elapsed());
        result
    }

    async fn settle_inner(
        &self,
        request: &PaymentRequest,
        asker: &str,
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = request.wire_network().clone();
        let chain = match self.chain_for(request) {
            Ok(chain) => chain,
            Err(error) => return settle_refusal(&error, request),
        };
        if let Some(refused) = Self::check_asset(chain, request) {
            return Ok(refused_settlement(network, refused));
        }
        let Some(identity) = identify(chain.scheme.chain_id(), request) else {
            // Unreadable payload or requirements: verify says precisely what is wrong.
            return match chain.scheme.verify(request).await {
                Err(error) => settle_refusal(&error, request),
                Ok(_) => Err(FacilitatorError::Internal(
                    "a payment verified that could not be identified".into(),
                )),
            };
        };
        let key = identity.key;
        let payer = Some(key.payer.to_checksum(None));
        let (mut progress, slot) = {
            let mut in_flight = self.lock_in_flight();
            match in_flight.get(&identity.key) {
                Some(existing) if existing.fingerprint != identity.fingerprint => {
                    return Ok(nonce_conflict(network, &identity));
                }
                Some(existing) => (existing.progress.clone(), existing.answer.clone()),
                None => {
                    let (sender, receiver) = watch::channel(Progress::Working);
                    let slot = Arc::new(Mutex::new(AnswerSlot::default()));
                    in_flight.insert(
                        identity.key,
                        InFlight {
                            fingerprint: identity.fingerprint,
                            progress: receiver.clone(),
                            answer: slot.clone(),
                        },
                    );
                    // The settlement runs in its own task: a caller that goes away (timeout,
                    // dropped connection) does not stop money that is moving.
                    let service = self.clone();
                    let request = request.clone();
                    tokio::spawn(async move {
                        let entry = InFlightEntry {
                            service: service.clone(),
                            key: identity.key,
                            sender,
                        };
                        let outcome = service
                            .run_settlement(identity, request, &entry.sender)
                            .await;
                        entry.sender.send_replace(Progress::Done(outcome));
                    });
                    (receiver, slot)
                }
            }
        };
        // Take the right to the answer, unless another caller holds it.
        {
            let mut slot = lock_slot(&slot);
            match slot.holder.as_deref() {
                Some(holder) if holder != asker => return Ok(duplicate(network, payer)),
                Some(_) => {}
                None if !slot.sealed => slot.holder = Some(asker.to_owned()),
                None => {}
            }
        }
        let finished = match tokio::time::timeout(
            self.inner.settle_wait,
            progress.wait_for(|p| matches!(p, Progress::Done(_))),
        )
        .await
        {
            Ok(Ok(done)) => Some(done.clone()),
            // Timed out, or the task is gone: report where it stands.
            _ => None,
        };
        let mut current = finished.unwrap_or_else(|| progress.borrow().clone());
        if !matches!(current, Progress::Done(_)) {
            let sealed = {
                let mut slot = lock_slot(&slot);
                if !slot.sealed
                    && asker.starts_with("call:")
                    && slot.holder.as_deref() == Some(asker)
                {
                    // An anonymous caller cannot come back as itself: the next call may take
                    // the answer. A keyed caller keeps its claim.
                    slot.holder = None;
                }
                slot.sealed
            };
            if sealed {
                // The outcome is being written for us right now: wait for the write.
                if let Ok(Ok(done)) = tokio::time::timeout(
                    Duration::from_secs(10),
                    progress.wait_for(|p| matches!(p, Progress::Done(_))),
                )
                .await
                {
                    current = done.clone();
                }
            }
        }
        match current {
            Progress::Done(Ok(answer)) if answer.success => {
                self.hand_out(&key, &slot, asker, answer).await
            }
            Progress::Done(outcome) => outcome,
            Progress::Submitted(tx_hash) => Ok(pending(network, claimed_payer(request), tx_hash)),
            Progress::Working => Ok(SettleResponse::failure(
                network,
                ReasonCode::SETTLEMENT_PENDING,
                "the settlement is still being prepared; settle again with the same payment for its outcome",
                claimed_payer(request),
                None,
            )),
        }
    }

    /// Gives a successful answer to `asker` if it is theirs to take, else the refusal.
    async fn hand_out(
        &self,
        key: &SettlementKey,
        slot: &Mutex<AnswerSlot>,
        asker: &str,
        answer: SettleResponse,
    ) -> Result<SettleResponse, FacilitatorError> {
        {
            let slot = lock_slot(slot);
            if slot.sealed {
                match slot.holder.as_deref() {
                    Some(holder) if holder == asker => return Ok(answer),
                    Some(_) => return Ok(duplicate(answer.network, answer.payer)),
                    None => {}
                }
            }
        }
        // Settled earlier, or nobody was waiting when it ended: the log decides.
        if self
            .inner
            .store
            .hand_out(key, asker)
            .await
            .map_err(internal)?
        {
            Ok(answer)
        } else {
            Ok(duplicate(answer.network, answer.payer))
        }
    }

    /// Owns one settlement from the log lookup to its end.
    async fn run_settlement(
        &self,
        identity: Identity,
        request: PaymentRequest,
        progress: &watch::Sender<Progress>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = request.wire_network().clone();
        let chain = self
            .inner
            .chains
            .get(&identity.key.chain_id)
            .ok_or_else(|| FacilitatorError::Internal("chain vanished".into()))?;
        let store = &self.inner.store;
        if let Some(record) = store.get(&identity.key).await.map_err(internal)?
            && let Some(answer) = self.resume(chain, &identity, record, progress).await?
        {
            return Ok(answer);
        }
        let payment = match chain.scheme.verify(&request).await {
            Ok(payment) => payment,
            Err(error) => return settle_refusal(&error, &request),
        };
        let new = NewSettlement {
            key: identity.key,
            fingerprint: identity.fingerprint,
            pay_to: payment.pay_to(),
            amount: payment.amount(),
            valid_before: u64::try_from(identity.payload.authorization.valid_before)
                .unwrap_or(u64::MAX),
            wire_network: network.clone(),
            request: serde_json::to_string(&request).map_err(internal)?,
        };
        // The claim is written together with the first signed transaction: one durable write
        // before the broadcast instead of two.
        let mut txs = Vec::new();
        match self
            .send(chain, &new, &payment, &mut txs, progress, false)
            .await
        {
            Ok(()) => {}
            Err(SendStop::Answer(outcome)) => return outcome,
            Err(SendStop::Existing(record)) => {
                // Another instance recorded it between our lookup and our claim.
                return match self.resume(chain, &identity, *record, progress).await? {
                    Some(answer) => Ok(answer),
                    None => Err(FacilitatorError::Unavailable(
                        "the settlement was taken over concurrently; settle again".into(),
                    )),
                };
            }
        }
        self.track(chain, &new, txs, progress).await
    }

    /// Handles a settlement already in the log. `None` means it was abandoned and may start
    /// over.
    async fn resume(
        &self,
        chain: &ChainService,
        identity: &Identity,
        record: SettlementRecord,
        progress: &watch::Sender<Progress>,
    ) -> Result<Option<SettleResponse>, FacilitatorError> {
        if record.settlement.fingerprint != identity.fingerprint {
            let network = record.settlement.wire_network.clone();
            return Ok(Some(nonce_conflict(network, identity)));
        }
        match record.state {
            SettlementState::Confirmed | SettlementState::Failed => {
                Ok(Some(record.response.ok_or_else(|| {
                    FacilitatorError::Internal("final settlement without answer".into())
                })?))
            }
            SettlementState::Abandoned => Ok(None),
            SettlementState::Submitted => {
                if let Some(last) = record.txs.last() {
                    progress.send_replace(Progress::Submitted(last.tx_hash));
                }
                let txs = record.txs.clone();
                self.track(chain, &record.settlement, txs, progress)
                    .await
                    .map(Some)
            }
            // Claimed by another instance that has not sent yet: watch the log.
            SettlementState::Claimed => {
                let deadline = Instant::now() + self.inner.settle_wait;
                while Instant::now() < deadline {
                    tokio::time::sleep(chain.scheme.poll_interval()).await;
                    let Some(now) = self
                        .inner
                        .store
                        .get(&identity.key)
                        .await
                        .map_err(internal)?
                    else {
                        return Ok(None);
                    };
                    if now.state != SettlementState::Claimed {
                        return Box::pin(self.resume(chain, identity, now, progress)).await;
                    }
                }
                Err(FacilitatorError::Unavailable(
                    "another facilitator instance holds this settlement; settle again later".into(),
                ))
            }
        }
    }

    /// Signs, records and broadcasts one transaction for the settlement. `Err` carries the
    /// final answer when nothing could be sent.
    ///
    /// Unless `claimed`, the settlement is claimed in the same write as its first transaction;
    /// a settlement someone else recorded first stops the send with its record.
    async fn send(
        &self,
        chain: &ChainService,
        settlement: &NewSettlement,
        payment: &VerifiedPayment,
        txs: &mut Vec<TxRecord>,
        progress: &watch::Sender<Progress>,
        mut claimed: bool,
    ) -> Result<(), SendStop> {
        let network = settlement.wire_network.clone();
        let payer = Some(payment.payer().to_checksum(None));
        let store = &self.inner.store;
        loop {
            let slot = match chain.scheme.reserve_send().await {
                Ok(slot) => slot,
                Err(error) => {
                    let answer = self.give_up(settlement, network, payer, &error, claimed);
                    return Err(SendStop::Answer(answer.await));
                }
            };
            let signed = match slot.sign(payment).await {
                Ok(signed) => signed,
                Err(error) => {
                    let answer = self.give_up(settlement, network, payer, &error, claimed);
                    return Err(SendStop::Answer(answer.await));
                }
            };
            let record = TxRecord {
                tx_hash: signed.tx_hash,
                raw: signed.raw.clone(),
                signer: chain.scheme.signer_address(),
                signer_nonce: signed.signer_nonce,
            };
            // Durable before broadcast: if we die after sending, the restart finds the hash. A
            // slot dropped without a broadcast gives its nonce back.
            if claimed {
                if let Err(error) = store.add_transaction(&settlement.key, &record).await {
                    drop(slot);
                    return Err(SendStop::Answer(Err(internal(error))));
                }
            } else {
                match store.claim_with_transaction(settlement, &record).await {
                    Ok(Claim::Fresh) => claimed = true,
                    Ok(Claim::Existing(existing)) => {
                        drop(slot);
                        return Err(SendStop::Existing(existing));
                    }
                    Err(error) => {
                        drop(slot);
                        return Err(SendStop::Answer(Err(internal(error))));
                    }
                }
            }
            txs.push(record);
            progress.send_replace(Progress::Submitted(signed.tx_hash));
            match slot.broadcast(&signed).await {
                Ok(()) => {
                    tracing::debug!(tx_hash = %signed.tx_hash, key = %settlement.key, "settlement broadcast");
                    return Ok(());
                }
                Err(BroadcastError::Uncertain { detail }) => {
                    // It may have arrived; tracking rebroadcasts it if the node does not know it.
                    tracing::warn!(tx_hash = %signed.tx_hash, %detail, "broadcast unconfirmed; tracking");
                    return Ok(());
                }
                Err(BroadcastError::Refused {
                    nonce_used: true,
                    reason,
                    ..
                }) if nonces_used(txs) < MAX_SENDS => {
                    // Our local nonce was stale (the key is used elsewhere too): the slot has
                    // resynced; sign again with the next one.
                    tracing::warn!(%reason, "nonce already used; re-signing");
                }
                Err(refused) => {
                    let error = refused.into_settle_error(signed.tx_hash);
                    let answer = self.give_up(settlement, network, payer, &error, true);
                    return Err(SendStop::Answer(answer.await));
                }
            }
        }
    }

    /// Ends a settlement for which nothing is in the chain's hands. A retry may start over.
    /// Only a settlement this call `recorded` is marked abandoned in the log (a record may
    /// belong to another instance).
    async fn give_up(
        &self,
        settlement: &NewSettlement,
        network: Network,
        payer: Option<String>,
        error: &SettleError,
        recorded: bool,
    ) -> Result<SettleResponse, FacilitatorError> {
        let answer = SettleResponse::failure(
            network,
            ReasonCode::from(error),
            error.to_string(),
            payer,
            None,
        );
        if recorded {
            self.inner
                .store
                .finish(&settlement.key, SettlementState::Abandoned, &answer, None)
                .await
                .map_err(internal)?;
        }
        if error.is_retryable() {
            Err(FacilitatorError::Unavailable(error.to_string()))
        } else {
            Ok(answer)
        }
    }

    /// Follows a settlement's transactions until one is mined or none can be: polls receipts
    /// at the chain's interval (any transaction of the settlement may be the one mined),
    /// rebroadcasts transactions the node lost, replaces one left unmined with higher fees on
    /// the same nonce, and re-sends (while the authorization is valid) when the chain used our
    /// nonce for something else.
    async fn track(
        &self,
        chain: &ChainService,
        settlement: &NewSettlement,
        mut txs: Vec<TxRecord>,
        progress: &watch::Sender<Progress>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = settlement.wire_network.clone();
        let payer = Some(settlement.key.payer.to_checksum(None));
        let expected = TransferExpectation {
            asset: settlement.key.asset,
            from: settlement.key.payer,
            to: settlement.pay_to,
            value: settlement.amount,
        };
        let mut last_liveness_check = Instant::now();
        let mut bump = BumpClock::new(txs.len());
        let mut backoff = PollBackoff::new(chain.scheme.poll_interval());
        loop {
            for tx in txs.iter().rev() {
                match chain.scheme.mined_outcome(tx.tx_hash, &expected).await {
                    Ok(Some(outcome)) => {
                        return self.conclude(settlement, network, payer, outcome).await;
                    }
                    Ok(None) => {}
                    Err(error) => tracing::debug!(%error, "receipt poll failed"),
                }
            }
            if txs.is_empty() || last_liveness_check.elapsed() >= LIVENESS_CHECK_EVERY {
                last_liveness_check = Instant::now();
                if !self.any_alive(chain, &txs, &expected).await {
                    // Every transaction we sent is dead: none of them can move the money.
                    match self.after_dead(chain, settlement, &mut txs, progress).await {
                        Ok(()) => continue,
                        Err(answer) => return answer,
                    }
                }
            }
            self.bump_if_stuck(chain, settlement, &mut txs, &mut bump, progress)
                .await;
            tokio::time::sleep(backoff.next_wait()).await;
        }
    }

    /// Replaces the newest of `txs` with a higher-fee transaction on the same nonce once it
    /// has waited unmined for the chain's `stuck_after`, at most `max_bumps` times per nonce
    /// (counted from the log, so a restart does not reset it). The replacement is recorded
    /// before it is broadcast. At the cap, or out of bumps, it logs and leaves it to wait.
    async fn bump_if_stuck(
        &self,
        chain: &ChainService,
        settlement: &NewSettlement,
        txs: &mut Vec<TxRecord>,
        clock: &mut BumpClock,
        progress: &watch::Sender<Progress>,
    ) {
        let scheme = &chain.scheme;
        if txs.len() != clock.seen {
            // A transaction was sent since (on a new nonce): it gets its own wait.
            *clock = BumpClock::new(txs.len());
        }
        if clock.done || clock.since.elapsed() < scheme.stuck_after() {
            return;
        }
        let Some(newest) = txs.last().cloned() else {
            return;
        };
        let key = &settlement.key;
        let bumps = txs
            .iter()
            .filter(|tx| tx.signer_nonce == newest.signer_nonce)
            .count()
            - 1;
        let max_bumps = usize::try_from(scheme.fee_bump().max_bumps).unwrap_or(usize::MAX);
        if bumps >= max_bumps {
            tracing::warn!(%key, tx_hash = %newest.tx_hash, bumps, "settlement transaction still unmined and out of fee bumps; waiting for it");
            clock.done = true;
            return;
        }
        // Whatever happens next, the next attempt waits a full `stuck_after`.
        clock.since = Instant::now();
        let signed = match scheme.replacement(&newest.raw).await {
            Ok(Replacement::Signed(signed)) => signed,
            Ok(Replacement::AtCap {
                max_fee_per_gas,
                cap,
            }) => {
                tracing::warn!(%key, tx_hash = %newest.tx_hash, max_fee_per_gas, cap, "settlement transaction still unmined and its fees are at the cap (max_fee_per_gas_cap_gwei); waiting for it");
                clock.done = true;
                return;
            }
            Err(error) => {
                tracing::warn!(%key, %error, "could not prepare a fee bump; trying again later");
                return;
            }
        };
        let record = TxRecord {
            tx_hash: signed.tx_hash,
            raw: signed.raw.clone(),
            signer: scheme.signer_address(),
            signer_nonce: signed.signer_nonce,
        };
        // Durable before broadcast, like the first transaction.
        if let Err(error) = self.inner.store.add_transaction(key, &record).await {
            tracing::warn!(%key, %error, "could not record a fee bump; not sending it");
            return;
        }
        txs.push(record);
        clock.seen = txs.len();
        progress.send_replace(Progress::Submitted(signed.tx_hash));
        match scheme.rebroadcast(&signed.raw).await {
            Ok(()) => {
                tracing::info!(%key, replaced = %newest.tx_hash, tx_hash = %signed.tx_hash, nonce = signed.signer_nonce, bump = bumps + 1, "replaced an unmined settlement transaction with higher fees");
            }
            Err(error) => {
                // The earlier transaction stands (or was mined); the next receipt poll tells.
                tracing::info!(%key, tx_hash = %signed.tx_hash, %error, "fee bump not accepted");
            }
        }
    }

    /// Whether any of `txs` may still be mined: the node has it, takes it again, refuses it
    /// only for its price (a fee bump or lower fees get it in), or cannot be asked. A
    /// transaction whose nonce the signer has used for another one is dead, and so is one
    /// replaced with higher fees.
    async fn any_alive(
        &self,
        chain: &ChainService,
        txs: &[TxRecord],
        expected: &TransferExpectation,
    ) -> bool {
        for (i, tx) in txs.iter().enumerate() {
            // A transaction given higher fees on the same nonce has left the pool for good.
            let replaced = txs[i + 1..]
                .iter()
                .any(|later| later.signer_nonce == tx.signer_nonce);
            match chain.scheme.transaction_status(tx.tx_hash, expected).await {
                Ok(TxStatus::InPool | TxStatus::Mined(_)) | Err(_) => return true,
                Ok(TxStatus::Unknown) if replaced => {}
                Ok(TxStatus::Unknown) => match chain.scheme.rebroadcast(&tx.raw).await {
                    Ok(()) => {
                        tracing::info!(tx_hash = %tx.tx_hash, "rebroadcast a settlement the node had lost");
                        return true;
                    }
                    Err(BroadcastError::Uncertain { .. }) => return true,
                    Err(refused) if refused.is_underpriced() => {
                        // Its nonce is still free: it waits for a fee bump, or for fees to
                        // come down. A new nonce would only queue behind the empty one.
                        tracing::info!(tx_hash = %tx.tx_hash, error = %refused, "settlement transaction priced below the chain's fees; waiting");
                        return true;
                    }
                    Err(BroadcastError::Refused { reason, .. }) => {
                        tracing::info!(tx_hash = %tx.tx_hash, %reason, "settlement transaction is dead");
                    }
                },
            }
        }
        false
    }

    /// Every transaction is dead. If the authorization was used anyway, someone else settled
    /// it; if it is still usable, send a new transaction; otherwise give up with nothing moved.
    async fn after_dead(
        &self,
        chain: &ChainService,
        settlement: &NewSettlement,
        txs: &mut Vec<TxRecord>,
        progress: &watch::Sender<Progress>,
    ) -> Result<(), Result<SettleResponse, FacilitatorError>> {
        let network = settlement.wire_network.clone();
        let key = &settlement.key;
        let payer = Some(key.payer.to_checksum(None));
        let used = match chain
            .scheme
            .authorization_used(key.asset, key.payer, key.nonce)
            .await
        {
            Ok(used) => used,
            // Cannot tell now; look again at the next check.
            Err(_) => return Ok(()),
        };
        if used {
            let answer = SettleResponse::failure(
                network,
                ReasonCode::EXACT_EVM_NONCE_ALREADY_USED,
                "the authorization was used by a transaction this facilitator did not send",
                payer,
                None,
            );
            return Err(self.finish(key, SettlementState::Failed, answer).await);
        }
        let request: Option<PaymentRequest> = serde_json::from_str(&settlement.request).ok();
        let payment = match &request {
            Some(request) if nonces_used(txs) < MAX_SENDS => {
                chain.scheme.verify(request).await.ok()
            }
            _ => None,
        };
        match payment {
            Some(payment) => {
                tracing::info!(key = %key, "re-sending a settlement whose transaction was dropped");
                match self
                    .send(chain, settlement, &payment, txs, progress, true)
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(SendStop::Answer(answer)) => Err(answer),
                    Err(SendStop::Existing(_)) => Err(Err(FacilitatorError::Internal(
                        "a recorded settlement was claimed again".into(),
                    ))),
                }
            }
            None => {
                let answer = SettleResponse::failure(
                    network,
                    ReasonCode::UNEXPECTED_SETTLE_ERROR,
                    "the settlement transaction was dropped by the chain and the payment can no longer be settled; nothing was transferred",
                    payer,
                    None,
                );
                Err(self.finish(key, SettlementState::Abandoned, answer).await)
            }
        }
    }

    async fn conclude(
        &self,
        settlement: &NewSettlement,
        network: Network,
        payer: Option<String>,
        outcome: Result<x402_evm::Settlement, SettleError>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let (state, answer) = match outcome {
            Ok(settled) => (
                SettlementState::Confirmed,
                SettleResponse {
                    success: true,
                    error_reason: None,
                    error_message: None,
                    payer,
                    transaction: settled.tx_hash.to_string(),
                    network,
                    amount: None,
                    extensions: None,
                },
            ),
            Err(error) => (
                SettlementState::Failed,
                SettleResponse::failure(
                    network,
                    ReasonCode::from(&error),
                    error.to_string(),
                    payer,
                    error.tx_hash().map(|h| h.to_string()),
                ),
            ),
        };
        self.finish(&settlement.key, state, answer).await
    }

    async fn finish(
        &self,
        key: &SettlementKey,
        state: SettlementState,
        answer: SettleResponse,
    ) -> Result<SettleResponse, FacilitatorError> {
        // A confirmed settlement is handed to the caller waiting for it, in the same write.
        let holder = if state == SettlementState::Confirmed {
            let slot = self.lock_in_flight().get(key).map(|f| f.answer.clone());
            slot.and_then(|slot| {
                let mut slot = lock_slot(&slot);
                slot.sealed = true;
                slot.holder.clone()
            })
        } else {
            None
        };
        self.inner
            .store
            .finish(key, state, &answer, holder.as_deref())
            .await
            .map_err(internal)?;
        Ok(answer)
    }

    /// Settles what a previous run left in flight, before new work is taken: settlements
    /// never sent are abandoned (nothing moved; a retry starts over), sent ones are looked
    /// up on chain, and those still unmined are rebroadcast when the node lost them and then
    /// tracked in the background.
    pub async fn reconcile(&self) -> Result<ReconcileReport, StoreError> {
        let mut report = ReconcileReport::default();
        for record in self.inner.store.unfinished().await? {
            let key = record.settlement.key;
            let network = record.settlement.wire_network.clone();
            let payer = Some(key.payer.to_checksum(None));
            let Some(chain) = self.inner.chains.get(&key.chain_id) else {
                tracing::warn!(%key, "unfinished settlement on a chain no longer configured; left as is");
                continue;
            };
            if record.state == SettlementState::Claimed || record.txs.is_empty() {
                let answer = SettleResponse::failure(
                    network,
                    ReasonCode::UNEXPECTED_SETTLE_ERROR,
                    "the facilitator stopped before sending this settlement; nothing was transferred; settle again",
                    payer,
                    None,
                );
                self.inner
                    .store
                    .finish(&key, SettlementState::Abandoned, &answer, None)
                    .await?;
                report.abandoned += 1;
                continue;
            }
            let expected = TransferExpectation {
                asset: key.asset,
                from: key.payer,
                to: record.settlement.pay_to,
                value: record.settlement.amount,
            };
            let mut mined = None;
            for tx in &record.txs {
                if let Ok(Some(outcome)) = chain.scheme.mined_outcome(tx.tx_hash, &expected).await {
                    mined = Some(outcome);
                    break;
                }
            }
            if let Some(outcome) = mined {
                if outcome.is_ok() {
                    report.confirmed += 1;
                } else {
                    report.failed += 1;
                }
                self.conclude(&record.settlement, network, payer, outcome)
                    .await
                    .map_err(|e| StoreError(e.to_string()))?;
                continue;
            }
            // Rebroadcast now what the node lost, then follow it in the background.
            self.any_alive(chain, &record.txs, &expected).await;
            report.tracking += 1;
            self.track_in_background(record);
        }
        Ok(report)
    }

    fn track_in_background(&self, record: SettlementRecord) {
        let key = record.settlement.key;
        let (sender, receiver) = watch::channel(Progress::Working);
        if let Some(last) = record.txs.last() {
            sender.send_replace(Progress::Submitted(last.tx_hash));
        }
        self.lock_in_flight().insert(
            key,
            InFlight {
                fingerprint: record.settlement.fingerprint,
                progress: receiver,
                answer: Arc::default(),
            },
        );
        let service = self.clone();
        tokio::spawn(async move {
            let entry = InFlightEntry {
                service: service.clone(),
                key,
                sender,
            };
            let outcome = match service.inner.chains.get(&key.chain_id) {
                Some(chain) => {
                    service
                        .track(chain, &record.settlement, record.txs.clone(), &entry.sender)
                        .await
                }
                None => Err(FacilitatorError::Internal("chain vanished".into())),
            };
            entry.sender.send_replace(Progress::Done(outcome));
        });
    }

    /// What this facilitator serves: v2 and v1 `exact` on every chain.
    pub fn supported(&self) -> SupportedResponse {
        let mut kinds = Vec::new();
        let mut signers = Vec::new();
        for chain in self.inner.chains.values() {
            let network = chain.scheme.network();
            kinds.push(SupportedKind {
                x402_version: 2,
                scheme: Scheme::EXACT,
                network: network.clone(),
                extra: None,
            });
            if let Some(v1_name) = network.to_v1_name() {
                kinds.push(SupportedKind {
                    x402_version: 1,
                    scheme: Scheme::EXACT,
                    network: v1_name,
                    extra: None,
                });
            }
            let signer = chain.scheme.signer_address().to_checksum(None);
            if !signers.contains(&signer) {
                signers.push(signer);
            }
        }
        SupportedResponse {
            kinds,
            extensions: Vec::new(),
            signers: BTreeMap::from([("eip155:*".to_owned(), signers)]),
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
                error,
                healthy: reason.is_none(),
                reason,
            }
        });
        futures_util::future::join_all(checks).await
    }
}

fn internal(error: impl std::fmt::Display) -> FacilitatorError {
    FacilitatorError::Internal(error.to_string())
}

/// Reads the settlement key and fingerprint from a request, when its payload parses.
fn identify(chain_id: u64, request: &PaymentRequest) -> Option<Identity> {
    let asset: Address = request.requirements().asset.parse().ok()?;
    let payload: ExactEvmPayload = serde_json::from_value(request.payload().clone()).ok()?;
    let auth = &payload.authorization;
    let mut material = Vec::with_capacity(256);
    material.extend_from_slice(&chain_id.to_be_bytes());
    material.extend_from_slice(asset.as_slice());
    material.extend_from_slice(auth.from.as_slice());
    material.extend_from_slice(auth.to.as_slice());
    material.extend_from_slice(&auth.value.to_be_bytes::<32>());
    material.extend_from_slice(&auth.valid_after.to_be_bytes::<32>());
    material.extend_from_slice(&auth.valid_before.to_be_bytes::<32>());
    material.extend_from_slice(auth.nonce.as_slice());
    material.extend_from_slice(&payload.signature);
    Some(Identity {
        key: SettlementKey {
            chain_id,
            asset,
            payer: auth.from,
            nonce: auth.nonce,
        },
        fingerprint: keccak256(&material),
        payload,
    })
}

fn settle_refusal(
    error: &VerifyError,
    request: &PaymentRequest,
) -> Result<SettleResponse, FacilitatorError> {
    verify_refusal(error, request)
        .map(|refused| refused_settlement(request.wire_network().clone(), refused))
}

fn refused_settlement(network: Network, refused: VerifyResponse) -> SettleResponse {
    SettleResponse::failure(
        network,
        refused
            .invalid_reason
            .unwrap_or(ReasonCode::UNEXPECTED_SETTLE_ERROR),
        refused.invalid_message.unwrap_or_default(),
        refused.payer,
        None,
    )
}

fn nonce_conflict(network: Network, identity: &Identity) -> SettleResponse {
    SettleResponse::failure(
        network,
        ReasonCode::EXACT_EVM_NONCE_ALREADY_USED,
        format!(
            "a different payment with nonce {} from {} is already being settled or was settled",
            identity.key.nonce, identity.key.payer
        ),
        Some(identity.key.payer.to_checksum(None)),
        None,
    )
}

fn duplicate(network: Network, payer: Option<String>) -> SettleResponse {
    SettleResponse::failure(
        network,
        ReasonCode::DUPLICATE_SETTLEMENT,
        "this payment is settled or being settled for another request, which was given its \
         success; sign a new payment for this one",
        payer,
        None,
    )
}

fn pending(network: Network, payer: Option<String>, tx_hash: B256) -> SettleResponse {
    SettleResponse::failure(
        network,
        ReasonCode::SETTLEMENT_PENDING,
        format!(
            "transaction {tx_hash} is sent and not confirmed yet; settle again with the same payment for its outcome"
        ),
        payer,
        Some(tx_hash.to_string()),
    )
}

impl Facilitator for FacilitatorService {
    fn verify<'a>(
        &'a self,
        request: &'a PaymentRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(FacilitatorService::verify(self, request))
    }

    fn settle<'a>(
        &'a self,
        request: &'a PaymentRequest,
        idempotency_key: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(FacilitatorService::settle(self, request, idempotency_key))
    }

    fn payment_id(&self, request: &PaymentRequest) -> Result<PaymentId, PaymentIdError> {
        PaymentId::derive(request)
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async move { Ok(FacilitatorService::supported(self)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_settlement_task_that_panics_leaves_no_entry_and_tells_its_waiters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::sqlite::SqliteStore::open(&dir.path().join("log.db")).unwrap());
        let service =
            FacilitatorService::new(Vec::new(), store, Duration::from_secs(1), Metrics::new());
        let key = SettlementKey {
            chain_id: 1,
            asset: Address::ZERO,
            payer: Address::ZERO,
            nonce: B256::ZERO,
        };
        let (sender, mut receiver) = watch::channel(Progress::Working);
        service.lock_in_flight().insert(
            key,
            InFlight {
                fingerprint: B256::ZERO,
                progress: receiver.clone(),
                answer: Arc::default(),
            },
        );
        let task = tokio::spawn({
            let service = service.clone();
            async move {
                let _entry = InFlightEntry {
                    service,
                    key,
                    sender,
                };
                panic!("a bug in a settlement task");
            }
        });
        assert!(task.await.unwrap_err().is_panic());
        assert_eq!(service.in_flight(), 0, "the entry is gone");
        let done = receiver
            .wait_for(|p| matches!(p, Progress::Done(_)))
            .await
            .unwrap()
            .clone();
        assert!(
            matches!(done, Progress::Done(Err(FacilitatorError::Unavailable(_)))),
            "{done:?}"
        );
    }
}
