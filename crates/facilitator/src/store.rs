//! The settlement log: what was asked to settle, which transactions were sent for it, and how
//! it ended. A settlement is written before its transaction is broadcast, so a crash never
//! loses track of money in flight.

use alloy::primitives::{Address, B256, Bytes, U256};
use x402_proto::{BoxFuture, Network, SettleResponse};

#[cfg(test)]
mod behaviour;

/// Identifies a payment on chain by the nonce it spends and the contract that keeps that
/// nonce: an EIP-3009 authorization nonce is single-use per payer and token (`asset` is the
/// token); a Permit2 nonce is single-use per owner whatever the token (`asset` is Permit2,
/// [`x402_evm::permit2::PERMIT2_ADDRESS`]). Either way at most one transfer can ever exist for
/// a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SettlementKey {
    /// The chain.
    pub chain_id: u64,
    /// The contract keeping the nonce: the token (EIP-3009), or Permit2.
    pub asset: Address,
    /// The payer.
    pub payer: Address,
    /// The authorization nonce.
    pub nonce: B256,
}

impl SettlementKey {
    /// Whether the payment spends a Permit2 nonce (`upto`, or `exact` with Permit2).
    pub fn is_permit2(&self) -> bool {
        self.asset == x402_evm::permit2::PERMIT2_ADDRESS
    }
}

/// Why a text does not name a settlement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a settlement is named `<chain id>:<asset>:<payer>:<nonce>` (as the dashboard lists it): {0}"
)]
pub struct BadSettlementKey(String);

impl std::str::FromStr for SettlementKey {
    type Err = BadSettlementKey;

    /// Reads the [`Display`](std::fmt::Display) form back.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split(':').collect();
        let [chain_id, asset, payer, nonce] = parts[..] else {
            return Err(BadSettlementKey(format!(
                "{} parts separated by `:`, not 4",
                parts.len()
            )));
        };
        let bad = |what: &str, value: &str| BadSettlementKey(format!("{what} {value:?}"));
        Ok(Self {
            chain_id: chain_id.parse().map_err(|_| bad("chain id", chain_id))?,
            asset: asset.parse().map_err(|_| bad("asset", asset))?,
            payer: payer.parse().map_err(|_| bad("payer", payer))?,
            nonce: nonce.parse().map_err(|_| bad("nonce", nonce))?,
        })
    }
}

impl std::fmt::Display for SettlementKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.chain_id, self.asset, self.payer, self.nonce
        )
    }
}

/// Where a settlement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettlementState {
    /// Recorded; no transaction signed yet.
    Claimed,
    /// A transaction was signed and recorded, and may have been broadcast.
    Submitted,
    /// A transaction moved the payment.
    Confirmed,
    /// A transaction was mined without moving the payment, or the payment can never settle.
    Failed,
    /// Given up with nothing moved and nothing that can still move it: settling the same
    /// payment again may start over.
    Abandoned,
}

impl SettlementState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Submitted => "submitted",
            Self::Confirmed => "confirmed",
            Self::Failed => "failed",
            Self::Abandoned => "abandoned",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "claimed" => Self::Claimed,
            "submitted" => Self::Submitted,
            "confirmed" => Self::Confirmed,
            "failed" => Self::Failed,
            "abandoned" => Self::Abandoned,
            _ => return None,
        })
    }

    /// Whether the outcome is decided for good.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Confirmed | Self::Failed)
    }
}

/// A settlement as first recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSettlement {
    /// The payment.
    pub key: SettlementKey,
    /// A digest of the whole signed authorization: a different payment reusing the same
    /// nonce has another fingerprint.
    pub fingerprint: B256,
    /// The token moved: the key's `asset` for EIP-3009, the permitted token for Permit2.
    pub token: Address,
    /// The payee.
    pub pay_to: Address,
    /// The amount, atomic units.
    pub amount: U256,
    /// The authorization's `validBefore`, or the permit's deadline (Unix seconds).
    pub valid_before: u64,
    /// The network as the request named it (`base` or `eip155:8453`), echoed in answers.
    pub wire_network: Network,
    /// The settle request, as JSON.
    pub request: String,
}

/// One transaction sent for a settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRecord {
    /// Its hash.
    pub tx_hash: B256,
    /// The signed transaction, for rebroadcasting.
    pub raw: Bytes,
    /// The sender.
    pub signer: Address,
    /// The sender's nonce.
    pub signer_nonce: u64,
}

/// A settlement as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SettlementRecord {
    /// What was recorded first.
    pub settlement: NewSettlement,
    /// Where it stands.
    pub state: SettlementState,
    /// Transactions sent for it, oldest first.
    pub txs: Vec<TxRecord>,
    /// The answer given once final.
    pub response: Option<SettleResponse>,
    /// Who a successful answer was handed to (`key:<idempotency key>` or `call:<id>`);
    /// every other caller is refused.
    pub answered_to: Option<String>,
}

/// The outcome of [`SettlementStore::claim`].
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The caller owns the settlement now (it was new, or abandoned before).
    Fresh,
    /// Someone else recorded it first.
    Existing(Box<SettlementRecord>),
}

/// A storage failure. Settling stops when the log cannot be written: a transaction is never
/// broadcast without its record.
#[derive(Debug, Clone, thiserror::Error)]
#[error("settlement log: {0}")]
pub struct StoreError(pub String);

/// A log that cannot be read or written is an outage, answered like an unreachable chain: a
/// 503 saying why, nothing sent and nothing served; asking again once it is back gets the
/// answer.
impl From<StoreError> for x402_proto::FacilitatorError {
    fn from(error: StoreError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

/// How many settlements moved money, and how much, in one token on one chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// How many confirmed settlements.
    pub settlements: u64,
    /// What they moved, atomic units of the token.
    pub amount: U256,
}

/// One interval of a series of confirmed settlements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesPoint {
    /// Where the interval starts (Unix seconds, a multiple of its length).
    pub start: u64,
    /// The chain.
    pub chain_id: u64,
    /// The token moved.
    pub token: Address,
    /// What was settled in the interval.
    pub tally: Tally,
}

/// Which side of a payment a top list ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// Who paid.
    Payer,
    /// Who was paid.
    Payee,
}

/// What one payer or payee settled in one token on one chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartyTally {
    /// The payer or payee.
    pub address: Address,
    /// The chain.
    pub chain_id: u64,
    /// The token moved.
    pub token: Address,
    /// What was settled.
    pub tally: Tally,
}

/// What to look for in the log's settlements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    /// Settlements paid by or to this address.
    Address(Address),
    /// The settlement that sent this transaction.
    Transaction(B256),
    /// Settlements whose payer, payee or one of whose transactions' hashes starts with this
    /// lowercase hex (`0x` and at least one digit).
    Prefix(String),
}

impl Search {
    /// The bounds of a [`Search::Prefix`]: the prefix itself, and the first text after every
    /// text that starts with it (its last character raised by one), compared byte by byte.
    pub(crate) fn prefix_bounds(prefix: &str) -> (String, String) {
        let mut upper = prefix.to_owned();
        match upper.pop() {
            Some(last) => upper.push(char::from_u32(u32::from(last) + 1).unwrap_or(char::MAX)),
            None => upper.push(char::MAX),
        }
        (prefix.to_owned(), upper)
    }
}

/// Which settlements a page lists, and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementFilter {
    /// Only those matching this, when given.
    pub search: Option<Search>,
    /// Only those in these states; every state when empty.
    pub states: Vec<SettlementState>,
    /// Oldest first instead of newest first (by when they were recorded).
    pub oldest_first: bool,
    /// How many to skip.
    pub offset: u64,
    /// How many to list at most.
    pub limit: u32,
}

/// A settlement as a table lists it: what it moves, where it stands, its transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementSummary {
    /// The payment.
    pub key: SettlementKey,
    /// Where it stands.
    pub state: SettlementState,
    /// The token moved.
    pub token: Address,
    /// The payee.
    pub pay_to: Address,
    /// The amount, atomic units.
    pub amount: U256,
    /// The network as the request named it.
    pub wire_network: Network,
    /// When it was recorded (Unix seconds).
    pub created_at: u64,
    /// When it last changed (Unix seconds).
    pub updated_at: u64,
    /// The transaction its answer names, else the last one sent for it; none before one is
    /// signed.
    pub tx_hash: Option<B256>,
    /// Why it failed, when its answer says (a reason code).
    pub error_reason: Option<String>,
}

/// One page of settlements, and how many match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementPage {
    /// How many settlements match the filter.
    pub total: u64,
    /// This page of them.
    pub rows: Vec<SettlementSummary>,
}

/// Settlements of one state not yet final.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// How many.
    pub count: u64,
    /// When the oldest was recorded (Unix seconds), when there is one.
    pub oldest_at: Option<u64>,
}

/// Settlements that ended without moving money for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureTally {
    /// `failed` or `abandoned`.
    pub state: SettlementState,
    /// The reason code of their answer (empty when the answer gives none).
    pub reason: String,
    /// How many.
    pub count: u64,
    /// When the latest of them ended (Unix seconds).
    pub last_at: u64,
}

/// What the log says about settling right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHealth {
    /// Settlements recorded with no transaction signed yet.
    pub claimed: Backlog,
    /// Settlements with a transaction sent and no outcome yet.
    pub submitted: Backlog,
    /// Settlements that ended without moving money, by state and reason, most first.
    pub failures: Vec<FailureTally>,
    /// `batch-settlement` sends (deposits, claims, settles, refunds) with no answer yet.
    pub batch_sends: Backlog,
    /// Every (chain, signer) that has sent a settlement transaction recorded here.
    pub signers: Vec<(u64, Address)>,
}

/// A durable settlement log. SQLite embedded by default, for one process; a Postgres database
/// lets several facilitator instances share one log.
pub trait SettlementStore: Send + Sync + std::fmt::Debug {
    /// What keeps the log: `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Whether the log can be read right now (one round trip), for `/health`.
    fn check(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Records a new settlement in state `Claimed`, unless one exists for the key that is not
    /// `Abandoned`. Atomic: of concurrent claims for one key, exactly one is `Fresh`.
    fn claim<'a>(&'a self, new: &'a NewSettlement) -> BoxFuture<'a, Result<Claim, StoreError>>;

    /// [`claim`](Self::claim) and [`add_transaction`](Self::add_transaction) in one durable
    /// write: records a new settlement (or takes over an abandoned one) in state `Submitted`
    /// with its first signed transaction, its success promised to `answered_to` when given.
    /// Nothing is written when someone else holds the key (`Existing`). Of concurrent calls
    /// for one key, exactly one is `Fresh`.
    fn claim_with_transaction<'a>(
        &'a self,
        new: &'a NewSettlement,
        tx: &'a TxRecord,
        answered_to: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Claim, StoreError>>;

    /// Adds a signed transaction and moves the settlement to `Submitted`. Must be durable
    /// before it returns: the transaction is broadcast right after.
    fn add_transaction<'a>(
        &'a self,
        key: &'a SettlementKey,
        tx: &'a TxRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Ends a settlement with its answer, handed to `answered_to` when given (in the same
    /// write: the caller waiting for it when it ended).
    fn finish<'a>(
        &'a self,
        key: &'a SettlementKey,
        state: SettlementState,
        response: &'a SettleResponse,
        answered_to: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Hands a settlement's answer to `holder`, unless it was handed to someone else: `true`
    /// when `holder` has it now (first to ask, or asking again). Atomic across callers.
    fn hand_out<'a>(
        &'a self,
        key: &'a SettlementKey,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// The settlement for a key.
    fn get<'a>(
        &'a self,
        key: &'a SettlementKey,
    ) -> BoxFuture<'a, Result<Option<SettlementRecord>, StoreError>>;

    /// Settlements not yet final (`Claimed` or `Submitted`) that this instance owns, oldest
    /// first: every one, for a log one process keeps.
    fn unfinished(&self) -> BoxFuture<'_, Result<Vec<SettlementRecord>, StoreError>>;

    /// What confirmed settlements moved per UTC day (by when they were recorded), chain and
    /// token, from the day holding `since` (Unix seconds; 0 for all) on; days without any are
    /// left out. Oldest first. Read from sums kept as settlements are confirmed, not from
    /// every row: as exact, and as fast for a long log as for a short one.
    fn settled_days(&self, since: u64) -> BoxFuture<'_, Result<Vec<SeriesPoint>, StoreError>>;

    /// Confirmed settlements recorded at or after `since`, in intervals of `bucket_seconds`
    /// (aligned to multiples of it), per chain and token; intervals without any are left out.
    /// Oldest first. Read from the rows: for short spans (the last hour).
    fn settled_series(
        &self,
        since: u64,
        bucket_seconds: u64,
    ) -> BoxFuture<'_, Result<Vec<SeriesPoint>, StoreError>>;

    /// The `limit` payers or payees (per chain and token) whose confirmed settlements moved
    /// the most, most first (from the kept sums, like [`settled_days`](Self::settled_days)).
    fn top_parties(
        &self,
        party: Party,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<PartyTally>, StoreError>>;

    /// A page of settlements matching `filter`, newest first unless asked otherwise, and how
    /// many match.
    fn settlements<'a>(
        &'a self,
        filter: &'a SettlementFilter,
    ) -> BoxFuture<'a, Result<SettlementPage, StoreError>>;

    /// The settlement for a key, as a table lists it.
    fn summary<'a>(
        &'a self,
        key: &'a SettlementKey,
    ) -> BoxFuture<'a, Result<Option<SettlementSummary>, StoreError>>;

    /// What is pending, what failed and why, and which signers have sent.
    fn log_health(&self) -> BoxFuture<'_, Result<LogHealth, StoreError>>;

    /// Marks this instance alive now, for the others sharing the log. Nothing to do for a
    /// log one process keeps.
    fn heartbeat(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    /// Marks this instance stopped: its unfinished settlements go to the next instance that
    /// starts or writes its heartbeat, without waiting for its heartbeat to go stale.
    fn retire(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    /// Makes this instance the owner of the unfinished settlements of the other instances
    /// whose heartbeat is older than `stale_after` (presumed dead), and returns them; each is
    /// taken over by one instance. None for a log one process keeps.
    fn take_over(
        &self,
        stale_after: std::time::Duration,
    ) -> BoxFuture<'_, Result<Vec<SettlementRecord>, StoreError>> {
        let _ = stale_after;
        Box::pin(async { Ok(Vec::new()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_reads_back_from_its_text_and_a_prefix_has_bounds() {
        let key = SettlementKey {
            chain_id: 8453,
            asset: Address::repeat_byte(0xab),
            payer: Address::repeat_byte(2),
            nonce: B256::repeat_byte(3),
        };
        assert_eq!(key.to_string().parse::<SettlementKey>(), Ok(key));
        for bad in ["", "8453:0x1", "x:0x0:0x0:0x0", &format!("{key}:1")] {
            assert!(bad.parse::<SettlementKey>().is_err(), "{bad}");
        }
        let (lower, upper) = Search::prefix_bounds("0xa9");
        assert_eq!((lower.as_str(), upper.as_str()), ("0xa9", "0xa:"));
        assert!("0xa9ff" >= lower.as_str() && "0xa9ff" < upper.as_str());
        assert!("0xaa00" >= upper.as_str());
        assert_eq!(Search::prefix_bounds("0xf").1, "0xg");
    }
}
