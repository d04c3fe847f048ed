//! The shared settlement log, in a Postgres database: several facilitator instances keep one
//! log, and the database decides every claim (of concurrent claims for one payment, from any
//! instance, exactly one wins; an abandoned settlement is taken over by exactly one).
//!
//! Each write is one statement (a claim and its first transaction together, a transaction and
//! its settlement's new state together), committed with `synchronous_commit = on` before the
//! call returns: a transaction is never broadcast before its record is durable. Amounts are
//! `NUMERIC(78, 0)`, exact for any `uint256`. The schema is versioned in `schema_migrations`
//! and brought up to date at start inside one transaction holding an advisory lock, so
//! instances starting together do not race.

use std::str::FromStr;
use std::time::Duration;

use alloy::primitives::{Address, Bytes, U256};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};
use x402_evm::batch::{BatchSend, BatchSendKey, BatchSendLog, BatchTx};
use x402_proto::{BoxFuture, FacilitatorError, Network, SettleResponse};

mod nonces;
mod reads;

use crate::store::{
    Claim, LogHealth, NewSettlement, Party, PartyTally, SeriesPoint, SettlementFilter,
    SettlementKey, SettlementPage, SettlementRecord, SettlementState, SettlementStore,
    SettlementSummary, StoreError, TxRecord,
};

/// How the log connects to Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Connections kept open at most.
    pub pool_size: usize,
    /// How long opening a connection, or waiting for a free one, may take.
    pub connect_timeout: Duration,
    /// How long one statement may run before the server cancels it.
    pub statement_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

/// Which schema this log's rows belong to in `schema_migrations` (other components may keep
/// their tables in the same database).
const COMPONENT: &str = "facilitator";

/// The advisory lock held while migrating (`x402fac` in ASCII).
const MIGRATION_LOCK: i64 = 0x0078_3430_3266_6163;

/// One step of the schema.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// The schema, one version at a time; never edit a step that has shipped, add one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "settlements and their transactions; batch-settlement sends and theirs",
        sql: "
CREATE TABLE settlements (
    chain_id     BIGINT        NOT NULL,
    asset        TEXT          NOT NULL,
    payer        TEXT          NOT NULL,
    auth_nonce   TEXT          NOT NULL,
    seq          BIGINT        GENERATED ALWAYS AS IDENTITY UNIQUE,
    fingerprint  TEXT          NOT NULL,
    state        TEXT          NOT NULL
        CHECK (state IN ('claimed', 'submitted', 'confirmed', 'failed', 'abandoned')),
    token        TEXT          NOT NULL,
    pay_to       TEXT          NOT NULL,
    amount       NUMERIC(78,0) NOT NULL CHECK (amount >= 0),
    valid_before BIGINT        NOT NULL,
    wire_network TEXT          NOT NULL,
    request      TEXT          NOT NULL,
    response     TEXT,
    answered_to  TEXT,
    created_at   TIMESTAMPTZ   NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ   NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, asset, payer, auth_nonce)
);
CREATE INDEX settlements_unfinished ON settlements (seq)
    WHERE state IN ('claimed', 'submitted');
CREATE TABLE settlement_txs (
    tx_hash      TEXT        PRIMARY KEY,
    seq          BIGINT      GENERATED ALWAYS AS IDENTITY UNIQUE,
    chain_id     BIGINT      NOT NULL,
    asset        TEXT        NOT NULL,
    payer        TEXT        NOT NULL,
    auth_nonce   TEXT        NOT NULL,
    raw_tx       BYTEA       NOT NULL,
    signer       TEXT        NOT NULL,
    signer_nonce BIGINT      NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (chain_id, asset, payer, auth_nonce) REFERENCES settlements
);
CREATE INDEX settlement_txs_by_key ON settlement_txs (chain_id, asset, payer, auth_nonce);
CREATE TABLE batch_sends (
    send_key   TEXT        PRIMARY KEY,
    seq        BIGINT      GENERATED ALWAYS AS IDENTITY UNIQUE,
    tx_hash    TEXT        NOT NULL,
    request    TEXT,
    response   TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX batch_sends_unfinished ON batch_sends (seq) WHERE response IS NULL;
CREATE TABLE batch_send_txs (
    tx_hash      TEXT        PRIMARY KEY,
    seq          BIGINT      GENERATED ALWAYS AS IDENTITY UNIQUE,
    send_key     TEXT        NOT NULL,
    raw_tx       BYTEA       NOT NULL,
    signer_nonce BIGINT      NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX batch_send_txs_by_key ON batch_send_txs (send_key, seq);
",
    },
    Migration {
        version: 2,
        name: "signer nonces leased by the instances sharing a signer",
        sql: "
CREATE TABLE signer_nonces (
    chain_id   BIGINT      NOT NULL,
    signer     TEXT        NOT NULL,
    next_nonce BIGINT      NOT NULL DEFAULT 0 CHECK (next_nonce >= 0),
    leased_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, signer)
);
",
    },
    Migration {
        version: 3,
        name: "settlement owners and instance heartbeats",
        sql: "
ALTER TABLE settlements ADD COLUMN owner TEXT
    DEFAULT current_setting('x402.instance', true);
CREATE INDEX settlements_unfinished_by_owner ON settlements (owner, seq)
    WHERE state IN ('claimed', 'submitted');
CREATE TABLE facilitator_instances (
    id           TEXT        PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
",
    },
    Migration {
        version: 4,
        name: "for the operators' dashboard: settled sums per day and per payer and payee, \
               kept by a trigger as settlements are confirmed; indexes by time, state, payer, \
               payee and signer",
        sql: "
-- Nobody writes a settlement while the sums start from the confirmed ones.
LOCK TABLE settlements IN SHARE MODE;
CREATE TABLE settled_days (
    chain_id    BIGINT        NOT NULL,
    token       TEXT          NOT NULL,
    day         BIGINT        NOT NULL,
    settlements BIGINT        NOT NULL,
    amount      NUMERIC(78,0) NOT NULL,
    PRIMARY KEY (chain_id, token, day)
);
CREATE TABLE settled_parties (
    side        TEXT          NOT NULL CHECK (side IN ('payer', 'payee')),
    address     TEXT          NOT NULL,
    chain_id    BIGINT        NOT NULL,
    token       TEXT          NOT NULL,
    settlements BIGINT        NOT NULL,
    amount      NUMERIC(78,0) NOT NULL,
    PRIMARY KEY (side, address, chain_id, token)
);
CREATE INDEX settled_parties_top ON settled_parties (side, amount DESC, settlements DESC);
CREATE FUNCTION x402_count_settled(s settlements, sign integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO settled_days AS d (chain_id, token, day, settlements, amount)
    VALUES (s.chain_id, s.token,
            (floor(extract(epoch FROM s.created_at))::bigint / 86400) * 86400,
            sign, sign * s.amount)
    ON CONFLICT (chain_id, token, day) DO UPDATE
        SET settlements = d.settlements + excluded.settlements,
            amount = d.amount + excluded.amount;
    INSERT INTO settled_parties AS p (side, address, chain_id, token, settlements, amount)
    VALUES ('payer', s.payer, s.chain_id, s.token, sign, sign * s.amount),
           ('payee', s.pay_to, s.chain_id, s.token, sign, sign * s.amount)
    ON CONFLICT (side, address, chain_id, token) DO UPDATE
        SET settlements = p.settlements + excluded.settlements,
            amount = p.amount + excluded.amount;
END $$;
CREATE FUNCTION x402_settled_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.state = 'confirmed' THEN
        PERFORM x402_count_settled(OLD, -1);
    END IF;
    IF NEW.state = 'confirmed' THEN
        PERFORM x402_count_settled(NEW, 1);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER settled_on_insert AFTER INSERT ON settlements FOR EACH ROW
    WHEN (NEW.state = 'confirmed') EXECUTE FUNCTION x402_settled_changed();
CREATE TRIGGER settled_on_update AFTER UPDATE ON settlements FOR EACH ROW
    WHEN ((OLD.state = 'confirmed' OR NEW.state = 'confirmed')
          AND (OLD.state, OLD.amount, OLD.token, OLD.pay_to, OLD.created_at)
              IS DISTINCT FROM (NEW.state, NEW.amount, NEW.token, NEW.pay_to, NEW.created_at))
    EXECUTE FUNCTION x402_settled_changed();
INSERT INTO settled_days (chain_id, token, day, settlements, amount)
    SELECT chain_id, token, (floor(extract(epoch FROM created_at))::bigint / 86400) * 86400,
           count(*), sum(amount)
    FROM settlements WHERE state = 'confirmed' GROUP BY 1, 2, 3;
INSERT INTO settled_parties (side, address, chain_id, token, settlements, amount)
    SELECT 'payer', payer, chain_id, token, count(*), sum(amount)
    FROM settlements WHERE state = 'confirmed' GROUP BY 2, 3, 4;
INSERT INTO settled_parties (side, address, chain_id, token, settlements, amount)
    SELECT 'payee', pay_to, chain_id, token, count(*), sum(amount)
    FROM settlements WHERE state = 'confirmed' GROUP BY 2, 3, 4;
CREATE INDEX settlements_by_time ON settlements (created_at, seq);
CREATE INDEX settlements_by_state ON settlements (state, created_at);
CREATE INDEX settlements_by_payer ON settlements (payer text_pattern_ops, created_at);
CREATE INDEX settlements_by_payee ON settlements (pay_to text_pattern_ops, created_at);
CREATE INDEX settlement_txs_by_hash ON settlement_txs (tx_hash text_pattern_ops);
CREATE INDEX settlement_txs_by_signer ON settlement_txs (chain_id, signer);
",
    },
];

/// The newest schema version this build knows.
fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// A settlement row and one of its transactions (`NULL`s when it has none), grouped by
/// settlement in `seq` order, each settlement's transactions oldest first.
macro_rules! select_settlements {
    ($filter:literal) => {
        concat!(
            "SELECT s.chain_id, s.asset, s.payer, s.auth_nonce, s.fingerprint, s.state, s.token,
                    s.pay_to, s.amount::text, s.valid_before, s.wire_network, s.request,
                    s.response, s.answered_to, t.tx_hash, t.raw_tx, t.signer, t.signer_nonce
             FROM settlements s
             LEFT JOIN settlement_txs t USING (chain_id, asset, payer, auth_nonce)
             WHERE ",
            $filter,
            " ORDER BY s.seq, t.signer_nonce, t.seq"
        )
    };
}

const GET: &str =
    select_settlements!("s.chain_id = $1 AND s.asset = $2 AND s.payer = $3 AND s.auth_nonce = $4");

/// This instance's unfinished settlements (every connection names its instance in
/// `x402.instance`).
const UNFINISHED: &str = select_settlements!(
    "s.state IN ('claimed', 'submitted') AND s.owner = current_setting('x402.instance', true)"
);

/// Marks this instance alive now.
const HEARTBEAT: &str = "
    INSERT INTO facilitator_instances (id) VALUES (current_setting('x402.instance', true))
    ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()";

/// Marks this instance stopped: its heartbeat is as old as can be.
const RETIRE: &str = "
    UPDATE facilitator_instances SET heartbeat_at = '-infinity'
    WHERE id = current_setting('x402.instance', true)";

/// Makes this instance the owner of the unfinished settlements of every other instance whose
/// heartbeat is older than `$1` milliseconds (or that never wrote one); their keys. A row two
/// instances reach together goes to the first: the second finds its owner alive.
const TAKE_OVER: &str = "
    UPDATE settlements SET owner = current_setting('x402.instance', true), updated_at = now()
    WHERE state IN ('claimed', 'submitted')
      AND owner IS DISTINCT FROM current_setting('x402.instance', true)
      AND (owner IS NULL OR owner NOT IN (
          SELECT id FROM facilitator_instances
          WHERE heartbeat_at > now() - $1::bigint * interval '1 millisecond'))
    RETURNING chain_id, asset, payer, auth_nonce";

/// Inserts a settlement, or takes over an abandoned one; touches nothing held by anyone else.
/// The row lock `ON CONFLICT` takes makes concurrent claims for one key queue, and each sees
/// the state the one before it left.
macro_rules! claim_settlement {
    () => {
        "INSERT INTO settlements (chain_id, asset, payer, auth_nonce, fingerprint, state, token,
            pay_to, amount, valid_before, wire_network, request, answered_to)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::numeric, $10, $11, $12, $13)
         ON CONFLICT (chain_id, asset, payer, auth_nonce) DO UPDATE SET
            fingerprint = excluded.fingerprint, state = excluded.state, token = excluded.token,
            pay_to = excluded.pay_to, amount = excluded.amount,
            valid_before = excluded.valid_before, wire_network = excluded.wire_network,
            request = excluded.request, response = NULL, answered_to = excluded.answered_to,
            owner = excluded.owner, updated_at = now()
         WHERE settlements.state = 'abandoned'"
    };
}

const CLAIM: &str = claim_settlement!();

/// The claim and its first transaction in one statement: the transaction row exists only
/// when the claim won.
const CLAIM_WITH_TRANSACTION: &str = concat!(
    "WITH claimed AS (",
    claim_settlement!(),
    " RETURNING chain_id, asset, payer, auth_nonce)
     INSERT INTO settlement_txs (tx_hash, chain_id, asset, payer, auth_nonce, raw_tx, signer,
        signer_nonce)
     SELECT $14::text, chain_id, asset, payer, auth_nonce, $15::bytea, $16::text, $17::bigint
     FROM claimed"
);

/// A transaction and its settlement's move to `submitted` in one statement: the transaction
/// row exists only when the settlement was claimed or submitted.
const ADD_TRANSACTION: &str = "
    WITH moved AS (
        UPDATE settlements SET state = 'submitted', updated_at = now()
        WHERE chain_id = $1 AND asset = $2 AND payer = $3 AND auth_nonce = $4
          AND state IN ('claimed', 'submitted')
        RETURNING chain_id, asset, payer, auth_nonce)
    INSERT INTO settlement_txs (tx_hash, chain_id, asset, payer, auth_nonce, raw_tx, signer,
        signer_nonce)
    SELECT $5::text, chain_id, asset, payer, auth_nonce, $6::bytea, $7::text, $8::bigint
    FROM moved";

const FINISH: &str = "
    UPDATE settlements SET state = $5, response = $6, updated_at = now(),
        answered_to = COALESCE(answered_to, $7)
    WHERE chain_id = $1 AND asset = $2 AND payer = $3 AND auth_nonce = $4";

const HAND_OUT: &str = "
    UPDATE settlements SET answered_to = $5
    WHERE chain_id = $1 AND asset = $2 AND payer = $3 AND auth_nonce = $4
      AND (answered_to IS NULL OR answered_to = $5)";

/// A send row and one of its transactions (`NULL`s when it has none), oldest first.
macro_rules! select_sends {
    ($filter:literal) => {
        concat!(
            "SELECT s.send_key, s.tx_hash, s.request, s.response, t.tx_hash, t.raw_tx,
                    t.signer_nonce
             FROM batch_sends s LEFT JOIN batch_send_txs t ON t.send_key = s.send_key
             WHERE ",
            $filter,
            " ORDER BY s.seq, t.seq"
        )
    };
}

const FIND_SEND: &str = select_sends!("s.send_key = $1");

const UNFINISHED_SENDS: &str = select_sends!("s.response IS NULL");

/// A send and its first transaction in one statement; nothing when the key is recorded.
const RECORD_SEND: &str = "
    WITH sent AS (
        INSERT INTO batch_sends (send_key, tx_hash, request) VALUES ($1, $2, $3)
        ON CONFLICT (send_key) DO NOTHING
        RETURNING send_key),
    tx AS (
        INSERT INTO batch_send_txs (tx_hash, send_key, raw_tx, signer_nonce)
        SELECT $2::text, send_key, $4::bytea, $5::bigint FROM sent
        ON CONFLICT (tx_hash) DO NOTHING)
    SELECT count(*) FROM sent";

const ADD_SEND_TRANSACTION: &str = "
    INSERT INTO batch_send_txs (tx_hash, send_key, raw_tx, signer_nonce)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (tx_hash) DO NOTHING";

const FINISH_SEND: &str =
    "UPDATE batch_sends SET response = $2, updated_at = now() WHERE send_key = $1";

const FORGET_SEND: &str = "
    WITH gone AS (DELETE FROM batch_send_txs WHERE send_key = $1)
    DELETE FROM batch_sends WHERE send_key = $1";

/// A settlement log in a Postgres database, shared by every instance pointed at it. Cheap to
/// clone (one pool).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// `host:port/dbname`, for messages (never the password).
    target: String,
    /// This instance's id, the owner of the settlements it records.
    instance: String,
}

/// An instance id when none is configured: the host name, the process id and a random
/// suffix (several instances may run in one process).
pub(crate) fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| {
            name.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                .take(40)
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "facilitator".into());
    let suffix = alloy::primitives::FixedBytes::<3>::random();
    format!(
        "{host}-{}-{}",
        std::process::id(),
        alloy::hex::encode(suffix)
    )
}

/// Whether `id` can name an instance (it is passed in the connection's options).
pub(crate) fn is_instance_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &self.target)
            .finish_non_exhaustive()
    }
}

/// Where a connection config points, without its credentials.
fn target_of(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let dbname = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default();
    format!("{host}:{port}/{dbname}")
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user[:password]@host[:port]/dbname`)
    /// and brings its schema up to date. Fails when it cannot be reached within the connect
    /// timeout, or holds a schema newer than this build knows.
    pub async fn connect(url: &str, options: &PostgresOptions) -> Result<Self, StoreError> {
        Self::connect_as(url, options, &default_instance_id()).await
    }

    /// [`connect`](Self::connect), as the instance `instance` (see
    /// [`PostgresConfig::instance_id`](crate::PostgresConfig::instance_id)): the settlements
    /// it records are its own.
    pub async fn connect_as(
        url: &str,
        options: &PostgresOptions,
        instance: &str,
    ) -> Result<Self, StoreError> {
        if !is_instance_id(instance) {
            return Err(StoreError(format!(
                "{instance:?} cannot name an instance: use 1 to 63 letters, digits, `.`, `_`, `-` or `:`"
            )));
        }
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError(format!("the Postgres URL cannot be used: {e}")))?;
        let target = target_of(&config);
        config.connect_timeout(options.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("x402-facilitator");
        }
        // Every commit is durable before it is acknowledged (whatever the server's default),
        // and no statement runs forever.
        // Each connection names the instance: the settlements it records are that instance's.
        let session = format!(
            "-c synchronous_commit=on -c statement_timeout={} -c x402.instance={instance}",
            options.statement_timeout.as_millis()
        );
        let merged = match config.get_options() {
            Some(given) if !given.trim().is_empty() => format!("{given} {session}"),
            _ => session,
        };
        config.options(merged);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let wait = Some(options.connect_timeout);
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(wait)
            .create_timeout(wait)
            .recycle_timeout(wait)
            .build()
            .map_err(|e| StoreError(format!("a Postgres pool for {target}: {e}")))?;
        let store = Self {
            pool,
            target,
            instance: instance.to_owned(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// This instance's id.
    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    fn error(&self, error: impl std::fmt::Display) -> StoreError {
        StoreError(format!("Postgres at {}: {error}", self.target))
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(|e| self.error(e))
    }

    /// Runs one statement; the number of rows it changed.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.error(e))?;
        client
            .execute(&statement, params)
            .await
            .map_err(|e| self.error(e))
    }

    /// Runs one query; its rows.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.error(e))?;
        client
            .query(&statement, params)
            .await
            .map_err(|e| self.error(e))
    }

    /// Applies the migrations the database has not seen, in one transaction holding the
    /// migration lock: instances starting together take turns, and the later ones find the
    /// schema done.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.error(e))?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| self.error(e))?;
        transaction
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    component  TEXT        NOT NULL,
                    version    INTEGER     NOT NULL,
                    name       TEXT        NOT NULL,
                    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    PRIMARY KEY (component, version)
                )",
            )
            .await
            .map_err(|e| self.error(e))?;
        let applied: i32 = transaction
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = $1",
                &[&COMPONENT],
            )
            .await
            .map_err(|e| self.error(e))?
            .get(0);
        let latest = latest_version();
        if applied > latest {
            return Err(StoreError(format!(
                "the settlement log at {} has schema version {applied}, newer than this \
                 facilitator knows ({latest}); run a newer facilitator",
                self.target
            )));
        }
        for migration in MIGRATIONS.iter().filter(|m| m.version > applied) {
            transaction
                .batch_execute(migration.sql)
                .await
                .map_err(|e| self.error(format!("migration {}: {e}", migration.version)))?;
            transaction
                .execute(
                    "INSERT INTO schema_migrations (component, version, name)
                     VALUES ($1, $2, $3)",
                    &[&COMPONENT, &migration.version, &migration.name],
                )
                .await
                .map_err(|e| self.error(e))?;
            tracing::info!(
                version = migration.version,
                name = migration.name,
                database = %self.target,
                "settlement log migrated"
            );
        }
        transaction.commit().await.map_err(|e| self.error(e))
    }
}

fn hex(value: impl std::fmt::LowerHex) -> String {
    format!("{value:#x}")
}

/// A key's columns as stored (as the SQLite log spells them).
fn key_params(key: &SettlementKey) -> (i64, String, String, String) {
    (
        i64::try_from(key.chain_id).unwrap_or(i64::MAX),
        hex(key.asset),
        hex(key.payer),
        hex(key.nonce),
    )
}

fn parse<T: FromStr>(column: &str, value: &str) -> Result<T, StoreError> {
    value
        .parse()
        .map_err(|_| StoreError(format!("corrupt {column} {value:?} in settlement log")))
}

fn column<'r, T: tokio_postgres::types::FromSql<'r>>(
    row: &'r Row,
    index: usize,
) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|e| StoreError(format!("reading the settlement log: {e}")))
}

/// The settlement key a row of [`select_settlements`] names.
fn key_of(row: &Row) -> Result<SettlementKey, StoreError> {
    Ok(SettlementKey {
        chain_id: u64::try_from(column::<i64>(row, 0)?).unwrap_or_default(),
        asset: parse("asset", column(row, 1)?)?,
        payer: parse("payer", column(row, 2)?)?,
        nonce: parse("auth_nonce", column(row, 3)?)?,
    })
}

/// The transaction a row of [`select_settlements`] carries, if any.
fn tx_of(row: &Row) -> Result<Option<TxRecord>, StoreError> {
    let Some(hash) = column::<Option<&str>>(row, 14)? else {
        return Ok(None);
    };
    Ok(Some(TxRecord {
        tx_hash: parse("tx_hash", hash)?,
        raw: Bytes::from(column::<Vec<u8>>(row, 15)?),
        signer: parse::<Address>("signer", column(row, 16)?)?,
        signer_nonce: u64::try_from(column::<i64>(row, 17)?).unwrap_or_default(),
    }))
}

/// The settlement a row of [`select_settlements`] names, without its transactions.
fn settlement_of(row: &Row, key: SettlementKey) -> Result<SettlementRecord, StoreError> {
    let state: &str = column(row, 5)?;
    let response = column::<Option<&str>>(row, 12)?
        .map(serde_json::from_str::<SettleResponse>)
        .transpose()
        .map_err(|e| StoreError(format!("corrupt response in settlement log: {e}")))?;
    Ok(SettlementRecord {
        settlement: NewSettlement {
            key,
            fingerprint: parse("fingerprint", column(row, 4)?)?,
            token: parse("token", column(row, 6)?)?,
            pay_to: parse("pay_to", column(row, 7)?)?,
            amount: parse::<U256>("amount", column(row, 8)?)?,
            valid_before: u64::try_from(column::<i64>(row, 9)?).unwrap_or_default(),
            wire_network: Network::new(column::<String>(row, 10)?),
            request: column(row, 11)?,
        },
        state: SettlementState::parse(state)
            .ok_or_else(|| StoreError(format!("corrupt state {state:?} in settlement log")))?,
        txs: Vec::new(),
        response,
        answered_to: column(row, 13)?,
    })
}

/// The settlements in rows of [`select_settlements`], in order, each with its transactions.
fn settlements(rows: &[Row]) -> Result<Vec<SettlementRecord>, StoreError> {
    let mut records: Vec<SettlementRecord> = Vec::new();
    for row in rows {
        let key = key_of(row)?;
        let same = records.last().is_some_and(|r| r.settlement.key == key);
        if !same {
            records.push(settlement_of(row, key)?);
        }
        if let (Some(tx), Some(record)) = (tx_of(row)?, records.last_mut()) {
            record.txs.push(tx);
        }
    }
    Ok(records)
}

impl SettlementStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            client
                .simple_query("SELECT 1")
                .await
                .map(|_| ())
                .map_err(|e| self.error(e))
        })
    }

    fn claim<'a>(&'a self, new: &'a NewSettlement) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(async move {
            let columns = SettlementColumns::of(new, SettlementState::Claimed, None);
            let changed = self.execute(CLAIM, &columns.params()).await?;
            self.claimed(new, changed).await
        })
    }

    fn claim_with_transaction<'a>(
        &'a self,
        new: &'a NewSettlement,
        tx: &'a TxRecord,
        answered_to: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(async move {
            let columns = SettlementColumns::of(new, SettlementState::Submitted, answered_to);
            let (hash, signer) = (hex(tx.tx_hash), hex(tx.signer));
            let raw = tx.raw.as_ref();
            let signer_nonce = i64::try_from(tx.signer_nonce).unwrap_or(i64::MAX);
            let mut params = columns.params();
            params.extend_from_slice(&[&hash, &raw, &signer, &signer_nonce]);
            let changed = self.execute(CLAIM_WITH_TRANSACTION, &params).await?;
            self.claimed(new, changed).await
        })
    }

    fn add_transaction<'a>(
        &'a self,
        key: &'a SettlementKey,
        tx: &'a TxRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let (chain_id, asset, payer, nonce) = key_params(key);
            let (hash, signer) = (hex(tx.tx_hash), hex(tx.signer));
            let raw = tx.raw.as_ref();
            let signer_nonce = i64::try_from(tx.signer_nonce).unwrap_or(i64::MAX);
            let params: [&(dyn ToSql + Sync); 8] = [
                &chain_id,
                &asset,
                &payer,
                &nonce,
                &hash,
                &raw,
                &signer,
                &signer_nonce,
            ];
            if self.execute(ADD_TRANSACTION, &params).await? != 1 {
                return Err(StoreError(format!(
                    "settlement {key} is not claimed; refusing to record a transaction for it"
                )));
            }
            Ok(())
        })
    }

    fn finish<'a>(
        &'a self,
        key: &'a SettlementKey,
        state: SettlementState,
        response: &'a SettleResponse,
        answered_to: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let response = serde_json::to_string(response).map_err(|e| self.error(e))?;
            let (chain_id, asset, payer, nonce) = key_params(key);
            let state = state.as_str();
            let params: [&(dyn ToSql + Sync); 7] = [
                &chain_id,
                &asset,
                &payer,
                &nonce,
                &state,
                &response,
                &answered_to,
            ];
            self.execute(FINISH, &params).await.map(|_| ())
        })
    }

    fn hand_out<'a>(
        &'a self,
        key: &'a SettlementKey,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let (chain_id, asset, payer, nonce) = key_params(key);
            let params: [&(dyn ToSql + Sync); 5] = [&chain_id, &asset, &payer, &nonce, &holder];
            Ok(self.execute(HAND_OUT, &params).await? == 1)
        })
    }

    fn get<'a>(
        &'a self,
        key: &'a SettlementKey,
    ) -> BoxFuture<'a, Result<Option<SettlementRecord>, StoreError>> {
        Box::pin(async move {
            let (chain_id, asset, payer, nonce) = key_params(key);
            let params: [&(dyn ToSql + Sync); 4] = [&chain_id, &asset, &payer, &nonce];
            let rows = self.query(GET, &params).await?;
            Ok(settlements(&rows)?.into_iter().next())
        })
    }

    fn unfinished(&self) -> BoxFuture<'_, Result<Vec<SettlementRecord>, StoreError>> {
        Box::pin(async move { settlements(&self.query(UNFINISHED, &[]).await?) })
    }

    fn settled_days(&self, since: u64) -> BoxFuture<'_, Result<Vec<SeriesPoint>, StoreError>> {
        Box::pin(self.read_days(since))
    }

    fn settled_series(
        &self,
        since: u64,
        bucket_seconds: u64,
    ) -> BoxFuture<'_, Result<Vec<SeriesPoint>, StoreError>> {
        Box::pin(self.read_series(since, bucket_seconds))
    }

    fn top_parties(
        &self,
        party: Party,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<PartyTally>, StoreError>> {
        Box::pin(self.read_top(party, limit))
    }

    fn settlements<'a>(
        &'a self,
        filter: &'a SettlementFilter,
    ) -> BoxFuture<'a, Result<SettlementPage, StoreError>> {
        Box::pin(self.read_page(filter))
    }

    fn summary<'a>(
        &'a self,
        key: &'a SettlementKey,
    ) -> BoxFuture<'a, Result<Option<SettlementSummary>, StoreError>> {
        Box::pin(self.read_summary(key))
    }

    fn log_health(&self) -> BoxFuture<'_, Result<LogHealth, StoreError>> {
        Box::pin(self.read_health())
    }

    fn heartbeat(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.execute(HEARTBEAT, &[]).await.map(|_| ()) })
    }

    fn retire(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.execute(RETIRE, &[]).await.map(|_| ()) })
    }

    fn take_over(
        &self,
        stale_after: Duration,
    ) -> BoxFuture<'_, Result<Vec<SettlementRecord>, StoreError>> {
        Box::pin(async move {
            let millis = i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX);
            let mut taken = Vec::new();
            for row in self.query(TAKE_OVER, &[&millis]).await? {
                let key = key_of(&row)?;
                if let Some(record) = self.get(&key).await? {
                    tracing::warn!(%key, instance = %self.instance, "took over a settlement of an instance whose heartbeat is stale");
                    taken.push(record);
                }
            }
            Ok(taken)
        })
    }
}

/// A new settlement's columns, as [`claim_settlement`] takes them (`$1` to `$13`).
struct SettlementColumns<'a> {
    key: (i64, String, String, String),
    fingerprint: String,
    state: &'static str,
    token: String,
    pay_to: String,
    amount: String,
    valid_before: i64,
    wire_network: &'a str,
    request: &'a str,
    answered_to: Option<&'a str>,
}

impl<'a> SettlementColumns<'a> {
    fn of(new: &'a NewSettlement, state: SettlementState, answered_to: Option<&'a str>) -> Self {
        Self {
            key: key_params(&new.key),
            fingerprint: hex(new.fingerprint),
            state: state.as_str(),
            token: hex(new.token),
            pay_to: hex(new.pay_to),
            amount: new.amount.to_string(),
            valid_before: i64::try_from(new.valid_before).unwrap_or(i64::MAX),
            wire_network: new.wire_network.as_str(),
            request: &new.request,
            answered_to,
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.key.0,
            &self.key.1,
            &self.key.2,
            &self.key.3,
            &self.fingerprint,
            &self.state,
            &self.token,
            &self.pay_to,
            &self.amount,
            &self.valid_before,
            &self.wire_network,
            &self.request,
            &self.answered_to,
        ]
    }
}

impl PostgresStore {
    /// The outcome of a claim that changed `changed` rows: `Fresh` when it won, else the
    /// record that holds the key.
    async fn claimed(&self, new: &NewSettlement, changed: u64) -> Result<Claim, StoreError> {
        if changed == 1 {
            return Ok(Claim::Fresh);
        }
        let existing = self
            .get(&new.key)
            .await?
            .ok_or_else(|| StoreError("settlement vanished during claim".into()))?;
        Ok(Claim::Existing(Box::new(existing)))
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError(format!("corrupt {what} in batch_sends"))
}

/// The sends in rows of [`select_sends`], in order, each with its transactions (the row's own
/// hash alone, with no signed transaction, when none is recorded).
fn sends(rows: &[Row]) -> Result<Vec<(BatchSendKey, BatchSend)>, StoreError> {
    let mut sends: Vec<(String, BatchSend, String)> = Vec::new();
    for row in rows {
        let key: String = column(row, 0)?;
        if sends.last().is_none_or(|(last, _, _)| *last != key) {
            let answer = column::<Option<&str>>(row, 3)?
                .map(serde_json::from_str::<SettleResponse>)
                .transpose()
                .map_err(|_| corrupt("response"))?;
            let send = BatchSend {
                txs: Vec::new(),
                request: column::<Option<String>>(row, 2)?.unwrap_or_default(),
                answer,
            };
            sends.push((key, send, column(row, 1)?));
        }
        if let (Some(hash), Some((_, send, _))) =
            (column::<Option<&str>>(row, 4)?, sends.last_mut())
        {
            send.txs.push(BatchTx {
                tx_hash: hash.parse().map_err(|_| corrupt("tx_hash"))?,
                raw: Bytes::from(column::<Vec<u8>>(row, 5)?),
                signer_nonce: u64::try_from(column::<i64>(row, 6)?)
                    .map_err(|_| corrupt("signer_nonce"))?,
            });
        }
    }
    sends
        .into_iter()
        .map(|(key, mut send, first_hash)| {
            if send.txs.is_empty() {
                send.txs.push(BatchTx {
                    tx_hash: first_hash.parse().map_err(|_| corrupt("tx_hash"))?,
                    raw: Bytes::new(),
                    signer_nonce: 0,
                });
            }
            Ok((BatchSendKey::stored(key), send))
        })
        .collect()
}

impl BatchSendLog for PostgresStore {
    fn find<'a>(
        &'a self,
        key: &'a BatchSendKey,
    ) -> BoxFuture<'a, Result<Option<BatchSend>, FacilitatorError>> {
        Box::pin(async move {
            let rows = self.query(FIND_SEND, &[&key.as_str()]).await?;
            Ok(sends(&rows)?.into_iter().next().map(|(_, send)| send))
        })
    }

    fn record<'a>(
        &'a self,
        key: &'a BatchSendKey,
        tx: &'a BatchTx,
        request: &'a str,
    ) -> BoxFuture<'a, Result<bool, FacilitatorError>> {
        Box::pin(async move {
            let hash = tx.tx_hash.to_string();
            let raw = tx.raw.as_ref();
            let signer_nonce = i64::try_from(tx.signer_nonce).unwrap_or(i64::MAX);
            let params: [&(dyn ToSql + Sync); 5] =
                [&key.as_str(), &hash, &request, &raw, &signer_nonce];
            let rows = self.query(RECORD_SEND, &params).await?;
            let inserted: i64 = match rows.first() {
                Some(row) => column(row, 0)?,
                None => 0,
            };
            Ok(inserted == 1)
        })
    }

    fn add_transaction<'a>(
        &'a self,
        key: &'a BatchSendKey,
        tx: &'a BatchTx,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        Box::pin(async move {
            let hash = tx.tx_hash.to_string();
            let raw = tx.raw.as_ref();
            let signer_nonce = i64::try_from(tx.signer_nonce).unwrap_or(i64::MAX);
            let params: [&(dyn ToSql + Sync); 4] = [&hash, &key.as_str(), &raw, &signer_nonce];
            self.execute(ADD_SEND_TRANSACTION, &params).await?;
            Ok(())
        })
    }

    fn finish<'a>(
        &'a self,
        key: &'a BatchSendKey,
        answer: &'a SettleResponse,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        Box::pin(async move {
            let answer = serde_json::to_string(answer)
                .map_err(|e| FacilitatorError::Internal(e.to_string()))?;
            self.execute(FINISH_SEND, &[&key.as_str(), &answer]).await?;
            Ok(())
        })
    }

    fn forget<'a>(&'a self, key: &'a BatchSendKey) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        Box::pin(async move {
            self.execute(FORGET_SEND, &[&key.as_str()]).await?;
            Ok(())
        })
    }

    fn unfinished(
        &self,
    ) -> BoxFuture<'_, Result<Vec<(BatchSendKey, BatchSend)>, FacilitatorError>> {
        Box::pin(async move { Ok(sends(&self.query(UNFINISHED_SENDS, &[]).await?)?) })
    }
}

#[cfg(test)]
mod tests {
    // What every log does is tested on every backend in `store::behaviour`; these are
    // Postgres's own: its migrations and its connection.
    use super::*;

    async fn migrations_applied(store: &PostgresStore) -> Vec<(i32, String)> {
        let rows = store
            .query(
                "SELECT version, name FROM schema_migrations WHERE component = $1 ORDER BY version",
                &[&COMPONENT],
            )
            .await
            .unwrap();
        rows.iter().map(|row| (row.get(0), row.get(1))).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_starting_together_migrate_once_and_a_newer_schema_is_refused() {
        let database = x402_testkit::TempDatabase::create().await;
        let mut starts = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let url = database.url.clone();
            starts.spawn(
                async move { PostgresStore::connect(&url, &PostgresOptions::default()).await },
            );
        }
        let stores: Vec<PostgresStore> = starts
            .join_all()
            .await
            .into_iter()
            .map(|started| started.expect("every instance starts"))
            .collect();
        let applied = migrations_applied(&stores[0]).await;
        let expected: Vec<(i32, String)> = MIGRATIONS
            .iter()
            .map(|m| (m.version, m.name.to_owned()))
            .collect();
        assert_eq!(applied, expected, "each migration applied once");

        let newer = latest_version() + 1;
        stores[0]
            .execute(
                "INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, 'later')",
                &[&COMPONENT, &newer],
            )
            .await
            .unwrap();
        let error = PostgresStore::connect(&database.url, &PostgresOptions::default())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("newer"), "{error}");
    }

    #[tokio::test]
    async fn a_server_that_cannot_be_reached_fails_at_once_saying_where() {
        let options = PostgresOptions {
            connect_timeout: Duration::from_millis(500),
            ..PostgresOptions::default()
        };
        let started = std::time::Instant::now();
        // Port 1 on loopback: nothing listens there.
        let error = PostgresStore::connect("postgres://postgres:pw@127.0.0.1:1/x402", &options)
            .await
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(5), "{error}");
        assert!(error.contains("127.0.0.1:1/x402"), "{error}");
        assert!(!error.contains("pw"), "{error}");
    }
}
