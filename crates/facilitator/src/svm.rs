//! `exact` on Solana in the settlement log: the Solana settle path's seam
//! ([`x402_svm::SvmSendLog`]) over the log's sends (the tables `batch-settlement` sends are
//! kept in, on SQLite and Postgres alike).
//!
//! A Solana settlement is a send keyed `exact:solana:<genesis>:svm:<message key>` (its payment
//! id, which no `batch-settlement` key shares: theirs start `eip155:`, and their
//! reconciliation passes these by). Its one transaction is kept with it: the hash column holds
//! the SHA-256 of the key, the raw column the co-signed transaction, and the request column
//! the [`SvmSend`] (signature, holder, payer, request) as JSON. Recorded before the broadcast,
//! so a repeat after a restart, or on another instance sharing the log, is answered for the
//! transaction already sent.

use std::sync::Arc;

use alloy::primitives::{B256, Bytes};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};
use x402_evm::batch::{BatchSendKey, BatchSendLog, BatchTx};
use x402_proto::{BoxFuture, FacilitatorError, SettleResponse};
use x402_svm::{SvmSend, SvmSendLog};

/// Solana settlements recorded in the facilitator's log.
#[derive(Debug, Clone)]
pub(crate) struct LoggedSvmSends {
    sends: Arc<dyn BatchSendLog>,
}

impl LoggedSvmSends {
    /// Records through `sends` (the service's watched log).
    pub(crate) fn new(sends: Arc<dyn BatchSendLog>) -> Self {
        Self { sends }
    }
}

fn corrupt(what: &str) -> FacilitatorError {
    FacilitatorError::Internal(format!("corrupt Solana settlement in the log: {what}"))
}

impl SvmSendLog for LoggedSvmSends {
    fn find<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<SvmSend>, FacilitatorError>> {
        Box::pin(async move {
            let Some(found) = self.sends.find(&BatchSendKey::stored(key)).await? else {
                return Ok(None);
            };
            let mut send: SvmSend =
                serde_json::from_str(&found.request).map_err(|_| corrupt("request"))?;
            let raw = found.newest().map(|tx| tx.raw.to_vec()).unwrap_or_default();
            if raw.is_empty() {
                return Err(corrupt("no transaction"));
            }
            send.transaction = BASE64.encode(raw);
            send.answer = found.answer;
            Ok(Some(send))
        })
    }

    fn record<'a>(
        &'a self,
        key: &'a str,
        send: &'a SvmSend,
    ) -> BoxFuture<'a, Result<bool, FacilitatorError>> {
        Box::pin(async move {
            let raw = BASE64
                .decode(&send.transaction)
                .map_err(|_| FacilitatorError::Internal("the transaction is not base64".into()))?;
            let tx = BatchTx {
                tx_hash: B256::from_slice(&Sha256::digest(key.as_bytes())),
                raw: Bytes::from(raw),
                signer_nonce: 0,
            };
            // The transaction is kept once, in its own column.
            let kept = SvmSend {
                transaction: String::new(),
                answer: None,
                ..send.clone()
            };
            let request = serde_json::to_string(&kept)
                .map_err(|error| FacilitatorError::Internal(error.to_string()))?;
            self.sends
                .record(&BatchSendKey::stored(key), &tx, &request)
                .await
        })
    }

    fn finish<'a>(
        &'a self,
        key: &'a str,
        answer: &'a SettleResponse,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        Box::pin(async move { self.sends.finish(&BatchSendKey::stored(key), answer).await })
    }

    fn forget<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        Box::pin(async move { self.sends.forget(&BatchSendKey::stored(key)).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x402_proto::Network;

    #[tokio::test]
    async fn a_solana_settlement_survives_reopening_the_sqlite_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let key = "exact:solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1:svm:abc=";
        let send = SvmSend {
            transaction: BASE64.encode([7u8; 300]),
            signature: "5sig".into(),
            holder: "key:k1".into(),
            payer: Some("Payer1".into()),
            request: "{\"x\":1}".into(),
            answer: None,
        };
        {
            let log = LoggedSvmSends::new(Arc::new(crate::SqliteStore::open(&path).unwrap()));
            assert!(log.record(key, &send).await.unwrap());
            assert!(!log.record(key, &send).await.unwrap(), "recorded once");
            assert_eq!(log.find(key).await.unwrap(), Some(send.clone()));
        }
        let log = LoggedSvmSends::new(Arc::new(crate::SqliteStore::open(&path).unwrap()));
        assert_eq!(log.find(key).await.unwrap(), Some(send.clone()));
        let answer = SettleResponse::success(Network::new(x402_svm::SOLANA_DEVNET), None, "5sig");
        log.finish(key, &answer).await.unwrap();
        let ended = log.find(key).await.unwrap().unwrap();
        assert_eq!(ended.answer, Some(answer));
        assert_eq!(ended.transaction, send.transaction);
        log.forget(key).await.unwrap();
        assert_eq!(log.find(key).await.unwrap(), None);
    }
}
