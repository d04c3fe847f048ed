//! The payment ledger (SQLite) and the budgets it enforces.
//!
//! A payment is *reserved* before anything is signed: in one write transaction the ledger sums
//! what is reserved, unknown or spent in each budget window and refuses a reservation that would
//! cross a limit. Once signed, the row keeps the authorization's nonce and `validBefore`. The
//! reservation is then committed (paid, with its transaction hash), marked failed, marked
//! unknown (sent, but the answer was lost), or released; a [`Reservation`] dropped unfinished is
//! released. Concurrent payments can therefore never overspend, and every payment is recorded
//! exactly once.
//!
//! An `unknown` payment may have settled, so it keeps counting against the budget until
//! [`Ledger::reconcile`] asks the chain: a used authorization makes it `paid`, an unused one
//! that can no longer be used (its `validBefore` has passed) makes it `released`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// Amounts are kept in micro-USD (6 decimals), whatever the asset's decimals.
pub type MicroUsd = u64;

/// Micro-USD in dollars, for people (`1500` → `0.0015`).
pub fn format_micro_usd(micro: MicroUsd) -> String {
    x402_proto::TokenAmount::from_atomic(u128::from(micro)).to_human(6)
}

/// The deposit cap a ledger has until one is set: $5 in escrow at once, what the official
/// client allows by default (five times its $1 most per payment).
pub const DEFAULT_DEPOSIT_CAP: MicroUsd = 5_000_000;

fn default_deposit_cap() -> Option<MicroUsd> {
    Some(DEFAULT_DEPOSIT_CAP)
}

/// Spending limits, in micro-USD. `None` is no limit.
///
/// Charges (what payments cost) count against `per_payment`, `per_hour`, `per_day` and
/// `total`. Deposits into payment channels (`batch-settlement`) are not spent, only locked in
/// escrow until charged, refunded or withdrawn: what is locked and unspent counts against
/// `deposit_cap` instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Budget {
    /// Most per payment.
    pub per_payment: Option<MicroUsd>,
    /// Most per rolling hour.
    pub per_hour: Option<MicroUsd>,
    /// Most per rolling day.
    pub per_day: Option<MicroUsd>,
    /// Most in total.
    pub total: Option<MicroUsd>,
    /// Most held in payment channels' escrow at once, deposited and not yet charged or
    /// returned ([`DEFAULT_DEPOSIT_CAP`] unless set).
    #[serde(default = "default_deposit_cap")]
    pub deposit_cap: Option<MicroUsd>,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            per_payment: None,
            per_hour: None,
            per_day: None,
            total: None,
            deposit_cap: default_deposit_cap(),
        }
    }
}

impl Budget {
    /// At most `micro_usd` in all, no other limit.
    pub fn total(micro_usd: MicroUsd) -> Self {
        Self {
            total: Some(micro_usd),
            ..Self::default()
        }
    }
}

/// Why the ledger refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The payment would cross a limit.
    #[error(
        "budget exceeded: the {limit_name} limit is {limit} micro-USD, {spent} already spent or reserved, {asked} asked; raise it with `x402 budget set` or wait"
    )]
    BudgetExceeded {
        /// Which limit (`per_payment`, `per_hour`, `per_day`, `total`).
        limit_name: &'static str,
        /// The limit.
        limit: MicroUsd,
        /// Spent or reserved within the limit's window.
        spent: MicroUsd,
        /// This payment.
        asked: MicroUsd,
    },
    /// The database failed.
    #[error("ledger database: {0}")]
    Database(#[from] rusqlite::Error),
    /// A stored channel record does not read back.
    #[error("ledger channel record: {0}")]
    Record(String),
}

/// What a payment is for, recorded when it is reserved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PaymentIntent {
    /// The resource URL.
    pub url: String,
    /// The gateway service, when known.
    pub service: Option<String>,
    /// Atomic units of the asset.
    pub amount: String,
    /// The same in micro-USD, rounded up.
    pub micro_usd: MicroUsd,
    /// Token address.
    pub asset: String,
    /// Network (CAIP-2 or v1 name, as offered).
    pub network: String,
    /// Paying address.
    pub payer: String,
    /// Paid address.
    pub pay_to: String,
}

/// One recorded payment: what it was for (its fields read through, as `record.url`, and
/// serialize inline) and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PaymentRecord {
    /// Row id.
    pub id: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// What was reserved.
    #[serde(flatten)]
    pub intent: PaymentIntent,
    /// Settlement transaction, when paid and known.
    pub transaction: Option<String>,
    /// `reserved` (not finished yet), `paid`, `failed` (sent, refused, not charged),
    /// `unknown` (sent, answer lost: may have settled, still counted against the budget) or
    /// `released` (never sent, or never usable).
    pub status: String,
    /// Why it failed, was released or is unknown, or how it was reconciled.
    pub detail: Option<String>,
    /// The EIP-3009 authorization nonce (`0x` + 64 hex), once signed.
    pub nonce: Option<String>,
    /// The authorization's `validBefore` (Unix seconds), once signed.
    pub valid_before: Option<u64>,
}

impl std::ops::Deref for PaymentRecord {
    type Target = PaymentIntent;

    fn deref(&self) -> &PaymentIntent {
        &self.intent
    }
}

/// The ledger: one SQLite file, shared by every clone.
#[derive(Clone, Debug)]
pub struct Ledger {
    db: Arc<Mutex<Connection>>,
}

/// The ledger's schema version (`PRAGMA user_version`): 1 added payment channels
/// (`channels`: each channel's record; `channel_funds`: deposits, claims seen and refunds;
/// `payments.channel_id`: the channel a charge was paid on).
const SCHEMA_VERSION: i64 = 1;

/// Brings a ledger written by an earlier version up to date, one version at a time.
fn migrate(db: &Connection) -> Result<(), LedgerError> {
    let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 1 {
        let present = db
            .prepare("SELECT 1 FROM pragma_table_info('payments') WHERE name = 'channel_id'")?
            .exists([])?;
        if !present {
            db.execute_batch("ALTER TABLE payments ADD COLUMN channel_id TEXT")?;
        }
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS channels (
                 id TEXT PRIMARY KEY,
                 network TEXT NOT NULL,
                 asset TEXT NOT NULL,
                 receiver TEXT NOT NULL,
                 record TEXT NOT NULL,
                 closed INTEGER NOT NULL DEFAULT 0,
                 updated_at INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS channel_funds (
                 id INTEGER PRIMARY KEY,
                 created_at INTEGER NOT NULL,
                 channel_id TEXT NOT NULL,
                 kind TEXT NOT NULL,
                 amount TEXT NOT NULL,
                 micro_usd INTEGER NOT NULL,
                 status TEXT NOT NULL,
                 tx TEXT,
                 url TEXT
             );
             CREATE INDEX IF NOT EXISTS channel_funds_channel ON channel_funds (channel_id);",
        )?;
    }
    if version < SCHEMA_VERSION {
        db.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    }
    Ok(())
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Ledger {
    /// Opens (or creates) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        Self::init(Connection::open(path)?)
    }

    /// A ledger in memory (for one process).
    pub fn in_memory() -> Result<Self, LedgerError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(db: Connection) -> Result<Self, LedgerError> {
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS payments (
                 id INTEGER PRIMARY KEY,
                 created_at INTEGER NOT NULL,
                 url TEXT NOT NULL,
                 service TEXT,
                 amount TEXT NOT NULL,
                 micro_usd INTEGER NOT NULL,
                 asset TEXT NOT NULL,
                 network TEXT NOT NULL,
                 payer TEXT NOT NULL,
                 pay_to TEXT NOT NULL,
                 tx TEXT,
                 status TEXT NOT NULL,
                 detail TEXT
             );
             CREATE INDEX IF NOT EXISTS payments_time ON payments (created_at);
             CREATE TABLE IF NOT EXISTS budget (id INTEGER PRIMARY KEY CHECK (id = 1), json TEXT NOT NULL);",
        )?;
        // Ledgers written before payments kept their authorization gain the columns.
        let columns: Vec<String> = db
            .prepare("SELECT name FROM pragma_table_info('payments')")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for (column, kind) in [("nonce", "TEXT"), ("valid_before", "INTEGER")] {
            if !columns.iter().any(|c| c == column) {
                db.execute_batch(&format!("ALTER TABLE payments ADD COLUMN {column} {kind}"))?;
            }
        }
        migrate(&db)?;
        Ok(Self {
            db: Arc::new(Mutex::new(db)),
        })
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stored budget (no limits when none was set).
    pub fn budget(&self) -> Result<Budget, LedgerError> {
        let json: Option<String> = self
            .lock()
            .query_row("SELECT json FROM budget WHERE id = 1", [], |r| r.get(0))
            .optional()?;
        Ok(json
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default())
    }

    /// Stores `budget`.
    pub fn set_budget(&self, budget: &Budget) -> Result<(), LedgerError> {
        let json = serde_json::to_string(budget).unwrap_or_default();
        self.lock().execute(
            "INSERT INTO budget (id, json) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET json = ?1",
            params![json],
        )?;
        Ok(())
    }

    /// Reserves `intent` against the stored budget, or refuses it.
    pub fn reserve(&self, intent: &PaymentIntent) -> Result<Reservation, LedgerError> {
        let budget = self.budget()?;
        let mut db = self.lock();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let at = now();
        let asked = intent.micro_usd;
        if let Some(limit) = budget.per_payment
            && asked > limit
        {
            return Err(LedgerError::BudgetExceeded {
                limit_name: "per_payment",
                limit,
                spent: 0,
                asked,
            });
        }
        let windows: [(&'static str, Option<MicroUsd>, i64); 3] = [
            ("per_hour", budget.per_hour, at - 3600),
            ("per_day", budget.per_day, at - 86_400),
            ("total", budget.total, i64::MIN),
        ];
        for (limit_name, limit, since) in windows {
            let Some(limit) = limit else { continue };
            let spent: i64 = tx.query_row(
                "SELECT COALESCE(SUM(micro_usd), 0) FROM payments
                 WHERE status IN ('reserved', 'unknown', 'paid') AND created_at >= ?1",
                params![since],
                |r| r.get(0),
            )?;
            let spent = spent as MicroUsd;
            if spent + asked > limit {
                return Err(LedgerError::BudgetExceeded {
                    limit_name,
                    limit,
                    spent,
                    asked,
                });
            }
        }
        tx.execute(
            "INSERT INTO payments (created_at, url, service, amount, micro_usd, asset, network, payer, pay_to, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'reserved')",
            params![
                at,
                intent.url,
                intent.service,
                intent.amount,
                asked as i64,
                intent.asset,
                intent.network,
                intent.payer,
                intent.pay_to
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Reservation {
            ledger: self.clone(),
            id,
            done: false,
        })
    }

    /// Moves row `id` to `status` if it is in one of `from` (all statuses when empty).
    /// Returns whether it moved.
    pub(crate) fn transition(
        &self,
        id: i64,
        from: &[&'static str],
        status: &str,
        tx: Option<&str>,
        detail: Option<&str>,
    ) -> Result<bool, LedgerError> {
        // `from` holds this module's status names, never input.
        let guard = if from.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = from.iter().map(|s| format!("'{s}'")).collect();
            format!(" AND status IN ({})", names.join(", "))
        };
        let changed = self.lock().execute(
            &format!(
                "UPDATE payments SET status = ?2, tx = COALESCE(?3, tx), detail = ?4 WHERE id = ?1{guard}"
            ),
            params![id, status, tx, detail],
        )?;
        Ok(changed == 1)
    }

    fn record_authorization(
        &self,
        id: i64,
        nonce: &str,
        valid_before: u64,
    ) -> Result<(), LedgerError> {
        self.lock().execute(
            "UPDATE payments SET nonce = ?2, valid_before = ?3 WHERE id = ?1",
            params![id, nonce, i64::try_from(valid_before).unwrap_or(i64::MAX)],
        )?;
        Ok(())
    }

    fn select(&self, filter: &str, since: i64) -> Result<Vec<PaymentRecord>, LedgerError> {
        let db = self.lock();
        let mut statement = db.prepare(&format!(
            "SELECT id, created_at, url, service, amount, micro_usd, asset, network, payer, pay_to, tx, status, detail,
                    nonce, valid_before
             FROM payments WHERE created_at >= ?1 AND ({filter}) ORDER BY id DESC"
        ))?;
        let rows = statement.query_map(params![since], |r| {
            Ok(PaymentRecord {
                id: r.get(0)?,
                created_at: r.get(1)?,
                intent: PaymentIntent {
                    url: r.get(2)?,
                    service: r.get(3)?,
                    amount: r.get(4)?,
                    micro_usd: r.get::<_, i64>(5)? as MicroUsd,
                    asset: r.get(6)?,
                    network: r.get(7)?,
                    payer: r.get(8)?,
                    pay_to: r.get(9)?,
                },
                transaction: r.get(10)?,
                status: r.get(11)?,
                detail: r.get(12)?,
                nonce: r.get(13)?,
                valid_before: r.get::<_, Option<i64>>(14)?.map(|v| v.max(0) as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Payments since `since` (unix seconds), newest first.
    pub fn payments(&self, since: i64) -> Result<Vec<PaymentRecord>, LedgerError> {
        self.select("1", since)
    }

    /// Payments whose outcome is to be found on chain, oldest last: every `unknown` row, and
    /// `reserved` rows that were signed and whose `validBefore` passed before `stale_before`
    /// (their process ended before recording an outcome).
    pub fn unresolved(&self, stale_before: u64) -> Result<Vec<PaymentRecord>, LedgerError> {
        let stale_before = i64::try_from(stale_before).unwrap_or(i64::MAX);
        self.select(
            &format!(
                "status = 'unknown' OR (status = 'reserved' AND nonce IS NOT NULL AND valid_before < {stale_before})"
            ),
            i64::MIN,
        )
    }

    /// Micro-USD still counted against the budget but not known to be paid (`reserved` and
    /// `unknown` rows) since `since`.
    pub fn outstanding(&self, since: i64) -> Result<MicroUsd, LedgerError> {
        let total: i64 = self.lock().query_row(
            "SELECT COALESCE(SUM(micro_usd), 0) FROM payments
             WHERE status IN ('reserved', 'unknown') AND created_at >= ?1",
            params![since],
            |r| r.get(0),
        )?;
        Ok(total as MicroUsd)
    }

    /// Micro-USD paid since `since` (unix seconds).
    pub fn spent(&self, since: i64) -> Result<MicroUsd, LedgerError> {
        let total: i64 = self.lock().query_row(
            "SELECT COALESCE(SUM(micro_usd), 0) FROM payments WHERE status = 'paid' AND created_at >= ?1",
            params![since],
            |r| r.get(0),
        )?;
        Ok(total as MicroUsd)
    }

    /// Micro-USD paid since `since`, grouped by `key` (`day`, `service` or `pay_to`).
    pub fn totals(
        &self,
        since: i64,
        key: TotalsBy,
    ) -> Result<Vec<(String, MicroUsd, u64)>, LedgerError> {
        let group = key.column();
        let db = self.lock();
        let mut statement = db.prepare(&format!(
            "SELECT {group} AS k, SUM(micro_usd), COUNT(*) FROM payments
             WHERE status = 'paid' AND created_at >= ?1 GROUP BY k ORDER BY k"
        ))?;
        let rows = statement.query_map(params![since], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? as MicroUsd,
                r.get::<_, i64>(2)? as u64,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Micro-USD paid since `since`, grouped by `key` as [`totals`](Self::totals) groups and
    /// each group split by calendar day (UTC): summed over days, a key's rows give its
    /// `totals` row; summed over keys, a day's rows give its `TotalsBy::Day` row. Ordered by
    /// day, then key.
    pub fn daily_totals(&self, since: i64, key: TotalsBy) -> Result<Vec<DailyTotal>, LedgerError> {
        let (day, group) = (TotalsBy::Day.column(), key.column());
        let db = self.lock();
        let mut statement = db.prepare(&format!(
            "SELECT {day} AS d, {group} AS k, SUM(micro_usd), COUNT(*) FROM payments
             WHERE status = 'paid' AND created_at >= ?1 GROUP BY d, k ORDER BY d, k"
        ))?;
        let rows = statement.query_map(params![since], |r| {
            Ok(DailyTotal {
                day: r.get(0)?,
                key: r.get(1)?,
                micro_usd: r.get::<_, i64>(2)? as MicroUsd,
                payments: r.get::<_, i64>(3)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// One day's share of a [`Ledger::daily_totals`] group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DailyTotal {
    /// The calendar day (UTC), `YYYY-MM-DD`.
    pub day: String,
    /// The group, as [`Ledger::totals`] names it with the same [`TotalsBy`].
    pub key: String,
    /// Micro-USD paid that day in the group.
    pub micro_usd: MicroUsd,
    /// How many payments.
    pub payments: u64,
}

/// How [`Ledger::totals`] groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TotalsBy {
    /// Calendar day (UTC).
    Day,
    /// Gateway service (the URL when unknown).
    Service,
    /// Payee address.
    Payee,
}

impl TotalsBy {
    /// The SQL expression a payment row is grouped by (constant, never input).
    fn column(self) -> &'static str {
        match self {
            Self::Day => "date(created_at, 'unixepoch')",
            Self::Service => "COALESCE(service, url)",
            Self::Payee => "pay_to",
        }
    }
}

/// A reserved payment: commit it, fail it, mark it unknown, or let it drop (released).
#[derive(Debug)]
pub struct Reservation {
    ledger: Ledger,
    id: i64,
    done: bool,
}

impl Reservation {
    /// The ledger row.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Records the signed authorization (its `nonce`, `0x` + 64 hex, and `validBefore`), so
    /// that the chain can be asked later whether it was used.
    pub fn signed(&self, nonce: &str, valid_before: u64) -> Result<(), LedgerError> {
        self.ledger
            .record_authorization(self.id, nonce, valid_before)
    }

    /// Paid, settled in `transaction` (empty when the server gave none). A receipt is the
    /// best evidence there is, so this applies whatever the row's state.
    pub fn commit(mut self, transaction: &str) -> Result<(), LedgerError> {
        self.done = true;
        self.ledger
            .transition(self.id, &[], "paid", Some(transaction), None)
            .map(drop)
    }

    /// Paid, settled in `transaction` for `amount` atomic units (`micro_usd`): less than was
    /// reserved when the scheme settles usage (`upto`), so the rest of the reservation goes
    /// back to the budget.
    pub fn commit_amount(
        self,
        transaction: &str,
        amount: &str,
        micro_usd: MicroUsd,
    ) -> Result<(), LedgerError> {
        self.ledger.lock().execute(
            "UPDATE payments SET amount = ?2, micro_usd = ?3 WHERE id = ?1",
            params![
                self.id,
                amount,
                i64::try_from(micro_usd).unwrap_or(i64::MAX)
            ],
        )?;
        self.commit(transaction)
    }

    /// Records that the payment was made on payment channel `channel_id` (a
    /// `batch-settlement` voucher or deposit): its charge then counts as spent out of the
    /// channel's escrow, freeing room under the deposit cap.
    pub fn in_channel(&self, channel_id: &str) -> Result<(), LedgerError> {
        self.ledger.lock().execute(
            "UPDATE payments SET channel_id = ?2 WHERE id = ?1",
            params![self.id, channel_id],
        )?;
        Ok(())
    }

    /// Signed and sent but refused: kept for the audit, no longer counted. Does nothing to a
    /// row already marked unknown (a refusal after a lost answer proves nothing).
    pub fn fail(mut self, detail: &str, transaction: Option<&str>) -> Result<(), LedgerError> {
        self.done = true;
        self.ledger
            .transition(self.id, &["reserved"], "failed", transaction, Some(detail))
            .map(drop)
    }

    /// Sent, but whether it settled is not known (the answer was lost): still counted against
    /// the budget until [`Ledger::reconcile`] or a later receipt settles it. The reservation
    /// stays usable, so a retry's receipt can still [`commit`](Self::commit) it; dropped, it
    /// stays unknown.
    pub fn mark_unknown(&mut self, detail: &str) -> Result<(), LedgerError> {
        self.ledger
            .transition(self.id, &["reserved"], "unknown", None, Some(detail))
            .map(drop)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done
            && let Err(error) =
                self.ledger
                    .transition(self.id, &["reserved"], "released", None, Some("never sent"))
        {
            tracing::error!(%error, id = self.id, "could not release a budget reservation");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(micro_usd: MicroUsd) -> PaymentIntent {
        PaymentIntent {
            url: "http://shop/x".into(),
            micro_usd,
            amount: micro_usd.to_string(),
            ..PaymentIntent::default()
        }
    }

    #[test]
    fn reservations_count_until_released_and_limits_name_themselves() {
        let ledger = Ledger::in_memory().unwrap();
        ledger
            .set_budget(&Budget {
                total: Some(25),
                per_payment: Some(20),
                ..Budget::default()
            })
            .unwrap();
        let first = ledger.reserve(&intent(10)).unwrap();
        let second = ledger.reserve(&intent(10)).unwrap();
        match ledger.reserve(&intent(10)) {
            Err(LedgerError::BudgetExceeded {
                limit_name: "total",
                limit: 25,
                spent: 20,
                asked: 10,
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ledger.reserve(&intent(21)),
            Err(LedgerError::BudgetExceeded {
                limit_name: "per_payment",
                ..
            })
        ));
        drop(second);
        first.commit("0xabc").unwrap();
        let third = ledger.reserve(&intent(10)).unwrap();
        third.fail("settlement failed", None).unwrap();
        let records = ledger.payments(0).unwrap();
        let statuses: Vec<&str> = records.iter().map(|r| r.status.as_str()).collect();
        assert_eq!(statuses, ["failed", "released", "paid"]);
        assert_eq!(ledger.totals(0, TotalsBy::Payee).unwrap()[0].1, 10);
        assert_eq!(ledger.spent(0).unwrap(), 10);
    }

    #[test]
    fn daily_totals_split_each_groups_total_by_day() {
        let ledger = Ledger::in_memory().unwrap();
        let pay = |service: &str, pay_to: &str, micro_usd: MicroUsd, at: i64| {
            let reservation = ledger
                .reserve(&PaymentIntent {
                    service: Some(service.into()),
                    pay_to: pay_to.into(),
                    ..intent(micro_usd)
                })
                .unwrap();
            let id = reservation.id();
            reservation.commit("0xabc").unwrap();
            ledger
                .lock()
                .execute(
                    "UPDATE payments SET created_at = ?2 WHERE id = ?1",
                    params![id, at],
                )
                .unwrap();
        };
        // 2024-03-01 and 2024-03-02 (UTC).
        let (first, second) = (1_709_251_200, 1_709_337_600);
        pay("embed", "0xA", 1, first + 10);
        pay("embed", "0xA", 2, first + 86_399);
        pay("parse", "0xB", 30, first + 5);
        pay("parse", "0xB", 400, second);
        // Unpaid rows count nowhere.
        drop(ledger.reserve(&intent(5_000)).unwrap());

        let daily = ledger.daily_totals(0, TotalsBy::Service).unwrap();
        let rows: Vec<(&str, &str, MicroUsd, u64)> = daily
            .iter()
            .map(|t| (t.day.as_str(), t.key.as_str(), t.micro_usd, t.payments))
            .collect();
        assert_eq!(
            rows,
            [
                ("2024-03-01", "embed", 3, 2),
                ("2024-03-01", "parse", 30, 1),
                ("2024-03-02", "parse", 400, 1),
            ]
        );
        // Summed over days: the totals by service; over keys: the totals by day.
        for (key, micro_usd, _) in ledger.totals(0, TotalsBy::Service).unwrap() {
            let sum: MicroUsd = daily
                .iter()
                .filter(|t| t.key == key)
                .map(|t| t.micro_usd)
                .sum();
            assert_eq!(sum, micro_usd, "{key}");
        }
        for (day, micro_usd, _) in ledger.totals(0, TotalsBy::Day).unwrap() {
            let sum: MicroUsd = daily
                .iter()
                .filter(|t| t.day == day)
                .map(|t| t.micro_usd)
                .sum();
            assert_eq!(sum, micro_usd, "{day}");
        }
        let by_payee = ledger.daily_totals(second, TotalsBy::Payee).unwrap();
        assert_eq!(by_payee.len(), 1);
        assert_eq!(
            (by_payee[0].key.as_str(), by_payee[0].micro_usd),
            ("0xB", 400)
        );
    }

    fn status(ledger: &Ledger, id: i64) -> String {
        let records = ledger.payments(0).unwrap();
        records.into_iter().find(|r| r.id == id).unwrap().status
    }

    #[test]
    fn an_unknown_payment_stays_counted_until_a_receipt_or_reconciliation() {
        let ledger = Ledger::in_memory().unwrap();
        ledger.set_budget(&Budget::total(25)).unwrap();
        let mut lost = ledger.reserve(&intent(10)).unwrap();
        let lost_id = lost.id();
        lost.signed(&format!("0x{}", "ab".repeat(32)), 1_700_000_000)
            .unwrap();
        lost.mark_unknown("sent, no answer").unwrap();
        drop(lost);
        // Dropping it does not release it: it may have settled.
        assert_eq!(status(&ledger, lost_id), "unknown");
        let record = &ledger.payments(0).unwrap()[0];
        assert_eq!(
            record.nonce.as_deref(),
            Some(&*format!("0x{}", "ab".repeat(32)))
        );
        assert_eq!(record.valid_before, Some(1_700_000_000));
        assert_eq!(ledger.outstanding(0).unwrap(), 10);
        assert_eq!(ledger.spent(0).unwrap(), 0);
        let _second = ledger.reserve(&intent(10)).unwrap();
        assert!(matches!(
            ledger.reserve(&intent(10)),
            Err(LedgerError::BudgetExceeded {
                limit_name: "total",
                spent: 20,
                ..
            })
        ));

        // A refusal after a lost answer proves nothing; a receipt does.
        let mut retried = ledger.reserve(&intent(5)).unwrap();
        let retried_id = retried.id();
        retried.mark_unknown("sent, no answer").unwrap();
        retried.fail("nonce already used", None).unwrap();
        assert_eq!(status(&ledger, retried_id), "unknown");
        assert!(matches!(
            ledger.reserve(&intent(5)),
            Err(LedgerError::BudgetExceeded { spent: 25, .. })
        ));
        drop(_second);
        let mut again = ledger.reserve(&intent(5)).unwrap();
        again.mark_unknown("sent, no answer").unwrap();
        let again_id = again.id();
        again.commit("0xfeed").unwrap();
        assert_eq!(status(&ledger, again_id), "paid");
        assert_eq!(ledger.spent(0).unwrap(), 5);

        // Reconciliation moves only rows still unresolved.
        assert!(
            ledger
                .transition(
                    lost_id,
                    &["unknown", "reserved"],
                    "paid",
                    None,
                    Some("used")
                )
                .unwrap()
        );
        assert!(
            !ledger
                .transition(again_id, &["unknown", "reserved"], "released", None, None)
                .unwrap()
        );
        assert_eq!(status(&ledger, again_id), "paid");
        assert_eq!(ledger.spent(0).unwrap(), 15);
    }

    #[test]
    fn unresolved_rows_are_the_unknown_and_the_signed_reservations_long_expired() {
        let ledger = Ledger::in_memory().unwrap();
        let nonce = format!("0x{}", "01".repeat(32));
        let mut unknown = ledger.reserve(&intent(1)).unwrap();
        unknown.mark_unknown("lost").unwrap();
        // A reservation whose process ended after signing, expired at 100.
        let abandoned = ledger.reserve(&intent(1)).unwrap();
        abandoned.signed(&nonce, 100).unwrap();
        // One in flight: signed, valid until 10_000.
        let in_flight = ledger.reserve(&intent(1)).unwrap();
        in_flight.signed(&nonce, 10_000).unwrap();
        // One never signed.
        let unsigned = ledger.reserve(&intent(1)).unwrap();
        let ids: Vec<i64> = ledger
            .unresolved(5_000)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, [abandoned.id(), unknown.id()]);
        // Its process never finished it (dropping it here would release it).
        std::mem::forget(abandoned);
        drop((unknown, in_flight, unsigned));
    }

    #[test]
    fn a_ledger_written_before_authorizations_were_kept_gains_the_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE payments (
                 id INTEGER PRIMARY KEY, created_at INTEGER NOT NULL, url TEXT NOT NULL,
                 service TEXT, amount TEXT NOT NULL, micro_usd INTEGER NOT NULL,
                 asset TEXT NOT NULL, network TEXT NOT NULL, payer TEXT NOT NULL,
                 pay_to TEXT NOT NULL, tx TEXT, status TEXT NOT NULL, detail TEXT);
             INSERT INTO payments (created_at, url, amount, micro_usd, asset, network, payer, pay_to, tx, status)
             VALUES (1, 'http://shop/x', '7', 7, 'a', 'eip155:8453', 'p', 'q', '0x1', 'paid');",
        )
        .unwrap();
        drop(old);
        let ledger = Ledger::open(&path).unwrap();
        let records = ledger.payments(0).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(
            (records[0].nonce.clone(), records[0].valid_before),
            (None, None)
        );
        let reservation = ledger.reserve(&intent(3)).unwrap();
        reservation.signed("0x02", 9).unwrap();
        assert_eq!(ledger.payments(0).unwrap()[0].valid_before, Some(9));
        // Opening it again does not try to add them twice.
        drop(reservation);
        drop(ledger);
        Ledger::open(&path).unwrap();
    }
}
