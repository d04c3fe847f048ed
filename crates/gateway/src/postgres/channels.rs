//! `batch-settlement` channels in Postgres, shared by every gateway replica: one row per
//! channel, written as the SQLite store writes it, reservations included (a reservation is
//! what keeps two replicas from charging one channel at once).
//!
//! An update is one transaction: it takes the channel's advisory lock (a channel with no row
//! yet is locked all the same), reads the row, runs the closure and writes what it answers,
//! then commits; every other update of the channel, in any replica, waits for the lock.

use x402_evm::batch::{ChannelId, ChannelRecord, ChannelStore, ChannelStoreError, ChannelWrite};
use x402_proto::BoxFuture;

use super::{Database, lock};
use crate::channels::ChannelRow;

const COLUMNS: &str = "id, network, config, charged, voucher_max, voucher_signature, balance, \
     total_claimed, withdraw_requested_at, refund_nonce, read_at, pending_id, pending_max, \
     pending_expires_at, last_charged_at";

fn store_error(error: impl std::fmt::Display) -> ChannelStoreError {
    ChannelStoreError(format!("database: {error}"))
}

/// Channels in the gateway's Postgres database.
#[derive(Clone, Debug)]
pub struct PostgresChannelStore {
    database: Database,
}

impl PostgresChannelStore {
    /// The channels of `database`.
    pub fn new(database: Database) -> Self {
        Self { database }
    }
}

fn row_of(row: &tokio_postgres::Row) -> Result<ChannelRecord, ChannelStoreError> {
    let read = || -> Result<ChannelRow, tokio_postgres::Error> {
        Ok(ChannelRow {
            id: row.try_get("id")?,
            network: row.try_get("network")?,
            config: row.try_get("config")?,
            charged: row.try_get("charged")?,
            voucher_max: row.try_get("voucher_max")?,
            voucher_signature: row.try_get("voucher_signature")?,
            balance: row.try_get("balance")?,
            total_claimed: row.try_get("total_claimed")?,
            withdraw_requested_at: row.try_get("withdraw_requested_at")?,
            refund_nonce: row.try_get("refund_nonce")?,
            read_at: row.try_get("read_at")?,
            pending_id: row.try_get("pending_id")?,
            pending_max: row.try_get("pending_max")?,
            pending_expires_at: row.try_get("pending_expires_at")?,
            last_charged_at: row.try_get("last_charged_at")?,
        })
    };
    read().map_err(store_error)?.record()
}

impl ChannelStore for PostgresChannelStore {
    fn get<'a>(
        &'a self,
        id: &'a ChannelId,
    ) -> BoxFuture<'a, Result<Option<ChannelRecord>, ChannelStoreError>> {
        Box::pin(async move {
            let client = self.database.client().await.map_err(store_error)?;
            let row = client
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM gateway_channels WHERE id = $1"),
                    &[&id.to_string()],
                )
                .await
                .map_err(store_error)?;
            row.as_ref().map(row_of).transpose()
        })
    }

    fn update<'a>(
        &'a self,
        id: &'a ChannelId,
        update: &'a mut (dyn FnMut(Option<&ChannelRecord>) -> ChannelWrite + Send),
    ) -> BoxFuture<'a, Result<(), ChannelStoreError>> {
        Box::pin(async move {
            let key = id.to_string();
            let mut client = self.database.client().await.map_err(store_error)?;
            let transaction = client.transaction().await.map_err(store_error)?;
            lock(&transaction, &format!("channel:{key}"))
                .await
                .map_err(store_error)?;
            let current = transaction
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM gateway_channels WHERE id = $1"),
                    &[&key],
                )
                .await
                .map_err(store_error)?
                .as_ref()
                .map(row_of)
                .transpose()?;
            match update(current.as_ref()) {
                ChannelWrite::Keep => return Ok(()),
                ChannelWrite::Put(record) if record.id != *id => {
                    return Err(ChannelStoreError(format!(
                        "an update of channel {id} wrote channel {}",
                        record.id
                    )));
                }
                ChannelWrite::Put(record) if current.as_ref() == Some(&record) => return Ok(()),
                ChannelWrite::Put(record) => {
                    let row = ChannelRow::of(&record, true)?;
                    transaction
                        .execute(
                            &format!(
                                "INSERT INTO gateway_channels ({COLUMNS})
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                                 ON CONFLICT (id) DO UPDATE SET
                                    network = EXCLUDED.network, config = EXCLUDED.config,
                                    charged = EXCLUDED.charged,
                                    voucher_max = EXCLUDED.voucher_max,
                                    voucher_signature = EXCLUDED.voucher_signature,
                                    balance = EXCLUDED.balance,
                                    total_claimed = EXCLUDED.total_claimed,
                                    withdraw_requested_at = EXCLUDED.withdraw_requested_at,
                                    refund_nonce = EXCLUDED.refund_nonce,
                                    read_at = EXCLUDED.read_at,
                                    pending_id = EXCLUDED.pending_id,
                                    pending_max = EXCLUDED.pending_max,
                                    pending_expires_at = EXCLUDED.pending_expires_at,
                                    last_charged_at = EXCLUDED.last_charged_at"
                            ),
                            &[
                                &row.id,
                                &row.network,
                                &row.config,
                                &row.charged,
                                &row.voucher_max,
                                &row.voucher_signature,
                                &row.balance,
                                &row.total_claimed,
                                &row.withdraw_requested_at,
                                &row.refund_nonce,
                                &row.read_at,
                                &row.pending_id,
                                &row.pending_max,
                                &row.pending_expires_at,
                                &row.last_charged_at,
                            ],
                        )
                        .await
                        .map_err(store_error)?;
                }
                ChannelWrite::Delete if current.is_none() => return Ok(()),
                ChannelWrite::Delete => {
                    transaction
                        .execute("DELETE FROM gateway_channels WHERE id = $1", &[&key])
                        .await
                        .map_err(store_error)?;
                }
            }
            transaction.commit().await.map_err(store_error)
        })
    }

    fn all(&self) -> BoxFuture<'_, Result<Vec<ChannelRecord>, ChannelStoreError>> {
        Box::pin(async move {
            let client = self.database.client().await.map_err(store_error)?;
            let rows = client
                .query(
                    &format!("SELECT {COLUMNS} FROM gateway_channels ORDER BY id"),
                    &[],
                )
                .await
                .map_err(store_error)?;
            let mut records = rows.iter().map(row_of).collect::<Result<Vec<_>, _>>()?;
            records.sort_by_key(|record| record.id);
            Ok(records)
        })
    }
}
