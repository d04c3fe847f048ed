//! Jobs in Postgres, shared by every gateway replica: any replica reports any job on
//! `/status`. A job is run by one replica at a time: the one that accepted it, or one that
//! found it unfinished with nobody running it. The runner renews its lease on the job while it
//! holds it; a job whose runner died is free again once the lease lapses, and a running
//! replica's sweep ([`JobStore::orphaned`]) or the next gateway to start
//! ([`JobStore::unfinished`]) takes it up.

use serde_json::Value;
use x402_proto::BoxFuture;

use super::Database;
use crate::jobs::{
    JobOutcome, JobRecord, JobRow, JobState, JobStore, JobStoreError, NewJob, corrupt, now_ms,
};

const COLUMNS: &str = "id, service, input, payer, amount, cost_usd, asset, network, settle_tx, \
     state, attempts, output, error, refunded, refund_amount_usd, created_at, finished_at";

fn store_error(error: impl std::fmt::Display) -> JobStoreError {
    JobStoreError(format!("database: {error}"))
}

/// Jobs in the gateway's Postgres database.
#[derive(Clone, Debug)]
pub struct PostgresJobStore {
    database: Database,
}

impl PostgresJobStore {
    /// The jobs of `database`.
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Renews this process's lease on `id` from now on (it runs the job).
    fn hold(&self, id: &str) {
        self.database.held().jobs.insert(id.to_owned());
    }
}

fn record(row: &tokio_postgres::Row) -> Result<JobRecord, JobStoreError> {
    let read = || -> Result<JobRow, tokio_postgres::Error> {
        Ok(JobRow {
            job: NewJob {
                id: row.try_get("id")?,
                service: row.try_get("service")?,
                input: Value::Null,
                payer: row.try_get("payer")?,
                amount: row.try_get("amount")?,
                cost_usd: row.try_get("cost_usd")?,
                asset: row.try_get("asset")?,
                network: row.try_get("network")?,
                transaction: row.try_get("settle_tx")?,
            },
            input: row.try_get("input")?,
            state: row.try_get("state")?,
            attempts: i64::from(row.try_get::<_, i32>("attempts")?),
            output: row.try_get("output")?,
            error: row.try_get("error")?,
            refunded: row.try_get("refunded")?,
            refund_amount_usd: row.try_get("refund_amount_usd")?,
            created_at_ms: row.try_get("created_at")?,
            finished_at_ms: row.try_get("finished_at")?,
        })
    };
    read().map_err(store_error)?.decode()
}

impl JobStore for PostgresJobStore {
    fn insert<'a>(&'a self, job: &'a NewJob) -> BoxFuture<'a, Result<(), JobStoreError>> {
        Box::pin(async move {
            // Held before the row exists, so that its first renewal is not missed.
            self.hold(&job.id);
            let client = self.database.client().await.map_err(store_error)?;
            client
                .execute(
                    "INSERT INTO gateway_jobs (id, service, input, payer, amount, cost_usd, asset,
                        network, settle_tx, state, created_at, updated_at, runner, lease_until)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', $10, $10, $11,
                        now() + make_interval(secs => $12))",
                    &[
                        &job.id,
                        &job.service,
                        &job.input.to_string(),
                        &job.payer,
                        &job.amount,
                        &job.cost_usd,
                        &job.asset,
                        &job.network,
                        &job.transaction,
                        &now_ms(),
                        &self.database.inner.instance,
                        &self.database.ttl_seconds(),
                    ],
                )
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn start_attempt<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<u32, JobStoreError>> {
        Box::pin(async move {
            self.hold(id);
            // The runner gives the job up when this fails: let its lease lapse, so that a
            // sweep (here or in another replica) takes it up again.
            let let_go = |error: String| {
                self.database.held().jobs.remove(id);
                store_error(error)
            };
            let client = self
                .database
                .client()
                .await
                .map_err(|e| let_go(e.to_string()))?;
            let row = client
                .query_opt(
                    "UPDATE gateway_jobs SET state = 'running', attempts = attempts + 1,
                        updated_at = $2, runner = $3,
                        lease_until = now() + make_interval(secs => $4)
                     WHERE id = $1 AND state IN ('queued', 'running') RETURNING attempts",
                    &[
                        &id,
                        &now_ms(),
                        &self.database.inner.instance,
                        &self.database.ttl_seconds(),
                    ],
                )
                .await
                .map_err(|e| let_go(e.to_string()))?;
            let Some(row) = row else {
                self.database.held().jobs.remove(id);
                return Err(JobStoreError(format!("job {id} is not waiting to run")));
            };
            let attempts: i32 = row.try_get(0).map_err(store_error)?;
            u32::try_from(attempts).map_err(|_| corrupt("attempts", id))
        })
    }

    fn retry_later<'a>(
        &'a self,
        id: &'a str,
        error: &'a str,
    ) -> BoxFuture<'a, Result<(), JobStoreError>> {
        Box::pin(async move {
            let client = self.database.client().await.map_err(store_error)?;
            client
                .execute(
                    "UPDATE gateway_jobs SET state = 'queued', error = $2, updated_at = $3
                     WHERE id = $1 AND state = 'running'",
                    &[&id, &error, &now_ms()],
                )
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn finish<'a>(
        &'a self,
        id: &'a str,
        outcome: &'a JobOutcome,
    ) -> BoxFuture<'a, Result<(), JobStoreError>> {
        Box::pin(async move {
            // Let go of it whatever happens: a job whose end was not recorded lapses, and a
            // gateway starting later runs it again (as a restart does with SQLite).
            self.database.held().jobs.remove(id);
            let (state, output, error) = match outcome {
                JobOutcome::Completed(output) => {
                    (JobState::Completed, Some(output.to_string()), None)
                }
                JobOutcome::Failed(error) => (JobState::Failed, None, Some(error.clone())),
            };
            let client = self.database.client().await.map_err(store_error)?;
            // Refunds are not sent (see the module docs of `jobs`): `refunded` stays false.
            client
                .execute(
                    "UPDATE gateway_jobs SET state = $2, output = $3, error = $4, updated_at = $5,
                        finished_at = $5, runner = NULL, lease_until = NULL
                     WHERE id = $1 AND state IN ('queued', 'running')",
                    &[&id, &state.as_str(), &output, &error, &now_ms()],
                )
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<JobRecord>, JobStoreError>> {
        Box::pin(async move {
            let client = self.database.client().await.map_err(store_error)?;
            let row = client
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM gateway_jobs WHERE id = $1"),
                    &[&id],
                )
                .await
                .map_err(store_error)?;
            row.as_ref().map(record).transpose()
        })
    }

    /// The unfinished jobs nobody else runs: this process's, and those whose runner's lease
    /// lapsed (it died), which become this process's.
    fn listed<'a>(
        &'a self,
        states: &'a [JobState],
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<JobRecord>, JobStoreError>> {
        Box::pin(async move {
            let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
            let client = self.database.client().await.map_err(store_error)?;
            let rows = client
                .query(
                    &format!(
                        "SELECT {} FROM gateway_jobs WHERE state = ANY($1)
                         ORDER BY created_at DESC, id DESC LIMIT $2",
                        COLUMNS.replacen("input", "'null' AS input", 1)
                    ),
                    &[&states, &i64::from(limit)],
                )
                .await
                .map_err(store_error)?;
            rows.iter().map(record).collect()
        })
    }

    fn unfinished(&self) -> BoxFuture<'_, Result<Vec<JobRecord>, JobStoreError>> {
        Box::pin(async move {
            let client = self.database.client().await.map_err(store_error)?;
            let rows = client
                .query(
                    &format!(
                        "UPDATE gateway_jobs SET runner = $1,
                            lease_until = now() + make_interval(secs => $2)
                         WHERE id IN (
                            SELECT id FROM gateway_jobs
                            WHERE state IN ('queued', 'running')
                              AND (runner = $1 OR lease_until IS NULL OR lease_until < now())
                            FOR UPDATE SKIP LOCKED)
                         RETURNING {COLUMNS}"
                    ),
                    &[&self.database.inner.instance, &self.database.ttl_seconds()],
                )
                .await
                .map_err(store_error)?;
            let mut records = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
            records.sort_by(|a, b| (a.created_at_ms, &a.job.id).cmp(&(b.created_at_ms, &b.job.id)));
            let mut held = self.database.held();
            for record in &records {
                held.jobs.insert(record.job.id.clone());
            }
            Ok(records)
        })
    }

    /// The unfinished jobs whose lease lapsed and that this process does not hold (those it
    /// holds it is running, their lease renewed when the database answers again), which become
    /// this process's.
    fn orphaned(&self) -> BoxFuture<'_, Result<Vec<JobRecord>, JobStoreError>> {
        Box::pin(async move {
            let held: Vec<String> = self.database.held().jobs.iter().cloned().collect();
            let client = self.database.client().await.map_err(store_error)?;
            let rows = client
                .query(
                    &format!(
                        "UPDATE gateway_jobs SET runner = $1,
                            lease_until = now() + make_interval(secs => $2)
                         WHERE id IN (
                            SELECT id FROM gateway_jobs
                            WHERE state IN ('queued', 'running')
                              AND (lease_until IS NULL OR lease_until < now())
                              AND NOT (id = ANY($3))
                            FOR UPDATE SKIP LOCKED)
                         RETURNING {COLUMNS}"
                    ),
                    &[
                        &self.database.inner.instance,
                        &self.database.ttl_seconds(),
                        &held,
                    ],
                )
                .await
                .map_err(store_error)?;
            let mut records = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
            records.sort_by(|a, b| (a.created_at_ms, &a.job.id).cmp(&(b.created_at_ms, &b.job.id)));
            let mut held = self.database.held();
            for record in &records {
                held.jobs.insert(record.job.id.clone());
            }
            Ok(records)
        })
    }

    fn purge_finished(&self, before_ms: i64) -> BoxFuture<'_, Result<u64, JobStoreError>> {
        Box::pin(async move {
            let client = self.database.client().await.map_err(store_error)?;
            client
                .execute(
                    "DELETE FROM gateway_jobs WHERE finished_at IS NOT NULL AND finished_at < $1",
                    &[&before_ms],
                )
                .await
                .map_err(store_error)
        })
    }
}
