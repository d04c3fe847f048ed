//! `batch-settlement` as a paying client runs it, as `@x402/evm` 2.27's client does: one
//! deposit into escrow when a channel opens (or runs dry), then a cumulative voucher per
//! request; the server's `chargedAmount` advances the local count after each answer, and a
//! corrective 402 is adopted only when its voucher is provably ours and the chain agrees.
//!
//! **One request in flight per channel.** A voucher's ceiling is the channel's charged count
//! plus this request's price, so two requests signed on the same count would pay against the
//! same ceiling and the server would refuse the second (`channel_busy`, or a mismatch). A
//! signature therefore takes the channel's *lease*, held until [`SchemeClient::on_response`]
//! reports the answer; a second request on the channel waits for it. The lease expires after
//! [`BatchEvmClient::with_lease`] (60 s by default, at most the offer's timeout), so an answer
//! that never comes back cannot wedge the channel: the next request signs on the last count
//! known and, if the lost request was charged after all, the server's corrective 402 resyncs
//! it. Parallel agents that want concurrency use several clients with distinct salts (lanes).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::Signer;
use alloy::sol_types::SolCall;
use serde::{Deserialize, Serialize};
use x402_proto::{
    BoxFuture, Network, ReasonCode, Scheme, SchemeClient, SchemeSignError, SettleResponse,
    SignLimits, SignedPayload, TokenAmount, v2,
};

use super::encoding::{ChannelId, decimal_u128, to_uint128};
use super::onchain::IBatchSettlement;
use super::wire::{BatchPayload, ChannelConfig, RefundPayload, VoucherPayload};
use super::{
    AssetTransferMethod, BATCH_SETTLEMENT_ADDRESS, BatchDomain, PaymentResponseExtra,
    RequirementsExtra, channel_config_for, domain_of, next_ceiling, recover_strict,
    sign_erc3009_deposit, sign_voucher,
};

/// The deposit multiplier official clients use: a new channel is funded for five requests.
pub const DEFAULT_DEPOSIT_MULTIPLIER: u128 = 5;

/// How long a channel's lease lasts when its answer never comes back.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// What a paying client keeps of one of its channels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientChannel {
    /// The channel's terms.
    pub config: ChannelConfig,
    /// The network it lives on.
    pub network: Network,
    /// What the server has charged in all (`chargedCumulativeAmount`).
    #[serde(with = "decimal_u128")]
    pub charged: u128,
    /// What was deposited, as far as this client knows (the escrow's `balance`).
    #[serde(with = "decimal_u128")]
    pub balance: u128,
    /// What the receiver has claimed on chain, last seen.
    #[serde(with = "decimal_u128")]
    pub total_claimed: u128,
    /// The ceiling of the latest voucher signed, when known.
    #[serde(default, with = "decimal_u128::option")]
    pub signed_max: Option<u128>,
    /// Its signature.
    #[serde(default)]
    pub signature: Option<Bytes>,
}

impl ClientChannel {
    /// A channel with nothing in it yet.
    pub fn empty(config: ChannelConfig, network: Network) -> Self {
        Self {
            config,
            network,
            charged: 0,
            balance: 0,
            total_claimed: 0,
            signed_max: None,
            signature: None,
        }
    }

    /// What is left in escrow for future requests: balance less what was charged.
    pub fn unspent(&self) -> u128 {
        self.balance.saturating_sub(self.charged)
    }
}

/// A client channel store failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("client channel store: {0}")]
pub struct ClientStoreError(pub String);

/// Where a paying client keeps its channels, keyed by channel id: in memory
/// ([`MemoryClientChannels`]) or durably (the client ledger), so channels survive restarts.
pub trait ClientChannelStore: Send + Sync + fmt::Debug {
    /// The channel `id`, if kept.
    fn get(&self, id: &ChannelId) -> Result<Option<ClientChannel>, ClientStoreError>;
    /// Keeps `channel` as `id`'s record.
    fn put(&self, id: &ChannelId, channel: &ClientChannel) -> Result<(), ClientStoreError>;
    /// Forgets `id` (fully refunded).
    fn remove(&self, id: &ChannelId) -> Result<(), ClientStoreError>;
    /// Every channel kept.
    fn list(&self) -> Result<Vec<(ChannelId, ClientChannel)>, ClientStoreError>;
}

/// Channels kept in process memory.
#[derive(Debug, Default)]
pub struct MemoryClientChannels(Mutex<HashMap<ChannelId, ClientChannel>>);

impl MemoryClientChannels {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ChannelId, ClientChannel>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ClientChannelStore for MemoryClientChannels {
    fn get(&self, id: &ChannelId) -> Result<Option<ClientChannel>, ClientStoreError> {
        Ok(self.map().get(id).cloned())
    }

    fn put(&self, id: &ChannelId, channel: &ClientChannel) -> Result<(), ClientStoreError> {
        self.map().insert(*id, channel.clone());
        Ok(())
    }

    fn remove(&self, id: &ChannelId) -> Result<(), ClientStoreError> {
        self.map().remove(id);
        Ok(())
    }

    fn list(&self) -> Result<Vec<(ChannelId, ClientChannel)>, ClientStoreError> {
        Ok(self.map().iter().map(|(k, v)| (*k, v.clone())).collect())
    }
}

/// The deposit a request needs, as the official client sizes it: at least `needed` (what the
/// next ceiling lacks), otherwise `extra.minDeposit` when the server announces one at or above
/// the price, else `multiplier × price`; capped by `max_lock` (`None`: no cap), and refused
/// when even `needed` crosses the cap.
pub fn deposit_amount(
    price: u128,
    needed: u128,
    min_deposit: Option<u128>,
    multiplier: u128,
    max_lock: Option<u128>,
) -> Result<u128, SchemeSignError> {
    let announced = min_deposit.filter(|m| *m > 0 && *m >= price);
    let target = announced.unwrap_or_else(|| price.saturating_mul(multiplier));
    let deposit = needed.max(target);
    match max_lock {
        Some(cap) if needed > cap => Err(SchemeSignError(format!(
            "budget exceeded: the deposit_cap leaves room for {cap} atomic units in escrow, this channel needs a deposit of {needed}; raise it with `x402 budget set --deposit-cap` or refund idle channels (`x402 channels refund`)"
        ))),
        Some(cap) => Ok(deposit.min(cap)),
        None => Ok(deposit),
    }
}

/// `extra.chargedAmount` of a receipt: `Ok(None)` when absent, an error when it is not a
/// decimal amount.
fn charged_amount(receipt: &SettleResponse) -> Result<Option<u128>, String> {
    let Some(extra) = &receipt.extra else {
        return Ok(None);
    };
    match extra.get("chargedAmount") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s))
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.parse()
                .map(Some)
                .map_err(|e| format!("chargedAmount {s}: {e}"))
        }
        Some(other) => Err(format!("chargedAmount {other} is not a decimal string")),
    }
}

/// The server's `chargedCumulativeAmount` in a receipt, when it names one.
fn server_cumulative(receipt: &SettleResponse) -> Option<PaymentResponseExtra> {
    serde_json::from_value(receipt.extra.clone()?).ok()
}

/// Who holds each channel's lease, and until when.
#[derive(Debug, Default)]
struct Leases {
    held: Mutex<HashMap<ChannelId, Instant>>,
    freed: tokio::sync::Notify,
}

impl Leases {
    /// Takes `id`'s lease for `ttl`, waiting at most `patience` for it.
    async fn take(
        &self,
        id: ChannelId,
        ttl: Duration,
        patience: Duration,
    ) -> Result<(), SchemeSignError> {
        let deadline = Instant::now() + patience;
        loop {
            let freed = self.freed.notified();
            {
                let mut held = self
                    .held
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                match held.get(&id) {
                    Some(until) if *until > now => {}
                    _ => {
                        held.insert(id, now + ttl);
                        return Ok(());
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(SchemeSignError(format!(
                    "channel {id} is busy with another request; retry shortly or pay from another lane (salt)"
                )));
            }
            // Woken when a lease is given back; otherwise look again when one may have lapsed.
            let _ =
                tokio::time::timeout((deadline - now).min(Duration::from_millis(250)), freed).await;
        }
    }

    /// Gives `id`'s lease back.
    fn give_back(&self, id: &ChannelId) {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
        self.freed.notify_waiters();
    }
}

/// `batch-settlement` on EVM chains as a paying client's scheme plug-in: pays
/// `batch-settlement` offers on `eip155` networks that take ERC-3009 deposits, its signer
/// being both the channel's payer and its voucher signer (`payerAuthorizer`).
pub struct BatchEvmClient<S> {
    signer: S,
    salt: B256,
    multiplier: u128,
    lease: Duration,
    store: Arc<dyn ClientChannelStore>,
    chain: Option<DynProvider>,
    leases: Leases,
}

impl<S> fmt::Debug for BatchEvmClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchEvmClient")
            .field("salt", &self.salt)
            .field("store", &self.store)
            .field("reads_chain", &self.chain.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a channel could not be read on chain.
fn rpc_error(error: impl fmt::Display) -> SchemeSignError {
    SchemeSignError(format!("cannot read the channel on chain: {error}"))
}

fn store_error(error: ClientStoreError) -> SchemeSignError {
    SchemeSignError(error.to_string())
}

fn sign_error(error: impl fmt::Display) -> SchemeSignError {
    SchemeSignError(error.to_string())
}

impl<S> BatchEvmClient<S>
where
    S: Signer + Send + Sync,
{
    /// Pays with `signer` on lane zero, its channels in memory, reading no chain.
    pub fn new(signer: S) -> Self {
        Self {
            signer,
            salt: B256::ZERO,
            multiplier: DEFAULT_DEPOSIT_MULTIPLIER,
            lease: DEFAULT_LEASE,
            store: Arc::new(MemoryClientChannels::default()),
            chain: None,
            leases: Leases::default(),
        }
    }

    /// Keeps channels in `store` (so that they survive a restart).
    pub fn with_store(mut self, store: Arc<dyn ClientChannelStore>) -> Self {
        self.store = store;
        self
    }

    /// Reads channels on the chain at `rpc_url`: a channel with no local record starts from
    /// what was claimed on chain, and a corrective 402 is checked against the chain. Without a
    /// chain, corrective 402s are never adopted.
    pub fn with_chain(mut self, rpc_url: alloy::transports::http::reqwest::Url) -> Self {
        self.chain = Some(
            alloy::providers::ProviderBuilder::new()
                .connect_http(rpc_url)
                .erased(),
        );
        self
    }

    /// Opens channels on lane `salt` (zero by default): clients with distinct salts hold
    /// distinct channels with the same server.
    pub fn with_salt(mut self, salt: B256) -> Self {
        self.salt = salt;
        self
    }

    /// Funds a new channel for `multiplier` requests (5 by default; at least 3, as official
    /// clients require) when the server announces no `minDeposit`.
    pub fn with_deposit_multiplier(mut self, multiplier: u128) -> Self {
        self.multiplier = multiplier.max(3);
        self
    }

    /// How long a channel stays held for a request whose answer never comes back.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The channel store.
    pub fn store(&self) -> &Arc<dyn ClientChannelStore> {
        &self.store
    }

    /// The payer.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The channel this client opens for `requirements`, and its id.
    pub fn channel_for(
        &self,
        requirements: &v2::PaymentRequirements,
    ) -> Result<(ChannelConfig, ChannelId, BatchDomain), SchemeSignError> {
        let payer = self.signer.address();
        let config =
            channel_config_for(requirements, payer, payer, self.salt).map_err(sign_error)?;
        let domain = domain_of(requirements).map_err(sign_error)?;
        Ok((config, domain.channel_id(&config), domain))
    }

    /// `channels(id)` on chain: its balance and what was claimed.
    pub async fn read_channel(&self, id: &ChannelId) -> Result<(u128, u128), SchemeSignError> {
        let chain = self
            .chain
            .as_ref()
            .ok_or_else(|| rpc_error("no RPC endpoint configured"))?;
        let call = IBatchSettlement::channelsCall {
            channelId: *id.as_b256(),
        };
        let request = TransactionRequest::default()
            .with_to(BATCH_SETTLEMENT_ADDRESS)
            .with_input(Bytes::from(call.abi_encode()));
        let answer = chain.call(request).await.map_err(rpc_error)?;
        let read =
            IBatchSettlement::channelsCall::abi_decode_returns(&answer).map_err(rpc_error)?;
        Ok((read.balance, read.totalClaimed))
    }

    /// The channel's record: kept, or (none kept, a chain to read) started from what the chain
    /// shows was claimed, as the official client recovers it.
    async fn record(
        &self,
        id: &ChannelId,
        config: ChannelConfig,
        network: &Network,
    ) -> Result<ClientChannel, SchemeSignError> {
        if let Some(kept) = self.store.get(id).map_err(store_error)? {
            return Ok(kept);
        }
        let mut fresh = ClientChannel::empty(config, network.clone());
        if self.chain.is_some() {
            let (balance, claimed) = self.read_channel(id).await?;
            fresh.balance = balance;
            fresh.total_claimed = claimed;
            fresh.charged = claimed;
            self.store.put(id, &fresh).map_err(store_error)?;
        }
        Ok(fresh)
    }

    /// Signs the payment for `requirements` on the channel it opens, holding its lease.
    async fn sign_payment(
        &self,
        requirements: &v2::PaymentRequirements,
        now: u64,
        limits: SignLimits,
    ) -> Result<SignedPayload, SchemeSignError> {
        let (config, id, domain) = self.channel_for(requirements)?;
        let ttl = self
            .lease
            .min(Duration::from_secs(requirements.max_timeout_seconds.max(5)));
        self.leases.take(id, ttl, ttl).await?;
        let signed = self
            .sign_held(requirements, now, limits, config, id, &domain)
            .await;
        if signed.is_err() {
            self.leases.give_back(&id);
        }
        signed
    }

    async fn sign_held(
        &self,
        requirements: &v2::PaymentRequirements,
        now: u64,
        limits: SignLimits,
        config: ChannelConfig,
        id: ChannelId,
        domain: &BatchDomain,
    ) -> Result<SignedPayload, SchemeSignError> {
        let record = self.record(&id, config, &requirements.network).await?;
        let price = to_uint128("price", requirements.amount.0).map_err(sign_error)?;
        let ceiling = next_ceiling(record.charged, requirements.amount.0).map_err(sign_error)?;
        let voucher = sign_voucher(&self.signer, domain, id, ceiling)
            .await
            .map_err(sign_error)?;
        if record.balance > 0 && ceiling <= record.balance {
            let payload = BatchPayload::Voucher(VoucherPayload {
                channel_config: config,
                voucher,
            });
            return Ok(SignedPayload {
                channel: Some(id.to_string()),
                ..SignedPayload::plain(to_value(&payload)?)
            });
        }
        let extra: Option<RequirementsExtra> = requirements
            .extra
            .clone()
            .and_then(|extra| serde_json::from_value(extra).ok());
        let method = extra
            .as_ref()
            .and_then(|e| e.asset_transfer_method)
            .unwrap_or_default();
        if method != AssetTransferMethod::Eip3009 {
            return Err(SchemeSignError(
                "this client deposits by ERC-3009 only; the offer asks for Permit2".into(),
            ));
        }
        let max_lock = limits
            .max_lock
            .map(|cap| to_uint128("deposit cap", cap.0).unwrap_or(u128::MAX));
        let amount = deposit_amount(
            price,
            ceiling - record.balance,
            extra.as_ref().and_then(|e| e.min_deposit),
            self.multiplier,
            max_lock,
        )?;
        let deposit = sign_erc3009_deposit(
            &self.signer,
            requirements,
            config,
            voucher,
            amount,
            B256::random(),
            now,
        )
        .await
        .map_err(sign_error)?;
        let payload = BatchPayload::Deposit(Box::new(deposit));
        Ok(SignedPayload {
            locks: Some(TokenAmount(U256::from(amount))),
            channel: Some(id.to_string()),
            ..SignedPayload::plain(to_value(&payload)?)
        })
    }

    /// A cooperative refund of `requirements`' channel: a zero-charge voucher (its ceiling is
    /// what was charged) asking the server for `amount` back, everything left when `None`.
    /// Refused when nothing is left to refund. The channel's lease is held until
    /// [`SchemeClient::on_response`] reports the answer.
    pub async fn sign_refund(
        &self,
        requirements: &v2::PaymentRequirements,
        amount: Option<u128>,
    ) -> Result<SignedPayload, SchemeSignError> {
        let (config, id, domain) = self.channel_for(requirements)?;
        let ttl = self
            .lease
            .min(Duration::from_secs(requirements.max_timeout_seconds.max(5)));
        self.leases.take(id, ttl, ttl).await?;
        let signed = async {
            let record = self.record(&id, config, &requirements.network).await?;
            if record.balance <= record.charged {
                return Err(SchemeSignError(format!(
                    "channel {id} has nothing left to refund (balance {}, charged {})",
                    record.balance, record.charged
                )));
            }
            if amount == Some(0) {
                return Err(SchemeSignError("a refund amount must be positive".into()));
            }
            let voucher = sign_voucher(&self.signer, &domain, id, record.charged)
                .await
                .map_err(sign_error)?;
            let payload = BatchPayload::Refund(RefundPayload {
                channel_config: config,
                voucher,
                amount,
            });
            Ok(SignedPayload {
                channel: Some(id.to_string()),
                ..SignedPayload::plain(to_value(&payload)?)
            })
        }
        .await;
        if signed.is_err() {
            self.leases.give_back(&id);
        }
        signed
    }

    /// Advances the channel a payment was made on by its successful `receipt`.
    fn advance(
        &self,
        requirements: &v2::PaymentRequirements,
        payload: &BatchPayload,
        receipt: &SettleResponse,
    ) -> Result<(), ClientStoreError> {
        let id = payload.voucher().channel_id;
        let previous = self.store.get(&id)?;
        if let BatchPayload::Refund(refund) = payload {
            // What the server returned; everything left when it names nothing.
            let Some(mut channel) = previous else {
                return Ok(());
            };
            let returned = receipt
                .amount
                .and_then(|a| u128::try_from(a.0).ok())
                .or(refund.amount);
            match returned {
                Some(returned) if returned < channel.unspent() => {
                    channel.balance -= returned;
                    self.store.put(&id, &channel)
                }
                _ => self.store.remove(&id),
            }?;
            return Ok(());
        }
        let charged = match charged_amount(receipt) {
            Ok(charged) => charged.unwrap_or(0),
            Err(error) => {
                tracing::warn!(%error, channel = %id, "ignoring a receipt with a malformed chargedAmount");
                return Ok(());
            }
        };
        let price = u128::try_from(requirements.amount.0).unwrap_or(u128::MAX);
        if charged > price {
            tracing::warn!(charged, price, channel = %id, "the server charged more than the price; not counted");
            return Ok(());
        }
        let deposit = match payload {
            BatchPayload::Deposit(deposit) => Some(deposit.deposit.amount),
            _ => None,
        };
        if previous.is_none() && charged == 0 && deposit.is_none() {
            return Ok(());
        }
        let mut channel = previous.unwrap_or_else(|| {
            ClientChannel::empty(*payload.channel_config(), requirements.network.clone())
        });
        let next = channel.charged.saturating_add(charged);
        let state = server_cumulative(receipt).and_then(|extra| extra.snapshot.channel_state);
        if let Some(server) = state
            .as_ref()
            .and_then(|state| state.charged_cumulative_amount)
            && server != next
        {
            tracing::warn!(server, ours = next, channel = %id, "the server's charged count disagrees; update discarded");
            return Ok(());
        }
        channel.charged = next;
        if let Some(deposit) = deposit {
            channel.balance = channel.balance.saturating_add(deposit);
        }
        if let Some(state) = state {
            channel.total_claimed = channel.total_claimed.max(state.total_claimed);
        }
        channel.signed_max = Some(payload.voucher().max_claimable_amount);
        channel.signature = Some(payload.voucher().signature.clone());
        self.store.put(&id, &channel)
    }

    /// Resyncs the channel of `offer` from a corrective 402, as the official client does:
    /// with the server's voucher when it recovers to this client's signer, its count at most
    /// that voucher and at least what the chain shows claimed; else, without a voucher, from
    /// the chain alone. Whether a retry is warranted.
    async fn resync(&self, offer: &v2::PaymentRequirements) -> Result<bool, SchemeSignError> {
        if self.chain.is_none() {
            return Ok(false);
        }
        let (config, id, domain) = self.channel_for(offer)?;
        let extra: Option<RequirementsExtra> = offer
            .extra
            .clone()
            .and_then(|extra| serde_json::from_value(extra).ok());
        let snapshot = extra.map(|e| e.snapshot).unwrap_or_default();
        let charged = snapshot
            .channel_state
            .as_ref()
            .and_then(|s| s.charged_cumulative_amount);
        let voucher = snapshot
            .voucher_state
            .as_ref()
            .and_then(|v| Some((v.signed_max_claimable?, v.signature.clone()?)));
        let (balance, claimed) = self.read_channel(&id).await?;
        let mut channel = self
            .store
            .get(&id)
            .map_err(store_error)?
            .unwrap_or_else(|| ClientChannel::empty(config, offer.network.clone()));
        channel.balance = balance;
        channel.total_claimed = claimed;
        match (charged, voucher) {
            (Some(charged), Some((signed, signature))) => {
                if charged > signed || charged < claimed {
                    return Ok(false);
                }
                let digest = domain.voucher_digest(&id, signed);
                if recover_strict(&signature, &digest) != Some(self.signer.address()) {
                    tracing::warn!(channel = %id, "a corrective 402 carried a voucher this client did not sign; not adopted");
                    return Ok(false);
                }
                channel.charged = charged;
                channel.signed_max = Some(signed);
                channel.signature = Some(signature);
            }
            _ => {
                channel.charged = claimed;
                channel.signed_max = None;
                channel.signature = None;
            }
        }
        self.store.put(&id, &channel).map_err(store_error)?;
        Ok(true)
    }
}

fn to_value(payload: &BatchPayload) -> Result<serde_json::Value, SchemeSignError> {
    serde_json::to_value(payload).map_err(sign_error)
}

/// Whether `requirements` is a `batch-settlement` offer on an EVM chain.
fn offers(requirements: &v2::PaymentRequirements) -> bool {
    requirements.scheme == Scheme::BATCH_SETTLEMENT && requirements.network.evm_chain_id().is_some()
}

impl<S> SchemeClient for BatchEvmClient<S>
where
    S: Signer + Send + Sync + 'static,
{
    fn can_pay(&self, requirements: &v2::PaymentRequirements) -> bool {
        offers(requirements)
    }

    fn payer(&self, _network: &Network) -> String {
        self.signer.address().to_checksum(None)
    }

    /// A voucher leaves its channel leased until its answer comes back.
    fn needs_response(&self) -> bool {
        true
    }

    fn sign<'a>(
        &'a self,
        requirements: &'a v2::PaymentRequirements,
        now: u64,
    ) -> BoxFuture<'a, Result<SignedPayload, SchemeSignError>> {
        Box::pin(self.sign_payment(requirements, now, SignLimits::default()))
    }

    fn sign_within<'a>(
        &'a self,
        requirements: &'a v2::PaymentRequirements,
        now: u64,
        limits: SignLimits,
    ) -> BoxFuture<'a, Result<SignedPayload, SchemeSignError>> {
        Box::pin(self.sign_payment(requirements, now, limits))
    }

    fn charged(
        &self,
        _requirements: &v2::PaymentRequirements,
        receipt: &SettleResponse,
    ) -> Option<TokenAmount> {
        // A refund or a server that names nothing charged nothing; a malformed amount counts
        // as the price.
        charged_amount(receipt)
            .ok()
            .map(|charged| TokenAmount(U256::from(charged.unwrap_or(0))))
    }

    fn on_response(
        &self,
        requirements: &v2::PaymentRequirements,
        signed: &SignedPayload,
        receipt: Option<&SettleResponse>,
    ) {
        let Ok(payload) = serde_json::from_value::<BatchPayload>(signed.payload.clone()) else {
            return;
        };
        let id = payload.voucher().channel_id;
        if let Some(receipt) = receipt.filter(|r| r.success)
            && let Err(error) = self.advance(requirements, &payload, receipt)
        {
            tracing::error!(%error, channel = %id, "could not record a channel's new state");
        }
        self.leases.give_back(&id);
    }

    fn recover<'a>(
        &'a self,
        corrective: &'a v2::PaymentRequired,
    ) -> BoxFuture<'a, Result<bool, SchemeSignError>> {
        Box::pin(async move {
            let resyncs = |error: &str| {
                error == ReasonCode::BATCH_SETTLEMENT_EVM_CUMULATIVE_AMOUNT_MISMATCH.as_str()
                    || error == ReasonCode::BATCH_SETTLEMENT_EVM_CUMULATIVE_BELOW_CLAIMED.as_str()
            };
            if !corrective.error.as_deref().is_some_and(resyncs) {
                return Ok(false);
            }
            let Some(offer) = corrective.accepts.iter().find(|offer| offers(offer)) else {
                return Ok(false);
            };
            self.resync(offer).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::local::PrivateKeySigner;
    use serde_json::json;

    fn offer(price: u128, extra: serde_json::Value) -> v2::PaymentRequirements {
        let mut extra_full = json!({
            "receiverAuthorizer": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
            "withdrawDelay": 900, "name": "USD Coin", "version": "2",
        });
        for (k, v) in extra.as_object().unwrap() {
            extra_full[k] = v.clone();
        }
        serde_json::from_value(json!({
            "scheme": "batch-settlement", "network": "eip155:8453", "amount": price.to_string(),
            "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
            "payTo": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "maxTimeoutSeconds": 300, "extra": extra_full,
        }))
        .unwrap()
    }

    fn receipt(extra: serde_json::Value) -> SettleResponse {
        serde_json::from_value(json!({
            "success": true, "transaction": "", "network": "eip155:8453", "extra": extra,
        }))
        .unwrap()
    }

    #[test]
    fn deposits_are_sized_as_the_official_client_sizes_them() {
        // Five requests' worth, or the server's minDeposit when it is at least the price.
        assert_eq!(deposit_amount(100, 100, None, 5, None).unwrap(), 500);
        assert_eq!(
            deposit_amount(100, 100, Some(1_000), 5, None).unwrap(),
            1_000
        );
        assert_eq!(deposit_amount(100, 100, Some(50), 5, None).unwrap(), 500);
        // What the next ceiling needs wins over the target.
        assert_eq!(deposit_amount(100, 900, None, 5, None).unwrap(), 900);
        // A cap trims the target but never below what is needed.
        assert_eq!(deposit_amount(100, 100, None, 5, Some(300)).unwrap(), 300);
        let refused = deposit_amount(100, 400, None, 5, Some(300)).unwrap_err();
        assert!(refused.0.contains("deposit_cap"), "{refused}");
    }

    #[tokio::test]
    async fn a_new_channel_deposits_then_vouchers_follow_the_charged_count() {
        let signer = PrivateKeySigner::random();
        let client = BatchEvmClient::new(signer.clone());
        let offer = offer(100, json!({}));
        let first = client.sign(&offer, 1_000).await.unwrap();
        assert_eq!(first.locks, Some(TokenAmount::from_atomic(500)));
        assert_eq!(first.payload["type"], "deposit");
        assert_eq!(first.payload["voucher"]["maxClaimableAmount"], "100");
        // The server charged 60 of the 100: the next ceiling is 160.
        client.on_response(
            &offer,
            &first,
            Some(&receipt(json!({"chargedAmount": "60"}))),
        );
        let (_, id, _) = client.channel_for(&offer).unwrap();
        let kept = client.store().get(&id).unwrap().unwrap();
        assert_eq!((kept.charged, kept.balance), (60, 500));
        let second = client.sign(&offer, 1_000).await.unwrap();
        assert_eq!(second.payload["type"], "voucher");
        assert_eq!(second.locks, None);
        assert_eq!(second.payload["voucher"]["maxClaimableAmount"], "160");
        // A receipt claiming more than the price is not counted.
        client.on_response(
            &offer,
            &second,
            Some(&receipt(json!({"chargedAmount": "101"}))),
        );
        assert_eq!(client.store().get(&id).unwrap().unwrap().charged, 60);
        assert_eq!(
            client.charged(&offer, &receipt(json!({"chargedAmount": "101"}))),
            Some(TokenAmount::from_atomic(101)),
            "the client caps it; the plug-in reports what the server said"
        );
        // A server whose cumulative count disagrees is not believed.
        let third = client.sign(&offer, 1_000).await.unwrap();
        let disagreeing = receipt(json!({
            "chargedAmount": "100",
            "channelState": {"channelId": id, "balance": "500", "totalClaimed": "0",
                "withdrawRequestedAt": 0, "refundNonce": "0", "chargedCumulativeAmount": "999"}
        }));
        client.on_response(&offer, &third, Some(&disagreeing));
        assert_eq!(client.store().get(&id).unwrap().unwrap().charged, 60);
        // A failed answer changes nothing but frees the channel.
        let fourth = client.sign(&offer, 1_000).await.unwrap();
        client.on_response(&offer, &fourth, None);
        let agreeing = receipt(json!({
            "chargedAmount": "100",
            "channelState": {"channelId": id, "balance": "500", "totalClaimed": "40",
                "withdrawRequestedAt": 0, "refundNonce": "0", "chargedCumulativeAmount": "160"}
        }));
        let fifth = client.sign(&offer, 1_000).await.unwrap();
        client.on_response(&offer, &fifth, Some(&agreeing));
        let kept = client.store().get(&id).unwrap().unwrap();
        assert_eq!((kept.charged, kept.total_claimed), (160, 40));
    }

    #[tokio::test]
    async fn a_second_request_on_a_channel_waits_for_the_first_answer() {
        let client = Arc::new(
            BatchEvmClient::new(PrivateKeySigner::random()).with_lease(Duration::from_secs(5)),
        );
        let offer = offer(100, json!({}));
        let first = client.sign(&offer, 1_000).await.unwrap();
        let waiting = {
            let (client, offer) = (client.clone(), offer.clone());
            tokio::spawn(async move { client.sign(&offer, 1_000).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "signed on the same ceiling");
        client.on_response(
            &offer,
            &first,
            Some(&receipt(json!({"chargedAmount": "100"}))),
        );
        let second = waiting.await.unwrap().unwrap();
        assert_eq!(second.payload["voucher"]["maxClaimableAmount"], "200");
    }

    #[tokio::test]
    async fn a_lost_answer_frees_the_channel_when_its_lease_lapses() {
        let client =
            BatchEvmClient::new(PrivateKeySigner::random()).with_lease(Duration::from_millis(300));
        let offer = offer(100, json!({}));
        let _lost = client.sign(&offer, 1_000).await.unwrap();
        let started = Instant::now();
        let next = client.sign(&offer, 1_000).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(250));
        // Nothing was counted for the lost one: a deposit again, on the same ceiling.
        assert_eq!(next.payload["voucher"]["maxClaimableAmount"], "100");
    }

    #[tokio::test]
    async fn a_refund_signs_a_zero_charge_voucher_and_needs_something_left() {
        let client = BatchEvmClient::new(PrivateKeySigner::random());
        let offer = offer(100, json!({}));
        assert!(client.sign_refund(&offer, None).await.is_err());
        let deposit = client.sign(&offer, 1_000).await.unwrap();
        client.on_response(
            &offer,
            &deposit,
            Some(&receipt(json!({"chargedAmount": "100"}))),
        );
        let refund = client.sign_refund(&offer, None).await.unwrap();
        assert_eq!(refund.payload["type"], "refund");
        assert_eq!(refund.payload["voucher"]["maxClaimableAmount"], "100");
        let mut refunded = receipt(json!({}));
        refunded.amount = Some(TokenAmount::from_atomic(400));
        client.on_response(&offer, &refund, Some(&refunded));
        let (_, id, _) = client.channel_for(&offer).unwrap();
        assert_eq!(client.store().get(&id).unwrap(), None, "fully refunded");
    }

    #[tokio::test]
    async fn a_corrective_402_is_ignored_without_a_chain_or_for_other_reasons() {
        let client = BatchEvmClient::new(PrivateKeySigner::random());
        let corrective: v2::PaymentRequired = serde_json::from_value(json!({
            "x402Version": 2,
            "error": "invalid_batch_settlement_evm_cumulative_amount_mismatch",
            "resource": {"url": "http://shop/x"},
            "accepts": [offer(100, json!({}))],
        }))
        .unwrap();
        assert!(!client.recover(&corrective).await.unwrap());
    }
}
