//! `batch-settlement` sends (deposits, claim batches, refunds) in the settlement log: the
//! batch settle path's seam ([`BatchSendLog`]) over the SQLite log, in a table of its own
//! (`batch_sends`: the send's key, its transaction, and its answer once known). A send is
//! recorded before its transaction is broadcast, so a repeat after a restart is answered for
//! the transaction already sent instead of sending again.

use alloy::primitives::B256;
use rusqlite::{OptionalExtension, params};
use x402_evm::batch::{BatchSend, BatchSendKey, BatchSendLog};
use x402_proto::{BoxFuture, FacilitatorError, SettleResponse};

use crate::sqlite::{SqliteStore, db_error, now_secs};
use crate::store::StoreError;

fn internal(error: StoreError) -> FacilitatorError {
    FacilitatorError::Internal(error.to_string())
}

impl BatchSendLog for SqliteStore {
    fn find<'a>(
        &'a self,
        key: &'a BatchSendKey,
    ) -> BoxFuture<'a, Result<Option<BatchSend>, FacilitatorError>> {
        let key = key.as_str().to_owned();
        Box::pin(async move {
            let row = self.run(move |connection| {
                connection
                    .query_row(
                        "SELECT tx_hash, response FROM batch_sends WHERE send_key = ?1",
                        [key],
                        |row| Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?)),
                    )
                    .optional()
                    .map_err(db_error)
            });
            let Some((tx_hash, response)) = row.await.map_err(internal)? else {
                return Ok(None);
            };
            let corrupt =
                |what: &str| FacilitatorError::Internal(format!("corrupt {what} in batch_sends"));
            let tx_hash: B256 = tx_hash.parse().map_err(|_| corrupt("tx_hash"))?;
            let answer = response
                .map(|json| serde_json::from_str::<SettleResponse>(&json))
                .transpose()
                .map_err(|_| corrupt("response"))?;
            Ok(Some(BatchSend { tx_hash, answer }))
        })
    }

    fn record<'a>(
        &'a self,
        key: &'a BatchSendKey,
        tx_hash: B256,
    ) -> BoxFuture<'a, Result<bool, FacilitatorError>> {
        let key = key.as_str().to_owned();
        Box::pin(async move {
            let inserted = self.run(move |connection| {
                let now = now_secs();
                connection
                    .execute(
                        "INSERT OR IGNORE INTO batch_sends (send_key, tx_hash, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?3)",
                        params![key, tx_hash.to_string(), now],
                    )
                    .map_err(db_error)
            });
            Ok(inserted.await.map_err(internal)? == 1)
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
            updated.await.map(|_| ()).map_err(internal)
        })
    }

    fn forget<'a>(&'a self, key: &'a BatchSendKey) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        let key = key.as_str().to_owned();
        Box::pin(async move {
            let deleted = self.run(move |connection| {
                connection
                    .execute("DELETE FROM batch_sends WHERE send_key = ?1", [key])
                    .map_err(db_error)
            });
            deleted.await.map(|_| ()).map_err(internal)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x402_proto::Network;

    #[tokio::test]
    async fn a_send_is_recorded_once_ended_with_its_answer_and_kept_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let key = BatchSendKey::stored("eip155:8453:claim:0x01");
        let tx = B256::repeat_byte(5);
        {
            let log = SqliteStore::open(&path).unwrap();
            assert!(log.find(&key).await.unwrap().is_none());
            assert!(log.record(&key, tx).await.unwrap());
            assert!(!log.record(&key, B256::repeat_byte(6)).await.unwrap());
            let sent = log.find(&key).await.unwrap().unwrap();
            assert_eq!((sent.tx_hash, sent.answer), (tx, None));
            let answer = SettleResponse::success(Network::eip155(8453), None, tx.to_string());
            log.finish(&key, &answer).await.unwrap();
        }
        let log = SqliteStore::open(&path).unwrap();
        let sent = log.find(&key).await.unwrap().unwrap();
        assert_eq!(sent.tx_hash, tx);
        assert_eq!(sent.answer.unwrap().transaction, tx.to_string());
        log.forget(&key).await.unwrap();
        assert!(log.find(&key).await.unwrap().is_none());
    }
}
