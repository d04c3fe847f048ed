//! The `batch-settlement` channels the gateway is paid through, kept in SQLite
//! ([`SqliteChannelStore`]) so that the vouchers it holds, and with them the money charged
//! and not yet claimed, survive a restart.
//!
//! One row per channel; amounts are exact (`u128` written as decimal text). An update is one
//! `BEGIN IMMEDIATE` transaction (read, the caller's closure, write), so updates of one
//! channel from several tasks or processes sharing the file never interleave. The database
//! calls run on the blocking pool; the closure runs on the caller's task, between them.
//!
//! [`BatchClaiming`] is that store with the claimers that turn its vouchers into money.

use std::path::Path;
use std::sync::Arc;

use alloy_primitives::{Address, Bytes, U256};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Mutex, OwnedMutexGuard};
use x402_evm::batch::{
    BatchClaimer, ChannelConfig, ChannelId, ChannelRecord, ChannelStore, ChannelStoreError,
    ChannelWrite, ClaimError, ClaimRun, HeldVoucher, OnchainMirror, Reservation,
};
use x402_proto::{BoxFuture, Facilitator, Network};

use crate::config::BatchSettlementConfig;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS channels (
    id                    TEXT    PRIMARY KEY,
    network               TEXT    NOT NULL,
    config                TEXT    NOT NULL,
    charged               TEXT    NOT NULL,
    voucher_max           TEXT,
    voucher_signature     TEXT,
    balance               TEXT    NOT NULL,
    total_claimed         TEXT    NOT NULL,
    withdraw_requested_at INTEGER NOT NULL,
    refund_nonce          TEXT    NOT NULL,
    read_at               INTEGER NOT NULL,
    pending_id            TEXT,
    pending_max           TEXT,
    pending_expires_at    INTEGER,
    last_charged_at       INTEGER NOT NULL
);
";

/// The schema's version (`PRAGMA user_version`); a file written by a later version is refused.
const SCHEMA_VERSION: i64 = 1;

/// How many times an update is tried when the file stays locked by another process past the
/// busy timeout.
const BUSY_ATTEMPTS: usize = 3;

const COLUMNS: &str = "id, network, config, charged, voucher_max, voucher_signature, balance, \
     total_claimed, withdraw_requested_at, refund_nonce, read_at, pending_id, pending_max, \
     pending_expires_at, last_charged_at";

fn db_error(error: impl std::fmt::Display) -> ChannelStoreError {
    ChannelStoreError(error.to_string())
}

/// Channels in one SQLite file (WAL, every commit synced to disk).
#[derive(Debug, Clone)]
pub struct SqliteChannelStore {
    connection: Arc<Mutex<Connection>>,
}

impl SqliteChannelStore {
    /// Opens (creating if needed) the channel table at `path`.
    pub fn open(path: &Path) -> Result<Self, ChannelStoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| db_error(format!("creating {}: {e}", parent.display())))?;
        }
        let connection = Connection::open(path)
            .map_err(|e| db_error(format!("opening {}: {e}", path.display())))?;
        // FULL: a charge acknowledged to a client is on disk, whatever happens next.
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
            )
            .map_err(db_error)?;
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(db_error)?;
        if version > SCHEMA_VERSION {
            return Err(db_error(format!(
                "{} was written by a later version (schema {version}, this one knows {SCHEMA_VERSION})",
                path.display()
            )));
        }
        connection.execute_batch(SCHEMA).map_err(db_error)?;
        connection
            .execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(db_error)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// The connection, held until the returned guard is dropped.
    async fn connection(&self) -> Held {
        Held(Arc::clone(&self.connection).lock_owned().await)
    }

    /// Runs `work` on the blocking pool with the connection, handing it back after.
    async fn blocking<T, F>(mut held: Held, work: F) -> Result<(Held, T), ChannelStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, ChannelStoreError> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || {
            let result = work(&mut held.0)?;
            Ok((held, result))
        })
        .await
        .map_err(db_error)?
    }

    /// Tries one update: `BEGIN IMMEDIATE`, read, closure, write, `COMMIT`. `Ok(false)` when
    /// the database stayed busy (nothing was written; try again).
    async fn try_update(
        &self,
        id: &ChannelId,
        update: &mut (dyn FnMut(Option<&ChannelRecord>) -> ChannelWrite + Send),
    ) -> Result<bool, ChannelStoreError> {
        let key = id.to_string();
        let guard = self.connection().await;
        let read_key = key.clone();
        let (guard, current) = Self::blocking(guard, move |connection| {
            match connection.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => {}
                Err(error) if is_busy(&error) => return Ok(None),
                Err(error) => return Err(db_error(error)),
            }
            let read = read_one(connection, &read_key);
            if read.is_err() {
                let _ = connection.execute_batch("ROLLBACK");
            }
            read.map(Some)
        })
        .await?;
        let Some(current) = current else {
            return Ok(false);
        };
        let write = update(current.as_ref());
        let (_, committed) = Self::blocking(guard, move |connection| {
            let written = match write {
                ChannelWrite::Keep => Ok(()),
                ChannelWrite::Put(record) => write_one(connection, &key, &record),
                ChannelWrite::Delete => connection
                    .execute("DELETE FROM channels WHERE id = ?1", params![key])
                    .map(drop)
                    .map_err(db_error),
            };
            let finished = written.and_then(|()| match connection.execute_batch("COMMIT") {
                Ok(()) => Ok(true),
                Err(error) if is_busy(&error) => Ok(false),
                Err(error) => Err(db_error(error)),
            });
            if !matches!(finished, Ok(true)) && !connection.is_autocommit() {
                let _ = connection.execute_batch("ROLLBACK");
            }
            finished
        })
        .await?;
        Ok(committed)
    }
}

/// The connection while one call uses it. An update abandoned between its read and its
/// write (its caller was cancelled) leaves a transaction open: it is rolled back here, so
/// the write lock is not kept from other processes.
struct Held(OwnedMutexGuard<Connection>);

impl Drop for Held {
    fn drop(&mut self) {
        if !self.0.is_autocommit() {
            let _ = self.0.execute_batch("ROLLBACK");
        }
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn corrupt(column: &str, id: &str) -> ChannelStoreError {
    ChannelStoreError(format!("corrupt {column} of channel {id}"))
}

fn to_i64(value: u64, column: &str, id: &str) -> Result<i64, ChannelStoreError> {
    i64::try_from(value).map_err(|_| corrupt(column, id))
}

fn read_one(connection: &Connection, id: &str) -> Result<Option<ChannelRecord>, ChannelStoreError> {
    connection
        .query_row(
            &format!("SELECT {COLUMNS} FROM channels WHERE id = ?1"),
            params![id],
            row_record,
        )
        .optional()
        .map_err(db_error)?
        .transpose()
}

fn write_one(
    connection: &Connection,
    id: &str,
    record: &ChannelRecord,
) -> Result<(), ChannelStoreError> {
    if record.id.to_string() != id {
        return Err(ChannelStoreError(format!(
            "an update of channel {id} wrote channel {}",
            record.id
        )));
    }
    let config = serde_json::to_string(&record.config).map_err(db_error)?;
    let onchain = &record.onchain;
    let pending = record.pending.as_ref();
    connection
        .execute(
            &format!(
                "INSERT OR REPLACE INTO channels ({COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
            ),
            params![
                id,
                record.network.to_string(),
                config,
                record.charged.to_string(),
                record.voucher.as_ref().map(|v| v.max_claimable.to_string()),
                record.voucher.as_ref().map(|v| v.signature.to_string()),
                onchain.balance.to_string(),
                onchain.total_claimed.to_string(),
                to_i64(onchain.withdraw_requested_at, "withdraw_requested_at", id)?,
                onchain.refund_nonce.to_string(),
                to_i64(onchain.read_at, "read_at", id)?,
                pending.map(|p| p.id.to_string()),
                pending.map(|p| p.max_claimable.to_string()),
                pending
                    .map(|p| to_i64(p.expires_at, "pending_expires_at", id))
                    .transpose()?,
                to_i64(record.last_charged_at, "last_charged_at", id)?,
            ],
        )
        .map_err(db_error)?;
    Ok(())
}

/// A row selected as [`COLUMNS`], read back into a record.
fn row_record(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<ChannelRecord, ChannelStoreError>> {
    let id: String = row.get("id")?;
    let network: String = row.get("network")?;
    let config: String = row.get("config")?;
    let charged: String = row.get("charged")?;
    let voucher_max: Option<String> = row.get("voucher_max")?;
    let voucher_signature: Option<String> = row.get("voucher_signature")?;
    let balance: String = row.get("balance")?;
    let total_claimed: String = row.get("total_claimed")?;
    let withdraw_requested_at: i64 = row.get("withdraw_requested_at")?;
    let refund_nonce: String = row.get("refund_nonce")?;
    let read_at: i64 = row.get("read_at")?;
    let pending_id: Option<String> = row.get("pending_id")?;
    let pending_max: Option<String> = row.get("pending_max")?;
    let pending_expires_at: Option<i64> = row.get("pending_expires_at")?;
    let last_charged_at: i64 = row.get("last_charged_at")?;
    Ok((|| {
        let amount =
            |column: &str, text: &str| text.parse::<u128>().map_err(|_| corrupt(column, &id));
        let time =
            |column: &str, value: i64| u64::try_from(value).map_err(|_| corrupt(column, &id));
        let voucher = match (voucher_max, voucher_signature) {
            (Some(max), Some(signature)) => Some(HeldVoucher {
                max_claimable: amount("voucher_max", &max)?,
                signature: signature
                    .parse::<Bytes>()
                    .map_err(|_| corrupt("voucher_signature", &id))?,
            }),
            (None, None) => None,
            _ => return Err(corrupt("voucher", &id)),
        };
        let pending = match (pending_id, pending_max, pending_expires_at) {
            (Some(pid), Some(max), Some(expires_at)) => Some(Reservation {
                id: pid.parse().map_err(|_| corrupt("pending_id", &id))?,
                max_claimable: amount("pending_max", &max)?,
                expires_at: time("pending_expires_at", expires_at)?,
            }),
            (None, None, None) => None,
            _ => return Err(corrupt("pending", &id)),
        };
        Ok(ChannelRecord {
            id: id.parse::<ChannelId>().map_err(|_| corrupt("id", &id))?,
            network: Network::new(network),
            config: serde_json::from_str::<ChannelConfig>(&config)
                .map_err(|_| corrupt("config", &id))?,
            charged: amount("charged", &charged)?,
            voucher,
            onchain: OnchainMirror {
                balance: amount("balance", &balance)?,
                total_claimed: amount("total_claimed", &total_claimed)?,
                withdraw_requested_at: time("withdraw_requested_at", withdraw_requested_at)?,
                refund_nonce: refund_nonce
                    .parse::<U256>()
                    .map_err(|_| corrupt("refund_nonce", &id))?,
                read_at: time("read_at", read_at)?,
            },
            pending,
            last_charged_at: time("last_charged_at", last_charged_at)?,
        })
    })())
}

impl ChannelStore for SqliteChannelStore {
    fn get<'a>(
        &'a self,
        id: &'a ChannelId,
    ) -> BoxFuture<'a, Result<Option<ChannelRecord>, ChannelStoreError>> {
        let key = id.to_string();
        Box::pin(async move {
            let guard = self.connection().await;
            let (_, record) =
                Self::blocking(guard, move |connection| read_one(connection, &key)).await?;
            Ok(record)
        })
    }

    fn update<'a>(
        &'a self,
        id: &'a ChannelId,
        update: &'a mut (dyn FnMut(Option<&ChannelRecord>) -> ChannelWrite + Send),
    ) -> BoxFuture<'a, Result<(), ChannelStoreError>> {
        Box::pin(async move {
            for _ in 0..BUSY_ATTEMPTS {
                if self.try_update(id, update).await? {
                    return Ok(());
                }
            }
            Err(ChannelStoreError(format!(
                "channel {id}: the database stayed locked through {BUSY_ATTEMPTS} attempts"
            )))
        })
    }

    fn all(&self) -> BoxFuture<'_, Result<Vec<ChannelRecord>, ChannelStoreError>> {
        Box::pin(async move {
            let guard = self.connection().await;
            let (_, records) = Self::blocking(guard, |connection| {
                let mut statement = connection
                    .prepare(&format!("SELECT {COLUMNS} FROM channels ORDER BY id"))
                    .map_err(db_error)?;
                let rows = statement.query_map([], row_record).map_err(db_error)?;
                rows.map(|row| row.map_err(db_error)?).collect()
            })
            .await?;
            Ok(records)
        })
    }
}

/// The gateway's `batch-settlement` side: the channel store and one claimer per network it
/// is paid on, all claiming from that store through the gateway's facilitator.
#[derive(Clone, Debug)]
pub struct BatchClaiming {
    /// Where the channels are kept (a paywall's batch-settlement server charges into it).
    pub store: Arc<dyn ChannelStore>,
    /// One claimer per network.
    pub claimers: Vec<Arc<BatchClaimer>>,
    /// The networks and assets the gateway is paid in (reported even with no channel yet).
    pub assets: Vec<(Network, Address)>,
}

impl BatchClaiming {
    /// Opens the store `config` names and sets up a claimer per network of `accepted` (the
    /// networks and assets the gateway is paid in).
    pub fn open(
        config: &BatchSettlementConfig,
        accepted: impl IntoIterator<Item = (Network, Address)>,
        facilitator: Arc<dyn Facilitator>,
    ) -> Result<Self, ChannelStoreError> {
        let store: Arc<dyn ChannelStore> = Arc::new(SqliteChannelStore::open(&config.channels_db)?);
        let assets: Vec<(Network, Address)> = accepted.into_iter().collect();
        let mut seen = std::collections::BTreeSet::new();
        let claimers = assets
            .iter()
            .filter(|(network, _)| seen.insert(network.to_string()))
            .map(|(network, _)| {
                Arc::new(BatchClaimer::new(
                    Arc::clone(&store),
                    Arc::clone(&facilitator),
                    network.clone(),
                    config.policy(),
                ))
            })
            .collect();
        Ok(Self {
            store,
            claimers,
            assets,
        })
    }

    /// Claims and settles everything unclaimed on every network now.
    pub async fn flush(&self) -> Vec<(Network, Result<ClaimRun, ClaimError>)> {
        let mut runs = Vec::new();
        for claimer in &self.claimers {
            runs.push((claimer.network().clone(), claimer.flush().await));
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::B256;

    fn record(charged: u128) -> ChannelRecord {
        let config = ChannelConfig {
            payer: Address::repeat_byte(1),
            payer_authorizer: Address::repeat_byte(1),
            receiver: Address::repeat_byte(2),
            receiver_authorizer: Address::repeat_byte(3),
            token: Address::repeat_byte(4),
            withdraw_delay: 900,
            salt: B256::repeat_byte(7),
        };
        ChannelRecord {
            charged,
            ..ChannelRecord::new(
                ChannelId::new(B256::repeat_byte(9)),
                Network::new("eip155:8453"),
                config,
            )
        }
    }

    #[tokio::test]
    async fn a_record_reads_back_exactly_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("channels.db");
        let mut full = record(u128::MAX - 1);
        full.voucher = Some(HeldVoucher {
            max_claimable: u128::MAX,
            signature: Bytes::from(vec![0xab; 65]),
        });
        full.onchain = OnchainMirror {
            balance: u128::MAX,
            total_claimed: 1 << 100,
            withdraw_requested_at: 1_700_000_000,
            refund_nonce: U256::MAX,
            read_at: 1_700_000_001,
        };
        full.pending = Some(Reservation {
            id: u64::MAX,
            max_claimable: 12,
            expires_at: 1_700_000_300,
        });
        full.last_charged_at = 1_700_000_002;
        {
            let store = SqliteChannelStore::open(&path).unwrap();
            let put = full.clone();
            store
                .update(&full.id, &mut |current| {
                    assert_eq!(current, None);
                    ChannelWrite::Put(put.clone())
                })
                .await
                .unwrap();
        }
        let store = SqliteChannelStore::open(&path).unwrap();
        assert_eq!(store.get(&full.id).await.unwrap(), Some(full.clone()));
        assert_eq!(store.all().await.unwrap(), [full.clone()]);
        store
            .update(&full.id, &mut |_| ChannelWrite::Delete)
            .await
            .unwrap();
        assert_eq!(store.get(&full.id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_update_that_writes_another_channel_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteChannelStore::open(&dir.path().join("c.db")).unwrap();
        let other = ChannelId::new(B256::repeat_byte(1));
        let refused = store
            .update(&other, &mut |_| ChannelWrite::Put(record(1)))
            .await;
        assert!(refused.is_err());
        assert_eq!(store.all().await.unwrap(), []);
        // The connection is usable after the failed transaction.
        let id = record(0).id;
        store
            .update(&id, &mut |_| ChannelWrite::Put(record(5)))
            .await
            .unwrap();
        assert_eq!(store.get(&id).await.unwrap().unwrap().charged, 5);
    }

    #[tokio::test]
    async fn a_later_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 9")
            .unwrap();
        let refused = SqliteChannelStore::open(&path).unwrap_err();
        assert!(refused.0.contains("later version"), "{refused}");
    }

    /// Two tasks, each with its own connection to one file (as two processes would be),
    /// charge one channel concurrently: every increment is kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_updates_from_two_connections_never_lose_an_increment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let id = record(0).id;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..2 {
            let store = SqliteChannelStore::open(&path).unwrap();
            tasks.spawn(async move {
                for _ in 0..50 {
                    store
                        .update(&id, &mut |current| {
                            let charged = current.map_or(0, |r| r.charged);
                            // Give the other task a chance to interleave, were it allowed.
                            std::thread::yield_now();
                            ChannelWrite::Put(record(charged + 1))
                        })
                        .await
                        .unwrap();
                    tokio::task::yield_now().await;
                }
            });
        }
        tasks.join_all().await;
        let store = SqliteChannelStore::open(&path).unwrap();
        assert_eq!(store.get(&id).await.unwrap().unwrap().charged, 100);
    }
}
