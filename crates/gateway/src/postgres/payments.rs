//! The payment record in Postgres, shared by every replica: each replica journals the payments
//! it serves, and every replica's dashboard reads them all. Amounts are `NUMERIC(78, 0)` (any
//! 256-bit amount), summed exactly by the database. Writes from one replica are
//! group-committed: a task takes whatever is queued and commits it in one transaction.

use tokio_postgres::types::ToSql;
use x402_paywall::{JournalError, PaymentEntry, PaymentJournal, PaymentState};
use x402_proto::{BoxFuture, Network, Scheme, SettleResponse, TokenAmount, U256};

use super::Database;
use crate::payments::{
    DayRevenue, Earned, FailureCount, Page, PageQuery, PaymentRecord, PaymentStore,
    PaymentStoreError, Ranked, normalized, prefix_end,
};

/// The most entries one commit takes.
const MAX_GROUP: usize = 256;

const COLUMNS: &str = "id, payment, at_ms, service, resource, payer, amount::TEXT AS amount, \
     asset, network, decimals, scheme, state, tx, reason, fingerprint, receipt, job";

/// The states whose amount the payee earned.
const EARNED: &str = "state IN ('settled', 'charged')";

const UPSERT: &str = "INSERT INTO gateway_payments (payment, at_ms, service, resource, payer,
        amount, asset, network, decimals, scheme, state, tx, reason, fingerprint, receipt, job)
     VALUES ($1, $2, $3, $4, $5, CAST($6::TEXT AS NUMERIC), $7, $8, $9, $10, $11, $12, $13, $14,
        $15, $16)
     ON CONFLICT (payment) DO UPDATE SET at_ms = excluded.at_ms, service = excluded.service,
         resource = excluded.resource, payer = excluded.payer, amount = excluded.amount,
         asset = excluded.asset, network = excluded.network, decimals = excluded.decimals,
         scheme = excluded.scheme, state = excluded.state, tx = excluded.tx,
         reason = excluded.reason, fingerprint = excluded.fingerprint,
         receipt = excluded.receipt, job = excluded.job
     WHERE gateway_payments.state IN ('pending', 'failed')";

fn store_error(error: impl std::fmt::Display) -> PaymentStoreError {
    PaymentStoreError(format!("database: {error}"))
}

/// A group of entries and who waits for their commit.
struct Job {
    entries: Vec<PaymentEntry>,
    committed: tokio::sync::oneshot::Sender<Result<(), PaymentStoreError>>,
}

/// Payments in the gateway's Postgres database.
#[derive(Clone, Debug)]
pub struct PostgresPaymentStore {
    database: Database,
    queue: tokio::sync::mpsc::UnboundedSender<Job>,
}

impl PostgresPaymentStore {
    /// The payments of `database`; starts this process's writer (it stops with the store).
    pub fn new(database: Database) -> Self {
        let (queue, jobs) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(write_groups(database.clone(), jobs));
        Self { database, queue }
    }

    /// Records many entries in one transaction (for seeding a benchmark or an import).
    pub async fn record_all(&self, entries: Vec<PaymentEntry>) -> Result<(), PaymentStoreError> {
        let (committed, done) = tokio::sync::oneshot::channel();
        let gone = || PaymentStoreError("the payment journal's writer stopped".into());
        self.queue
            .send(Job { entries, committed })
            .map_err(|_| gone())?;
        done.await.map_err(|_| gone())?
    }
}

async fn write_groups(database: Database, mut jobs: tokio::sync::mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = jobs.recv().await {
        let mut size = first.entries.len();
        let mut group = vec![first];
        while size < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => {
                    size += job.entries.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let outcome = commit_group(&database, &group).await;
        for job in group {
            let _ = job.committed.send(outcome.clone());
        }
    }
}

async fn commit_group(database: &Database, group: &[Job]) -> Result<(), PaymentStoreError> {
    let mut client = database.client().await.map_err(store_error)?;
    let transaction = client.transaction().await.map_err(store_error)?;
    let statement = transaction.prepare(UPSERT).await.map_err(store_error)?;
    for entry in group.iter().flat_map(|job| &job.entries) {
        let receipt = serde_json::to_string(&entry.receipt).map_err(store_error)?;
        let payer = crate::payments::stored_case(&entry.payer);
        let amount = entry.amount.0.to_string();
        let decimals = i16::from(entry.decimals);
        let tx = entry
            .transaction
            .as_deref()
            .map(crate::payments::stored_case);
        let params: [&(dyn ToSql + Sync); 16] = [
            &entry.payment,
            &entry.at_ms,
            &entry.service,
            &entry.resource,
            &payer,
            &amount,
            &entry.asset,
            &entry.network.as_str(),
            &decimals,
            &entry.scheme.as_str(),
            &entry.state.as_str(),
            &tx,
            &entry.reason,
            &entry.fingerprint,
            &receipt,
            &entry.job,
        ];
        transaction
            .execute(&statement, &params)
            .await
            .map_err(store_error)?;
    }
    transaction.commit().await.map_err(store_error)
}

fn amount(text: &str) -> Result<U256, PaymentStoreError> {
    text.parse()
        .map_err(|_| PaymentStoreError(format!("corrupt amount {text:?}")))
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

fn decimals(row: &tokio_postgres::Row, column: &str) -> Result<u8, PaymentStoreError> {
    let value: i16 = row.try_get(column).map_err(store_error)?;
    u8::try_from(value).map_err(|_| PaymentStoreError(format!("corrupt decimals {value}")))
}

fn record(row: &tokio_postgres::Row) -> Result<PaymentRecord, PaymentStoreError> {
    let get = |column: &str| -> Result<String, PaymentStoreError> {
        row.try_get(column).map_err(store_error)
    };
    let id: i64 = row.try_get("id").map_err(store_error)?;
    let corrupt = |column: &str| PaymentStoreError(format!("corrupt {column} of payment row {id}"));
    let entry = PaymentEntry {
        at_ms: row.try_get("at_ms").map_err(store_error)?,
        payment: get("payment")?,
        service: get("service")?,
        resource: get("resource")?,
        payer: get("payer")?,
        amount: TokenAmount(amount(&get("amount")?)?),
        asset: get("asset")?,
        network: Network::new(get("network")?),
        decimals: decimals(row, "decimals")?,
        scheme: Scheme::new(get("scheme")?),
        state: PaymentState::parse(&get("state")?).ok_or_else(|| corrupt("state"))?,
        transaction: row.try_get("tx").map_err(store_error)?,
        reason: row.try_get("reason").map_err(store_error)?,
        fingerprint: get("fingerprint")?,
        receipt: serde_json::from_str::<SettleResponse>(&get("receipt")?)
            .map_err(|_| corrupt("receipt"))?,
        job: row.try_get("job").map_err(store_error)?,
    };
    Ok(PaymentRecord { id, entry })
}

impl PaymentJournal for PostgresPaymentStore {
    fn record<'a>(&'a self, entry: &'a PaymentEntry) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move { Ok(self.record_all(vec![entry.clone()]).await?) })
    }
}

impl PaymentStore for PostgresPaymentStore {
    fn earned_since(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<Earned>, PaymentStoreError>> {
        Box::pin(async move {
            let client = self.database.client().await.map_err(store_error)?;
            let rows = client
                .query(
                    &format!(
                        "SELECT asset, network, decimals,
                            COALESCE(SUM(amount) FILTER (WHERE state = 'settled'), 0)::TEXT,
                            COALESCE(SUM(amount) FILTER (WHERE state = 'charged'), 0)::TEXT,
                            COUNT(*)
                         FROM gateway_payments WHERE at_ms >= $1 AND {EARNED}
                         GROUP BY asset, network, decimals ORDER BY asset, network"
                    ),
                    &[&since_ms],
                )
                .await
                .map_err(store_error)?;
            rows.iter()
                .map(|row| {
                    Ok(Earned {
                        asset: row.try_get(0).map_err(store_error)?,
                        network: row.try_get(1).map_err(store_error)?,
                        decimals: decimals(row, "decimals")?,
                        settled: amount(row.try_get(3).map_err(store_error)?)?,
                        charged: amount(row.try_get(4).map_err(store_error)?)?,
                        calls: count(row.try_get(5).map_err(store_error)?),
                    })
                })
                .collect()
        })
    }

    fn calls_per_minute(
        &self,
        since_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<(i64, u64)>, PaymentStoreError>> {
        Box::pin(async move {
            let client = self.database.client().await.map_err(store_error)?;
            let rows = client
                .query(
                    &format!(
                        "SELECT at_ms / 60000 AS minute, COUNT(*) FROM gateway_payments
                         WHERE at_ms >= $1 AND {EARNED} GROUP BY minute ORDER BY minute"
                    ),
                    &[&since_ms],
                )
                .await
                .map_err(store_error)?;
            rows.iter()
                .map(|row| {
                    Ok((
                        row.try_get(0).map_err(store_error)?,
                        count(row.try_get(1).map_err(store_error)?),
                    ))
                })
                .collect()
        })
    }

    fn daily(
        &self,
        since_ms: i64,
        offset_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<DayRevenue>, PaymentStoreError>> {
        Box::pin(async move {
            let client = self.database.client().await.map_err(store_error)?;
            let rows = client
                .query(
                    &format!(
                        "SELECT (at_ms + $2) / 86400000 AS day, asset, network, decimals,
                            SUM(amount)::TEXT, COUNT(*)
                         FROM gateway_payments WHERE at_ms >= $1 AND {EARNED}
                         GROUP BY day, asset, network, decimals ORDER BY day, asset, network"
                    ),
                    &[&since_ms, &offset_ms],
                )
                .await
                .map_err(store_error)?;
            rows.iter()
                .map(|row| {
                    let day: i64 = row.try_get(0).map_err(store_error)?;
                    Ok(DayRevenue {
                        day_ms: day * 86_400_000 - offset_ms,
                        asset: row.try_get(1).map_err(store_error)?,
                        network: row.try_get(2).map_err(store_error)?,
                        decimals: decimals(row, "decimals")?,
                        amount: amount(row.try_get(4).map_err(store_error)?)?,
                        calls: count(row.try_get(5).map_err(store_error)?),
                    })
                })
                .collect()
        })
    }

    fn top(
        &self,
        by_payer: bool,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Ranked>, PaymentStoreError>> {
        let column = if by_payer { "payer" } else { "service" };
        Box::pin(async move {
            let client = self.database.client().await.map_err(store_error)?;
            let rows = client
                .query(
                    &format!(
                        "SELECT {column}, asset, network, decimals, SUM(amount)::TEXT, COUNT(*)
                         FROM gateway_payments WHERE {EARNED}
                         GROUP BY {column}, asset, network, decimals
                         ORDER BY SUM(amount) DESC, COUNT(*) DESC, {column} LIMIT $1"
                    ),
                    &[&i64::from(limit)],
                )
                .await
                .map_err(store_error)?;
            rows.iter()
                .map(|row| {
                    Ok(Ranked {
                        name: row.try_get(0).map_err(store_error)?,
                        asset: row.try_get(1).map_err(store_error)?,
                        network: row.try_get(2).map_err(store_error)?,
                        decimals: decimals(row, "decimals")?,
                        amount: amount(row.try_get(4).map_err(store_error)?)?,
                        calls: count(row.try_get(5).map_err(store_error)?),
                    })
                })
                .collect()
        })
    }

    fn page<'a>(&'a self, query: &'a PageQuery) -> BoxFuture<'a, Result<Page, PaymentStoreError>> {
        Box::pin(async move {
            let mut clauses = Vec::new();
            let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
            if let Some(state) = query.state {
                clauses.push(format!("state = '{}'", state.as_str()));
            }
            if let Some(search) = query.search.as_deref().filter(|s| !s.trim().is_empty()) {
                let (text, lower) = normalized(search);
                let mut any = Vec::new();
                for (column, prefix) in [
                    ("payer", &lower),
                    ("tx", &lower),
                    ("service", &text),
                    ("payment", &text),
                ] {
                    let n = values.len();
                    any.push(format!(
                        "({column} >= ${} AND {column} < ${})",
                        n + 1,
                        n + 2
                    ));
                    values.push(Box::new(prefix.clone()));
                    values.push(Box::new(prefix_end(prefix)));
                }
                if let Ok(id) = text.parse::<i64>() {
                    any.push(format!("id = ${}", values.len() + 1));
                    values.push(Box::new(id));
                }
                clauses.push(format!("({})", any.join(" OR ")));
            }
            let filter = if clauses.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", clauses.join(" AND "))
            };
            let client = self.database.client().await.map_err(store_error)?;
            let params: Vec<&(dyn ToSql + Sync)> =
                values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect();
            let total: i64 = client
                .query_one(
                    &format!("SELECT COUNT(*) FROM gateway_payments {filter}"),
                    &params,
                )
                .await
                .map_err(store_error)?
                .try_get(0)
                .map_err(store_error)?;
            let limit = i64::from(query.limit);
            let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
            let mut params = params;
            let n = params.len();
            params.push(&limit);
            params.push(&offset);
            let rows = client
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM gateway_payments {filter}
                         ORDER BY at_ms DESC, id DESC LIMIT ${} OFFSET ${}",
                        n + 1,
                        n + 2
                    ),
                    &params,
                )
                .await
                .map_err(store_error)?;
            Ok(Page {
                total: count(total),
                records: rows.iter().map(record).collect::<Result<_, _>>()?,
            })
        })
    }

    fn get(&self, id: i64) -> BoxFuture<'_, Result<Option<PaymentRecord>, PaymentStoreError>> {
        Box::pin(async move {
            let client = self.database.client().await.map_err(store_error)?;
            let row = client
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM gateway_payments WHERE id = $1"),
                    &[&id],
                )
                .await
                .map_err(store_error)?;
            row.as_ref().map(record).transpose()
        })
    }

    fn failures(&self) -> BoxFuture<'_, Result<Vec<FailureCount>, PaymentStoreError>> {
        Box::pin(async move {
            let client = self.database.client().await.map_err(store_error)?;
            let rows = client
                .query(
                    "SELECT COALESCE(reason, 'unknown'), COUNT(*), MAX(at_ms)
                     FROM gateway_payments WHERE state = 'failed' GROUP BY 1 ORDER BY 2 DESC, 1",
                    &[],
                )
                .await
                .map_err(store_error)?;
            rows.iter()
                .map(|row| {
                    Ok(FailureCount {
                        reason: row.try_get(0).map_err(store_error)?,
                        count: count(row.try_get(1).map_err(store_error)?),
                        last_ms: row.try_get(2).map_err(store_error)?,
                    })
                })
                .collect()
        })
    }
}
