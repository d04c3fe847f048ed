//! What turns charged vouchers into money on chain: the server's claiming job
//! ([`BatchClaimer`]). It reads the channels a server keeps ([`ChannelStore`]), sends the
//! held vouchers of those with something unclaimed to a facilitator's `/settle` as `claim`
//! payloads (at most [`ClaimPolicy::max_claims_per_batch`] rows each), then one `settle`
//! per receiver and token, and mirrors what was claimed back into each record.
//!
//! When it claims ([`ClaimPolicy`]): on a schedule, at once when the unclaimed amount of one
//! channel or of all of them reaches a bound, and at once for a channel whose payer started a
//! withdrawal. A payer can start one without any request telling the server, so the claimer
//! also reads the chain for every channel with something unclaimed, every
//! [`ClaimPolicy::chain_check_every`]: through the facilitator's `/verify` of the voucher it
//! holds (the facilitator answers the channel's state, `withdrawRequestedAt` included), so it
//! needs no RPC endpoint of its own and works with any facilitator, in process or remote.
//!
//! Several servers sharing one channel store (replicas of a gateway on one database) each run a
//! claimer; a [`ClaimLock`] given to each ([`BatchClaimer::with_lock`]) keeps their runs to one
//! at a time, so that no two send claims for the same vouchers. Each run reads the store after
//! taking the lock, so a run that waited finds claimed what the other claimed.
//!
//! The money at risk is what was charged and not yet claimed: [`BatchClaimer::exposure`]
//! reports it. The claimer bounds it softly (a channel at its bound is claimed within
//! [`ClaimPolicy::check_every`]); the server bounds it hard
//! ([`super::BatchServer::with_max_unclaimed`]: no request that could take a channel past its
//! limit is served until the claim lands).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::Address;
use alloy::signers::Signer;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;
use x402_proto::{
    BoxFuture, Facilitator, Network, PaymentRequest, ReasonCode, Scheme, SettleResponse,
    TokenAmount, V2, v2,
};

use super::channels::{ChannelRecord, ChannelStore, ChannelStoreError, ChannelWrite};
use super::encoding::{ChannelId, decimal_u128};
use super::wire::{ChannelStateExtra, ClaimPayload, ClaimedVoucher, VoucherClaim};
use super::{BatchDomain, sign_claim_batch};

/// When the claimer claims. Amounts are in the asset's atomic units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimPolicy {
    /// Claims whatever is unclaimed at least this often (default 10 minutes).
    pub interval: Duration,
    /// How often the bounds below are checked against the store (default 5 s).
    pub check_every: Duration,
    /// How often the chain is read for channels with something unclaimed, to see withdrawals
    /// payers started (default 60 s; keep it well below the withdraw delay, 15 minutes at
    /// least).
    pub chain_check_every: Duration,
    /// A channel with this much unclaimed is claimed at once, even with a request in flight
    /// (default 1 000 000, one USDC).
    pub max_unclaimed_per_channel: u128,
    /// When all channels together have this much unclaimed, they are claimed at once
    /// (default 10 000 000, ten USDC).
    pub max_unclaimed_total: u128,
    /// Claims a channel at once when its payer started a withdrawal (default true).
    pub claim_on_withdrawal: bool,
    /// Most vouchers in one claim transaction (default 100, as the official server).
    pub max_claims_per_batch: usize,
}

impl Default for ClaimPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(600),
            check_every: Duration::from_secs(5),
            chain_check_every: Duration::from_secs(60),
            max_unclaimed_per_channel: 1_000_000,
            max_unclaimed_total: 10_000_000,
            claim_on_withdrawal: true,
            max_claims_per_batch: 100,
        }
    }
}

impl ClaimPolicy {
    /// Whether `record` has reached its bound: claimed before more is served on it.
    pub fn over_limit(&self, record: &ChannelRecord) -> bool {
        let unclaimed = record.unclaimed();
        unclaimed > 0 && unclaimed >= self.max_unclaimed_per_channel
    }

    /// Whether `record` must be claimed now: over its bound, or its payer is withdrawing.
    pub fn urgent(&self, record: &ChannelRecord) -> bool {
        claimable(record)
            && (self.over_limit(record)
                || (self.claim_on_withdrawal && record.onchain.withdraw_requested_at != 0))
    }
}

/// What one run of claims and settles sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClaimRun {
    /// The claim transactions, one per batch of vouchers.
    pub claims: Vec<SentClaim>,
    /// The settle transactions, one per receiver and token with something claimed.
    pub settles: Vec<SentSettle>,
    /// What could not be sent (left for the next run).
    pub failures: Vec<ClaimFailure>,
}

impl ClaimRun {
    /// Every transaction sent, claims first.
    pub fn transactions(&self) -> Vec<&str> {
        let claims = self.claims.iter().map(|c| c.transaction.as_str());
        claims
            .chain(self.settles.iter().map(|s| s.transaction.as_str()))
            .collect()
    }

    /// Whether nothing was sent and nothing failed.
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty() && self.settles.is_empty() && self.failures.is_empty()
    }
}

/// One claim transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SentClaim {
    /// Its hash.
    pub transaction: String,
    /// The channels it claimed on.
    pub channels: Vec<ChannelId>,
    /// What it claimed beyond what the records showed claimed, in atomic units.
    #[serde(with = "decimal_u128")]
    pub amount: u128,
}

/// One settle transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SentSettle {
    /// Its hash.
    pub transaction: String,
    /// Who was paid.
    pub receiver: Address,
    /// In which token.
    pub token: Address,
    /// How much, as the facilitator read it from the `Settled` log (atomic units).
    #[serde(with = "decimal_u128")]
    pub amount: u128,
}

/// Something the claimer could not do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClaimFailure {
    /// Which step: `claim`, `settle` or `check` (reading a channel on chain).
    pub step: &'static str,
    /// The channels concerned (none for a settle).
    pub channels: Vec<ChannelId>,
    /// The facilitator's reason code, or `unavailable` when it could not be asked.
    pub reason: String,
    /// Why, for people.
    pub message: String,
}

/// The claimer's counters, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClaimStats {
    /// Claim transactions sent since start.
    pub claims_sent: u64,
    /// Settle transactions sent since start.
    pub settles_sent: u64,
    /// When the last claim transaction was sent (Unix seconds).
    pub last_claim_at: Option<u64>,
}

/// What is charged and not yet claimed, on one network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exposure {
    /// Per asset (token address).
    pub assets: BTreeMap<Address, AssetExposure>,
    /// Per channel with something unclaimed.
    pub channels: BTreeMap<ChannelId, u128>,
}

/// What is charged and not yet claimed in one asset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AssetExposure {
    /// Unclaimed in all, in atomic units.
    pub unclaimed: u128,
    /// Channels kept in this asset.
    pub channels: usize,
    /// The most unclaimed on one channel.
    pub largest: u128,
}

/// Why a run could not start: the store failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// The channel store failed.
    #[error(transparent)]
    Store(#[from] ChannelStoreError),
}

/// Keeps the claim runs of every server sharing one channel store to one at a time, per network:
/// a run takes it before it reads the channels and lets go of it after its settles. The store's
/// own lock is per channel and per update; this one spans a run's transactions.
pub trait ClaimLock: Send + Sync + std::fmt::Debug {
    /// Waits until no other claimer of `network` holds the lock, then holds it until the
    /// answer is released (or dropped, which must let go of it too).
    fn acquire<'a>(
        &'a self,
        network: &'a Network,
    ) -> BoxFuture<'a, Result<Box<dyn HeldClaimLock>, ChannelStoreError>>;
}

/// A [`ClaimLock`] held by one run.
pub trait HeldClaimLock: Send {
    /// Lets go of the lock.
    fn release(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// The reason of a failure when the facilitator could not be asked.
const UNAVAILABLE: &str = "unavailable";

/// A receiver-authorizer key the claimer signs claim batches with.
pub type AuthorizerKey = Arc<dyn Signer + Send + Sync>;

/// The claiming job of one server on one network.
pub struct BatchClaimer {
    store: Arc<dyn ChannelStore>,
    facilitator: Arc<dyn Facilitator>,
    network: Network,
    domain: Option<BatchDomain>,
    authorizer: Option<AuthorizerKey>,
    policy: ClaimPolicy,
    /// One run at a time (in this process).
    running: tokio::sync::Mutex<()>,
    /// One run at a time among the servers sharing the store, when they are several.
    lock: Option<Arc<dyn ClaimLock>>,
    /// Receivers and tokens claimed for and not yet settled; `None` until the first run,
    /// which settles every pair the store names (a crash may have come between a claim and
    /// its settle).
    unsettled: Mutex<Option<BTreeSet<(Address, Address)>>>,
    stats: Mutex<ClaimStats>,
    wake: Notify,
}

impl std::fmt::Debug for BatchClaimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchClaimer")
            .field("network", &self.network)
            .field("policy", &self.policy)
            .field("authorizer", &self.authorizer.as_ref().map(|k| k.address()))
            .finish_non_exhaustive()
    }
}

/// Whether a record holds a voucher for more than was claimed.
fn claimable(record: &ChannelRecord) -> bool {
    record.voucher.is_some() && record.unclaimed() > 0
}

impl BatchClaimer {
    /// Claims the channels of `network` kept in `store` through `facilitator`, which signs
    /// the claim batches as the receiver authorizer (it advertises `receiverAuthorizer`)
    /// unless [`Self::with_authorizer`] gives the key.
    pub fn new(
        store: Arc<dyn ChannelStore>,
        facilitator: Arc<dyn Facilitator>,
        network: Network,
        policy: ClaimPolicy,
    ) -> Self {
        Self {
            domain: network.evm_chain_id().map(BatchDomain::new),
            store,
            facilitator,
            network,
            authorizer: None,
            policy,
            running: tokio::sync::Mutex::new(()),
            lock: None,
            unsettled: Mutex::new(None),
            stats: Mutex::new(ClaimStats::default()),
            wake: Notify::new(),
        }
    }

    /// Signs claim batches with `key` for the channels naming it as receiver authorizer.
    pub fn with_authorizer(mut self, key: AuthorizerKey) -> Self {
        self.authorizer = Some(key);
        self
    }

    /// Runs only while holding `lock`, which every other server sharing the channel store
    /// takes too: no two of them claim at once.
    pub fn with_lock(mut self, lock: Arc<dyn ClaimLock>) -> Self {
        self.lock = Some(lock);
        self
    }

    /// The network it claims on.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Its policy.
    pub fn policy(&self) -> &ClaimPolicy {
        &self.policy
    }

    /// Its counters.
    pub fn stats(&self) -> ClaimStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the running task to check the bounds now (a server calls it after charging).
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// The channels of this network.
    async fn records(&self) -> Result<Vec<ChannelRecord>, ClaimError> {
        let mut records = self.store.all().await?;
        records.retain(|r| r.network == self.network);
        Ok(records)
    }

    /// What is charged and not yet claimed, per asset and per channel.
    pub async fn exposure(&self) -> Result<Exposure, ClaimError> {
        let mut exposure = Exposure::default();
        for record in self.records().await? {
            let unclaimed = record.unclaimed();
            let asset = exposure.assets.entry(record.config.token).or_default();
            asset.channels += 1;
            asset.unclaimed = asset.unclaimed.saturating_add(unclaimed);
            asset.largest = asset.largest.max(unclaimed);
            if unclaimed > 0 {
                exposure.channels.insert(record.id, unclaimed);
            }
        }
        Ok(exposure)
    }

    /// Claims and settles everything unclaimed now, channels with a request in flight
    /// included: what a server does at shutdown and an operator asks for.
    pub async fn flush(&self) -> Result<ClaimRun, ClaimError> {
        self.claim_and_settle(true).await
    }

    /// Claims every channel with something unclaimed (those with a live reservation only
    /// when `all` or when they are urgent), then settles each receiver and token claimed for.
    pub async fn claim_and_settle(&self, all: bool) -> Result<ClaimRun, ClaimError> {
        let _one = self.running.lock().await;
        let held = match &self.lock {
            Some(lock) => Some(lock.acquire(&self.network).await?),
            None => None,
        };
        let run = self.run(all).await;
        if let Some(held) = held {
            held.release().await;
        }
        run
    }

    /// One run, holding the locks.
    async fn run(&self, all: bool) -> Result<ClaimRun, ClaimError> {
        let now = crate::unix_now();
        let records = self.records().await?;
        let mut run = ClaimRun::default();
        {
            let mut unsettled = self.unsettled.lock().unwrap_or_else(|e| e.into_inner());
            unsettled.get_or_insert_with(|| {
                records
                    .iter()
                    .map(|r| (r.config.receiver, r.config.token))
                    .collect()
            });
        }
        // Grouped so one batch has one receiver, token and receiver authorizer.
        let mut groups: BTreeMap<(Address, Address, Address), Vec<&ChannelRecord>> =
            BTreeMap::new();
        for record in &records {
            let eligible =
                all || record.live_reservation(now).is_none() || self.policy.urgent(record);
            if claimable(record) && eligible {
                let c = &record.config;
                groups
                    .entry((c.receiver, c.token, c.receiver_authorizer))
                    .or_default()
                    .push(record);
            }
        }
        let per_batch = self.policy.max_claims_per_batch.max(1);
        for ((receiver, token, authorizer), channels) in groups {
            for batch in channels.chunks(per_batch) {
                self.claim_batch(receiver, token, authorizer, batch, &mut run)
                    .await;
            }
        }
        self.settle_unsettled(&mut run).await;
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.claims_sent += run.claims.len() as u64;
        stats.settles_sent += run.settles.len() as u64;
        if !run.claims.is_empty() {
            stats.last_claim_at = Some(now);
        }
        Ok(run)
    }

    /// Claims `batch` in one transaction; when the facilitator refuses it, each channel
    /// alone, so that one bad channel (a payer who withdrew) does not hold back the others.
    async fn claim_batch(
        &self,
        receiver: Address,
        token: Address,
        authorizer: Address,
        batch: &[&ChannelRecord],
        run: &mut ClaimRun,
    ) {
        match self.send_claim(receiver, token, authorizer, batch).await {
            Ok(sent) => {
                self.claimed(batch).await;
                self.mark_unsettled(receiver, token);
                run.claims.push(sent);
            }
            // One channel, or a facilitator that could not be asked: nothing to split.
            Err(failure) if batch.len() == 1 || failure.reason == UNAVAILABLE => {
                run.failures.push(failure);
            }
            Err(failure) => {
                tracing::warn!(
                    reason = failure.reason,
                    message = failure.message,
                    "a claim batch was refused; claiming its channels one by one"
                );
                for record in batch {
                    let one = std::slice::from_ref(record);
                    match self.send_claim(receiver, token, authorizer, one).await {
                        Ok(sent) => {
                            self.claimed(one).await;
                            self.mark_unsettled(receiver, token);
                            run.claims.push(sent);
                        }
                        Err(failure) => run.failures.push(failure),
                    }
                }
            }
        }
    }

    fn mark_unsettled(&self, receiver: Address, token: Address) {
        let mut unsettled = self.unsettled.lock().unwrap_or_else(|e| e.into_inner());
        unsettled
            .get_or_insert_with(BTreeSet::new)
            .insert((receiver, token));
    }

    /// Sends one `claim` of `batch`'s held vouchers, each for what was charged on it.
    async fn send_claim(
        &self,
        receiver: Address,
        token: Address,
        authorizer: Address,
        batch: &[&ChannelRecord],
    ) -> Result<SentClaim, ClaimFailure> {
        let channels: Vec<ChannelId> = batch.iter().map(|r| r.id).collect();
        let fail = |reason: String, message: String| ClaimFailure {
            step: "claim",
            channels: channels.clone(),
            reason,
            message,
        };
        let rows: Vec<VoucherClaim> = batch
            .iter()
            .filter_map(|record| {
                let voucher = record.voucher.as_ref()?;
                Some(VoucherClaim {
                    voucher: ClaimedVoucher {
                        channel: record.config,
                        max_claimable_amount: voucher.max_claimable,
                    },
                    signature: voucher.signature.clone(),
                    total_claimed: record.charged.min(voucher.max_claimable),
                })
            })
            .collect();
        let signature = match (&self.authorizer, &self.domain) {
            (Some(key), Some(domain)) if key.address() == authorizer => Some(
                sign_claim_batch(key.as_ref(), domain, &rows)
                    .await
                    .map_err(|e| {
                        fail(
                            "signing_failed".into(),
                            format!("signing the claim batch: {e}"),
                        )
                    })?,
            ),
            _ => None,
        };
        let payload = ClaimPayload {
            claims: rows,
            claim_authorizer_signature: signature,
        };
        let payload = serde_json::to_value(&payload).unwrap_or_default();
        let request = self.request(
            receiver,
            token,
            json!({}),
            payload_with_type("claim", payload),
        );
        let answer = self.settle(&request).await.map_err(|(r, m)| fail(r, m))?;
        let amount = batch
            .iter()
            .map(|r| r.unclaimed())
            .fold(0u128, u128::saturating_add);
        Ok(SentClaim {
            transaction: answer.transaction,
            channels,
            amount,
        })
    }

    /// Mirrors a mined claim into the records: `total_claimed` rises to what was claimed,
    /// and nothing else changes (a charge made meanwhile stays).
    async fn claimed(&self, batch: &[&ChannelRecord]) {
        for record in batch {
            let claimed = record
                .voucher
                .as_ref()
                .map_or(0, |v| record.charged.min(v.max_claimable));
            self.raise_claimed(&record.id, claimed, None).await;
        }
    }

    /// Raises a record's mirrored `total_claimed` to `claimed` (never lowers it), and takes
    /// the rest of the mirror from `state` when given.
    async fn raise_claimed(
        &self,
        id: &ChannelId,
        claimed: u128,
        state: Option<&ChannelStateExtra>,
    ) {
        let now = crate::unix_now();
        let mut update = |current: Option<&ChannelRecord>| {
            let Some(current) = current else {
                return ChannelWrite::Keep;
            };
            let mut next = current.clone();
            if let Some(state) = state {
                next.onchain = super::OnchainMirror::from_state(state, now);
            }
            next.onchain.total_claimed = claimed
                .max(current.onchain.total_claimed)
                .max(next.onchain.total_claimed);
            if next == *current {
                ChannelWrite::Keep
            } else {
                ChannelWrite::Put(next)
            }
        };
        if let Err(error) = self.store.update(id, &mut update).await {
            tracing::error!(%error, channel = %id, "a claim is mined but the channel store failed to record it; the next run claims nothing new for it");
        }
    }

    /// Settles every receiver and token claimed for and not settled yet.
    async fn settle_unsettled(&self, run: &mut ClaimRun) {
        let pairs: Vec<(Address, Address)> = self
            .unsettled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .flatten()
            .copied()
            .collect();
        for (receiver, token) in pairs {
            let payload = json!({"type": "settle", "receiver": receiver, "token": token});
            let request = self.request(receiver, token, json!({}), payload);
            let outcome = self.settle(&request).await;
            let done = match outcome {
                Ok(answer) => {
                    let amount = answer
                        .amount
                        .as_ref()
                        .and_then(|a| u128::try_from(a.0).ok())
                        .unwrap_or_default();
                    run.settles.push(SentSettle {
                        transaction: answer.transaction,
                        receiver,
                        token,
                        amount,
                    });
                    true
                }
                Err((reason, _))
                    if reason == ReasonCode::BATCH_SETTLEMENT_EVM_NOTHING_TO_SETTLE.to_string() =>
                {
                    true
                }
                Err((reason, message)) => {
                    run.failures.push(ClaimFailure {
                        step: "settle",
                        channels: Vec::new(),
                        reason,
                        message,
                    });
                    false
                }
            };
            if done
                && let Some(set) = self
                    .unsettled
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_mut()
            {
                set.remove(&(receiver, token));
            }
        }
    }

    /// Sends `request` to the facilitator's `/settle`: the success, or the reason and
    /// message of a refusal.
    async fn settle(&self, request: &PaymentRequest) -> Result<SettleResponse, (String, String)> {
        match self.facilitator.settle(request, None).await {
            Ok(answer) if answer.success => Ok(answer),
            Ok(answer) => Err((
                answer
                    .error_reason
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "unknown".into()),
                answer.error_message.unwrap_or_default(),
            )),
            Err(error) => Err((UNAVAILABLE.into(), error.to_string())),
        }
    }

    /// A server-authored request to the facilitator: the requirements official servers send
    /// with claims and settles (amount zero, no timeout), with `extra`.
    fn request(
        &self,
        receiver: Address,
        token: Address,
        extra: Value,
        payload: Value,
    ) -> PaymentRequest {
        let requirements = v2::PaymentRequirements {
            scheme: Scheme::BATCH_SETTLEMENT,
            network: self.network.clone(),
            amount: TokenAmount::from_atomic(0),
            asset: token.to_checksum(None),
            pay_to: receiver.to_checksum(None),
            max_timeout_seconds: 0,
            extra: Some(extra),
        };
        PaymentRequest::V2 {
            payload: v2::PaymentPayload {
                x402_version: V2::default(),
                resource: None,
                accepted: requirements.clone(),
                payload,
                extensions: None,
            },
            requirements,
        }
    }

    /// Reads on chain, through the facilitator's `/verify` of the held voucher, every channel
    /// with something unclaimed, and mirrors what it answers (a withdrawal started, a claim
    /// made elsewhere). The failures, one per channel that could not be read.
    pub async fn check_chain(&self) -> Result<Vec<ClaimFailure>, ClaimError> {
        let mut failures = Vec::new();
        for record in self.records().await? {
            let (true, Some(voucher)) = (claimable(&record), &record.voucher) else {
                continue;
            };
            let config = &record.config;
            let extra = json!({
                "receiverAuthorizer": config.receiver_authorizer.to_checksum(None),
                "withdrawDelay": config.withdraw_delay,
            });
            let payload = json!({
                "type": "voucher",
                "channelConfig": config,
                "voucher": {
                    "channelId": record.id,
                    "maxClaimableAmount": voucher.max_claimable.to_string(),
                    "signature": voucher.signature,
                },
            });
            let request = self.request(config.receiver, config.token, extra, payload);
            let fail = |reason: String, message: String| ClaimFailure {
                step: "check",
                channels: vec![record.id],
                reason,
                message,
            };
            match self.facilitator.verify(&request).await {
                Ok(answer) if answer.is_valid => {
                    let state = answer
                        .extra
                        .and_then(|extra| serde_json::from_value::<ChannelStateExtra>(extra).ok());
                    match state {
                        Some(state) => {
                            self.raise_claimed(&record.id, state.total_claimed, Some(&state))
                                .await;
                        }
                        None => failures.push(fail(
                            "no_channel_state".into(),
                            "the facilitator's verify answer carries no channel state".into(),
                        )),
                    }
                }
                Ok(answer)
                    if answer.invalid_reason
                        == Some(ReasonCode::BATCH_SETTLEMENT_EVM_CUMULATIVE_BELOW_CLAIMED) =>
                {
                    // Claimed on chain up to this voucher at least: by us, or with a refund.
                    self.raise_claimed(&record.id, voucher.max_claimable, None)
                        .await;
                }
                Ok(answer) => {
                    let reason = answer.invalid_reason.map(|r| r.to_string());
                    let message = answer.invalid_message.unwrap_or_default();
                    tracing::warn!(channel = %record.id, ?reason, message, "a channel with unclaimed charges does not verify");
                    failures.push(fail(reason.unwrap_or_else(|| "invalid".into()), message));
                }
                Err(error) => failures.push(fail(UNAVAILABLE.into(), error.to_string())),
            }
        }
        Ok(failures)
    }

    /// One look at the policy: reads the chain when `chain_due`, then claims when a bound is
    /// reached, a channel is urgent, or `scheduled` and something is unclaimed. The run, if
    /// one was made.
    pub async fn tick(
        &self,
        chain_due: bool,
        scheduled: bool,
    ) -> Result<Option<ClaimRun>, ClaimError> {
        if chain_due {
            for failure in self.check_chain().await? {
                tracing::warn!(?failure, "reading a channel on chain failed");
            }
        }
        let records = self.records().await?;
        let total = records
            .iter()
            .filter(|r| claimable(r))
            .map(ChannelRecord::unclaimed)
            .fold(0u128, u128::saturating_add);
        let urgent = records.iter().any(|r| self.policy.urgent(r));
        let over_total = total > 0 && total >= self.policy.max_unclaimed_total;
        if urgent || over_total || (scheduled && total > 0) {
            return self.claim_and_settle(false).await.map(Some);
        }
        Ok(None)
    }

    /// Runs the policy in the background until [`ClaimerTask::stop`].
    pub fn start(self: &Arc<Self>) -> ClaimerTask {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let claimer = Arc::clone(self);
        let handle = tokio::spawn(async move {
            let policy = claimer.policy.clone();
            let started = Instant::now();
            let (mut next_run, mut next_chain) = (started + policy.interval, started);
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(policy.check_every) => {}
                    () = claimer.wake.notified() => {}
                }
                let now = Instant::now();
                let chain_due = now >= next_chain;
                if chain_due {
                    next_chain = now + policy.chain_check_every;
                }
                let scheduled = now >= next_run;
                match claimer.tick(chain_due, scheduled).await {
                    Ok(Some(run)) => {
                        next_run = Instant::now() + policy.interval;
                        for failure in &run.failures {
                            tracing::warn!(
                                ?failure,
                                "a claim or settle failed; retried on the next run"
                            );
                        }
                        if !run.claims.is_empty() {
                            tracing::info!(
                                claims = run.claims.len(),
                                settles = run.settles.len(),
                                "batch-settlement vouchers claimed"
                            );
                        }
                    }
                    Ok(None) if scheduled => next_run = now + policy.interval,
                    Ok(None) => {}
                    Err(error) => {
                        tracing::error!(%error, "the claimer could not read its channels")
                    }
                }
            }
        });
        ClaimerTask {
            claimer: Arc::clone(self),
            stop: Some(stop),
            handle,
        }
    }
}

/// A claim payload with its `type`.
fn payload_with_type(kind: &str, mut payload: Value) -> Value {
    if let Some(object) = payload.as_object_mut() {
        object.insert("type".into(), json!(kind));
    }
    payload
}

/// The claimer running in the background.
#[derive(Debug)]
pub struct ClaimerTask {
    claimer: Arc<BatchClaimer>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
}

impl ClaimerTask {
    /// The claimer it runs.
    pub fn claimer(&self) -> &Arc<BatchClaimer> {
        &self.claimer
    }

    /// Stops the task (after the run in progress, if any), then, when `flush`, claims and
    /// settles everything still unclaimed.
    pub async fn stop(mut self, flush: bool) -> Option<Result<ClaimRun, ClaimError>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.handle).await;
        if flush {
            Some(self.claimer.flush().await)
        } else {
            None
        }
    }
}

impl Drop for ClaimerTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{ChannelConfig, HeldVoucher, MemoryChannelStore, Reservation};
    use alloy::primitives::{B256, Bytes};

    fn record(n: u8, charged: u128, claimed: u128) -> ChannelRecord {
        let config = ChannelConfig {
            payer: Address::repeat_byte(n),
            payer_authorizer: Address::repeat_byte(n),
            receiver: Address::repeat_byte(0xaa),
            receiver_authorizer: Address::repeat_byte(0xbb),
            token: Address::repeat_byte(0xcc),
            withdraw_delay: 900,
            salt: B256::ZERO,
        };
        let mut record = ChannelRecord::new(
            ChannelId::new(B256::repeat_byte(n)),
            Network::new("eip155:8453"),
            config,
        );
        record.charged = charged;
        record.onchain.total_claimed = claimed;
        record.voucher = Some(HeldVoucher {
            max_claimable: charged + 10,
            signature: Bytes::from(vec![n; 65]),
        });
        record
    }

    #[test]
    fn urgent_channels_are_over_their_bound_or_withdrawing() {
        let policy = ClaimPolicy {
            max_unclaimed_per_channel: 100,
            ..ClaimPolicy::default()
        };
        assert!(!policy.urgent(&record(1, 99, 0)));
        assert!(policy.urgent(&record(1, 150, 50)));
        assert!(!policy.urgent(&record(1, 150, 51)));
        let mut withdrawing = record(1, 10, 0);
        withdrawing.onchain.withdraw_requested_at = 5;
        assert!(policy.urgent(&withdrawing));
        // Nothing unclaimed: nothing to hurry for.
        withdrawing.onchain.total_claimed = 10;
        assert!(!policy.urgent(&withdrawing));
        let relaxed = ClaimPolicy {
            claim_on_withdrawal: false,
            ..policy
        };
        withdrawing.onchain.total_claimed = 0;
        assert!(!relaxed.urgent(&withdrawing));
    }

    #[derive(Debug, Default)]
    struct Refusing;

    impl Facilitator for Refusing {
        fn verify<'a>(
            &'a self,
            _: &'a PaymentRequest,
        ) -> x402_proto::BoxFuture<
            'a,
            Result<x402_proto::VerifyResponse, x402_proto::FacilitatorError>,
        > {
            Box::pin(async { Err(x402_proto::FacilitatorError::Internal("down".into())) })
        }
        fn settle<'a>(
            &'a self,
            _: &'a PaymentRequest,
            _: Option<&'a x402_proto::IdempotencyKey>,
        ) -> x402_proto::BoxFuture<'a, Result<SettleResponse, x402_proto::FacilitatorError>>
        {
            Box::pin(async { Err(x402_proto::FacilitatorError::Internal("down".into())) })
        }
        fn supported(
            &self,
        ) -> x402_proto::BoxFuture<
            '_,
            Result<x402_proto::SupportedResponse, x402_proto::FacilitatorError>,
        > {
            Box::pin(async { Err(x402_proto::FacilitatorError::Internal("down".into())) })
        }
    }

    #[tokio::test]
    async fn exposure_counts_what_is_charged_beyond_the_claims_and_failures_leave_it() {
        let store = Arc::new(MemoryChannelStore::new());
        let mut reserved = record(3, 40, 0);
        reserved.pending = Some(Reservation {
            id: 1,
            max_claimable: 60,
            expires_at: u64::MAX,
        });
        for r in [record(1, 100, 30), record(2, 5, 5), reserved] {
            store
                .update(&r.id.clone(), &mut |_| ChannelWrite::Put(r.clone()))
                .await
                .unwrap();
        }
        let claimer = BatchClaimer::new(
            store.clone(),
            Arc::new(Refusing),
            Network::new("eip155:8453"),
            ClaimPolicy::default(),
        );
        let exposure = claimer.exposure().await.unwrap();
        let asset = exposure.assets[&Address::repeat_byte(0xcc)];
        assert_eq!(asset.unclaimed, 110);
        assert_eq!(asset.channels, 3);
        assert_eq!(asset.largest, 70);
        assert_eq!(exposure.channels.len(), 2);
        // A scheduled run skips the reserved channel; a facilitator that is down leaves
        // every record as it was and reports why.
        let run = claimer.claim_and_settle(false).await.unwrap();
        assert_eq!(run.claims, []);
        assert_eq!(
            run.failures[0].channels,
            [ChannelId::new(B256::repeat_byte(1))]
        );
        assert_eq!(run.failures[0].reason, "unavailable");
        let flushed = claimer.flush().await.unwrap();
        let claimed: Vec<_> = flushed
            .failures
            .iter()
            .filter(|f| f.step == "claim")
            .collect();
        assert_eq!(claimed[0].channels.len(), 2, "{flushed:?}");
        assert_eq!(claimer.exposure().await.unwrap(), exposure);
        assert_eq!(claimer.stats(), ClaimStats::default());
    }
}
