//! Long requests run as jobs: `POST /run` answers `{job_id}` at once and `GET /status/{id}`
//! reports progress, then the output.
//!
//! Jobs are durable. A job is written to the [`JobStore`] (SQLite by default) with its input,
//! payer, amount and settlement transaction before `/run` answers, and every change of state
//! is committed before it is reported. A gateway that stops mid-job finds the job at its next
//! start and runs it again from the recorded input ([`Jobs::unfinished`]).
//!
//! The policy for paid jobs, stated in `/catalog` ([`policy`]) and the README: a job is paid
//! (settled) before it starts; it is attempted up to `limits.job_attempts` times, restarts of
//! the gateway included; a job that still fails is reported `failed` with `charged: true` and
//! `refunded: false`. This gateway sends no refunds; the settlement transaction and the job id
//! are the payer's record.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use x402_gateway_api::{JobPolicy, JobStatus, JobView, Progress};
use x402_proto::BoxFuture;

/// Why the job store failed.
#[derive(Debug, thiserror::Error)]
#[error("job store: {0}")]
pub struct JobStoreError(pub(crate) String);

fn db_error(error: impl std::fmt::Display) -> JobStoreError {
    JobStoreError(error.to_string())
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Recorded, not started yet (or waiting to be tried again).
    Queued,
    /// An attempt is running.
    Running,
    /// Finished with an output.
    Completed,
    /// Finished without one, for good.
    Failed,
}

impl JobState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "completed" => JobState::Completed,
            "failed" => JobState::Failed,
            _ => return None,
        })
    }
}

/// A job as accepted: what to run and what was paid for it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// `job_…`.
    pub id: String,
    /// The service key.
    pub service: String,
    /// The `/run` input, as checked before payment: enough to run the job again.
    pub input: Value,
    /// The paying address.
    pub payer: String,
    /// The amount paid, in the asset's atomic units.
    pub amount: String,
    /// The amount in USD (whole units of the asset).
    pub cost_usd: String,
    /// The asset paid with.
    pub asset: String,
    /// The network paid on (CAIP-2).
    pub network: String,
    /// The settlement transaction; `None` when the job was not paid before it started.
    pub transaction: Option<String>,
}

/// A job as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// What was accepted.
    pub job: NewJob,
    /// Where it stands.
    pub state: JobState,
    /// Attempts started so far (restarts of the gateway included).
    pub attempts: u32,
    /// The output, once completed.
    pub output: Option<Value>,
    /// The last error (of a failed job, or of a failed attempt being retried).
    pub error: Option<String>,
    /// Whether the payment was given back.
    pub refunded: bool,
    /// How much was given back, in USD.
    pub refund_amount_usd: String,
    /// Accepted at (unix milliseconds).
    pub created_at_ms: i64,
    /// Finished at (unix milliseconds).
    pub finished_at_ms: Option<i64>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// With this output.
    Completed(Value),
    /// With this error, for good.
    Failed(String),
}

/// Durable job records. The SQLite implementation is [`SqliteJobStore`]; the trait leaves room
/// for a shared database when several gateways serve one job table.
pub trait JobStore: Send + Sync + std::fmt::Debug {
    /// Records an accepted job, `queued`. Committed before it returns.
    fn insert<'a>(&'a self, job: &'a NewJob) -> BoxFuture<'a, Result<(), JobStoreError>>;

    /// Marks the job `running` and counts the attempt; returns the attempt's number (from 1).
    fn start_attempt<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<u32, JobStoreError>>;

    /// Puts a running job back in the queue after a failed attempt, keeping its error.
    fn retry_later<'a>(
        &'a self,
        id: &'a str,
        error: &'a str,
    ) -> BoxFuture<'a, Result<(), JobStoreError>>;

    /// Records how the job ended.
    fn finish<'a>(
        &'a self,
        id: &'a str,
        outcome: &'a JobOutcome,
    ) -> BoxFuture<'a, Result<(), JobStoreError>>;

    /// The job `id`, if recorded.
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<JobRecord>, JobStoreError>>;

    /// Jobs `queued` or `running`, oldest first: left over when the gateway last stopped.
    fn unfinished(&self) -> BoxFuture<'_, Result<Vec<JobRecord>, JobStoreError>>;

    /// Jobs `queued` or `running` that nobody runs any more, taken for this process: those
    /// another replica ran and died with (its lease lapsed). A replica sweeps for them while
    /// it runs; a store one process owns has none (its leftovers are [`Self::unfinished`] at
    /// the next start).
    fn orphaned(&self) -> BoxFuture<'_, Result<Vec<JobRecord>, JobStoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Jobs in one of `states`, newest first, at most `limit`, without their input (read with
    /// [`Self::get`]): what the operator dashboard lists.
    fn listed<'a>(
        &'a self,
        states: &'a [JobState],
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<JobRecord>, JobStoreError>>;

    /// Deletes jobs that finished before `before_ms` (unix milliseconds); returns how many.
    fn purge_finished(&self, before_ms: i64) -> BoxFuture<'_, Result<u64, JobStoreError>>;
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A column of a job row that does not read back as what was written.
pub(crate) fn corrupt(column: &str, id: &str) -> JobStoreError {
    JobStoreError(format!("corrupt {column} of job {id}"))
}

/// A job row as both stores keep it (input, output and state as text), before it is read back
/// into a [`JobRecord`].
pub(crate) struct JobRow {
    /// What was accepted, its input still [`Value::Null`].
    pub(crate) job: NewJob,
    pub(crate) input: String,
    pub(crate) state: String,
    pub(crate) attempts: i64,
    pub(crate) output: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) refunded: bool,
    pub(crate) refund_amount_usd: String,
    pub(crate) created_at_ms: i64,
    pub(crate) finished_at_ms: Option<i64>,
}

impl JobRow {
    /// The record, or which column of the row is corrupt.
    pub(crate) fn decode(self) -> Result<JobRecord, JobStoreError> {
        let id = &self.job.id;
        let input = serde_json::from_str(&self.input).map_err(|_| corrupt("input", id))?;
        let output = match &self.output {
            Some(text) => Some(serde_json::from_str(text).map_err(|_| corrupt("output", id))?),
            None => None,
        };
        let state = JobState::parse(&self.state).ok_or_else(|| corrupt("state", id))?;
        let attempts = u32::try_from(self.attempts).map_err(|_| corrupt("attempts", id))?;
        Ok(JobRecord {
            job: NewJob { input, ..self.job },
            state,
            attempts,
            output,
            error: self.error,
            refunded: self.refunded,
            refund_amount_usd: self.refund_amount_usd,
            created_at_ms: self.created_at_ms,
            finished_at_ms: self.finished_at_ms,
        })
    }
}

mod sqlite;

pub use sqlite::SqliteJobStore;

/// The job table and its policy: the store, how long finished jobs are kept, how many
/// attempts a job gets.
#[derive(Debug, Clone)]
pub struct Jobs {
    store: Arc<dyn JobStore>,
    ttl: Duration,
    attempts: u32,
    /// Progress of the jobs running in this process that report it: phase and percent.
    progress: Arc<std::sync::Mutex<std::collections::HashMap<String, (String, u8)>>>,
}

/// The policy for paid jobs, as `/catalog` states it.
pub fn policy(attempts: u32) -> JobPolicy {
    JobPolicy {
        durable: true,
        settlement: "before the job starts (the 202 carries the settlement receipt)".into(),
        restarts: "a job running when the gateway stops is run again from its recorded input at the next start".into(),
        max_attempts: attempts,
        on_failure: format!(
            "after {attempts} failed attempts (restarts included) the job is reported failed with charged: true and refunded: false; this gateway sends no refunds, and the transaction and job id are the payer's record"
        ),
        refunds: false,
    }
}

impl Jobs {
    /// Jobs kept in `store`, finished ones for `ttl`, each attempted at most `attempts` times.
    pub fn new(store: Arc<dyn JobStore>, ttl: Duration, attempts: u32) -> Self {
        Self {
            store,
            ttl,
            attempts: attempts.max(1),
            progress: Default::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &dyn JobStore {
        &*self.store
    }

    /// How many attempts a job gets.
    pub fn max_attempts(&self) -> u32 {
        self.attempts
    }

    /// Records an accepted job (durably) and drops finished jobs past their time.
    pub async fn accept(&self, job: &NewJob) -> Result<(), JobStoreError> {
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        if let Err(error) = self
            .store
            .purge_finished(now_ms().saturating_sub(ttl_ms))
            .await
        {
            tracing::warn!(%error, "could not purge old jobs");
        }
        self.store.insert(job).await
    }

    /// Jobs left unfinished when the gateway last stopped.
    pub async fn unfinished(&self) -> Result<Vec<JobRecord>, JobStoreError> {
        self.store.unfinished().await
    }

    /// `GET /status/{id}`; `None` for an unknown (or purged) id.
    pub async fn view(&self, id: &str) -> Result<Option<JobView>, JobStoreError> {
        let Some(record) = self.store.get(id).await? else {
            return Ok(None);
        };
        let mut view = view(&record);
        if record.state == JobState::Running {
            let progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((phase, percent)) = progress.get(id) {
                view.progress.phase.clone_from(phase);
                view.progress.percent_estimate = *percent;
            }
        }
        Ok(Some(view))
    }

    /// Records how far job `id` (running here) has got: `phase` and `percent` (0 to 99),
    /// which `/status` reports while it runs.
    pub fn set_progress(&self, id: &str, phase: &str, percent: u8) {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        progress.insert(id.to_owned(), (phase.to_owned(), percent.min(99)));
    }

    /// Forgets job `id`'s progress (it finished).
    pub fn clear_progress(&self, id: &str) {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        progress.remove(id);
    }
}

/// A job in GPU-Bridge's `/status` shape, with the payment and this gateway's policy fields.
pub fn view(record: &JobRecord) -> JobView {
    let job = &record.job;
    let end = record.finished_at_ms.unwrap_or_else(now_ms);
    let elapsed = (end - record.created_at_ms).max(0) as f64 / 1000.0;
    let charged = job.transaction.is_some();
    let (status, phase, percent) = match record.state {
        JobState::Queued if record.attempts == 0 => (JobStatus::Pending, "queued", 0),
        JobState::Queued => (JobStatus::Running, "retrying", 50),
        JobState::Running => (JobStatus::Running, "running", 50),
        JobState::Completed => (JobStatus::Completed, "done", 100),
        JobState::Failed => (JobStatus::Failed, "failed", 100),
    };
    let mut view = JobView {
        id: job.id.clone(),
        service: job.service.clone(),
        cost_usd: job.cost_usd.clone(),
        payer: job.payer.clone(),
        transaction: job.transaction.clone(),
        charged,
        attempts: record.attempts,
        status,
        progress: Progress {
            phase: phase.into(),
            percent_estimate: percent,
            elapsed_seconds: (elapsed * 10.0).round() / 10.0,
        },
        output: None,
        error: None,
        refunded: None,
        refund_amount_usd: None,
        note: None,
        last_error: None,
    };
    match record.state {
        JobState::Completed => {
            view.output = Some(record.output.clone().unwrap_or(Value::Null));
        }
        JobState::Failed => {
            view.error = record.error.clone();
            view.refunded = Some(record.refunded);
            view.refund_amount_usd = Some(record.refund_amount_usd.clone());
            view.note = Some(
                if charged {
                    "the payment was settled before the job ran and is not refunded; the transaction and job id are your record"
                } else {
                    "no payment was taken for this job"
                }
                .into(),
            );
        }
        JobState::Queued | JobState::Running => view.last_error = record.error.clone(),
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(id: &str) -> NewJob {
        NewJob {
            id: id.to_owned(),
            service: "pdf-parse".into(),
            input: json!({"html": "<p>hi</p>"}),
            payer: "0xabc".into(),
            amount: "2000".into(),
            cost_usd: "0.002".into(),
            asset: "0xasset".into(),
            network: "eip155:8453".into(),
            transaction: Some("0x01".into()),
        }
    }

    /// Jobs survive reopening the store (a gateway that crashed, started again; or another
    /// replica once the crashed one's leases lapsed), report progress then their output, and
    /// finished ones are purged in time. `open` opens the store anew (the last one dropped).
    async fn jobs_survive_reopening_and_report_progress_then_output(
        open: impl AsyncFn() -> Arc<dyn JobStore>,
    ) {
        let store = open().await;
        let jobs = Jobs::new(store, Duration::from_secs(60), 3);
        jobs.accept(&job("job_a")).await.unwrap();
        jobs.accept(&job("job_b")).await.unwrap();
        assert_eq!(
            jobs.view("job_a").await.unwrap().unwrap().status,
            JobStatus::Pending
        );
        assert_eq!(jobs.store().start_attempt("job_a").await.unwrap(), 1);
        assert_eq!(
            jobs.view("job_a").await.unwrap().unwrap().status,
            JobStatus::Running
        );
        drop(jobs);

        // Reopened, as after a crash: both jobs are found, with their input.
        let store = open().await;
        let jobs = Jobs::new(store.clone(), Duration::from_secs(60), 3);
        let left = jobs.unfinished().await.unwrap();
        assert_eq!(left.len(), 2);
        assert_eq!(left[0].job, job("job_a"));
        assert_eq!(left[0].state, JobState::Running);
        assert_eq!(left[0].attempts, 1);
        assert_eq!(left[1].state, JobState::Queued);

        assert_eq!(store.start_attempt("job_a").await.unwrap(), 2);
        store.retry_later("job_a", "upstream down").await.unwrap();
        let retrying = jobs.view("job_a").await.unwrap().unwrap();
        assert_eq!(retrying.progress.phase, "retrying");
        assert_eq!(retrying.last_error.as_deref(), Some("upstream down"));
        assert_eq!(store.start_attempt("job_a").await.unwrap(), 3);
        store
            .finish("job_a", &JobOutcome::Completed(json!({"text": "hi"})))
            .await
            .unwrap();
        let done = jobs.view("job_a").await.unwrap().unwrap();
        assert_eq!(done.status, JobStatus::Completed);
        assert_eq!(done.output.unwrap()["text"], "hi");
        assert_eq!(done.transaction.as_deref(), Some("0x01"));
        assert!(done.charged);
        // A finished job cannot be started or finished again.
        assert!(store.start_attempt("job_a").await.is_err());
        store
            .finish("job_a", &JobOutcome::Failed("late".into()))
            .await
            .unwrap();
        assert_eq!(
            jobs.view("job_a").await.unwrap().unwrap().status,
            JobStatus::Completed
        );

        store
            .finish("job_b", &JobOutcome::Failed("broken".into()))
            .await
            .unwrap();
        let failed = jobs.view("job_b").await.unwrap().unwrap();
        assert_eq!(failed.status, JobStatus::Failed);
        assert_eq!(failed.error.as_deref(), Some("broken"));
        assert!(failed.charged);
        assert_eq!(failed.refunded, Some(false));
        assert_eq!(failed.refund_amount_usd.as_deref(), Some("0"));
        assert!(jobs.unfinished().await.unwrap().is_empty());
        assert!(jobs.view("job_nope").await.unwrap().is_none());

        // Listed by state, newest first, without their input.
        store.insert(&job("job_d")).await.unwrap();
        let listed = store
            .listed(&[JobState::Failed, JobState::Queued], 10)
            .await
            .unwrap();
        let ids: Vec<&str> = listed.iter().map(|r| &*r.job.id).collect();
        assert_eq!(ids, ["job_d", "job_b"]);
        assert_eq!(listed[1].error.as_deref(), Some("broken"));
        assert_eq!(listed[1].job.input, Value::Null);
        assert_eq!(listed[1].job.transaction.as_deref(), Some("0x01"));
        assert_eq!(
            store
                .listed(&[JobState::Completed], 10)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            store
                .listed(&[JobState::Failed, JobState::Queued], 1)
                .await
                .unwrap()
                .len(),
            1
        );
        store
            .finish("job_d", &JobOutcome::Failed("dropped".into()))
            .await
            .unwrap();

        // Finished jobs past their time are purged; unfinished ones never are.
        store.insert(&job("job_c")).await.unwrap();
        assert_eq!(store.purge_finished(now_ms() + 1).await.unwrap(), 3);
        assert!(jobs.view("job_b").await.unwrap().is_none());
        assert_eq!(jobs.unfinished().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn jobs_survive_reopening_the_sqlite_file_and_report_progress_then_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db");
        jobs_survive_reopening_and_report_progress_then_output(async || {
            Arc::new(SqliteJobStore::open(&path).unwrap()) as Arc<dyn JobStore>
        })
        .await;
    }

    /// In Postgres a store is reopened as another process would (a new pool); it finds the
    /// jobs once the leases of the one before have lapsed (it stopped renewing them).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_survive_reopening_the_postgres_database_and_report_progress_then_output() {
        use crate::postgres::{Database, Leases, PostgresJobStore};
        let temp = x402_testkit::TempDatabase::create().await;
        let leases = Leases {
            ttl: Duration::from_millis(500),
            refresh: Duration::from_millis(100),
        };
        jobs_survive_reopening_and_report_progress_then_output(async || {
            // The last store's leases lapse.
            tokio::time::sleep(leases.ttl * 2).await;
            let database = Database::connect(&temp.url, leases).await.unwrap();
            Arc::new(PostgresJobStore::new(database)) as Arc<dyn JobStore>
        })
        .await;
    }

    /// Two replicas: a job one accepted is reported by the other, and not taken up by the
    /// other while the first runs it (renewing its lease), however long; it is once the
    /// first dies and its lease lapses.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_reports_anothers_job_and_takes_it_up_only_once_that_one_died() {
        use crate::postgres::{Database, Leases, PostgresJobStore};
        let temp = x402_testkit::TempDatabase::create().await;
        let leases = Leases {
            ttl: Duration::from_millis(500),
            refresh: Duration::from_millis(100),
        };
        let replica = async || {
            let database = Database::connect(&temp.url, leases).await.unwrap();
            Jobs::new(
                Arc::new(PostgresJobStore::new(database)),
                Duration::from_secs(60),
                3,
            )
        };
        let (first, second) = (replica().await, replica().await);
        first.accept(&job("job_a")).await.unwrap();
        assert_eq!(first.store().start_attempt("job_a").await.unwrap(), 1);
        let seen = second.view("job_a").await.unwrap().unwrap();
        assert_eq!(seen.status, JobStatus::Running);
        assert_eq!(seen.transaction.as_deref(), Some("0x01"));

        tokio::time::sleep(leases.ttl * 3).await;
        assert!(
            second.unfinished().await.unwrap().is_empty(),
            "a live replica's job is its own"
        );
        drop(first);
        tokio::time::sleep(leases.ttl * 2).await;
        let taken = second.unfinished().await.unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].job, job("job_a"));
        // Taken once: a third replica finds nothing to take up.
        assert!(replica().await.unfinished().await.unwrap().is_empty());
        assert_eq!(second.store().start_attempt("job_a").await.unwrap(), 2);
    }
}
