//! The payment ledger (SQLite) and the budgets it enforces.
//!
//! A payment is *reserved* before anything is signed: in one write transaction the ledger sums
//! what is reserved or spent in each budget window and refuses a reservation that would cross a
//! limit. The reservation is then committed (paid, with its transaction hash), marked failed, or
//! released; a [`Reservation`] dropped unfinished is released. Concurrent payments can
//! therefore never overspend, and every payment is recorded exactly once.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// Amounts are kept in micro-USD (6 decimals), whatever the asset's decimals.
pub type MicroUsd = u64;

/// Spending limits, in micro-USD. `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Budget {
    /// Most per payment.
    pub per_payment: Option<MicroUsd>,
    /// Most per rolling hour.
    pub per_hour: Option<MicroUsd>,
    /// Most per rolling day.
    pub per_day: Option<MicroUsd>,
    /// Most in total.
    pub total: Option<MicroUsd>,
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
}

/// What a payment is for, recorded when it is reserved.
#[derive(Clone, Debug, Default)]
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

/// One recorded payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PaymentRecord {
    /// Row id.
    pub id: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Resource URL.
    pub url: String,
    /// Gateway service.
    pub service: Option<String>,
    /// Atomic units.
    pub amount: String,
    /// Micro-USD.
    pub micro_usd: MicroUsd,
    /// Token.
    pub asset: String,
    /// Network.
    pub network: String,
    /// Payer.
    pub payer: String,
    /// Payee.
    pub pay_to: String,
    /// Settlement transaction, when paid.
    pub transaction: Option<String>,
    /// `reserved`, `paid`, `failed`, `released`.
    pub status: String,
    /// Why it failed, when it did.
    pub detail: Option<String>,
}

/// The ledger: one SQLite file, shared by every clone.
#[derive(Clone, Debug)]
pub struct Ledger {
    db: Arc<Mutex<Connection>>,
}

fn now() -> i64 {
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
        Ok(Self {
            db: Arc::new(Mutex::new(db)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
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
                 WHERE status IN ('reserved', 'paid') AND created_at >= ?1",
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

    fn finish(
        &self,
        id: i64,
        status: &str,
        tx: Option<&str>,
        detail: Option<&str>,
    ) -> Result<(), LedgerError> {
        self.lock().execute(
            "UPDATE payments SET status = ?2, tx = COALESCE(?3, tx), detail = ?4 WHERE id = ?1",
            params![id, status, tx, detail],
        )?;
        Ok(())
    }

    /// Payments since `since` (unix seconds), newest first.
    pub fn payments(&self, since: i64) -> Result<Vec<PaymentRecord>, LedgerError> {
        let db = self.lock();
        let mut statement = db.prepare(
            "SELECT id, created_at, url, service, amount, micro_usd, asset, network, payer, pay_to, tx, status, detail
             FROM payments WHERE created_at >= ?1 ORDER BY id DESC",
        )?;
        let rows = statement.query_map(params![since], |r| {
            Ok(PaymentRecord {
                id: r.get(0)?,
                created_at: r.get(1)?,
                url: r.get(2)?,
                service: r.get(3)?,
                amount: r.get(4)?,
                micro_usd: r.get::<_, i64>(5)? as MicroUsd,
                asset: r.get(6)?,
                network: r.get(7)?,
                payer: r.get(8)?,
                pay_to: r.get(9)?,
                transaction: r.get(10)?,
                status: r.get(11)?,
                detail: r.get(12)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
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
        let group = match key {
            TotalsBy::Day => "date(created_at, 'unixepoch')",
            TotalsBy::Service => "COALESCE(service, url)",
            TotalsBy::Payee => "pay_to",
        };
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

/// A reserved payment: commit it, fail it, or let it drop (released).
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

    /// Paid, settled in `transaction`.
    pub fn commit(mut self, transaction: &str) -> Result<(), LedgerError> {
        self.done = true;
        self.ledger.finish(self.id, "paid", Some(transaction), None)
    }

    /// Signed and sent but not paid: kept for the audit, no longer counted.
    pub fn fail(mut self, detail: &str, transaction: Option<&str>) -> Result<(), LedgerError> {
        self.done = true;
        self.ledger
            .finish(self.id, "failed", transaction, Some(detail))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done
            && let Err(error) = self
                .ledger
                .finish(self.id, "released", None, Some("never sent"))
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
}
