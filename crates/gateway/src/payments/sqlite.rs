//! The payment record in SQLite: one row per payment, in a file beside the gateway's others
//! (`payments_db`, by default `gateway-payments.db` beside `jobs_db`).
//!
//! Writes go to one thread that owns a connection and commits whatever is queued in one
//! transaction, synced to disk (`synchronous = FULL`), before each writer hears back: one
//! `fsync` serves every payment recorded meanwhile (group commit, as the channel store does).
//! Reads use their own connection (WAL: readers never wait for the writer). Amounts are kept
//! as decimal text and summed exactly by functions of our own (`u256_sum`, `u256_add`).
//!
//! The same transaction that records an earned payment adds it to running totals: per
//! 15-minute bucket, asset and state (`payment_buckets`), and per service and per payer in
//! all (`payment_names`), so that the overview reads a few thousand rows, not every payment.
//! A payment whose pending or failed outcome is replaced by a success is added then; one
//! already earned is never added twice.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use x402_paywall::{JournalError, PaymentEntry, PaymentJournal, PaymentState};
use x402_proto::{BoxFuture, Network, Scheme, SettleResponse, TokenAmount, U256};

use super::{
    BUCKET_MS, DayRevenue, Earned, FailureCount, Page, PageQuery, PaymentRecord, PaymentStore,
    PaymentStoreError, Ranked, db_error, normalized, prefix_end,
};
use crate::group_commit::{GroupCommit, GroupWriter};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS payments (
    id          INTEGER PRIMARY KEY,
    payment     TEXT    NOT NULL UNIQUE,
    at_ms       INTEGER NOT NULL,
    service     TEXT    NOT NULL,
    resource    TEXT    NOT NULL,
    payer       TEXT    NOT NULL,
    amount      TEXT    NOT NULL,
    asset       TEXT    NOT NULL,
    network     TEXT    NOT NULL,
    decimals    INTEGER NOT NULL,
    scheme      TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    tx          TEXT,
    reason      TEXT,
    fingerprint TEXT    NOT NULL,
    receipt     TEXT    NOT NULL,
    job         TEXT
);
CREATE INDEX IF NOT EXISTS payments_time ON payments (at_ms, id);
CREATE INDEX IF NOT EXISTS payments_payer ON payments (payer, at_ms);
CREATE INDEX IF NOT EXISTS payments_service ON payments (service, at_ms);
CREATE INDEX IF NOT EXISTS payments_tx ON payments (tx) WHERE tx IS NOT NULL;
CREATE INDEX IF NOT EXISTS payments_pending ON payments (at_ms) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS payments_failed ON payments (reason) WHERE state = 'failed';
CREATE TABLE IF NOT EXISTS payment_buckets (
    bucket_ms INTEGER NOT NULL,
    asset     TEXT    NOT NULL,
    network   TEXT    NOT NULL,
    decimals  INTEGER NOT NULL,
    state     TEXT    NOT NULL,
    amount    TEXT    NOT NULL,
    calls     INTEGER NOT NULL,
    PRIMARY KEY (bucket_ms, asset, network, decimals, state)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS payment_names (
    kind     TEXT    NOT NULL,
    name     TEXT    NOT NULL,
    asset    TEXT    NOT NULL,
    network  TEXT    NOT NULL,
    decimals INTEGER NOT NULL,
    amount   TEXT    NOT NULL,
    rank     REAL    NOT NULL,
    calls    INTEGER NOT NULL,
    PRIMARY KEY (kind, name, asset, network, decimals)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS payment_names_rank ON payment_names (kind, rank DESC);
";

/// The schema's version (`PRAGMA user_version`); a file written by a later version is refused.
const SCHEMA_VERSION: i64 = 1;

/// The most entries one commit takes.
const MAX_GROUP: usize = 512;

const COLUMNS: &str = "id, payment, at_ms, service, resource, payer, amount, asset, network, \
     decimals, scheme, state, tx, reason, fingerprint, receipt, job";

/// The states whose amount the payee earned.
const EARNED: &str = "state IN ('settled', 'charged')";

/// Payments in one SQLite file, written by one thread in groups, read on another connection.
#[derive(Debug, Clone)]
pub struct SqlitePaymentStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    reader: Mutex<Connection>,
    writer: GroupWriter<JournalWrites>,
}

impl SqlitePaymentStore {
    /// Opens (creating if needed) the payment table at `path`.
    pub fn open(path: &Path) -> Result<Self, PaymentStoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| db_error(format!("creating {}: {e}", parent.display())))?;
        }
        let open = || {
            let connection = Connection::open(path)
                .map_err(|e| db_error(format!("opening {}: {e}", path.display())))?;
            connection
                .execute_batch(
                    "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;",
                )
                .map_err(|e| db_error(format!("{}: {e}", path.display())))?;
            Ok::<_, PaymentStoreError>(connection)
        };
        let writer = open()?;
        let version: i64 = writer
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(db_error)?;
        if version > SCHEMA_VERSION {
            return Err(db_error(format!(
                "{} was written by a later version (schema {version}, this one knows {SCHEMA_VERSION})",
                path.display()
            )));
        }
        writer
            .execute_batch(&format!(
                "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(db_error)?;
        writer
            .create_scalar_function(
                "u256_add",
                2,
                FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
                |context| {
                    let a: U256 = parse_amount(context.get_raw(0).as_str().ok())?;
                    let b: U256 = parse_amount(context.get_raw(1).as_str().ok())?;
                    a.checked_add(b).map(|sum| sum.to_string()).ok_or_else(|| {
                        rusqlite::Error::UserFunctionError(
                            "a sum of amounts overflows 256 bits".into(),
                        )
                    })
                },
            )
            .map_err(db_error)?;
        let reader = open()?;
        reader
            .create_aggregate_function(
                "u256_sum",
                1,
                FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
                U256Sum,
            )
            .map_err(db_error)?;
        Ok(Self {
            inner: Arc::new(Inner {
                reader: Mutex::new(reader),
                writer: GroupWriter::start(writer, "payment-journal").map_err(db_error)?,
            }),
        })
    }

    /// Runs `work` on the reading connection, off the async workers.
    async fn read<T, F>(&self, work: F) -> Result<T, PaymentStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let connection = inner
                .reader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            work(&connection).map_err(db_error)
        })
        .await
        .map_err(db_error)?
    }

    /// Records many entries in one transaction (for seeding a benchmark or an import).
    pub async fn record_all(&self, entries: Vec<PaymentEntry>) -> Result<(), PaymentStoreError> {
        self.inner.writer.commit(entries).await
    }
}

/// An amount written as decimal text.
fn parse_amount(text: Option<&str>) -> rusqlite::Result<U256> {
    text.and_then(|t| t.parse().ok()).ok_or_else(|| {
        rusqlite::Error::UserFunctionError(format!("corrupt amount {text:?}").into())
    })
}

/// Sums decimal texts as 256-bit integers; an overflow or a malformed amount is an error (a
/// figure is exact or not given).
struct U256Sum;

impl Aggregate<U256, String> for U256Sum {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<U256> {
        Ok(U256::ZERO)
    }

    fn step(&self, context: &mut Context<'_>, sum: &mut U256) -> rusqlite::Result<()> {
        let text = context.get_raw(0).as_str().map_err(|e| {
            rusqlite::Error::UserFunctionError(format!("an amount is not text: {e}").into())
        })?;
        let amount: U256 = text.parse().map_err(|_| {
            rusqlite::Error::UserFunctionError(format!("corrupt amount {text:?}").into())
        })?;
        *sum = sum.checked_add(amount).ok_or_else(|| {
            rusqlite::Error::UserFunctionError("a sum of amounts overflows 256 bits".into())
        })?;
        Ok(())
    }

    fn finalize(&self, _: &mut Context<'_>, sum: Option<U256>) -> rusqlite::Result<String> {
        Ok(sum.unwrap_or(U256::ZERO).to_string())
    }
}

/// The journal's writes (each a few entries), committed in groups by its writer thread.
struct JournalWrites;

impl GroupCommit for JournalWrites {
    type Write = Vec<PaymentEntry>;
    type Error = PaymentStoreError;
    const NAME: &'static str = "the payment journal";
    const MAX_ROWS: usize = MAX_GROUP;

    fn rows(entries: &Vec<PaymentEntry>) -> usize {
        entries.len()
    }

    fn commit(
        connection: &mut Connection,
        group: &[Vec<PaymentEntry>],
    ) -> Result<(), PaymentStoreError> {
        commit_group(connection, group)
    }

    fn stopped() -> PaymentStoreError {
        PaymentStoreError("the payment journal's writer stopped".into())
    }
}

/// The upsert: a new payment is inserted; an earlier outcome is replaced only when it was not
/// earned (pending or failed).
const UPSERT: &str = "INSERT INTO payments (payment, at_ms, service, resource, payer, amount, \
     asset, network, decimals, scheme, state, tx, reason, fingerprint, receipt, job)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
     ON CONFLICT (payment) DO UPDATE SET at_ms = excluded.at_ms, service = excluded.service,
         resource = excluded.resource, payer = excluded.payer, amount = excluded.amount,
         asset = excluded.asset, network = excluded.network, decimals = excluded.decimals,
         scheme = excluded.scheme, state = excluded.state, tx = excluded.tx,
         reason = excluded.reason, fingerprint = excluded.fingerprint,
         receipt = excluded.receipt, job = excluded.job
     WHERE payments.state IN ('pending', 'failed')
     RETURNING 1";

/// Adds earned payments to their bucket's total.
const ADD_TO_BUCKET: &str = "INSERT INTO payment_buckets (bucket_ms, asset, network, decimals, \
     state, amount, calls) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
     ON CONFLICT DO UPDATE SET amount = u256_add(amount, excluded.amount),
         calls = calls + excluded.calls";

/// Adds earned payments to their service's or payer's total.
const ADD_TO_NAME: &str = "INSERT INTO payment_names (kind, name, asset, network, decimals, \
     amount, rank, calls) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
     ON CONFLICT DO UPDATE SET amount = u256_add(amount, excluded.amount),
         rank = rank + excluded.rank, calls = calls + excluded.calls";

/// A running total's key: its bucket (or kind and name), asset, network and decimals.
type Totals<K> = std::collections::HashMap<K, (U256, i64)>;

/// Adds `amount` to `key`'s total in `totals`.
fn add<K: std::hash::Hash + Eq>(
    totals: &mut Totals<K>,
    key: K,
    amount: U256,
) -> Result<(), PaymentStoreError> {
    let total = totals.entry(key).or_insert((U256::ZERO, 0));
    total.0 = total
        .0
        .checked_add(amount)
        .ok_or_else(|| db_error("a sum of amounts overflows 256 bits"))?;
    total.1 += 1;
    Ok(())
}

fn commit_group(
    connection: &mut Connection,
    group: &[Vec<PaymentEntry>],
) -> Result<(), PaymentStoreError> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_error)?;
    {
        let mut upsert = transaction.prepare_cached(UPSERT).map_err(db_error)?;
        // What the group earned, added to the running totals once per total.
        let mut buckets: Totals<(i64, &str, &str, u8, &str)> = Totals::new();
        let mut names: Totals<(&str, String, &str, &str, u8)> = Totals::new();
        for entry in group.iter().flatten() {
            let receipt = serde_json::to_string(&entry.receipt).map_err(db_error)?;
            let payer = super::stored_case(&entry.payer);
            // A row comes back when the payment is new or replaces a pending or failed
            // outcome; none when it was earned already (and is left as it was).
            let written = upsert
                .query_row(
                    params![
                        entry.payment,
                        entry.at_ms,
                        entry.service,
                        entry.resource,
                        payer,
                        entry.amount.0.to_string(),
                        entry.asset,
                        entry.network.as_str(),
                        entry.decimals,
                        entry.scheme.as_str(),
                        entry.state.as_str(),
                        entry
                            .transaction
                            .as_deref()
                            .map(crate::payments::stored_case),
                        entry.reason,
                        entry.fingerprint,
                        receipt,
                        entry.job,
                    ],
                    |_| Ok(()),
                )
                .optional()
                .map_err(db_error)?
                .is_some();
            if !written || !entry.state.earned() {
                continue;
            }
            let (asset, network) = (entry.asset.as_str(), entry.network.as_str());
            let bucket = entry.at_ms - entry.at_ms.rem_euclid(BUCKET_MS);
            let key = (bucket, asset, network, entry.decimals, entry.state.as_str());
            add(&mut buckets, key, entry.amount.0)?;
            let service = (
                "service",
                entry.service.clone(),
                asset,
                network,
                entry.decimals,
            );
            add(&mut names, service, entry.amount.0)?;
            add(
                &mut names,
                ("payer", payer, asset, network, entry.decimals),
                entry.amount.0,
            )?;
        }
        let mut bucket = transaction
            .prepare_cached(ADD_TO_BUCKET)
            .map_err(db_error)?;
        for ((at, asset, network, decimals, state), (amount, calls)) in buckets {
            bucket
                .execute(params![
                    at,
                    asset,
                    network,
                    decimals,
                    state,
                    amount.to_string(),
                    calls
                ])
                .map_err(db_error)?;
        }
        let mut name = transaction.prepare_cached(ADD_TO_NAME).map_err(db_error)?;
        for ((kind, named, asset, network, decimals), (amount, calls)) in names {
            // Ranks order the names; the amounts shown are the exact sums.
            let amount = amount.to_string();
            let rank: f64 = amount.parse().unwrap_or(f64::MAX);
            name.execute(params![
                kind, named, asset, network, decimals, amount, rank, calls
            ])
            .map_err(db_error)?;
        }
    }
    transaction.commit().map_err(db_error)
}

/// A row selected as [`COLUMNS`], or which column is corrupt.
fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<PaymentRecord> {
    let id: i64 = row.get("id")?;
    let corrupt = |column: &str| {
        rusqlite::Error::UserFunctionError(format!("corrupt {column} of payment row {id}").into())
    };
    let amount: String = row.get("amount")?;
    let state: String = row.get("state")?;
    let receipt: String = row.get("receipt")?;
    let entry = PaymentEntry {
        at_ms: row.get("at_ms")?,
        payment: row.get("payment")?,
        service: row.get("service")?,
        resource: row.get("resource")?,
        payer: row.get("payer")?,
        amount: TokenAmount(amount.parse().map_err(|_| corrupt("amount"))?),
        asset: row.get("asset")?,
        network: Network::new(row.get::<_, String>("network")?),
        decimals: row.get("decimals")?,
        scheme: Scheme::new(row.get::<_, String>("scheme")?),
        state: PaymentState::parse(&state).ok_or_else(|| corrupt("state"))?,
        transaction: row.get("tx")?,
        reason: row.get("reason")?,
        fingerprint: row.get("fingerprint")?,
        receipt: serde_json::from_str::<SettleResponse>(&receipt)
            .map_err(|_| corrupt("receipt"))?,
        job: row.get("job")?,
    };
    Ok(PaymentRecord { id, entry })
}

fn amount(text: &str) -> rusqlite::Result<U256> {
    text.parse()
        .map_err(|_| rusqlite::Error::UserFunctionError(format!("corrupt sum {text:?}").into()))
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

/// The WHERE clause and parameters of a page query.
fn page_filter(query: &PageQuery) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    if let Some(state) = query.state {
        // A literal (one of four names), so that the planner sees it.
        clauses.push(format!("state = '{}'", state.as_str()));
    }
    if let Some(search) = query.search.as_deref().filter(|s| !s.trim().is_empty()) {
        let (text, lower) = normalized(search);
        let mut any = vec![
            "(payer >= ? AND payer < ?)",
            "(tx >= ? AND tx < ?)",
            "(service >= ? AND service < ?)",
            "(payment >= ? AND payment < ?)",
        ];
        for prefix in [&lower, &lower, &text, &text] {
            values.push(Value::Text(prefix.clone()));
            values.push(Value::Text(prefix_end(prefix)));
        }
        if let Ok(id) = text.parse::<i64>() {
            any.push("id = ?");
            values.push(Value::Integer(id));
        }
        clauses.push(format!("({})", any.join(" OR ")));
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    (filter, values)
}

impl PaymentJournal for SqlitePaymentStore {
    fn record<'a>(&'a self, entry: &'a PaymentEntry) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move { Ok(self.inner.writer.commit(vec![entry.clone()]).await?) })
    }
}

impl PaymentStore for SqlitePaymentStore {
    fn record_many(&self, entries: Vec<PaymentEntry>) -> BoxFuture<'_, Result<(), JournalError>> {
        Box::pin(async move { Ok(self.inner.writer.commit(entries).await?) })
    }

    fn earned_since(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<Earned>, PaymentStoreError>> {
        // From the running totals when `since_ms` is on a bucket's edge, else from every
        // payment since then: exact either way.
        let sql = if since_ms.rem_euclid(BUCKET_MS) == 0 {
            "SELECT asset, network, decimals, state, u256_sum(amount), SUM(calls)
             FROM payment_buckets WHERE bucket_ms >= ?1
             GROUP BY asset, network, decimals, state ORDER BY asset, network"
                .to_owned()
        } else {
            format!(
                "SELECT asset, network, decimals, state, u256_sum(amount), COUNT(*)
                 FROM payments WHERE at_ms >= ?1 AND {EARNED}
                 GROUP BY asset, network, decimals, state ORDER BY asset, network"
            )
        };
        Box::pin(self.read(move |connection| {
            let mut statement = connection.prepare_cached(&sql)?;
            let mut earned: Vec<Earned> = Vec::new();
            let mut rows = statement.query(params![since_ms])?;
            while let Some(row) = rows.next()? {
                let (asset, network, decimals): (String, String, u8) =
                    (row.get(0)?, row.get(1)?, row.get(2)?);
                let state: String = row.get(3)?;
                let sum = amount(&row.get::<_, String>(4)?)?;
                let calls = count(row.get(5)?);
                let at = match earned.iter().position(|e| {
                    e.asset == asset && e.network == network && e.decimals == decimals
                }) {
                    Some(at) => at,
                    None => {
                        earned.push(Earned {
                            asset,
                            network,
                            decimals,
                            ..Earned::default()
                        });
                        earned.len() - 1
                    }
                };
                let into = &mut earned[at];
                match state.as_str() {
                    "settled" => into.settled = sum,
                    _ => into.charged = sum,
                }
                into.calls += calls;
            }
            Ok(earned)
        }))
    }

    fn calls_per_minute(
        &self,
        since_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<(i64, u64)>, PaymentStoreError>> {
        Box::pin(self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT at_ms / 60000 AS minute, COUNT(*) FROM payments
                 WHERE at_ms >= ?1 AND {EARNED} GROUP BY minute ORDER BY minute"
            ))?;
            statement
                .query_map(params![since_ms], |row| {
                    Ok((row.get::<_, i64>(0)?, count(row.get(1)?)))
                })?
                .collect()
        }))
    }

    fn daily(
        &self,
        since_ms: i64,
        offset_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<DayRevenue>, PaymentStoreError>> {
        let from_totals =
            since_ms.rem_euclid(BUCKET_MS) == 0 && offset_ms.rem_euclid(BUCKET_MS) == 0;
        let sql = if from_totals {
            "SELECT (bucket_ms + ?2) / 86400000 AS day, asset, network, decimals,
                    u256_sum(amount), SUM(calls)
             FROM payment_buckets WHERE bucket_ms >= ?1
             GROUP BY day, asset, network, decimals ORDER BY day, asset, network"
                .to_owned()
        } else {
            format!(
                "SELECT (at_ms + ?2) / 86400000 AS day, asset, network, decimals,
                        u256_sum(amount), COUNT(*)
                 FROM payments WHERE at_ms >= ?1 AND {EARNED}
                 GROUP BY day, asset, network, decimals ORDER BY day, asset, network"
            )
        };
        Box::pin(self.read(move |connection| {
            let mut statement = connection.prepare_cached(&sql)?;
            statement
                .query_map(params![since_ms, offset_ms], |row| {
                    Ok(DayRevenue {
                        day_ms: row.get::<_, i64>(0)? * 86_400_000 - offset_ms,
                        asset: row.get(1)?,
                        network: row.get(2)?,
                        decimals: row.get(3)?,
                        amount: amount(&row.get::<_, String>(4)?)?,
                        calls: count(row.get(5)?),
                    })
                })?
                .collect()
        }))
    }

    fn top(
        &self,
        by_payer: bool,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Ranked>, PaymentStoreError>> {
        let kind = if by_payer { "payer" } else { "service" };
        Box::pin(self.read(move |connection| {
            // The rank (a float) picks the candidates; their exact sums order them.
            let mut statement = connection.prepare_cached(
                "SELECT name, asset, network, decimals, amount, calls FROM payment_names
                 WHERE kind = ?1 ORDER BY rank DESC LIMIT ?2",
            )?;
            let mut ranked: Vec<Ranked> = statement
                .query_map(params![kind, i64::from(limit) * 4 + 8], |row| {
                    Ok(Ranked {
                        name: row.get(0)?,
                        asset: row.get(1)?,
                        network: row.get(2)?,
                        decimals: row.get(3)?,
                        amount: amount(&row.get::<_, String>(4)?)?,
                        calls: count(row.get(5)?),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            ranked.sort_by(|a, b| {
                b.amount
                    .cmp(&a.amount)
                    .then(b.calls.cmp(&a.calls))
                    .then(a.name.cmp(&b.name))
            });
            ranked.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            Ok(ranked)
        }))
    }

    fn page<'a>(&'a self, query: &'a PageQuery) -> BoxFuture<'a, Result<Page, PaymentStoreError>> {
        let query = query.clone();
        Box::pin(self.read(move |connection| {
            let (filter, values) = page_filter(&query);
            let total: i64 = connection
                .prepare_cached(&format!("SELECT COUNT(*) FROM payments {filter}"))?
                .query_row(rusqlite::params_from_iter(values.iter()), |row| row.get(0))?;
            let mut values = values;
            values.push(rusqlite::types::Value::Integer(i64::from(query.limit)));
            values.push(rusqlite::types::Value::Integer(
                i64::try_from(query.offset).unwrap_or(i64::MAX),
            ));
            let records = connection
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM payments {filter}
                     ORDER BY at_ms DESC, id DESC LIMIT ? OFFSET ?"
                ))?
                .query_map(rusqlite::params_from_iter(values.iter()), record)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Page {
                total: count(total),
                records,
            })
        }))
    }

    fn get(&self, id: i64) -> BoxFuture<'_, Result<Option<PaymentRecord>, PaymentStoreError>> {
        Box::pin(self.read(move |connection| {
            connection
                .prepare_cached(&format!("SELECT {COLUMNS} FROM payments WHERE id = ?1"))?
                .query_row(params![id], record)
                .optional()
        }))
    }

    fn failures(&self) -> BoxFuture<'_, Result<Vec<FailureCount>, PaymentStoreError>> {
        Box::pin(self.read(|connection| {
            connection
                .prepare_cached(
                    "SELECT COALESCE(reason, 'unknown'), COUNT(*), MAX(at_ms) FROM payments
                     WHERE state = 'failed' GROUP BY 1 ORDER BY 2 DESC, 1",
                )?
                .query_map([], |row| {
                    Ok(FailureCount {
                        reason: row.get(0)?,
                        count: count(row.get(1)?),
                        last_ms: row.get(2)?,
                    })
                })?
                .collect()
        }))
    }
}
