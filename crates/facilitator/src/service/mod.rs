//! The facilitator: verification, and settlement that is recorded before it is broadcast, runs
//! once per payment however many callers ask, and is tracked to its end.
//!
//! One job per file: this one is the facade (chains, verify, the settle entry, the
//! [`Facilitator`] impl); [`single_flight`] lets concurrent callers of one payment share one
//! settlement and decides who gets its success; [`lifecycle`] claims, sends and ends a
//! settlement; [`tracking`] follows its transactions until one is mined; [`reconcile`] picks
//! up what a previous run left; [`status`] answers `/supported` and `/health`; [`answers`]
//! builds every refusal and pending answer.

mod answers;
mod lifecycle;
mod reconcile;
mod single_flight;
mod status;
mod tracking;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256, keccak256};
use x402_evm::exact_permit2::{ExactPermit2Facilitator, is_permit2_payload};
use x402_evm::{ExactEvmPayload, ExactEvmScheme, VerifyError, claimed_payer, verify_refusal};
use x402_proto::{
    BoxFuture, Facilitator, FacilitatorError, IdempotencyKey, PaymentId, PaymentIdError,
    PaymentRequest, ReasonCode, SchemeKey, SettleResponse, SupportedResponse, VerifyResponse,
};

use crate::config::AssetConfig;
use crate::events::{LogEvents, Watched};
use crate::metrics::Metrics;
use crate::store::{SettlementKey, SettlementStore};

pub use reconcile::ReconcileReport;
pub use status::{ChainHealthReport, DatabaseHealthReport, SolanaHealth};

use single_flight::{InFlight, anonymous_caller};

/// One chain served.
#[derive(Debug)]
pub struct ChainService {
    scheme: ExactEvmScheme,
    /// `exact` payments made with Permit2 (payloads carrying `permit2Authorization`),
    /// recording in the service's log once the service holds the chain.
    permit2: ExactPermit2Facilitator,
    assets: Vec<AssetConfig>,
    min_signer_balance: Option<U256>,
}

impl ChainService {
    /// Serves `scheme`'s chain, accepting `assets`.
    pub fn new(scheme: ExactEvmScheme, assets: Vec<AssetConfig>) -> Self {
        Self {
            permit2: ExactPermit2Facilitator::new(scheme.clone()),
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

    /// The tokens accepted.
    pub fn assets(&self) -> &[AssetConfig] {
        &self.assets
    }

    /// The signer balance below which the chain is unhealthy, when configured.
    pub fn min_signer_balance(&self) -> Option<U256> {
        self.min_signer_balance
    }
}

#[derive(Debug)]
struct Inner {
    chains: BTreeMap<u64, ChainService>,
    /// The log, told of every write (`events`).
    store: Arc<dyn SettlementStore>,
    events: LogEvents,
    in_flight: Mutex<HashMap<SettlementKey, InFlight>>,
    settle_wait: Duration,
    metrics: Metrics,
}

/// The facilitator service, cheap to clone.
///
/// `exact` on EVM chains is built in (its settlements go through the durable log); other
/// mechanisms are plug-ins — any [`Facilitator`], in process or remote — registered with
/// [`FacilitatorService::with_schemes`], routed to by (version, scheme, network) and listed
/// in `/supported` beside it.
#[derive(Debug, Clone)]
pub struct FacilitatorService {
    inner: Arc<Inner>,
    schemes: Arc<[Plugin]>,
    /// The Solana networks `/health` checks.
    solana: Arc<[status::SolanaHealth]>,
}

/// A registered scheme plug-in and what it serves (asked once, at registration).
struct Plugin {
    supported: SupportedResponse,
    scheme: Arc<dyn Facilitator>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("kinds", &self.supported.kinds)
            .finish_non_exhaustive()
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
        // Whoever listens (the dashboard) hears of every write to the log.
        let events = LogEvents::new();
        let store: Arc<dyn SettlementStore> = Arc::new(Watched::new(store, events.clone()));
        // Exact payments made with Permit2 are recorded in the log too.
        let log = Arc::new(crate::permit2::LoggedSends::new(store.clone()));
        let chains = chains
            .into_iter()
            .map(|mut c| {
                c.permit2 = ExactPermit2Facilitator::with_log(c.scheme.clone(), log.clone());
                (c.scheme.chain_id(), c)
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                chains,
                store,
                events,
                in_flight: Mutex::new(HashMap::new()),
                settle_wait,
                metrics,
            }),
            schemes: Arc::from(Vec::new()),
            solana: Arc::from(Vec::new()),
        }
    }

    /// Has `/health` check these Solana networks (their RPC and fee payer's balance) beside
    /// the EVM chains.
    pub fn with_solana_health(mut self, networks: Vec<SolanaHealth>) -> Self {
        self.solana = Arc::from(networks);
        self
    }

    /// Serves `schemes` beside the built-in `exact` on EVM, each for the kinds its
    /// `supported()` lists (asked once, now). A plug-in listing a kind the built-in also
    /// serves takes it over; among plug-ins the first listed wins.
    pub async fn with_schemes(
        mut self,
        schemes: Vec<Arc<dyn Facilitator>>,
    ) -> Result<Self, FacilitatorError> {
        let mut plugins = Vec::with_capacity(schemes.len());
        for scheme in schemes {
            let supported = scheme.supported().await?;
            plugins.push(Plugin { supported, scheme });
        }
        self.schemes = Arc::from(plugins);
        Ok(self)
    }

    /// The plug-in serving `request`'s (version, scheme, network), if one does.
    fn plugin_for(&self, request: &PaymentRequest) -> Option<&dyn Facilitator> {
        if self.schemes.is_empty() {
            return None;
        }
        let key = SchemeKey::of(request);
        self.schemes
            .iter()
            .find(|p| p.supported.kinds.iter().any(|k| key.served_by(k)))
            .map(|p| p.scheme.as_ref())
    }

    /// The chain's `exact` Permit2 path, for an `exact` payload carrying
    /// `permit2Authorization` (its settlements are in the log, keyed by the Permit2 nonce).
    fn permit2_for(&self, request: &PaymentRequest) -> Option<&ExactPermit2Facilitator> {
        let exact = request.requirements().scheme == x402_proto::Scheme::EXACT;
        if !exact || !is_permit2_payload(request) {
            return None;
        }
        self.chain_for(request).ok().map(|chain| &chain.permit2)
    }

    /// The settlement log, as the service records in it: plug-ins that record settlements
    /// (`upto`) should record through this, so that listeners hear of them.
    pub fn log(&self) -> Arc<dyn SettlementStore> {
        self.inner.store.clone()
    }

    /// `sends` (a `batch-settlement` plug-in's log), telling this service's listeners of each
    /// write.
    pub fn watch_sends(
        &self,
        sends: Arc<dyn x402_evm::batch::BatchSendLog>,
    ) -> Arc<dyn x402_evm::batch::BatchSendLog> {
        Arc::new(Watched::new(sends, self.inner.events.clone()))
    }

    /// Hears of every write to the log from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::LogEvent> {
        self.inner.events.subscribe()
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

    /// Refuses a Permit2 payment (`upto`, or `exact` carrying `permit2Authorization`) or a
    /// `batch-settlement` one in an asset this facilitator does not accept on the chain: a
    /// hostile token could pass the simulation and revert when sent, at the facilitator's gas.
    fn check_permit2_asset(&self, request: &PaymentRequest) -> Option<VerifyResponse> {
        let scheme = &request.requirements().scheme;
        let own_token = [
            x402_proto::Scheme::UPTO,
            x402_proto::Scheme::BATCH_SETTLEMENT,
        ];
        if !own_token.contains(scheme) && self.permit2_for(request).is_none() {
            return None;
        }
        Self::check_asset(self.chain_for(request).ok()?, request)
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
        if let Some(refused) = self.check_permit2_asset(request) {
            return Ok(refused);
        }
        if let Some(plugin) = self.plugin_for(request) {
            return plugin.verify(request).await;
        }
        if let Some(permit2) = self.permit2_for(request) {
            return permit2.verify(request).await;
        }
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
        let refused = self.check_permit2_asset(request);
        let result = match (refused, self.plugin_for(request), self.permit2_for(request)) {
            (Some(refused), _, _) => Ok(answers::refused_settlement(
                request.wire_network().clone(),
                refused,
            )),
            (None, Some(plugin), _) => plugin.settle(request, idempotency_key).await,
            (None, None, Some(permit2)) => permit2.settle(request, idempotency_key).await,
            (None, None, None) => self.settle_inner(request, &asker).await,
        };
        self.inner.metrics.record_settle(&result, started.elapsed());
        result
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
        match (self.plugin_for(request), self.permit2_for(request)) {
            (Some(plugin), _) => plugin.payment_id(request),
            (None, Some(permit2)) => permit2.payment_id(request),
            (None, None) => PaymentId::derive(request),
        }
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async move { Ok(FacilitatorService::supported(self)) })
    }
}
