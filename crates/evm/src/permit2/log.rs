//! The seam between the Permit2 settle path and the record of what it sent ([`SendLog`]): a
//! settlement is recorded before its transaction is broadcast, found again by the Permit2
//! nonce it spends, and ended with its answer. [`PendingSends`](super::PendingSends) keeps
//! these records in memory for five minutes (the default); a facilitator with a durable
//! settlement log implements the seam over it, so that a retry after a restart is answered
//! for the transaction already sent and a crash after a broadcast is reconciled.

use alloy::primitives::{Address, B256, U256};
use x402_proto::{BoxFuture, FacilitatorError, IdempotencyKey, PaymentRequest, SettleResponse};

use crate::sender::{SignedSettlement, TransferExpectation};

/// The Permit2 nonce a settlement spends. Permit2 keeps one set of nonces per owner, whatever
/// the token or the spender, so at most one transfer ever spends a (chain, owner, nonce).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permit2Nonce {
    /// The chain.
    pub chain_id: u64,
    /// The owner who signed the permit.
    pub owner: Address,
    /// The permit's nonce.
    pub nonce: U256,
}

/// Who a settlement's success goes to, as a log writes it: the requests sharing an
/// idempotency key (`key:<key>`), or one call without a key (`call:<unique id>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Holder(String);

impl Holder {
    /// The holder for a request with `key`, or a new anonymous one for a request without.
    pub fn of(key: Option<&IdempotencyKey>) -> Self {
        match key {
            Some(key) => Self(format!("key:{key}")),
            None => Self::anonymous(),
        }
    }

    /// A name for one call without a key, unique across calls and restarts.
    pub fn anonymous() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Self(format!("call:{started:x}-{}-{n}", std::process::id()))
    }

    /// A holder as a log stored it.
    pub fn stored(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// Whether it names requests with an idempotency key (which may ask again as
    /// themselves), not one anonymous call.
    pub fn is_keyed(&self) -> bool {
        self.0.starts_with("key:")
    }

    /// As stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Holder> for String {
    fn from(holder: Holder) -> Self {
        holder.0
    }
}

/// A Permit2 settlement about to be broadcast, as it is recorded.
#[derive(Debug, Clone)]
pub struct Permit2Send {
    /// The nonce it spends.
    pub nonce: Permit2Nonce,
    /// A digest of the signed permit: another payment reusing the nonce has another.
    pub fingerprint: B256,
    /// The transfer its transaction must make (the token, and the amount settled).
    pub transfer: TransferExpectation,
    /// The permit's deadline (Unix seconds).
    pub deadline: u64,
    /// The settle request.
    pub request: PaymentRequest,
    /// Whom its success is for, when the request carries an idempotency key (a success
    /// sent for a call without one goes to the first caller that takes it).
    pub holder: Option<Holder>,
    /// The address sending it.
    pub signer: Address,
    /// Its signed transaction.
    pub tx: SignedSettlement,
}

/// Where a recorded Permit2 settlement stands.
// A record per settlement in flight: the size of its answer costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum SendState {
    /// Sent (or about to be); not known to be mined.
    Sent,
    /// Ended with this answer: mined, moving the payment or not.
    Ended(SettleResponse),
    /// Nothing moved and nothing sent can move it: settling again may start over.
    Abandoned,
}

/// A recorded Permit2 settlement.
#[derive(Debug, Clone, PartialEq)]
pub struct SentSettlement {
    /// A digest of the permit it settles.
    pub fingerprint: B256,
    /// The transfer its transaction makes.
    pub transfer: TransferExpectation,
    /// Its transactions (replacements with higher fees included), oldest first.
    pub tx_hashes: Vec<B256>,
    /// Where it stands.
    pub state: SendState,
    /// Whom its success goes to, once decided.
    pub holder: Option<Holder>,
}

/// What [`SendLog::record`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// The send is recorded; broadcast it.
    Fresh,
    /// A settlement of the nonce was recorded first (and not abandoned): nothing written.
    Existing(Box<SentSettlement>),
}

/// How a settlement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Its transaction moved the payment.
    Confirmed,
    /// Its transaction was mined without moving the payment.
    Failed,
    /// Its transaction was refused: nothing is in the chain's hands.
    Abandoned,
}

/// Where the Permit2 settle path records what it sends. Records are found by the nonce they
/// spend; `record` is durable before it returns (the transaction is broadcast right after).
pub trait SendLog: Send + Sync + std::fmt::Debug {
    /// The settlement recorded for `nonce`, if any.
    fn find<'a>(
        &'a self,
        nonce: &'a Permit2Nonce,
    ) -> BoxFuture<'a, Result<Option<SentSettlement>, FacilitatorError>>;

    /// Records `send` before its transaction is broadcast, unless a settlement of its nonce
    /// is recorded and not abandoned (`Existing`). Of concurrent calls for one nonce, one is
    /// `Fresh`.
    fn record<'a>(
        &'a self,
        send: &'a Permit2Send,
    ) -> BoxFuture<'a, Result<Recorded, FacilitatorError>>;

    /// Ends the settlement of `nonce` with `answer`.
    fn finish<'a>(
        &'a self,
        nonce: &'a Permit2Nonce,
        ending: Ending,
        answer: &'a SettleResponse,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>>;

    /// Hands the settlement's success to `holder`, unless it went to another: `true` when
    /// `holder` has it (first to take it, or asking again). Atomic across callers.
    fn hand_out<'a>(
        &'a self,
        nonce: &'a Permit2Nonce,
        holder: &'a Holder,
    ) -> BoxFuture<'a, Result<bool, FacilitatorError>>;
}
