//! The job table in SQLite: one row per paid job, written before the 202.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use x402_proto::BoxFuture;

use super::{
    JobOutcome, JobRecord, JobRow, JobState, JobStore, JobStoreError, NewJob, corrupt, db_error,
    now_ms,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id                TEXT    PRIMARY KEY,
    service           TEXT    NOT NULL,
    input             TEXT    NOT NULL,
    payer             TEXT    NOT NULL,
    amount            TEXT    NOT NULL,
    cost_usd          TEXT    NOT NULL,
    asset             TEXT    NOT NULL,
    network           TEXT    NOT NULL,
    settle_tx         TEXT,
    state             TEXT    NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    output            TEXT,
    error             TEXT,
    refunded          INTEGER NOT NULL DEFAULT 0,
    refund_amount_usd TEXT    NOT NULL DEFAULT '0',
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    finished_at       INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs (created_at) WHERE state IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
";

const COLUMNS: &str = "id, service, input, payer, amount, cost_usd, asset, network, settle_tx, state, \
     attempts, output, error, refunded, refund_amount_usd, created_at, finished_at";

/// Jobs in one SQLite file (WAL, every commit synced to disk). Calls run on the blocking pool.
#[derive(Debug, Clone)]
pub struct SqliteJobStore {
    connection: Arc<Mutex<Connection>>,
}

impl SqliteJobStore {
    /// Opens (creating if needed) the job table at `path`.
    pub fn open(path: &Path) -> Result<Self, JobStoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| JobStoreError(format!("creating {}: {e}", parent.display())))?;
        }
        let connection = Connection::open(path)
            .map_err(|e| JobStoreError(format!("opening {}: {e}", path.display())))?;
        // FULL: a job acknowledged with 202 is on disk, whatever happens to the machine next.
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
            )
            .map_err(db_error)?;
        connection.execute_batch(SCHEMA).map_err(db_error)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    async fn run<T, F>(&self, work: F) -> Result<T, JobStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, JobStoreError> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut connection = connection
                .lock()
                .map_err(|_| JobStoreError("job store lock poisoned".into()))?;
            work(&mut connection)
        })
        .await
        .map_err(db_error)?
    }
}

/// A job row selected as [`COLUMNS`], read by column name.
fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<JobRecord, JobStoreError>> {
    let row = JobRow {
        job: NewJob {
            id: row.get("id")?,
            service: row.get("service")?,
            input: Value::Null,
            payer: row.get("payer")?,
            amount: row.get("amount")?,
            cost_usd: row.get("cost_usd")?,
            asset: row.get("asset")?,
            network: row.get("network")?,
            transaction: row.get("settle_tx")?,
        },
        input: row.get("input")?,
        state: row.get("state")?,
        attempts: row.get("attempts")?,
        output: row.get("output")?,
        error: row.get("error")?,
        refunded: row.get("refunded")?,
        refund_amount_usd: row.get("refund_amount_usd")?,
        created_at_ms: row.get("created_at")?,
        finished_at_ms: row.get("finished_at")?,
    };
    Ok(row.decode())
}

impl JobStore for SqliteJobStore {
    fn insert<'a>(&'a self, job: &'a NewJob) -> BoxFuture<'a, Result<(), JobStoreError>> {
        let job = job.clone();
        Box::pin(self.run(move |connection| {
            let now = now_ms();
            connection
                .execute(
                    "INSERT INTO jobs (id, service, input, payer, amount, cost_usd, asset, network,
                        settle_tx, state, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', ?10, ?10)",
                    params![
                        job.id,
                        job.service,
                        job.input.to_string(),
                        job.payer,
                        job.amount,
                        job.cost_usd,
                        job.asset,
                        job.network,
                        job.transaction,
                        now,
                    ],
                )
                .map_err(db_error)?;
            Ok(())
        }))
    }

    fn start_attempt<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<u32, JobStoreError>> {
        let id = id.to_owned();
        Box::pin(self.run(move |connection| {
            let attempts: Option<i64> = connection
                .query_row(
                    "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = ?2
                     WHERE id = ?1 AND state IN ('queued', 'running') RETURNING attempts",
                    params![id, now_ms()],
                    |row| row.get(0),
                )
                .optional()
                .map_err(db_error)?;
            let attempts =
                attempts.ok_or_else(|| JobStoreError(format!("job {id} is not waiting to run")))?;
            u32::try_from(attempts).map_err(|_| corrupt("attempts", &id))
        }))
    }

    fn retry_later<'a>(
        &'a self,
        id: &'a str,
        error: &'a str,
    ) -> BoxFuture<'a, Result<(), JobStoreError>> {
        let (id, error) = (id.to_owned(), error.to_owned());
        Box::pin(self.run(move |connection| {
            connection
                .execute(
                    "UPDATE jobs SET state = 'queued', error = ?2, updated_at = ?3
                     WHERE id = ?1 AND state = 'running'",
                    params![id, error, now_ms()],
                )
                .map_err(db_error)?;
            Ok(())
        }))
    }

    fn finish<'a>(
        &'a self,
        id: &'a str,
        outcome: &'a JobOutcome,
    ) -> BoxFuture<'a, Result<(), JobStoreError>> {
        let id = id.to_owned();
        let (state, output, error) = match outcome {
            JobOutcome::Completed(output) => (JobState::Completed, Some(output.to_string()), None),
            JobOutcome::Failed(error) => (JobState::Failed, None, Some(error.clone())),
        };
        Box::pin(self.run(move |connection| {
            let now = now_ms();
            // Refunds are not sent (see the module docs): `refunded` stays false.
            connection
                .execute(
                    "UPDATE jobs SET state = ?2, output = ?3, error = ?4, updated_at = ?5,
                        finished_at = ?5
                     WHERE id = ?1 AND state IN ('queued', 'running')",
                    params![id, state.as_str(), output, error, now],
                )
                .map_err(db_error)?;
            Ok(())
        }))
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<JobRecord>, JobStoreError>> {
        let id = id.to_owned();
        Box::pin(self.run(move |connection| {
            connection
                .query_row(
                    &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
                    params![id],
                    record,
                )
                .optional()
                .map_err(db_error)?
                .transpose()
        }))
    }

    fn unfinished(&self) -> BoxFuture<'_, Result<Vec<JobRecord>, JobStoreError>> {
        Box::pin(self.run(move |connection| {
            let mut statement = connection
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM jobs WHERE state IN ('queued', 'running')
                     ORDER BY created_at"
                ))
                .map_err(db_error)?;
            let rows = statement.query_map([], record).map_err(db_error)?;
            rows.map(|row| row.map_err(db_error)?).collect()
        }))
    }

    fn listed<'a>(
        &'a self,
        states: &'a [JobState],
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<JobRecord>, JobStoreError>> {
        let states: Vec<&'static str> = states.iter().map(|s| s.as_str()).collect();
        Box::pin(self.run(move |connection| {
            let marks = vec!["?"; states.len()].join(", ");
            let mut statement = connection
                .prepare(&format!(
                    "SELECT {} FROM jobs WHERE state IN ({marks})
                     ORDER BY created_at DESC, id DESC LIMIT {limit}",
                    COLUMNS.replacen("input", "'null' AS input", 1)
                ))
                .map_err(db_error)?;
            let rows = statement
                .query_map(rusqlite::params_from_iter(states.iter()), record)
                .map_err(db_error)?;
            rows.map(|row| row.map_err(db_error)?).collect()
        }))
    }

    fn purge_finished(&self, before_ms: i64) -> BoxFuture<'_, Result<u64, JobStoreError>> {
        Box::pin(self.run(move |connection| {
            let deleted = connection
                .execute(
                    "DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?1",
                    params![before_ms],
                )
                .map_err(db_error)?;
            Ok(deleted as u64)
        }))
    }
}
