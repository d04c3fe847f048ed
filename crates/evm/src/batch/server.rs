//! `batch-settlement` as a server (the receiver) runs it, as `@x402/evm` 2.27's
//! `batch-settlement/server` does: [`BatchServer`] completes the offers and keeps each channel
//! paid to it in a [`ChannelStore`], through the paywall's [`PaymentHooks`]:
//!
//! - before verify: the claimed channel id must be its config's on the offer's chain (checked
//!   before the store is touched); the voucher's ceiling must be what this server charged on
//!   the channel plus this request's price (a refund's: what it charged), else a corrective
//!   402 carries the server's view (`channelState`, `voucherState`); a voucher is verified
//!   here, sparing the facilitator, when the mirrored on-chain state is fresh;
//! - after verify: one reservation per channel (another request meanwhile is
//!   `channel_busy`), the on-chain state mirrored from the facilitator's answer;
//! - before settle: a voucher is charged here (what the handler used, refused above the
//!   signed ceiling), a deposit goes to the facilitator, a refund is enriched (amount, refund
//!   nonce, the claim of what was charged, the receiver authorizer's signatures when this
//!   server holds that key) and goes to the facilitator;
//! - after settle: a deposit is charged and mirrored, a fully refunded channel forgotten;
//! - cancel: the request's own reservation goes, so the same voucher can be sent again.
//!
//! Every refusal is a [`ChannelRefusal`], mapped to its wire reason in one place. Claiming
//! what was charged is another task's (it reads the same store).

use std::sync::Arc;

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use serde::Deserialize as _;
use serde_json::{Value, json};
use x402_proto::{
    BeforeSettle, BoxFuture, ChargeNote, HookRefusal, PaymentHooks, PaymentRequest, ReasonCode,
    Scheme, SchemeServer, SettleResponse, SupportedKind, Ticket, VerifiedBy, VerifyResponse,
    copy_kind_extra, v2,
};

use super::channels::{
    ChannelRecord, ChannelStore, ChannelStoreError, ChannelWrite, HeldVoucher, OnchainMirror,
    Reservation,
};
use super::encoding::ChannelId;
use super::verify::{
    BatchVerifyError, ChannelFunds, ChannelTerms, VoucherPurpose, verify_voucher_locally,
};
use super::wire::{
    AssetTransferMethod, BatchPayload, ChannelConfig, ChannelSnapshot, ChannelStateExtra,
    ClaimPayload, ClaimedVoucher, EnrichedRefundPayload, FacilitatorSettlePayload,
    PaymentResponseExtra, VoucherClaim, VoucherStateExtra,
};
use super::{DEFAULT_WITHDRAW_DELAY, sign_claim_batch, sign_refund};

/// How many times the price official servers ask as the smallest deposit (a hint).
pub const MIN_DEPOSIT_MULTIPLIER: u128 = 10;

/// Why the server refuses a `batch-settlement` payment (or cannot judge it now).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelRefusal {
    /// The payment is not a batch-settlement payload this server reads.
    #[error("not a batch-settlement deposit, voucher or refund: {0}")]
    Payload(String),
    /// The voucher or its channel fails a check of the core's local verification.
    #[error(transparent)]
    Verify(#[from] BatchVerifyError),
    /// The voucher's ceiling is not this server's count plus the price: the client is behind
    /// (or ahead); the 402 carries the server's view.
    #[error(
        "the voucher's ceiling {signed} is not the {} this server expects (what it charged on \
         the channel, plus this request's price for a payment); resync from the channel state \
         in the offer",
        expected.map_or_else(|| "amount past uint128".to_owned(), |e| e.to_string())
    )]
    CumulativeMismatch {
        /// The voucher's ceiling.
        signed: u128,
        /// What this server expected.
        expected: Option<u128>,
    },
    /// Another request on the channel is being served.
    #[error(
        "another request on this channel is being served; retry shortly, or pay on another \
         channel (another salt)"
    )]
    ChannelBusy,
    /// This request's reservation lapsed, or was taken by another request.
    #[error("this request's reservation on the channel lapsed or was taken; nothing was charged")]
    ReservationLost,
    /// What the handler used would take the channel past what the payer signed.
    #[error(
        "charging {charge} would bring the channel to {total}, above the {signed} the payer \
         signed; nothing was charged"
    )]
    ChargeExceedsSigned {
        /// This request's charge.
        charge: u128,
        /// What the channel would have been charged in all (saturated at `u128::MAX`).
        total: u128,
        /// The voucher's ceiling.
        signed: u128,
    },
    /// The channel has as much charged and not yet claimed as this server lets a channel
    /// owe: it serves it again once its claim lands.
    #[error(
        "the channel owes {unclaimed} charged and not yet claimed, and this request could add \
         {price}: above this server's limit of {limit} per channel; it is being claimed on \
         chain, retry in a few seconds"
    )]
    UnclaimedAtLimit {
        /// Charged and not yet claimed.
        unclaimed: u128,
        /// This request's price.
        price: u128,
        /// The server's limit.
        limit: u128,
    },
    /// The server holds no record of the channel (it was verified on another server, or
    /// forgotten).
    #[error("this server holds no record of the channel")]
    MissingChannel,
    /// A deposit below the server's minimum (only when it enforces one).
    #[error("the deposit of {amount} is below this server's minimum of {minimum}")]
    DepositBelowMinimum {
        /// The deposit.
        amount: u128,
        /// The minimum.
        minimum: u128,
    },
    /// A refund of a channel with nothing left beyond what was charged.
    #[error("nothing is left to refund on the channel beyond what was charged")]
    RefundNoBalance,
    /// A refund of zero.
    #[error("a refund amount must be above zero")]
    RefundAmountInvalid,
    /// The channel store failed.
    #[error(transparent)]
    Store(#[from] ChannelStoreError),
    /// Signing as the receiver authorizer failed.
    #[error("signing as the receiver authorizer failed: {0}")]
    Signing(String),
}

impl From<&ChannelRefusal> for ReasonCode {
    fn from(refusal: &ChannelRefusal) -> Self {
        use ChannelRefusal as R;
        match refusal {
            R::Payload(_) => Self::BATCH_SETTLEMENT_EVM_PAYLOAD_TYPE,
            R::Verify(error) => error.reason(),
            R::CumulativeMismatch { .. } => Self::BATCH_SETTLEMENT_EVM_CUMULATIVE_AMOUNT_MISMATCH,
            R::ChannelBusy | R::ReservationLost | R::UnclaimedAtLimit { .. } => {
                Self::BATCH_SETTLEMENT_EVM_CHANNEL_BUSY
            }
            R::ChargeExceedsSigned { .. } => {
                Self::BATCH_SETTLEMENT_EVM_CHARGE_EXCEEDS_SIGNED_CUMULATIVE
            }
            R::MissingChannel => Self::BATCH_SETTLEMENT_EVM_MISSING_CHANNEL,
            R::DepositBelowMinimum { .. } => Self::BATCH_SETTLEMENT_EVM_DEPOSIT_BELOW_MIN_DEPOSIT,
            R::RefundNoBalance => Self::BATCH_SETTLEMENT_EVM_REFUND_NO_BALANCE,
            R::RefundAmountInvalid => Self::BATCH_SETTLEMENT_EVM_REFUND_AMOUNT_INVALID,
            R::Store(_) | R::Signing(_) => {
                Self::BATCH_SETTLEMENT_EVM_VERIFICATION_STATE_UNAVAILABLE
            }
        }
    }
}

impl From<ChannelRefusal> for HookRefusal {
    fn from(refusal: ChannelRefusal) -> Self {
        let reason = ReasonCode::from(&refusal);
        match refusal {
            ChannelRefusal::Store(_)
            | ChannelRefusal::Signing(_)
            | ChannelRefusal::UnclaimedAtLimit { .. } => {
                HookRefusal::unavailable(reason, refusal.to_string())
            }
            _ => HookRefusal::new(reason, refusal.to_string()),
        }
    }
}

/// How long a mirror of a channel's on-chain state is trusted for local verification, for a
/// withdraw delay of `withdraw_delay` seconds: a third of it, within 30 s .. 5 min (the
/// official default). Shorter than the delay, so a payer cannot withdraw what a voucher
/// verified against the mirror covers before the server can claim it.
pub fn onchain_state_ttl(withdraw_delay: u64) -> u64 {
    (withdraw_delay / 3).clamp(30, 300)
}

/// How long a request's reservation of its channel lives if the request never finishes, for
/// an offer of `max_timeout_seconds`: that, within 5 s .. 600 s.
pub fn reservation_ttl(max_timeout_seconds: u64) -> u64 {
    max_timeout_seconds.clamp(5, 600)
}

/// The ceiling a voucher paying `price` (or, for a refund, nothing) on a channel charged
/// `charged` so far must carry; `None` when it would pass `uint128`.
pub fn expected_ceiling(charged: u128, price: u128, purpose: VoucherPurpose) -> Option<u128> {
    match purpose {
        VoucherPurpose::Payment => charged.checked_add(price),
        VoucherPurpose::Refund => Some(charged),
    }
}

/// What a channel the server has no record of was charged, as the client's voucher implies
/// (the official server's assumption): its ceiling less the price (a refund: its ceiling).
fn inferred_charged(ceiling: u128, price: u128, purpose: VoucherPurpose) -> u128 {
    match purpose {
        VoucherPurpose::Payment => ceiling.saturating_sub(price),
        VoucherPurpose::Refund => ceiling,
    }
}

/// Whether `mirror` may stand in for the chain at `now`: read within `ttl` seconds, and no
/// withdrawal the payer asked for can complete within `ttl` (`withdraw_delay` after it was
/// asked for); then the facilitator reads the chain instead.
pub fn mirror_is_fresh(mirror: &OnchainMirror, ttl: u64, withdraw_delay: u64, now: u64) -> bool {
    if mirror.read_at == 0 || now.saturating_sub(mirror.read_at) > ttl {
        return false;
    }
    mirror.withdraw_requested_at == 0
        || now.saturating_add(ttl) < mirror.withdraw_requested_at.saturating_add(withdraw_delay)
}

/// A charge of `charge` against `current` by the request holding reservation `ticket`: the
/// record charged (its reservation gone, `voucher` held), or why not and whether the
/// reservation is to be let go of (the charge passes the ceiling: this request is over).
/// Pure: the store's update applies it.
fn charge_voucher(
    current: Option<&ChannelRecord>,
    ticket: u64,
    charge: u128,
    voucher: HeldVoucher,
    now: u64,
) -> Result<ChannelRecord, (ChannelRefusal, bool)> {
    let Some(record) = current else {
        return Err((ChannelRefusal::MissingChannel, false));
    };
    if record.pending.as_ref().map(|p| p.id) != Some(ticket) {
        return Err((ChannelRefusal::ReservationLost, false));
    }
    let signed = voucher.max_claimable;
    match record.charged.checked_add(charge) {
        Some(total) if total <= signed => Ok(ChannelRecord {
            charged: total,
            voucher: Some(voucher),
            pending: None,
            last_charged_at: now,
            ..record.clone()
        }),
        total => {
            let refusal = ChannelRefusal::ChargeExceedsSigned {
                charge,
                total: total.unwrap_or(u128::MAX),
                signed,
            };
            Err((refusal, true))
        }
    }
}

/// The receipt of a voucher charged `charge` on `request`, the channel now `record`: the
/// amount charged and the channel's state, as 2.27 clients read them.
fn charged_receipt(
    request: &PaymentRequest,
    charge: u128,
    record: &ChannelRecord,
) -> SettleResponse {
    let extra = PaymentResponseExtra {
        charged_amount: Some(charge),
        snapshot: ChannelSnapshot {
            channel_state: Some(record.state()),
            voucher_state: None,
        },
    };
    SettleResponse {
        extra: serde_json::to_value(extra).ok(),
        ..SettleResponse::success(
            request.wire_network().clone(),
            Some(format!("{:#x}", record.config.payer)),
            "",
        )
    }
}

/// The server's reading of a paid request: the offer and the payload.
struct Paid<'a> {
    offer: &'a v2::PaymentRequirements,
    payload: BatchPayload,
}

impl Paid<'_> {
    fn purpose(&self) -> VoucherPurpose {
        match self.payload {
            BatchPayload::Refund(_) => VoucherPurpose::Refund,
            _ => VoucherPurpose::Payment,
        }
    }

    fn config(&self) -> &ChannelConfig {
        self.payload.channel_config()
    }

    fn id(&self) -> ChannelId {
        self.payload.voucher().channel_id
    }

    fn ceiling(&self) -> u128 {
        self.payload.voucher().max_claimable_amount
    }

    /// The offer's amount: the price at verify, the charge at settle (saturated: anything
    /// past `uint128` is past every ceiling).
    fn amount(&self) -> u128 {
        u128::try_from(self.offer.amount.0).unwrap_or(u128::MAX)
    }

    fn held(&self) -> HeldVoucher {
        let voucher = self.payload.voucher();
        HeldVoucher {
            max_claimable: voucher.max_claimable_amount,
            signature: voucher.signature.clone(),
        }
    }

    /// A record of the channel as this request shows it, for a channel the server has none
    /// of: charged `charged`, holding the request's voucher (what a corrective 402 reports).
    fn provisional(&self, charged: u128) -> ChannelRecord {
        ChannelRecord {
            charged,
            voucher: Some(self.held()),
            ..ChannelRecord::new(self.id(), self.offer.network.clone(), *self.config())
        }
    }
}

/// Reads `request` as a batch-settlement payment of an x402 v2 offer.
fn read(request: &PaymentRequest) -> Result<Paid<'_>, ChannelRefusal> {
    let PaymentRequest::V2 { requirements, .. } = request else {
        return Err(ChannelRefusal::Payload(
            "batch-settlement is an x402 v2 scheme".into(),
        ));
    };
    let payload = BatchPayload::deserialize(request.payload())
        .map_err(|error| ChannelRefusal::Payload(error.to_string()))?;
    Ok(Paid {
        offer: requirements,
        payload,
    })
}

/// The `type` a `batch-settlement` payload says it is (`deposit`, `voucher`, `refund`),
/// read without decoding the rest.
fn payload_type(request: &PaymentRequest) -> Option<&str> {
    request.payload().get("type")?.as_str()
}

/// The `extra` keys of a corrective 402: the server's view of the channel and the latest
/// voucher it holds (which the client checks is its own before adopting the count).
pub fn corrective_extra(record: &ChannelRecord) -> Value {
    let snapshot = ChannelSnapshot {
        channel_state: Some(record.state()),
        voucher_state: record.voucher.as_ref().map(|voucher| VoucherStateExtra {
            signed_max_claimable: Some(voucher.max_claimable),
            signature: Some(voucher.signature.clone()),
        }),
    };
    serde_json::to_value(snapshot).unwrap_or_default()
}

/// The current Unix second, from a clock that tests may set.
type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The `batch-settlement` server plug-in: completes its offers and keeps the channels paid to
/// it (see the module docs). Register it with the paywall (`Paywall::with_schemes`).
pub struct BatchServer {
    store: Arc<dyn ChannelStore>,
    authorizer: Option<Arc<PrivateKeySigner>>,
    withdraw_delay: u64,
    min_deposit: Option<u128>,
    enforce_min_deposit: bool,
    asset_transfer_method: Option<AssetTransferMethod>,
    onchain_ttl: u64,
    max_unclaimed: Option<u128>,
    clock: Clock,
}

impl std::fmt::Debug for BatchServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchServer")
            .field("store", &self.store)
            .field(
                "receiver_authorizer",
                &self.authorizer.as_ref().map(|key| key.address()),
            )
            .field("withdraw_delay", &self.withdraw_delay)
            .field("min_deposit", &self.min_deposit)
            .field("onchain_ttl", &self.onchain_ttl)
            .finish_non_exhaustive()
    }
}

impl BatchServer {
    /// A server keeping its channels in `store`, with the official defaults: the 900 s
    /// withdraw delay, a minimum deposit hint of ten times the price, ERC-3009 deposits, the
    /// facilitator's receiver authorizer (until [`Self::with_receiver_authorizer`]).
    pub fn new(store: Arc<dyn ChannelStore>) -> Self {
        Self {
            store,
            authorizer: None,
            withdraw_delay: DEFAULT_WITHDRAW_DELAY,
            min_deposit: None,
            enforce_min_deposit: false,
            asset_transfer_method: None,
            onchain_ttl: onchain_state_ttl(DEFAULT_WITHDRAW_DELAY),
            max_unclaimed: None,
            clock: Arc::new(crate::unix_now),
        }
    }

    /// Signs claims and refunds with `key`, offered as the channels' receiver authorizer
    /// (instead of the facilitator's).
    pub fn with_receiver_authorizer(mut self, key: PrivateKeySigner) -> Self {
        self.authorizer = Some(Arc::new(key));
        self
    }

    /// Offers channels with this withdraw delay (seconds; the contract takes 900 s .. 30
    /// days), and trusts mirrored state for a third of it (within 30 s .. 5 min).
    pub fn with_withdraw_delay(mut self, seconds: u64) -> Self {
        self.withdraw_delay = seconds;
        self.onchain_ttl = onchain_state_ttl(seconds);
        self
    }

    /// Trusts mirrored on-chain state for `seconds` instead (keep it well under the withdraw
    /// delay).
    pub fn with_onchain_state_ttl(mut self, seconds: u64) -> Self {
        self.onchain_ttl = seconds;
        self
    }

    /// Asks for deposits of at least `atomic` units (a hint in the offer), refusing smaller
    /// ones when `enforce`.
    pub fn with_min_deposit(mut self, atomic: u128, enforce: bool) -> Self {
        self.min_deposit = Some(atomic);
        self.enforce_min_deposit = enforce;
        self
    }

    /// Serves no request that could bring a channel's charged-and-unclaimed amount above
    /// `atomic` (answered 503, retry): what a payer who withdraws could leave unpaid is bounded
    /// by it. The claimer must claim well before (at half of it, say), or such channels stall
    /// until it does.
    pub fn with_max_unclaimed(mut self, atomic: u128) -> Self {
        self.max_unclaimed = Some(atomic);
        self
    }

    /// Names how deposits take the tokens in the offers (`extra.assetTransferMethod`).
    pub fn with_asset_transfer_method(mut self, method: AssetTransferMethod) -> Self {
        self.asset_transfer_method = Some(method);
        self
    }

    /// Reads the time from `clock` (Unix seconds) instead of the system clock: for tests.
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The store it keeps its channels in (the claiming task reads it too).
    pub fn store(&self) -> &Arc<dyn ChannelStore> {
        &self.store
    }

    /// The receiver authorizer it signs as, if it holds that key.
    pub fn receiver_authorizer(&self) -> Option<Address> {
        self.authorizer.as_ref().map(|key| key.address())
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    /// The smallest deposit asked for an offer of `price`: the configured one (never below
    /// the price), else ten times the price.
    fn min_deposit_for(&self, offer: &v2::PaymentRequirements) -> u128 {
        let price = u128::try_from(offer.amount.0).unwrap_or(u128::MAX);
        let configured = offer
            .extra
            .as_ref()
            .and_then(|extra| extra.get("minDeposit")?.as_str()?.parse::<u128>().ok())
            .filter(|minimum| *minimum > 0)
            .or(self.min_deposit);
        match configured {
            Some(minimum) => minimum.max(price),
            None => price.saturating_mul(MIN_DEPOSIT_MULTIPLIER),
        }
    }

    /// The receiver authorizer an offer names: this server's key, else the one the
    /// facilitator advertised for `kind` (non-zero).
    fn offered_authorizer(&self, kind: Option<&SupportedKind>) -> Option<Address> {
        self.receiver_authorizer().or_else(|| {
            kind?
                .extra
                .as_ref()?
                .get("receiverAuthorizer")?
                .as_str()?
                .parse::<Address>()
                .ok()
                .filter(|address| !address.is_zero())
        })
    }

    fn fresh(&self, record: &ChannelRecord, now: u64) -> bool {
        mirror_is_fresh(
            &record.onchain,
            self.onchain_ttl,
            record.config.withdraw_delay,
            now,
        )
    }

    async fn judge(&self, request: &PaymentRequest) -> Result<Option<VerifyResponse>, Refused> {
        let paid = read(request)?;
        let terms = ChannelTerms::from_requirements(paid.offer).map_err(ChannelRefusal::from)?;
        let record = self
            .store
            .get(&paid.id())
            .await
            .map_err(ChannelRefusal::from)?;
        // A channel kept under this id with these very terms, on this very network, had its
        // id checked when it was first paid; any other claim is hashed.
        let known = record
            .as_ref()
            .is_some_and(|r| r.config == *paid.config() && r.network.same_as(&paid.offer.network));
        if !known {
            let computed = terms.domain().channel_id(paid.config());
            if computed != paid.id() {
                return Err(ChannelRefusal::from(BatchVerifyError::ChannelIdMismatch {
                    claimed: paid.id(),
                    computed,
                })
                .into());
            }
        }
        if let BatchPayload::Deposit(deposit) = &paid.payload {
            let minimum = self.min_deposit_for(paid.offer);
            if self.enforce_min_deposit && deposit.deposit.amount < minimum {
                return Err(ChannelRefusal::DepositBelowMinimum {
                    amount: deposit.deposit.amount,
                    minimum,
                }
                .into());
            }
        }
        let (price, purpose, ceiling) = (paid.amount(), paid.purpose(), paid.ceiling());
        let charged = record
            .as_ref()
            .map_or_else(|| inferred_charged(ceiling, price, purpose), |r| r.charged);
        let expected = expected_ceiling(charged, price, purpose);
        if expected != Some(ceiling) {
            let view = record.unwrap_or_else(|| paid.provisional(charged));
            return Err(Refused::behind(
                ChannelRefusal::CumulativeMismatch {
                    signed: ceiling,
                    expected,
                },
                &view,
            ));
        }
        let now = self.now();
        let (BatchPayload::Voucher(voucher), Some(record)) = (&paid.payload, record) else {
            return Ok(None);
        };
        if !self.fresh(&record, now) {
            return Ok(None);
        }
        let funds = ChannelFunds {
            balance: record.onchain.balance,
            total_claimed: record.onchain.total_claimed,
        };
        let config = &voucher.channel_config;
        let payer = Some(config.payer.to_checksum(None));
        let verdict = match verify_voucher_locally(
            &terms,
            config,
            &voucher.voucher,
            funds,
            VoucherPurpose::Payment,
        ) {
            Ok(verified) => VerifyResponse {
                extra: serde_json::to_value(ChannelStateExtra {
                    charged_cumulative_amount: None,
                    ..record.state()
                })
                .ok(),
                ..VerifyResponse::valid(verified.payer.to_checksum(None))
            },
            Err(error) if error.needs_chain() => return Ok(None),
            Err(error) => VerifyResponse::invalid(error.reason(), error.to_string(), payer),
        };
        Ok(Some(verdict))
    }

    async fn reserve(
        &self,
        request: &PaymentRequest,
        verified: &VerifyResponse,
        by: VerifiedBy,
    ) -> Result<Ticket, Refused> {
        let paid = read(request)?;
        let now = self.now();
        let mirror = match by {
            VerifiedBy::Server => None,
            VerifiedBy::Facilitator => Some(
                verified
                    .extra
                    .clone()
                    .and_then(|extra| serde_json::from_value::<ChannelStateExtra>(extra).ok())
                    .map(|state| OnchainMirror::from_state(&state, now))
                    // No state in the answer: nothing trusted, the next voucher is verified
                    // by the facilitator again.
                    .unwrap_or_default(),
            ),
        };
        let ticket = fresh_ticket_id();
        let reservation = Reservation {
            id: ticket,
            max_claimable: paid.ceiling(),
            expires_at: now + reservation_ttl(paid.offer.max_timeout_seconds),
        };
        let (price, purpose, ceiling) = (paid.amount(), paid.purpose(), paid.ceiling());
        let max_unclaimed = self.max_unclaimed;
        let mut outcome = Ok(());
        self.store
            .update(&paid.id(), &mut |current| {
                if current.is_some_and(|r| r.live_reservation(now).is_some()) {
                    outcome = Err(Refused::from(ChannelRefusal::ChannelBusy));
                    return ChannelWrite::Keep;
                }
                let charged = current
                    .map_or_else(|| inferred_charged(ceiling, price, purpose), |r| r.charged);
                let expected = expected_ceiling(charged, price, purpose);
                if expected != Some(ceiling) {
                    let view = current
                        .cloned()
                        .unwrap_or_else(|| paid.provisional(charged));
                    let refusal = ChannelRefusal::CumulativeMismatch {
                        signed: ceiling,
                        expected,
                    };
                    outcome = Err(Refused::behind(refusal, &view));
                    return ChannelWrite::Keep;
                }
                let mut record = current.cloned().unwrap_or_else(|| ChannelRecord {
                    charged,
                    ..ChannelRecord::new(paid.id(), paid.offer.network.clone(), *paid.config())
                });
                if let Some(limit) = max_unclaimed
                    && purpose == VoucherPurpose::Payment
                    && record.unclaimed().saturating_add(price) > limit
                {
                    outcome = Err(Refused::from(ChannelRefusal::UnclaimedAtLimit {
                        unclaimed: record.unclaimed(),
                        price,
                        limit,
                    }));
                    return ChannelWrite::Keep;
                }
                if let Some(mirror) = &mirror {
                    record.onchain = mirror.clone();
                }
                record.pending = Some(reservation.clone());
                outcome = Ok(());
                ChannelWrite::Put(record)
            })
            .await
            .map_err(ChannelRefusal::from)?;
        outcome.map(|()| Ticket::new(ticket))
    }

    async fn settle_here(
        &self,
        request: &PaymentRequest,
        ticket: &Ticket,
        note: Option<&dyn ChargeNote>,
    ) -> Result<BeforeSettle, Refused> {
        let paid = read(request)?;
        match &paid.payload {
            BatchPayload::Voucher(_) => self.charge(&paid, request, ticket, note).await,
            BatchPayload::Deposit(_) => {
                // The deposit goes on chain first; what it is charged must fit the voucher.
                let record = self
                    .store
                    .get(&paid.id())
                    .await
                    .map_err(ChannelRefusal::from)?;
                let record = record.ok_or(ChannelRefusal::MissingChannel)?;
                if record.pending.as_ref().map(|p| p.id) != Some(ticket.id()) {
                    return Err(ChannelRefusal::ReservationLost.into());
                }
                let total = record.charged.checked_add(paid.amount());
                if total.is_none_or(|total| total > paid.ceiling()) {
                    return Err(ChannelRefusal::ChargeExceedsSigned {
                        charge: paid.amount(),
                        total: total.unwrap_or(u128::MAX),
                        signed: paid.ceiling(),
                    }
                    .into());
                }
                Ok(BeforeSettle::Facilitator(request.clone()))
            }
            BatchPayload::Refund(_) => self.enrich_refund(&paid, request, ticket).await,
        }
    }

    async fn charge(
        &self,
        paid: &Paid<'_>,
        request: &PaymentRequest,
        ticket: &Ticket,
        note: Option<&dyn ChargeNote>,
    ) -> Result<BeforeSettle, Refused> {
        let now = self.now();
        let charge = paid.amount();
        let mut outcome = Err(Refused::from(ChannelRefusal::MissingChannel));
        let mut update = |current: Option<&ChannelRecord>| match charge_voucher(
            current,
            ticket.id(),
            charge,
            paid.held(),
            now,
        ) {
            Ok(record) => {
                // The receipt is made before the write, so that the server's note of it is
                // committed with the charge.
                let receipt = charged_receipt(request, charge, &record);
                let noted = note.and_then(|note| note.note(&receipt));
                outcome = Ok(receipt);
                (ChannelWrite::Put(record), noted)
            }
            Err((refusal, release)) => {
                outcome = Err(refusal.into());
                let write = match current {
                    Some(record) if release => ChannelWrite::Put(ChannelRecord {
                        pending: None,
                        ..record.clone()
                    }),
                    _ => ChannelWrite::Keep,
                };
                (write, None)
            }
        };
        let kept = self
            .store
            .update_noted(&paid.id(), &mut update)
            .await
            .map_err(ChannelRefusal::from)?;
        let receipt = outcome?;
        Ok(if kept {
            BeforeSettle::Noted(receipt)
        } else {
            BeforeSettle::Settled(receipt)
        })
    }

    async fn enrich_refund(
        &self,
        paid: &Paid<'_>,
        request: &PaymentRequest,
        ticket: &Ticket,
    ) -> Result<BeforeSettle, Refused> {
        let BatchPayload::Refund(refund) = &paid.payload else {
            return Err(ChannelRefusal::Payload("not a refund".into()).into());
        };
        let id = paid.id();
        let record = self.store.get(&id).await.map_err(ChannelRefusal::from)?;
        let record = record.ok_or(ChannelRefusal::MissingChannel)?;
        if record.pending.as_ref().map(|p| p.id) != Some(ticket.id()) {
            return Err(ChannelRefusal::ReservationLost.into());
        }
        if paid.ceiling() != record.charged {
            let refusal = ChannelRefusal::CumulativeMismatch {
                signed: paid.ceiling(),
                expected: Some(record.charged),
            };
            return Err(Refused::behind(refusal, &record));
        }
        let left = record.onchain.balance.saturating_sub(record.charged);
        if left == 0 {
            return Err(ChannelRefusal::RefundNoBalance.into());
        }
        let amount = refund.amount.unwrap_or(left);
        if amount == 0 {
            return Err(ChannelRefusal::RefundAmountInvalid.into());
        }
        let row = VoucherClaim {
            voucher: ClaimedVoucher {
                channel: refund.channel_config,
                max_claimable_amount: refund.voucher.max_claimable_amount,
            },
            signature: refund.voucher.signature.clone(),
            total_claimed: record.charged,
        };
        let nonce = record.onchain.refund_nonce;
        let (refund_signature, claim_signature) = match &self.authorizer {
            Some(key) => {
                let domain = *ChannelTerms::from_requirements(paid.offer)
                    .map_err(ChannelRefusal::from)?
                    .domain();
                let signing = |e: super::BatchSignError| ChannelRefusal::Signing(e.to_string());
                let refund_signature = sign_refund(key.as_ref(), &domain, &id, nonce, amount)
                    .await
                    .map_err(signing)?;
                let claim_signature =
                    sign_claim_batch(key.as_ref(), &domain, std::slice::from_ref(&row))
                        .await
                        .map_err(signing)?;
                (Some(refund_signature), Some(claim_signature))
            }
            None => (None, None),
        };
        let enriched = FacilitatorSettlePayload::Refund(Box::new(EnrichedRefundPayload {
            channel_config: refund.channel_config,
            voucher: refund.voucher.clone(),
            amount,
            refund_nonce: nonce,
            refund_authorizer_signature: refund_signature,
            claims: ClaimPayload {
                claims: vec![row],
                claim_authorizer_signature: claim_signature,
            },
        }));
        let payload = serde_json::to_value(enriched)
            .map_err(|error| ChannelRefusal::Payload(error.to_string()))?;
        Ok(BeforeSettle::Facilitator(with_payload(request, payload)))
    }

    async fn record_settlement(
        &self,
        request: &PaymentRequest,
        ticket: &Ticket,
        mut receipt: SettleResponse,
    ) -> SettleResponse {
        let Ok(paid) = read(request) else {
            return receipt;
        };
        let now = self.now();
        let state = receipt
            .extra
            .as_ref()
            .and_then(|extra| extra.get("channelState"))
            .and_then(|state| serde_json::from_value::<ChannelStateExtra>(state.clone()).ok());
        let charge = paid.amount();
        let is_deposit = matches!(paid.payload, BatchPayload::Deposit(_));
        let mut after = None;
        let result = self
            .store
            .update(&paid.id(), &mut |current| {
                let Some(current) = current else {
                    after = None;
                    return ChannelWrite::Keep;
                };
                let mut record = current.clone();
                if let Some(state) = &state {
                    record.onchain = OnchainMirror::from_state(state, now);
                }
                if record.pending.as_ref().is_some_and(|p| p.id == ticket.id()) {
                    record.pending = None;
                }
                if is_deposit {
                    // The deposit is on chain: this request is charged (its ceiling was
                    // checked before the deposit was sent).
                    record.charged = record.charged.saturating_add(charge);
                    if record
                        .voucher
                        .as_ref()
                        .is_none_or(|held| held.max_claimable < paid.ceiling())
                    {
                        record.voucher = Some(paid.held());
                    }
                    record.last_charged_at = now;
                } else if state
                    .as_ref()
                    .is_some_and(|state| state.balance <= record.charged)
                {
                    // Fully refunded: nothing is left in the channel beyond what was claimed.
                    after = Some(record);
                    return ChannelWrite::Delete;
                }
                after = Some(record.clone());
                ChannelWrite::Put(record)
            })
            .await;
        if let Err(error) = result {
            tracing::error!(%error, channel = %paid.id(), "a settled batch-settlement payment could not be recorded");
        }
        let Some(record) = after else {
            return receipt;
        };
        let extra = PaymentResponseExtra {
            charged_amount: is_deposit.then_some(charge),
            snapshot: ChannelSnapshot {
                channel_state: Some(record.state()),
                voucher_state: None,
            },
        };
        let mut merged = receipt.extra.take().unwrap_or_else(|| json!({}));
        if let (Value::Object(merged), Ok(Value::Object(ours))) =
            (&mut merged, serde_json::to_value(extra))
        {
            merged.extend(ours);
        }
        receipt.extra = Some(merged);
        receipt
    }

    async fn release(&self, request: &PaymentRequest, ticket: &Ticket) {
        let Ok(paid) = read(request) else {
            return;
        };
        let result = self
            .store
            .update(&paid.id(), &mut |current| match current {
                Some(record) if record.pending.as_ref().is_some_and(|p| p.id == ticket.id()) => {
                    if record.voucher.is_none() {
                        // Made by this request's reservation, never charged: forgotten.
                        ChannelWrite::Delete
                    } else {
                        ChannelWrite::Put(ChannelRecord {
                            pending: None,
                            ..record.clone()
                        })
                    }
                }
                _ => ChannelWrite::Keep,
            })
            .await;
        if let Err(error) = result {
            // The reservation lapses by itself.
            tracing::warn!(%error, channel = %paid.id(), "a channel reservation could not be released");
        }
    }
}

/// A refusal with, when the client is behind, the server's view for the corrective 402.
struct Refused(HookRefusal);

impl Refused {
    fn behind(refusal: ChannelRefusal, view: &ChannelRecord) -> Self {
        Self(HookRefusal::from(refusal).with_corrective(corrective_extra(view)))
    }
}

impl From<ChannelRefusal> for Refused {
    fn from(refusal: ChannelRefusal) -> Self {
        Self(refusal.into())
    }
}

/// A reservation id no other request holds (random, so several servers sharing a store do
/// not collide).
fn fresh_ticket_id() -> u64 {
    let bytes = B256::random();
    u64::from_be_bytes(bytes[..8].try_into().unwrap_or_default()).max(1)
}

/// `request` with its scheme payload replaced.
fn with_payload(request: &PaymentRequest, payload: Value) -> PaymentRequest {
    let mut request = request.clone();
    match &mut request {
        PaymentRequest::V1 { payload: p, .. } => p.payload = payload,
        PaymentRequest::V2 { payload: p, .. } => p.payload = payload,
    }
    request
}

impl SchemeServer for BatchServer {
    fn scheme(&self) -> Scheme {
        Scheme::BATCH_SETTLEMENT
    }

    /// Sets `receiverAuthorizer` (this server's key, else the facilitator's), `withdrawDelay`,
    /// `minDeposit` (the option's own, the configured one, else ten times the price) and
    /// `assetTransferMethod` when configured; `name` / `version` stay as the option sets them.
    fn enhance(&self, requirements: &mut v2::PaymentRequirements, kind: Option<&SupportedKind>) {
        let authorizer = self.offered_authorizer(kind);
        let min_deposit = self.min_deposit_for(requirements);
        let extra = requirements
            .extra
            .get_or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(extra) = extra {
            if let Some(authorizer) = authorizer {
                extra.insert(
                    "receiverAuthorizer".into(),
                    json!(authorizer.to_checksum(None)),
                );
            }
            extra.insert("withdrawDelay".into(), json!(self.withdraw_delay));
            extra.insert("minDeposit".into(), json!(min_deposit.to_string()));
            if let Some(method) = self.asset_transfer_method {
                extra.insert("assetTransferMethod".into(), json!(method));
            }
        }
        copy_kind_extra(requirements, kind);
    }

    /// What the handler used (above the price too: the charge is then refused when it passes
    /// the voucher), the price when it reported nothing.
    fn settlement_amount(&self, paid: &v2::PaymentRequirements, used: Option<U256>) -> U256 {
        used.unwrap_or(paid.amount.0)
    }

    fn hooks(&self) -> Option<&dyn PaymentHooks> {
        Some(self)
    }

    /// Refused when the server holds no receiver-authorizer key and the facilitator
    /// advertises none: no channel could be opened (official servers fail at start).
    fn check_support(&self, kind: &SupportedKind) -> Result<(), String> {
        match self.offered_authorizer(Some(kind)) {
            Some(_) => Ok(()),
            None => Err(format!(
                "batch-settlement on {}: this server holds no receiver-authorizer key and the \
                 facilitator advertises no receiverAuthorizer; configure a key or use a \
                 facilitator that advertises one",
                kind.network
            )),
        }
    }
}

impl PaymentHooks for BatchServer {
    fn before_verify<'a>(
        &'a self,
        request: &'a PaymentRequest,
    ) -> BoxFuture<'a, Result<Option<VerifyResponse>, HookRefusal>> {
        Box::pin(async move { self.judge(request).await.map_err(|r| r.0) })
    }

    fn after_verify<'a>(
        &'a self,
        request: &'a PaymentRequest,
        verified: &'a VerifyResponse,
        by: VerifiedBy,
    ) -> BoxFuture<'a, Result<Ticket, HookRefusal>> {
        Box::pin(async move { self.reserve(request, verified, by).await.map_err(|r| r.0) })
    }

    fn skip_handler(&self, request: &PaymentRequest) -> Option<Value> {
        if payload_type(request) != Some("refund") {
            return None;
        }
        match read(request).ok()?.payload {
            BatchPayload::Refund(refund) => Some(json!({
                "message": "Refund acknowledged",
                "channelId": refund.voucher.channel_id,
            })),
            _ => None,
        }
    }

    fn before_settle<'a>(
        &'a self,
        request: &'a PaymentRequest,
        ticket: &'a Ticket,
        note: Option<&'a dyn ChargeNote>,
    ) -> BoxFuture<'a, Result<BeforeSettle, HookRefusal>> {
        Box::pin(async move {
            self.settle_here(request, ticket, note)
                .await
                .map_err(|r| r.0)
        })
    }

    fn after_settle<'a>(
        &'a self,
        request: &'a PaymentRequest,
        ticket: &'a Ticket,
        receipt: SettleResponse,
    ) -> BoxFuture<'a, SettleResponse> {
        Box::pin(self.record_settlement(request, ticket, receipt))
    }

    /// A voucher charged nothing leaves the count where it was, so the client's next voucher
    /// is this same one: it is not used up. Anything else is (a deposit's authorization is
    /// spent on chain).
    fn spent(&self, request: &PaymentRequest, receipt: &SettleResponse) -> bool {
        let charged_nothing = receipt
            .extra
            .as_ref()
            .and_then(|extra| extra.get("chargedAmount"))
            .is_some_and(|charged| charged == "0");
        let voucher = || {
            payload_type(request) == Some("voucher")
                && matches!(
                    read(request).map(|paid| paid.payload),
                    Ok(BatchPayload::Voucher(_))
                )
        };
        !(charged_nothing && voucher())
    }

    fn cancel<'a>(&'a self, request: &'a PaymentRequest, ticket: &'a Ticket) -> BoxFuture<'a, ()> {
        Box::pin(self.release(request, ticket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::Bytes;

    #[test]
    fn the_ttls_are_clamped_as_the_official_server_clamps_them() {
        assert_eq!(onchain_state_ttl(900), 300);
        assert_eq!(onchain_state_ttl(60), 30);
        assert_eq!(onchain_state_ttl(2_592_000), 300);
        assert_eq!(onchain_state_ttl(450), 150);
        assert_eq!(reservation_ttl(0), 5);
        assert_eq!(reservation_ttl(300), 300);
        assert_eq!(reservation_ttl(86_400), 600);
    }

    #[test]
    fn the_ceiling_is_the_count_plus_the_price_and_a_refund_adds_nothing() {
        let payment = VoucherPurpose::Payment;
        assert_eq!(expected_ceiling(5_000, 1_000, payment), Some(6_000));
        assert_eq!(expected_ceiling(u128::MAX, 1, payment), None);
        assert_eq!(
            expected_ceiling(5_000, 1_000, VoucherPurpose::Refund),
            Some(5_000)
        );
        // A channel the server does not know is taken at the client's word.
        assert_eq!(inferred_charged(6_000, 1_000, payment), 5_000);
        assert_eq!(inferred_charged(500, 1_000, payment), 0);
        assert_eq!(inferred_charged(500, 1_000, VoucherPurpose::Refund), 500);
    }

    #[test]
    fn a_mirror_is_fresh_for_its_ttl_unless_a_withdrawal_can_complete_meanwhile() {
        let mirror = OnchainMirror {
            balance: 10,
            read_at: 1_000,
            ..OnchainMirror::default()
        };
        assert!(mirror_is_fresh(&mirror, 300, 900, 1_300));
        assert!(!mirror_is_fresh(&mirror, 300, 900, 1_301));
        assert!(!mirror_is_fresh(&OnchainMirror::default(), 300, 900, 10));
        let withdrawing = OnchainMirror {
            withdraw_requested_at: 500,
            ..mirror
        };
        // The withdrawal completes at 1_400: fresh only while that is more than a TTL away.
        assert!(mirror_is_fresh(&withdrawing, 300, 900, 1_099));
        assert!(!mirror_is_fresh(&withdrawing, 300, 900, 1_100));
    }

    fn record(charged: u128, pending: Option<u64>) -> ChannelRecord {
        let config = ChannelConfig {
            payer: Address::repeat_byte(1),
            payer_authorizer: Address::repeat_byte(1),
            receiver: Address::repeat_byte(2),
            receiver_authorizer: Address::repeat_byte(3),
            token: Address::repeat_byte(4),
            withdraw_delay: 900,
            salt: B256::ZERO,
        };
        let id = ChannelId::new(B256::repeat_byte(9));
        ChannelRecord {
            charged,
            pending: pending.map(|id| Reservation {
                id,
                max_claimable: charged.saturating_add(1_000),
                expires_at: 2_000,
            }),
            ..ChannelRecord::new(id, x402_proto::Network::new("eip155:8453"), config)
        }
    }

    fn held(max_claimable: u128) -> HeldVoucher {
        HeldVoucher {
            max_claimable,
            signature: Bytes::from_static(&[7; 65]),
        }
    }

    #[test]
    fn a_charge_needs_the_reservation_and_stays_within_the_signed_ceiling() {
        let current = record(5_000, Some(42));
        let charged = charge_voucher(Some(&current), 42, 400, held(6_000), 77).unwrap();
        assert_eq!(charged.charged, 5_400);
        assert_eq!(charged.pending, None);
        assert_eq!(charged.last_charged_at, 77);
        assert_eq!(charged.voucher.unwrap().max_claimable, 6_000);
        // Up to the ceiling exactly.
        assert_eq!(
            charge_voucher(Some(&current), 42, 1_000, held(6_000), 77)
                .unwrap()
                .charged,
            6_000
        );
        // Past it: refused, nothing charged, the reservation to be released.
        let (refusal, release) =
            charge_voucher(Some(&current), 42, 1_001, held(6_000), 77).unwrap_err();
        assert_eq!(
            ReasonCode::from(&refusal),
            ReasonCode::BATCH_SETTLEMENT_EVM_CHARGE_EXCEEDS_SIGNED_CUMULATIVE
        );
        assert!(release);
        // Another request's reservation, none, or no record: nothing happens.
        for (current, ticket) in [
            (Some(record(5_000, Some(41))), 42),
            (Some(record(5_000, None)), 42),
            (None, 42),
        ] {
            let (refusal, release) =
                charge_voucher(current.as_ref(), ticket, 1, held(6_000), 77).unwrap_err();
            assert!(!release);
            assert!(matches!(
                refusal,
                ChannelRefusal::ReservationLost | ChannelRefusal::MissingChannel
            ));
        }
        assert!(
            charge_voucher(Some(&record(u128::MAX, Some(1))), 1, 1, held(u128::MAX), 0).is_err()
        );
    }

    #[test]
    fn every_refusal_has_a_batch_settlement_code_and_store_failures_are_unavailable() {
        let refusals = [
            ChannelRefusal::Payload("x".into()),
            ChannelRefusal::CumulativeMismatch {
                signed: 1,
                expected: Some(2),
            },
            ChannelRefusal::ChannelBusy,
            ChannelRefusal::ReservationLost,
            ChannelRefusal::MissingChannel,
            ChannelRefusal::RefundNoBalance,
            ChannelRefusal::RefundAmountInvalid,
            ChannelRefusal::DepositBelowMinimum {
                amount: 1,
                minimum: 2,
            },
            ChannelRefusal::Store(ChannelStoreError("down".into())),
        ];
        for refusal in refusals {
            let code = ReasonCode::from(&refusal);
            assert!(
                code.as_str().starts_with("invalid_batch_settlement_evm_"),
                "{refusal}"
            );
            let hook = HookRefusal::from(refusal.clone());
            assert_eq!(
                hook.unavailable,
                matches!(refusal, ChannelRefusal::Store(_))
            );
        }
        assert_eq!(
            ReasonCode::from(&ChannelRefusal::ChannelBusy),
            ReasonCode::BATCH_SETTLEMENT_EVM_CHANNEL_BUSY
        );
    }

    #[test]
    fn the_corrective_extra_reports_the_count_and_the_voucher_held() {
        let mut view = record(5_000, None);
        let extra = corrective_extra(&view);
        assert_eq!(extra["channelState"]["chargedCumulativeAmount"], "5000");
        assert!(extra.get("voucherState").is_none());
        view.voucher = Some(held(5_500));
        let extra = corrective_extra(&view);
        assert_eq!(extra["voucherState"]["signedMaxClaimable"], "5500");
        assert_eq!(
            extra["channelState"]["channelId"],
            view.id.to_string().as_str()
        );
    }

    /// A voucher request on `network` paying channel `id` with `config`'s terms.
    fn voucher_request(network: &str, config: &ChannelConfig, id: ChannelId) -> PaymentRequest {
        let requirements: v2::PaymentRequirements = serde_json::from_value(json!({
            "scheme": "batch-settlement", "network": network, "amount": "1000",
            "asset": config.token, "payTo": config.receiver, "maxTimeoutSeconds": 300,
            "extra": {"receiverAuthorizer": config.receiver_authorizer, "withdrawDelay": 900},
        }))
        .unwrap();
        let payload =
            serde_json::to_value(BatchPayload::Voucher(super::super::wire::VoucherPayload {
                channel_config: *config,
                voucher: super::super::wire::VoucherFields {
                    channel_id: id,
                    max_claimable_amount: 1_000,
                    signature: Bytes::from_static(&[7; 65]),
                },
            }))
            .unwrap();
        PaymentRequest::V2 {
            payload: v2::PaymentPayload {
                x402_version: x402_proto::V2::default(),
                resource: None,
                accepted: requirements.clone(),
                payload,
                extensions: None,
            },
            requirements,
        }
    }

    #[tokio::test]
    async fn a_kept_channel_claimed_on_another_network_is_refused_as_a_channel_id_mismatch() {
        let store = Arc::new(super::super::MemoryChannelStore::new());
        let server = BatchServer::new(store.clone());
        let config = record(0, None).config;
        let id = super::super::eip712::BatchDomain::new(8453).channel_id(&config);
        let kept = ChannelRecord::new(id, x402_proto::Network::new("eip155:8453"), config);
        store
            .update(&id, &mut |_| ChannelWrite::Put(kept.clone()))
            .await
            .unwrap();
        // The same terms under the same id on another chain: that id is not their hash there.
        let refusal = server
            .before_verify(&voucher_request("eip155:84532", &config, id))
            .await
            .unwrap_err();
        assert_eq!(
            refusal.reason,
            ReasonCode::BATCH_SETTLEMENT_EVM_CHANNEL_ID_MISMATCH
        );
        // On the kept channel's own chain the id holds (the mirror is not fresh: the
        // facilitator is asked).
        assert!(
            server
                .before_verify(&voucher_request("eip155:8453", &config, id))
                .await
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn offers_name_the_authorizer_delay_and_minimum_deposit() {
        let server = BatchServer::new(Arc::new(super::super::MemoryChannelStore::new()));
        let kind = SupportedKind {
            x402_version: 2,
            scheme: Scheme::BATCH_SETTLEMENT,
            network: x402_proto::Network::new("eip155:8453"),
            extra: Some(json!({"receiverAuthorizer": Address::repeat_byte(3)})),
        };
        let mut offer: v2::PaymentRequirements = serde_json::from_value(json!({
            "scheme": "batch-settlement", "network": "eip155:8453", "amount": "1000",
            "asset": Address::repeat_byte(4), "payTo": Address::repeat_byte(2),
            "maxTimeoutSeconds": 300, "extra": {"name": "USDC", "version": "2"},
        }))
        .unwrap();
        assert!(server.check_support(&kind).is_ok());
        let bare = SupportedKind {
            extra: None,
            ..kind.clone()
        };
        assert!(server.check_support(&bare).is_err());
        server.enhance(&mut offer, Some(&kind));
        let extra = offer.extra.as_ref().unwrap();
        assert_eq!(
            extra["receiverAuthorizer"],
            Address::repeat_byte(3).to_checksum(None)
        );
        assert_eq!(extra["withdrawDelay"], 900);
        assert_eq!(extra["minDeposit"], "10000");
        assert_eq!(extra["name"], "USDC");
        // Its own key wins over the facilitator's.
        let key = PrivateKeySigner::random();
        let own = BatchServer::new(Arc::new(super::super::MemoryChannelStore::new()))
            .with_receiver_authorizer(key.clone())
            .with_min_deposit(500, false);
        assert!(own.check_support(&bare).is_ok());
        let mut offer2 = offer.clone();
        offer2.extra = Some(json!({}));
        own.enhance(&mut offer2, Some(&kind));
        let extra = offer2.extra.unwrap();
        assert_eq!(extra["receiverAuthorizer"], key.address().to_checksum(None));
        // Never below the price.
        assert_eq!(extra["minDeposit"], "1000");
    }
}
