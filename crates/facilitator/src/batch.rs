//! `batch-settlement` sends (deposits, claim batches, settles, refunds) in the settlement log:
//! the batch settle path's seam ([`BatchSendLog`]) over the SQLite log, in tables of their own
//! (`batch_sends`: the send's key, its first transaction's hash, its request, and its answer
//! once known; `batch_send_txs`: every signed transaction of a send, fee bumps included). A
//! send is recorded with its signed transaction before that is broadcast, so a repeat after a
//! restart is answered for the transaction already sent instead of sending again, and a send
//! left unmined is rebroadcast, fee-bumped or forgotten at the next start.

use alloy::primitives::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use x402_evm::batch::{BatchSend, BatchSendKey, BatchSendLog, BatchTx};
use x402_proto::{BoxFuture, FacilitatorError, SettleResponse};

use crate::sqlite::{SqliteStore, db_error, now_secs};
use crate::store::StoreError;

/// The transactions recorded for `key`, oldest first.
fn transactions(connection: &Connection, key: &str) -> Result<Vec<BatchTx>, StoreError> {
    let mut statement = connection
        .prepare(
            "SELECT tx_hash, raw_tx, signer_nonce FROM batch_send_txs
             WHERE send_key = ?1 ORDER BY rowid",
        )
        .map_err(db_error)?;
    let rows = statement
        .query_map([key], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
        .map_err(db_error)?;
    let mut txs = Vec::new();
    for row in rows {
        let (tx_hash, raw, signer_nonce) = row.map_err(db_error)?;
        txs.push(BatchTx {
            tx_hash: tx_hash.parse().map_err(|_| corrupt("tx_hash"))?,
            raw: Bytes::from(raw),
            signer_nonce: u64::try_from(signer_nonce).map_err(|_| corrupt("signer_nonce"))?,
        });
    }
    Ok(txs)
}

fn corrupt(what: &str) -> StoreError {
    StoreError(format!("corrupt {what} in batch_sends"))
}

/// A `batch_sends` row as the seam reads it: its transactions (the row's own hash alone, with
/// no signed transaction, for a row written before they were kept), its request and answer.
fn send_of(
    connection: &Connection,
    key: &str,
    (tx_hash, request, response): (String, Option<String>, Option<String>),
) -> Result<BatchSend, StoreError> {
    let mut txs = transactions(connection, key)?;
    if txs.is_empty() {
        txs.push(BatchTx {
            tx_hash: tx_hash.parse().map_err(|_| corrupt("tx_hash"))?,
            raw: Bytes::new(),
            signer_nonce: 0,
        });
    }
    let answer = response
        .map(|json| serde_json::from_str::<SettleResponse>(&json))
        .transpose()
        .map_err(|_| corrupt("response"))?;
    Ok(BatchSend {
        txs,
        request: request.unwrap_or_default(),
        answer,
    })
}

fn insert_transaction(
    connection: &Connection,
    key: &str,
    tx: &BatchTx,
    now: i64,
) -> Result<(), StoreError> {
    connection
        .execute(
            "INSERT OR IGNORE INTO batch_send_txs (tx_hash, send_key, raw_tx, signer_nonce, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                tx.tx_hash.to_string(),
                key,
                tx.raw.to_vec(),
                i64::try_from(tx.signer_nonce).unwrap_or(i64::MAX),
                now
            ],
        )
        .map(|_| ())
        .map_err(db_error)
}

impl BatchSendLog for SqliteStore {
    fn find<'a>(
        &'a self,
        key: &'a BatchSendKey,
    ) -> BoxFuture<'a, Result<Option<BatchSend>, FacilitatorError>> {
        let key = key.as_str().to_owned();
        Box::pin(async move {
            let found = self.run(move |connection| {
                let row = connection
                    .query_row(
                        "SELECT tx_hash, request, response FROM batch_sends WHERE send_key = ?1",
                        [&key],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                    )
                    .optional()
                    .map_err(db_error)?;
                row.map(|row| send_of(connection, &key, row)).transpose()
            });
            found.await.map_err(FacilitatorError::from)
        })
    }

    fn record<'a>(
        &'a self,
        key: &'a BatchSendKey,
        tx: &'a BatchTx,
        request: &'a str,
    ) -> BoxFuture<'a, Result<bool, FacilitatorError>> {
        let (key, tx, request) = (key.as_str().to_owned(), tx.clone(), request.to_owned());
        Box::pin(async move {
            let inserted = self.run(move |connection| {
                let now = now_secs();
                // The send and its transaction in one commit.
                let transaction = connection.transaction().map_err(db_error)?;
                let inserted = transaction
                    .execute(
                        "INSERT OR IGNORE INTO batch_sends (send_key, tx_hash, request, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?4)",
                        params![key, tx.tx_hash.to_string(), request, now],
                    )
                    .map_err(db_error)?;
                if inserted == 1 {
                    insert_transaction(&transaction, &key, &tx, now)?;
                }
                transaction.commit().map_err(db_error)?;
                Ok(inserted == 1)
            });
            inserted.await.map_err(FacilitatorError::from)
        })
    }

    fn add_transaction<'a>(
        &'a self,
        key: &'a BatchSendKey,
        tx: &'a BatchTx,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        let (key, tx) = (key.as_str().to_owned(), tx.clone());
        Box::pin(async move {
            let added =
                self.run(move |connection| insert_transaction(connection, &key, &tx, now_secs()));
            added.await.map_err(FacilitatorError::from)
        })
    }

    fn finish<'a>(
        &'a self,
        key: &'a BatchSendKey,
        answer: &'a SettleResponse,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        let key = key.as_str().to_owned();
        Box::pin(async move {
            let answer = serde_json::to_string(answer)
                .map_err(|e| FacilitatorError::Internal(e.to_string()))?;
            let updated = self.run(move |connection| {
                connection
                    .execute(
                        "UPDATE batch_sends SET response = ?2, updated_at = ?3 WHERE send_key = ?1",
                        params![key, answer, now_secs()],
                    )
                    .map_err(db_error)
            });
            updated.await.map(|_| ()).map_err(FacilitatorError::from)
        })
    }

    fn forget<'a>(&'a self, key: &'a BatchSendKey) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        let key = key.as_str().to_owned();
        Box::pin(async move {
            let deleted = self.run(move |connection| {
                let transaction = connection.transaction().map_err(db_error)?;
                for table in ["batch_send_txs", "batch_sends"] {
                    transaction
                        .execute(&format!("DELETE FROM {table} WHERE send_key = ?1"), [&key])
                        .map_err(db_error)?;
                }
                transaction.commit().map_err(db_error)
            });
            deleted.await.map_err(FacilitatorError::from)
        })
    }

    fn unfinished(
        &self,
    ) -> BoxFuture<'_, Result<Vec<(BatchSendKey, BatchSend)>, FacilitatorError>> {
        Box::pin(async move {
            let open = self.run(move |connection| {
                let mut statement = connection
                    .prepare(
                        "SELECT send_key, tx_hash, request, response FROM batch_sends
                         WHERE response IS NULL ORDER BY created_at, rowid",
                    )
                    .map_err(db_error)?;
                let rows = statement
                    .query_map([], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            (row.get(1)?, row.get(2)?, row.get(3)?),
                        ))
                    })
                    .map_err(db_error)?
                    .collect::<Result<Vec<(String, (String, Option<String>, Option<String>))>, _>>()
                    .map_err(db_error)?;
                rows.into_iter()
                    .map(|(key, row)| {
                        let send = send_of(connection, &key, row)?;
                        Ok((BatchSendKey::stored(key), send))
                    })
                    .collect()
            });
            open.await.map_err(FacilitatorError::from)
        })
    }
}
