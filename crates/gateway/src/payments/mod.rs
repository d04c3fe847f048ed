//! The gateway's record of every payment outcome, which the operator dashboard reads: the
//! paywall writes it through its [`PaymentJournal`] seam before each paid response goes out,
//! and the dashboard's figures are sums over it, exact (amounts in atomic units, summed as
//! 256-bit integers), never estimates.
//!
//! Two stores behind [`PaymentStore`]: [`SqlitePaymentStore`] (one file beside the gateway's
//! others, writes group-committed on one thread) and, when replicas share a database,
//! [`PostgresPaymentStore`](crate::postgres::PostgresPaymentStore). One row per payment; a
//! later success replaces an earlier pending or failed outcome of the same payment, never the
//! other way round.
//!
//! [`Journal`] is the store as the paywall's journal, which also tells whoever listens
//! ([`Journal::subscribe`]) about each payment recorded: the dashboard's live updates. The
//! entries of `batch-settlement` charges may reach it a moment after their responses went out
//! (committed with the charges in the channel store, then moved here in groups); its readers
//! wait for those first ([`Journal::caught_up`]).

mod sqlite;

use std::sync::Arc;

use serde::Serialize;
use x402_paywall::{JournalError, PaymentEntry, PaymentJournal, PaymentState};
use x402_proto::{BoxFuture, U256};

pub use sqlite::SqlitePaymentStore;

/// The running totals' granularity: 15 minutes, so that a day starts on a bucket's edge in
/// every time zone.
pub const BUCKET_MS: i64 = 15 * 60_000;

/// Why the payment store failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("payment store: {0}")]
pub struct PaymentStoreError(pub String);

pub(crate) fn db_error(error: impl std::fmt::Display) -> PaymentStoreError {
    PaymentStoreError(error.to_string())
}

impl From<PaymentStoreError> for JournalError {
    fn from(error: PaymentStoreError) -> Self {
        JournalError(error.0)
    }
}

/// A recorded payment and its row id.
#[derive(Clone, Debug, PartialEq)]
pub struct PaymentRecord {
    /// The row's id (the dashboard's `payments/{id}`).
    pub id: i64,
    /// The payment as the paywall journaled it.
    pub entry: PaymentEntry,
}

/// What was earned in one asset on one network: settled on chain, and charged to
/// `batch-settlement` channels (held in escrow until claimed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Earned {
    /// The token.
    pub asset: String,
    /// The network (CAIP-2).
    pub network: String,
    /// The token's decimals.
    pub decimals: u8,
    /// Settled on chain, atomic units.
    #[serde(serialize_with = "decimal")]
    pub settled: U256,
    /// Charged to channels, atomic units.
    #[serde(serialize_with = "decimal")]
    pub charged: U256,
    /// Paid calls.
    pub calls: u64,
}

/// An amount of one asset earned by one service or payer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ranked {
    /// The service or payer.
    pub name: String,
    /// The token.
    pub asset: String,
    /// The network.
    pub network: String,
    /// The token's decimals.
    pub decimals: u8,
    /// Earned, atomic units.
    #[serde(serialize_with = "decimal")]
    pub amount: U256,
    /// Paid calls.
    pub calls: u64,
}

/// What was earned in one asset on one day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DayRevenue {
    /// The day's start (Unix milliseconds, in the time zone asked for).
    pub day_ms: i64,
    /// The token.
    pub asset: String,
    /// The network.
    pub network: String,
    /// The token's decimals.
    pub decimals: u8,
    /// Earned, atomic units.
    #[serde(serialize_with = "decimal")]
    pub amount: U256,
    /// Paid calls.
    pub calls: u64,
}

/// A settlement failure reason and how often it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailureCount {
    /// The reason code.
    pub reason: String,
    /// Payments that failed for it.
    pub count: u64,
    /// The latest (Unix milliseconds).
    pub last_ms: i64,
}

/// Which payments a page lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageQuery {
    /// A payer, service, transaction or payment id (or the start of one), or a row id.
    pub search: Option<String>,
    /// Only payments in this state.
    pub state: Option<PaymentState>,
    /// Rows to skip (newest first).
    pub offset: u64,
    /// Rows to return.
    pub limit: u32,
}

/// A page of payments, newest first, and how many match in all.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// Payments matching the query.
    pub total: u64,
    /// This page's.
    pub records: Vec<PaymentRecord>,
}

/// The durable payment record the dashboard reads; also the paywall's journal.
pub trait PaymentStore: PaymentJournal {
    /// Earned since `since_ms` (Unix milliseconds), per asset and network. Stores may keep
    /// running totals per [`BUCKET_MS`]: a `since_ms` on a bucket's edge is then answered
    /// from them (any other exactly, from the payments).
    fn earned_since(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<Earned>, PaymentStoreError>>;

    /// Paid calls per minute since `since_ms`: (minute index, calls), minute index being
    /// Unix milliseconds / 60 000; minutes without any are left out.
    fn calls_per_minute(
        &self,
        since_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<(i64, u64)>, PaymentStoreError>>;

    /// Earned per day since `since_ms`, days starting at midnight `offset_ms` east of UTC
    /// (fastest with both on a [`BUCKET_MS`] edge, as time zones are).
    fn daily(
        &self,
        since_ms: i64,
        offset_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<DayRevenue>, PaymentStoreError>>;

    /// The services (`by_payer` false) or payers that earned most in all, per asset, at most
    /// `limit`.
    fn top(
        &self,
        by_payer: bool,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Ranked>, PaymentStoreError>>;

    /// A page of payments.
    fn page<'a>(&'a self, query: &'a PageQuery) -> BoxFuture<'a, Result<Page, PaymentStoreError>>;

    /// Payment `id`.
    fn get(&self, id: i64) -> BoxFuture<'_, Result<Option<PaymentRecord>, PaymentStoreError>>;

    /// Failed payments per reason code, most frequent first.
    fn failures(&self) -> BoxFuture<'_, Result<Vec<FailureCount>, PaymentStoreError>>;

    /// Records `entries` as [`PaymentJournal::record`] records each (by default one by one; a
    /// store may commit them together).
    fn record_many(&self, entries: Vec<PaymentEntry>) -> BoxFuture<'_, Result<(), JournalError>> {
        Box::pin(async move {
            for entry in &entries {
                self.record(entry).await?;
            }
            Ok(())
        })
    }
}

/// Something a journal listener hears: a payment was recorded.
#[derive(Clone, Debug, Serialize)]
pub struct PaymentEvent {
    /// The payment's identity.
    pub payment: String,
    /// Its service.
    pub service: String,
    /// Its state.
    pub state: &'static str,
    /// Its amount, atomic units.
    pub amount: String,
    /// When (Unix milliseconds).
    pub at_ms: i64,
}

impl PaymentEvent {
    fn of(entry: &PaymentEntry) -> Self {
        Self {
            payment: entry.payment.clone(),
            service: entry.service.clone(),
            state: entry.state.as_str(),
            amount: entry.amount.0.to_string(),
            at_ms: entry.at_ms,
        }
    }
}

/// The payment store as the paywall's journal, telling listeners of each payment recorded.
#[derive(Clone, Debug)]
pub struct Journal {
    store: Arc<dyn PaymentStore>,
    events: tokio::sync::broadcast::Sender<PaymentEvent>,
    closed: Arc<tokio::sync::watch::Sender<bool>>,
    backlog: Arc<Backlog>,
}

/// Entries on their way to the journal from where they were committed first (the channel
/// store, with their charges): how many were handed over, and how many have arrived.
#[derive(Debug)]
pub(crate) struct Backlog {
    handed: std::sync::atomic::AtomicU64,
    moved: tokio::sync::watch::Sender<u64>,
}

/// How long a reader waits for the backlog before reading what the journal has.
const BACKLOG_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

impl Backlog {
    fn new() -> Self {
        Self {
            handed: std::sync::atomic::AtomicU64::new(0),
            moved: tokio::sync::watch::channel(0).0,
        }
    }

    /// `count` more entries are on their way.
    pub(crate) fn handed(&self, count: u64) {
        self.handed
            .fetch_add(count, std::sync::atomic::Ordering::SeqCst);
    }

    /// `count` entries arrived (or will only arrive after a restart).
    pub(crate) fn moved(&self, count: usize) {
        self.moved.send_modify(|moved| *moved += count as u64);
    }

    /// Waits until every entry handed over so far has arrived, or for [`BACKLOG_PATIENCE`].
    async fn caught_up(&self) {
        let handed = self.handed.load(std::sync::atomic::Ordering::SeqCst);
        let mut moved = self.moved.subscribe();
        let arrived = moved.wait_for(|moved| *moved >= handed);
        if tokio::time::timeout(BACKLOG_PATIENCE, arrived)
            .await
            .is_err()
        {
            tracing::warn!(
                "the payment journal is behind its charges' entries; reading what it has"
            );
        }
    }
}

impl Journal {
    /// Journals into `store`.
    pub fn new(store: Arc<dyn PaymentStore>) -> Self {
        Self {
            store,
            events: tokio::sync::broadcast::channel(256).0,
            closed: Arc::new(tokio::sync::watch::channel(false).0),
            backlog: Arc::new(Backlog::new()),
        }
    }

    /// Waits until the entries committed elsewhere first (charges' entries, in the channel
    /// store) before this call are in the journal, so that a read sees every payment whose
    /// response went out before it (gives up after a few seconds, saying so).
    pub async fn caught_up(&self) {
        self.backlog.caught_up().await;
    }

    /// The count of entries on their way in.
    pub(crate) fn backlog(&self) -> Arc<Backlog> {
        Arc::clone(&self.backlog)
    }

    /// Records `entries` together, telling listeners of each.
    pub async fn record_many(&self, entries: Vec<PaymentEntry>) -> Result<(), JournalError> {
        // What listeners hear, taken before the store has the entries (only when some listen).
        let events: Vec<PaymentEvent> = if self.events.receiver_count() > 0 {
            entries.iter().map(PaymentEvent::of).collect()
        } else {
            Vec::new()
        };
        self.store.record_many(entries).await?;
        for event in events {
            let _ = self.events.send(event);
        }
        Ok(())
    }

    fn announce(&self, entry: &PaymentEntry) {
        let _ = self.events.send(PaymentEvent::of(entry));
    }

    /// Tells listeners that no more events come (the server is stopping): their streams end,
    /// so that their connections close.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Becomes `true` once [`Self::close`] is called.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn PaymentStore> {
        &self.store
    }

    /// Hears of each payment this process records from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<PaymentEvent> {
        self.events.subscribe()
    }
}

impl PaymentJournal for Journal {
    fn record<'a>(&'a self, entry: &'a PaymentEntry) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move {
            self.store.record(entry).await?;
            self.announce(entry);
            Ok(())
        })
    }
}

/// `value` as a decimal string (amounts go to JavaScript, whose numbers are not exact).
pub(crate) fn decimal<S: serde::Serializer>(
    value: &U256,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// The search text as the stores compare it: trimmed, and as payers and transactions are
/// stored ([`stored_case`]).
pub(crate) fn normalized(search: &str) -> (String, String) {
    let text = search.trim().to_owned();
    let lower = stored_case(&text);
    (text, lower)
}

/// A payer or transaction as the stores keep it: `0x` hex (EVM addresses, hashes) lowercased;
/// anything else (Solana's base58 addresses and signatures, where case matters) as it is.
pub(crate) fn stored_case(text: &str) -> String {
    if text.starts_with("0x") || text.starts_with("0X") {
        text.to_lowercase()
    } else {
        text.to_owned()
    }
}

/// The first string after every string starting with `prefix` (for index range scans).
pub(crate) fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

#[cfg(test)]
pub(crate) mod tests;
