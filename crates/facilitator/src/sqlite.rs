//! The embedded settlement log, in a SQLite file (WAL, fsync on every commit).

use std::path::Path;
use std::sync::{Arc, Mutex};

use alloy::primitives::{Address, B256, Bytes, U256};
use rusqlite::{Connection, OptionalExtension, params};
use x402_proto::{BoxFuture, Network, SettleResponse};

use crate::store::{
    Claim, LogHealth, NewSettlement, Party, PartyTally, SeriesPoint, SettlementFilter,
    SettlementKey, SettlementPage, SettlementRecord, SettlementState, SettlementStore,
    SettlementSummary, StoreError, TxRecord,
};

mod reads;
mod rollups;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS settlements (
    chain_id     INTEGER NOT NULL,
    asset        TEXT    NOT NULL,
    payer        TEXT    NOT NULL,
    auth_nonce   TEXT    NOT NULL,
    fingerprint  TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    pay_to       TEXT    NOT NULL,
    amount       TEXT    NOT NULL,
    valid_before INTEGER NOT NULL,
    wire_network TEXT    NOT NULL,
    request      TEXT    NOT NULL,
    response     TEXT,
    answered_to  TEXT,
    token        TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (chain_id, asset, payer, auth_nonce)
);
CREATE INDEX IF NOT EXISTS settlements_unfinished
    ON settlements (state) WHERE state IN ('claimed', 'submitted');
CREATE TABLE IF NOT EXISTS settlement_txs (
    tx_hash      TEXT    PRIMARY KEY,
    chain_id     INTEGER NOT NULL,
    asset        TEXT    NOT NULL,
    payer        TEXT    NOT NULL,
    auth_nonce   TEXT    NOT NULL,
    raw_tx       BLOB    NOT NULL,
    signer       TEXT    NOT NULL,
    signer_nonce INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS settlement_txs_by_key
    ON settlement_txs (chain_id, asset, payer, auth_nonce);
CREATE INDEX IF NOT EXISTS settlement_txs_by_signer ON settlement_txs (chain_id, signer);
CREATE INDEX IF NOT EXISTS settlements_by_time ON settlements (created_at);
CREATE INDEX IF NOT EXISTS settlements_by_state ON settlements (state, created_at);
CREATE INDEX IF NOT EXISTS settlements_by_payer ON settlements (payer, created_at);
CREATE INDEX IF NOT EXISTS settlements_by_payee ON settlements (pay_to, created_at);
CREATE TABLE IF NOT EXISTS batch_sends (
    send_key     TEXT    PRIMARY KEY,
    tx_hash      TEXT    NOT NULL,
    response     TEXT,
    request      TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS batch_sends_unfinished
    ON batch_sends (send_key) WHERE response IS NULL;
CREATE TABLE IF NOT EXISTS batch_send_txs (
    tx_hash      TEXT    PRIMARY KEY,
    send_key     TEXT    NOT NULL,
    raw_tx       BLOB    NOT NULL,
    signer_nonce INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS batch_send_txs_by_key ON batch_send_txs (send_key);
";

/// How hard the log holds on to a commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Every commit is on disk before the call returns: survives power loss (the default).
    #[default]
    Full,
    /// Commits survive the process being killed, not the machine losing power; faster.
    Normal,
}

/// A settlement log in one SQLite file. Calls run on the blocking pool, writes one at a
/// time; the dashboard's reads on a connection of their own, beside them.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

pub(crate) fn db_error(error: impl std::fmt::Display) -> StoreError {
    StoreError(error.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the log at `path`, syncing every commit to disk.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, Durability::Full)
    }

    /// Opens (creating if needed) the log at `path` with the given durability.
    pub fn open_with(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError(format!("creating {}: {e}", parent.display())))?;
        }
        let connection = Connection::open(path)
            .map_err(|e| StoreError(format!("opening {}: {e}", path.display())))?;
        // WAL keeps readers off the writer's back. FULL syncs every commit before the broadcast
        // that follows it; NORMAL survives a crash of the process but not of the machine.
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        connection
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA busy_timeout = 5000;"
            ))
            .map_err(db_error)?;
        connection.execute_batch(SCHEMA).map_err(db_error)?;
        connection
            .execute_batch(rollups::SCHEMA)
            .map_err(db_error)?;
        reads::register(&connection)?;
        migrate(&connection)?;
        let reader = Connection::open(path)
            .map_err(|e| StoreError(format!("opening {}: {e}", path.display())))?;
        reader
            .execute_batch("PRAGMA busy_timeout = 5000;")
            .map_err(db_error)?;
        reads::register(&reader)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// Runs `work` on the reading connection, on the blocking pool.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            let reader = reader
                .lock()
                .map_err(|_| StoreError("settlement log lock poisoned".into()))?;
            work(&reader)
        })
        .await
        .map_err(db_error)?
    }

    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut connection = connection
                .lock()
                .map_err(|_| StoreError("settlement log lock poisoned".into()))?;
            work(&mut connection)
        })
        .await
        .map_err(db_error)?
    }
}

/// The log's schema version (`PRAGMA user_version`): 1 added `answered_to` (who a success
/// was handed to), 2 added `token` (the token a settlement moves, for Permit2 settlements,
/// whose key names Permit2 as the keeper of their nonce; `NULL` means the key's `asset`), 3
/// added the batch sends' `request` (what a send answers, to reconcile it at start; their
/// signed transactions are in `batch_send_txs`, created with the schema), 4 added the sums
/// of confirmed settlements per day and per payer and payee (`settled_days`,
/// `settled_parties`, created with the schema and filled from the log's confirmed rows).
const SCHEMA_VERSION: i64 = 4;

/// Brings a log written by an earlier version up to date, one version at a time; each step
/// adds only what is missing, so a log created with the current schema passes through.
fn migrate(connection: &Connection) -> Result<(), StoreError> {
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(db_error)?;
    let steps: [(i64, &str, &str, &str); 3] = [
        (
            1,
            "settlements",
            "answered_to",
            "ALTER TABLE settlements ADD COLUMN answered_to TEXT",
        ),
        (
            2,
            "settlements",
            "token",
            "ALTER TABLE settlements ADD COLUMN token TEXT",
        ),
        (
            3,
            "batch_sends",
            "request",
            "ALTER TABLE batch_sends ADD COLUMN request TEXT",
        ),
    ];
    for (step, table, column, change) in steps {
        if version >= step {
            continue;
        }
        let present = connection
            .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")
            .and_then(|mut statement| statement.exists([table, column]))
            .map_err(db_error)?;
        if !present {
            connection.execute_batch(change).map_err(db_error)?;
        }
    }
    if version < 4 {
        // The sums start from every settlement confirmed so far, in one transaction with the
        // version that says they are kept.
        connection
            .execute_batch(&format!(
                "BEGIN IMMEDIATE; {} PRAGMA user_version = 4; COMMIT;",
                rollups::REBUILD
            ))
            .map_err(db_error)?;
    }
    if version < SCHEMA_VERSION {
        connection
            .execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(db_error)?;
    }
    Ok(())
}

fn hex(value: impl std::fmt::LowerHex) -> String {
    format!("{value:#x}")
}

fn key_params(key: &SettlementKey) -> (i64, String, String, String) {
    (
        i64::try_from(key.chain_id).unwrap_or(i64::MAX),
        hex(key.asset),
        hex(key.payer),
        hex(key.nonce),
    )
}

pub(crate) fn now_secs() -> i64 {
    i64::try_from(x402_evm::unix_now()).unwrap_or(i64::MAX)
}

fn parse<T: std::str::FromStr>(column: &str, value: &str) -> Result<T, StoreError> {
    value
        .parse()
        .map_err(|_| StoreError(format!("corrupt {column} {value:?} in settlement log")))
}

/// Runs `statement`, reads each row as the tuple `R` and turns it into a `T` with `build`.
fn collect_rows<R, T>(
    statement: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    build: impl Fn(R) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError>
where
    R: for<'r> TryFrom<&'r rusqlite::Row<'r>, Error = rusqlite::Error>,
{
    statement
        .query_map(params, |row| R::try_from(row))
        .map_err(db_error)?
        .map(|row| build(row.map_err(db_error)?))
        .collect()
}

fn load(
    connection: &Connection,
    key: &SettlementKey,
) -> Result<Option<SettlementRecord>, StoreError> {
    let (chain_id, asset, payer, nonce) = key_params(key);
    let row = connection
        .query_row(
            "SELECT fingerprint, state, pay_to, amount, valid_before, wire_network, request, response,
                    answered_to, token
             FROM settlements WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND auth_nonce = ?4",
            params![chain_id, asset, payer, nonce],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, String>(6)?,
                    row.get::<_, Option<String>>(7)?,
                    row.get::<_, Option<String>>(8)?,
                    row.get::<_, Option<String>>(9)?,
                ))
            },
        )
        .optional()
        .map_err(db_error)?;
    let Some((
        fingerprint,
        state,
        pay_to,
        amount,
        valid_before,
        wire_network,
        request,
        response,
        answered_to,
        token,
    )) = row
    else {
        return Ok(None);
    };
    let mut statement = connection
        .prepare_cached(
            "SELECT tx_hash, raw_tx, signer, signer_nonce FROM settlement_txs
             WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND auth_nonce = ?4
             ORDER BY signer_nonce, created_at, rowid",
        )
        .map_err(db_error)?;
    let txs = collect_rows(
        &mut statement,
        params![chain_id, asset, payer, nonce],
        |(hash, raw, signer, signer_nonce): (String, Vec<u8>, String, i64)| {
            Ok(TxRecord {
                tx_hash: parse::<B256>("tx_hash", &hash)?,
                raw: Bytes::from(raw),
                signer: parse::<Address>("signer", &signer)?,
                signer_nonce: u64::try_from(signer_nonce).unwrap_or_default(),
            })
        },
    )?;
    let response = match response {
        Some(json) => Some(
            serde_json::from_str::<SettleResponse>(&json)
                .map_err(|e| StoreError(format!("corrupt response in settlement log: {e}")))?,
        ),
        None => None,
    };
    Ok(Some(SettlementRecord {
        settlement: NewSettlement {
            key: *key,
            fingerprint: parse("fingerprint", &fingerprint)?,
            token: match token {
                Some(token) => parse("token", &token)?,
                None => key.asset,
            },
            pay_to: parse("pay_to", &pay_to)?,
            amount: parse::<U256>("amount", &amount)?,
            valid_before: u64::try_from(valid_before).unwrap_or_default(),
            wire_network: Network::new(wire_network),
            request,
        },
        state: SettlementState::parse(&state)
            .ok_or_else(|| StoreError(format!("corrupt state {state:?} in settlement log")))?,
        txs,
        response,
        answered_to,
    }))
}

/// Inserts `new` in `state` (its success promised to `answered_to` when given), or takes over
/// an abandoned record of its key; `Existing` (and nothing written) when someone else holds
/// the key.
fn claim_in(
    tx: &rusqlite::Transaction<'_>,
    new: &NewSettlement,
    (state, answered_to): (SettlementState, Option<&str>),
    now: i64,
) -> Result<Claim, StoreError> {
    let (chain_id, asset, payer, nonce) = key_params(&new.key);
    // Insert, or take over an abandoned record; anything else belongs to someone else.
    let changed = tx
        .execute(
            "INSERT INTO settlements (chain_id, asset, payer, auth_nonce, fingerprint, state,
                pay_to, amount, valid_before, wire_network, request, response, answered_to, token,
                created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?12, ?6, ?7, ?8, ?9, ?10, NULL, ?13, ?14, ?11, ?11)
             ON CONFLICT (chain_id, asset, payer, auth_nonce) DO UPDATE SET
                fingerprint = excluded.fingerprint, state = excluded.state, pay_to = excluded.pay_to,
                amount = excluded.amount, valid_before = excluded.valid_before,
                wire_network = excluded.wire_network, request = excluded.request,
                response = NULL, answered_to = excluded.answered_to, token = excluded.token,
                updated_at = excluded.updated_at
             WHERE settlements.state = 'abandoned'",
            params![
                chain_id,
                asset,
                payer,
                nonce,
                hex(new.fingerprint),
                hex(new.pay_to),
                new.amount.to_string(),
                i64::try_from(new.valid_before).unwrap_or(i64::MAX),
                new.wire_network.as_str(),
                new.request,
                now,
                state.as_str(),
                answered_to,
                hex(new.token),
            ],
        )
        .map_err(db_error)?;
    if changed == 1 {
        return Ok(Claim::Fresh);
    }
    let existing =
        load(tx, &new.key)?.ok_or_else(|| StoreError("settlement vanished during claim".into()))?;
    Ok(Claim::Existing(Box::new(existing)))
}

/// Records a signed transaction of the settlement `key`.
fn insert_tx(
    tx: &rusqlite::Transaction<'_>,
    key: &SettlementKey,
    record: &TxRecord,
    now: i64,
) -> Result<(), StoreError> {
    let (chain_id, asset, payer, nonce) = key_params(key);
    tx.execute(
        "INSERT INTO settlement_txs (tx_hash, chain_id, asset, payer, auth_nonce, raw_tx,
            signer, signer_nonce, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            hex(record.tx_hash),
            chain_id,
            asset,
            payer,
            nonce,
            record.raw.to_vec(),
            hex(record.signer),
            i64::try_from(record.signer_nonce).unwrap_or(i64::MAX),
            now,
        ],
    )
    .map_err(db_error)?;
    Ok(())
}

impl SettlementStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.run(|connection| {
            connection
                .query_row("SELECT count(*) FROM settlements", [], |_| Ok(()))
                .map_err(db_error)
        }))
    }

    fn claim<'a>(&'a self, new: &'a NewSettlement) -> BoxFuture<'a, Result<Claim, StoreError>> {
        let new = new.clone();
        Box::pin(self.run(move |connection| {
            let tx = connection
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_error)?;
            let claim = claim_in(&tx, &new, (SettlementState::Claimed, None), now_secs())?;
            tx.commit().map_err(db_error)?;
            Ok(claim)
        }))
    }

    fn claim_with_transaction<'a>(
        &'a self,
        new: &'a NewSettlement,
        record: &'a TxRecord,
        answered_to: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        let new = new.clone();
        let record = record.clone();
        let answered_to = answered_to.map(str::to_owned);
        Box::pin(self.run(move |connection| {
            let tx = connection
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_error)?;
            let now = now_secs();
            let submitted = (SettlementState::Submitted, answered_to.as_deref());
            let claim = claim_in(&tx, &new, submitted, now)?;
            if claim == Claim::Fresh {
                insert_tx(&tx, &new.key, &record, now)?;
                tx.commit().map_err(db_error)?;
            }
            Ok(claim)
        }))
    }

    fn add_transaction<'a>(
        &'a self,
        key: &'a SettlementKey,
        record: &'a TxRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = *key;
        let record = record.clone();
        Box::pin(self.run(move |connection| {
            let tx = connection.transaction().map_err(db_error)?;
            let (chain_id, asset, payer, nonce) = key_params(&key);
            let now = now_secs();
            insert_tx(&tx, &key, &record, now)?;
            let changed = tx
                .execute(
                    "UPDATE settlements SET state = 'submitted', updated_at = ?5
                     WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND auth_nonce = ?4
                       AND state IN ('claimed', 'submitted')",
                    params![chain_id, asset, payer, nonce, now],
                )
                .map_err(db_error)?;
            if changed != 1 {
                return Err(StoreError(format!(
                    "settlement {key} is not claimed; refusing to record a transaction for it"
                )));
            }
            tx.commit().map_err(db_error)
        }))
    }

    fn finish<'a>(
        &'a self,
        key: &'a SettlementKey,
        state: SettlementState,
        response: &'a SettleResponse,
        answered_to: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = *key;
        let response = serde_json::to_string(response).map_err(db_error);
        let answered_to = answered_to.map(str::to_owned);
        Box::pin(async move {
            let response = response?;
            self.run(move |connection| {
                let (chain_id, asset, payer, nonce) = key_params(&key);
                // The outcome and the settled sums change together.
                let tx = connection
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(db_error)?;
                let before = tx
                    .query_row(
                        "SELECT state, created_at, pay_to, COALESCE(token, asset), amount
                         FROM settlements
                         WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND auth_nonce = ?4",
                        params![chain_id, asset, payer, nonce],
                        |row| {
                            Ok((
                                row.get::<_, String>(0)?,
                                rollups::Counted {
                                    chain_id,
                                    token: row.get(3)?,
                                    created_at: row.get(1)?,
                                    payer: payer.clone(),
                                    pay_to: row.get(2)?,
                                    amount: row.get(4)?,
                                },
                            ))
                        },
                    )
                    .optional()
                    .map_err(db_error)?;
                tx.execute(
                    "UPDATE settlements SET state = ?5, response = ?6, updated_at = ?7,
                        answered_to = COALESCE(answered_to, ?8)
                     WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND auth_nonce = ?4",
                    params![
                        chain_id,
                        asset,
                        payer,
                        nonce,
                        state.as_str(),
                        response,
                        now_secs(),
                        answered_to,
                    ],
                )
                .map_err(db_error)?;
                if let Some((was, settlement)) = before {
                    let confirmed = SettlementState::Confirmed.as_str();
                    let is = state == SettlementState::Confirmed;
                    match (was == confirmed, is) {
                        (false, true) => rollups::count(&tx, &settlement, rollups::Change::Add)?,
                        (true, false) => rollups::count(&tx, &settlement, rollups::Change::Remove)?,
                        _ => {}
                    }
                }
                tx.commit().map_err(db_error)
            })
            .await
        })
    }

    fn hand_out<'a>(
        &'a self,
        key: &'a SettlementKey,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let key = *key;
        let holder = holder.to_owned();
        Box::pin(self.run(move |connection| {
            let (chain_id, asset, payer, nonce) = key_params(&key);
            let changed = connection
                .execute(
                    "UPDATE settlements SET answered_to = ?5
                     WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND auth_nonce = ?4
                       AND (answered_to IS NULL OR answered_to = ?5)",
                    params![chain_id, asset, payer, nonce, holder],
                )
                .map_err(db_error)?;
            Ok(changed == 1)
        }))
    }

    fn get<'a>(
        &'a self,
        key: &'a SettlementKey,
    ) -> BoxFuture<'a, Result<Option<SettlementRecord>, StoreError>> {
        let key = *key;
        Box::pin(self.run(move |connection| load(connection, &key)))
    }

    fn settled_days(&self, since: u64) -> BoxFuture<'_, Result<Vec<SeriesPoint>, StoreError>> {
        Box::pin(self.read(move |connection| reads::settled_days(connection, since)))
    }

    fn settled_series(
        &self,
        since: u64,
        bucket_seconds: u64,
    ) -> BoxFuture<'_, Result<Vec<SeriesPoint>, StoreError>> {
        Box::pin(
            self.read(move |connection| reads::settled_series(connection, since, bucket_seconds)),
        )
    }

    fn top_parties(
        &self,
        party: Party,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<PartyTally>, StoreError>> {
        Box::pin(self.read(move |connection| reads::top_parties(connection, party, limit)))
    }

    fn settlements<'a>(
        &'a self,
        filter: &'a SettlementFilter,
    ) -> BoxFuture<'a, Result<SettlementPage, StoreError>> {
        let filter = filter.clone();
        Box::pin(self.read(move |connection| reads::settlements(connection, &filter)))
    }

    fn summary<'a>(
        &'a self,
        key: &'a SettlementKey,
    ) -> BoxFuture<'a, Result<Option<SettlementSummary>, StoreError>> {
        let key = *key;
        Box::pin(self.read(move |connection| reads::summary(connection, &key)))
    }

    fn log_health(&self) -> BoxFuture<'_, Result<LogHealth, StoreError>> {
        Box::pin(self.read(reads::log_health))
    }

    fn unfinished(&self) -> BoxFuture<'_, Result<Vec<SettlementRecord>, StoreError>> {
        Box::pin(self.run(|connection| {
            let keys = {
                let mut statement = connection
                    .prepare(
                        "SELECT chain_id, asset, payer, auth_nonce FROM settlements
                         WHERE state IN ('claimed', 'submitted') ORDER BY created_at, rowid",
                    )
                    .map_err(db_error)?;
                collect_rows(
                    &mut statement,
                    [],
                    |(chain_id, asset, payer, nonce): (i64, String, String, String)| {
                        Ok(SettlementKey {
                            chain_id: u64::try_from(chain_id).unwrap_or_default(),
                            asset: parse("asset", &asset)?,
                            payer: parse("payer", &payer)?,
                            nonce: parse("auth_nonce", &nonce)?,
                        })
                    },
                )?
            };
            keys.iter()
                .filter_map(|key| load(connection, key).transpose())
                .collect()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // What every log does is tested on every backend in `store::behaviour`; this is SQLite's
    // own migration of files written by earlier versions.

    #[tokio::test]
    async fn a_log_from_before_answered_to_and_token_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let old_schema = SCHEMA
            .replace("    answered_to  TEXT,\n", "")
            .replace("    token        TEXT,\n", "");
        assert!(!old_schema.contains("answered_to") && !old_schema.contains("token"));
        let old = Connection::open(&path).unwrap();
        old.execute_batch(&old_schema).unwrap();
        let key = SettlementKey {
            chain_id: 8453,
            asset: Address::repeat_byte(1),
            payer: Address::repeat_byte(2),
            nonce: B256::repeat_byte(5),
        };
        let (chain_id, asset, payer, nonce) = key_params(&key);
        let (fingerprint, pay_to) = (hex(B256::repeat_byte(9)), hex(Address::repeat_byte(3)));
        old.execute_batch(&format!(
            "INSERT INTO settlements (chain_id, asset, payer, auth_nonce, fingerprint, state,
                pay_to, amount, valid_before, wire_network, request, created_at, updated_at)
             VALUES ({chain_id}, '{asset}', '{payer}', '{nonce}', '{fingerprint}', 'claimed',
                '{pay_to}', '10000', 1900000000, 'base', '{{}}', 0, 0);
             INSERT INTO settlements (chain_id, asset, payer, auth_nonce, fingerprint, state,
                pay_to, amount, valid_before, wire_network, request, created_at, updated_at)
             VALUES ({chain_id}, '{asset}', '{payer}', '0x01', '{fingerprint}', 'confirmed',
                '{pay_to}', '25000', 1900000000, 'base', '{{}}', 90000, 90000)"
        ))
        .unwrap();
        drop(old);
        SqliteStore::open(&path).unwrap();
        // Opening twice must not try to add the columns again.
        let store = SqliteStore::open(&path).unwrap();
        let record = store.get(&key).await.unwrap().unwrap();
        assert_eq!(
            record.settlement.token, key.asset,
            "an old row moves its key's asset"
        );
        assert_eq!(record.answered_to, None);
        // What was confirmed before the sums were kept is in them.
        let days = store.settled_days(0).await.unwrap();
        assert_eq!(days.len(), 1, "{days:?}");
        assert_eq!((days[0].start, days[0].token), (86_400, key.asset));
        assert_eq!(days[0].tally.amount, U256::from(25_000));
        let payers = store
            .top_parties(crate::store::Party::Payer, 5)
            .await
            .unwrap();
        assert_eq!(
            (payers[0].address, payers[0].tally.settlements),
            (key.payer, 1)
        );
    }
}
