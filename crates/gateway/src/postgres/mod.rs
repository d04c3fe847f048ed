//! The gateway's state in Postgres, for several gateway replicas behind one load balancer:
//! `batch-settlement` channels ([`PostgresChannelStore`]), jobs ([`PostgresJobStore`]), the
//! one-payment-one-response guard with the paid responses it keeps ([`PostgresGuard`]) and the
//! payment journal the operator dashboard reads ([`PostgresPaymentStore`]).
//! Selected by the config's `database = "postgres://…"`.
//!
//! One [`Database`] per process: a connection pool, the schema's versioned migrations applied
//! at start (one process at a time, under a transaction-scoped advisory lock), and the
//! process's leases. What a request or a job holds while it runs (a payment in use, a metered
//! stream, a job being run) is a row with an expiry that this process pushes forward every
//! [`Leases::refresh`] while it holds it: a replica that dies lets go of everything it held
//! within [`Leases::ttl`], and one that is alive never loses what it holds. Times that decide
//! between replicas are the database's (`now()`), never a replica's clock.
//!
//! Each replica also runs a `batch-settlement` claimer over the shared channels; their runs take
//! turns under one advisory lock per network ([`PostgresClaimLock`]).
//!
//! A database error is the trait's error in each store, which the paywall answers 503 (a
//! payment is never served, nor charged, on a store it cannot read).

mod channels;
mod claims;
mod guard;
mod jobs;
mod payments;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

pub use channels::PostgresChannelStore;
pub use claims::PostgresClaimLock;
pub use guard::PostgresGuard;
pub use jobs::PostgresJobStore;
pub use payments::PostgresPaymentStore;

/// Why the database could not be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("database: {0}")]
pub struct DatabaseError(pub String);

fn db_error(error: impl std::fmt::Display) -> DatabaseError {
    DatabaseError(error.to_string())
}

/// How long what a replica holds outlives it, and how often a live one renews it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leases {
    /// A lease not renewed for this long lapses (default 30 s): what a dead replica held is
    /// free again after it.
    pub ttl: Duration,
    /// How often a live replica renews its leases (default 5 s; well below `ttl`).
    pub refresh: Duration,
}

impl Default for Leases {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(30),
            refresh: Duration::from_secs(5),
        }
    }
}

/// The most connections one gateway process opens.
const MAX_CONNECTIONS: usize = 16;
/// Longest wait for a connection, from the pool or the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest any one statement runs (a lock wait included) before it fails, as a 503.
const STATEMENT_TIMEOUT_MS: u64 = 15_000;

/// The schema, one migration per version, applied in order and recorded in
/// `gateway_schema_migrations`. Never edit one that shipped: add the next.
const MIGRATIONS: &[&str] = &[
    // 1: channels, jobs, the payment guard.
    "
    CREATE TABLE gateway_channels (
        id                    TEXT   PRIMARY KEY,
        network               TEXT   NOT NULL,
        config                TEXT   NOT NULL,
        charged               TEXT   NOT NULL,
        voucher_max           TEXT,
        voucher_signature     TEXT,
        balance               TEXT   NOT NULL,
        total_claimed         TEXT   NOT NULL,
        withdraw_requested_at BIGINT NOT NULL,
        refund_nonce          TEXT   NOT NULL,
        read_at               BIGINT NOT NULL,
        pending_id            TEXT,
        pending_max           TEXT,
        pending_expires_at    BIGINT,
        last_charged_at       BIGINT NOT NULL
    );
    CREATE TABLE gateway_jobs (
        id                TEXT        PRIMARY KEY,
        service           TEXT        NOT NULL,
        input             TEXT        NOT NULL,
        payer             TEXT        NOT NULL,
        amount            TEXT        NOT NULL,
        cost_usd          TEXT        NOT NULL,
        asset             TEXT        NOT NULL,
        network           TEXT        NOT NULL,
        settle_tx         TEXT,
        state             TEXT        NOT NULL,
        attempts          INTEGER     NOT NULL DEFAULT 0,
        output            TEXT,
        error             TEXT,
        refunded          BOOLEAN     NOT NULL DEFAULT FALSE,
        refund_amount_usd TEXT        NOT NULL DEFAULT '0',
        created_at        BIGINT      NOT NULL,
        updated_at        BIGINT      NOT NULL,
        finished_at       BIGINT,
        runner            TEXT,
        lease_until       TIMESTAMPTZ
    );
    CREATE INDEX gateway_jobs_unfinished ON gateway_jobs (created_at)
        WHERE state IN ('queued', 'running');
    CREATE INDEX gateway_jobs_finished ON gateway_jobs (finished_at)
        WHERE finished_at IS NOT NULL;
    CREATE TABLE gateway_guard_in_use (
        key        TEXT        PRIMARY KEY,
        lease      TEXT        NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE gateway_guard_served (
        key            TEXT        PRIMARY KEY,
        request        BYTEA       NOT NULL,
        authorization_digest BYTEA NOT NULL,
        receipt        TEXT        NOT NULL,
        status         INTEGER,
        header_names   TEXT[],
        header_values  BYTEA[],
        body           BYTEA,
        size           BIGINT      NOT NULL,
        stored_at      TIMESTAMPTZ NOT NULL,
        expires_at     TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX gateway_guard_served_expiry ON gateway_guard_served (expires_at);
    CREATE TABLE gateway_guard_streams (
        lease      TEXT        PRIMARY KEY,
        payer      TEXT        NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX gateway_guard_streams_payer ON gateway_guard_streams (payer);
    CREATE TABLE gateway_guard_unpaid (
        payer_key TEXT PRIMARY KEY,
        payer   TEXT   NOT NULL,
        payment TEXT   NOT NULL,
        network TEXT   NOT NULL,
        asset   TEXT   NOT NULL,
        amount  TEXT   NOT NULL,
        reason  TEXT,
        message TEXT,
        at      BIGINT NOT NULL
    );
    ",
    // 2: the payment journal the operator dashboard reads (one row per payment; searched
    // columns in the C collation, so that prefix ranges use their indexes).
    "
    CREATE TABLE gateway_payments (
        id          BIGSERIAL      PRIMARY KEY,
        payment     TEXT COLLATE \"C\" NOT NULL UNIQUE,
        at_ms       BIGINT         NOT NULL,
        service     TEXT COLLATE \"C\" NOT NULL,
        resource    TEXT           NOT NULL,
        payer       TEXT COLLATE \"C\" NOT NULL,
        amount      NUMERIC(78, 0) NOT NULL,
        asset       TEXT           NOT NULL,
        network     TEXT           NOT NULL,
        decimals    SMALLINT       NOT NULL,
        scheme      TEXT           NOT NULL,
        state       TEXT           NOT NULL,
        tx          TEXT COLLATE \"C\",
        reason      TEXT,
        fingerprint TEXT           NOT NULL,
        receipt     TEXT           NOT NULL,
        job         TEXT
    );
    CREATE INDEX gateway_payments_time ON gateway_payments (at_ms, id);
    CREATE INDEX gateway_payments_payer ON gateway_payments (payer, at_ms);
    CREATE INDEX gateway_payments_service ON gateway_payments (service, at_ms);
    CREATE INDEX gateway_payments_tx ON gateway_payments (tx) WHERE tx IS NOT NULL;
    CREATE INDEX gateway_payments_state ON gateway_payments (state, at_ms);
    ",
];

/// The advisory locks' first key: the gateway's (the second names what is locked).
const LOCK_CLASS: i32 = 0x7840_2047;
/// The claim runs' advisory locks' first key (the second names the network): session locks,
/// held for a whole run, kept apart from the transaction-scoped ones above.
const CLAIM_LOCK_CLASS: i32 = LOCK_CLASS + 1;
/// The second key of the migrations' lock.
const MIGRATIONS_LOCK: i32 = 0;

/// Takes the transaction-scoped advisory lock of `key` (in the gateway's class): held until
/// the transaction ends. Distinct keys may share a lock (a 32-bit digest): they then only
/// wait for each other.
async fn lock(
    transaction: &deadpool_postgres::Transaction<'_>,
    key: &str,
) -> Result<(), tokio_postgres::Error> {
    let digest = alloy_primitives::keccak256(key.as_bytes());
    let object = i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) | 1;
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&LOCK_CLASS, &object],
        )
        .await?;
    Ok(())
}

/// What this process holds in the database, renewed until it lets go.
#[derive(Debug, Default)]
struct Held {
    /// Leases of payments in use and of metered streams (`gateway_guard_*.lease`).
    guard: HashSet<String>,
    /// Guard leases let go of whose rows could not be deleted yet: retried at each renewal.
    guard_orphans: Vec<String>,
    /// Jobs this process runs (`gateway_jobs.runner` is this process).
    jobs: HashSet<String>,
}

/// The gateway's connection to Postgres: the pool, this process's identity and leases.
#[derive(Clone, Debug)]
pub struct Database {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    /// This process, as a job's `runner`.
    instance: String,
    leases: Leases,
    held: Mutex<Held>,
    renewal: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self
            .renewal
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

/// Whether `url` is a Postgres URL this gateway can connect with: the message of what is
/// wrong when it is not.
pub fn check_url(url: &str) -> Result<tokio_postgres::Config, String> {
    let wrong = |problem: String| {
        format!("{problem}; write postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(wrong("not a Postgres URL".into()));
    }
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| wrong(format!("not a valid Postgres URL ({e})")))?;
    if config.get_hosts().is_empty() {
        return Err(wrong("the URL names no host".into()));
    }
    if config.get_dbname().is_none() {
        return Err(wrong("the URL names no database".into()));
    }
    Ok(config)
}

impl Database {
    /// Connects to `url`, applies the migrations this version knows, and starts renewing
    /// this process's leases (every [`Leases::refresh`]). Must be called within a Tokio
    /// runtime; a database written by a later version is refused.
    pub async fn connect(url: &str, leases: Leases) -> Result<Self, DatabaseError> {
        let mut config = check_url(url).map_err(DatabaseError)?;
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .options(format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}"))
            .application_name("x402-gateway");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(MAX_CONNECTIONS)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(db_error)?;
        migrate(&pool).await?;
        let database = Self {
            inner: Arc::new(Inner {
                pool,
                instance: uuid::Uuid::new_v4().simple().to_string(),
                leases,
                held: Mutex::new(Held::default()),
                renewal: Mutex::new(None),
            }),
        };
        let weak = Arc::downgrade(&database.inner);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(leases.refresh);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let database = Database { inner };
                if let Err(error) = database.renew().await {
                    tracing::warn!(%error, "renewing this gateway's leases in the database failed; retrying");
                }
            }
        });
        *database
            .inner
            .renewal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
        Ok(database)
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i32, DatabaseError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM gateway_schema_migrations",
                &[],
            )
            .await
            .map_err(db_error)?;
        Ok(row.get(0))
    }

    /// Asks the database one round trip (`SELECT 1`), for `/health`: whether this replica
    /// can read and write its state right now.
    pub async fn check(&self) -> Result<(), DatabaseError> {
        let client = self.client().await?;
        client.execute("SELECT 1", &[]).await.map_err(db_error)?;
        Ok(())
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, DatabaseError> {
        self.inner.pool.get().await.map_err(db_error)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.inner
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The lease TTL, as a Postgres interval parameter in seconds.
    fn ttl_seconds(&self) -> f64 {
        self.inner.leases.ttl.as_secs_f64()
    }

    /// Renews every lease this process holds and deletes those it let go of whose rows are
    /// still there.
    async fn renew(&self) -> Result<(), DatabaseError> {
        let (guard, orphans, jobs) = {
            let held = self.held();
            (
                held.guard.iter().cloned().collect::<Vec<_>>(),
                held.guard_orphans.clone(),
                held.jobs.iter().cloned().collect::<Vec<_>>(),
            )
        };
        let client = self.client().await?;
        let ttl = self.ttl_seconds();
        if !orphans.is_empty() {
            guard::delete_leases(&client, &orphans).await?;
            self.held().guard_orphans.retain(|l| !orphans.contains(l));
        }
        if !guard.is_empty() {
            client
                .execute(
                    "UPDATE gateway_guard_in_use SET expires_at = now() + make_interval(secs => $2)
                     WHERE lease = ANY($1)",
                    &[&guard, &ttl],
                )
                .await
                .map_err(db_error)?;
            client
                .execute(
                    "UPDATE gateway_guard_streams SET expires_at = now() + make_interval(secs => $2)
                     WHERE lease = ANY($1)",
                    &[&guard, &ttl],
                )
                .await
                .map_err(db_error)?;
        }
        if !jobs.is_empty() {
            client
                .execute(
                    "UPDATE gateway_jobs SET lease_until = now() + make_interval(secs => $3)
                     WHERE id = ANY($1) AND runner = $2 AND state IN ('queued', 'running')",
                    &[&jobs, &self.inner.instance, &ttl],
                )
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }
}

/// Applies the migrations the database lacks, in one transaction under the migrations'
/// advisory lock: replicas starting together apply each once.
async fn migrate(pool: &Pool) -> Result<(), DatabaseError> {
    let mut client = pool.get().await.map_err(db_error)?;
    let transaction = client.transaction().await.map_err(db_error)?;
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&LOCK_CLASS, &MIGRATIONS_LOCK],
        )
        .await
        .map_err(db_error)?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS gateway_schema_migrations (
                version    INTEGER     PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(db_error)?;
    let current: i32 = transaction
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM gateway_schema_migrations",
            &[],
        )
        .await
        .map_err(db_error)?
        .get(0);
    let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
    if current > known {
        return Err(DatabaseError(format!(
            "the database was written by a later gateway (schema {current}, this one knows {known})"
        )));
    }
    for (version, sql) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(current).unwrap_or(0))
    {
        transaction
            .batch_execute(sql)
            .await
            .map_err(|e| DatabaseError(format!("migration {version}: {e}")))?;
        transaction
            .execute(
                "INSERT INTO gateway_schema_migrations (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(db_error)?;
        tracing::info!(version, "gateway database migrated");
    }
    transaction.commit().await.map_err(db_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_urls_say_what_to_write() {
        for (url, says) in [
            ("postgress://x@h/db", "not a Postgres URL"),
            ("host=localhost dbname=x", "not a Postgres URL"),
            ("postgres://u@h:notaport/db", "not a valid Postgres URL"),
            ("postgres://u@h", "names no database"),
        ] {
            let refused = check_url(url).unwrap_err();
            assert!(refused.contains(says), "{url}: {refused}");
        }
        check_url("postgres://postgres@127.0.0.1:5432/test").unwrap();
        check_url("postgresql://u:p@db.internal/x402?connect_timeout=3").unwrap();
    }

    /// Replicas starting together apply each migration once; a database a later version
    /// wrote is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn migrations_are_applied_once_and_a_later_schema_is_refused() {
        let database = x402_testkit::TempDatabase::create().await;
        let (a, b) = tokio::join!(
            Database::connect(&database.url, Leases::default()),
            Database::connect(&database.url, Leases::default())
        );
        let (a, _b) = (a.unwrap(), b.unwrap());
        let known = i32::try_from(MIGRATIONS.len()).unwrap();
        assert_eq!(a.schema_version().await.unwrap(), known);
        a.client()
            .await
            .unwrap()
            .execute(
                "INSERT INTO gateway_schema_migrations (version) VALUES ($1)",
                &[&(known + 1)],
            )
            .await
            .unwrap();
        let refused = Database::connect(&database.url, Leases::default())
            .await
            .unwrap_err();
        assert!(refused.0.contains("later gateway"), "{refused}");
    }
}
