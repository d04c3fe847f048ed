//! Where Solana settlements are recorded: the seam ([`SvmSendLog`]) a facilitator's durable
//! log implements, and [`MemorySvmLog`], the in-process default.
//!
//! A settlement is recorded, keyed by its payment's message
//! ([`DecodedPayment::message_key`](crate::DecodedPayment::message_key)), with its co-signed
//! transaction and who its success belongs to, **before** it is broadcast. Whoever presents
//! the same payment later (or at once, from another instance, or after a restart) finds the
//! record and is answered from it: the recorded transaction followed (re-sending it is
//! harmless: a signed Solana transaction lands at most once), never a new one.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use x402_proto::{BoxFuture, FacilitatorError, SettleResponse};

/// A settlement as recorded before its transaction is broadcast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SvmSend {
    /// The co-signed transaction, base64 wire bytes: the only one ever sent for the payment.
    pub transaction: String,
    /// Its signature (base58), which names it on chain.
    pub signature: String,
    /// Who its success is handed to: `key:<idempotency key>`, or `call:<id>` for the one call
    /// that settled it. Everyone else presenting the payment is refused as a duplicate.
    pub holder: String,
    /// The payer (the transfer's authority), echoed in answers.
    #[serde(default)]
    pub payer: Option<String>,
    /// The `/settle` request it answers, as JSON.
    pub request: String,
    /// The answer once the transaction is confirmed or failed on chain (not while pending).
    #[serde(default)]
    pub answer: Option<SettleResponse>,
}

/// Where Solana settlements are recorded. `record` is durable before it returns (the
/// transaction is broadcast right after).
pub trait SvmSendLog: Send + Sync + std::fmt::Debug {
    /// The settlement recorded under `key`, if any.
    fn find<'a>(&'a self, key: &'a str)
    -> BoxFuture<'a, Result<Option<SvmSend>, FacilitatorError>>;

    /// Records `send` under `key`: `false` (nothing written) when one is recorded there already.
    fn record<'a>(
        &'a self,
        key: &'a str,
        send: &'a SvmSend,
    ) -> BoxFuture<'a, Result<bool, FacilitatorError>>;

    /// Ends the settlement under `key` with `answer`.
    fn finish<'a>(
        &'a self,
        key: &'a str,
        answer: &'a SettleResponse,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>>;

    /// Forgets the settlement under `key`: its transaction was refused and can never land, so
    /// presenting the payment again may start over.
    fn forget<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), FacilitatorError>>;
}

/// [`SvmSendLog`] in memory: one process's settlements, lost at restart.
#[derive(Debug, Default)]
pub struct MemorySvmLog {
    sends: Mutex<HashMap<String, SvmSend>>,
}

impl MemorySvmLog {
    fn sends(&self) -> std::sync::MutexGuard<'_, HashMap<String, SvmSend>> {
        self.sends.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SvmSendLog for MemorySvmLog {
    fn find<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<SvmSend>, FacilitatorError>> {
        let found = self.sends().get(key).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn record<'a>(
        &'a self,
        key: &'a str,
        send: &'a SvmSend,
    ) -> BoxFuture<'a, Result<bool, FacilitatorError>> {
        let mut sends = self.sends();
        let fresh = !sends.contains_key(key);
        if fresh {
            sends.insert(key.to_owned(), send.clone());
        }
        Box::pin(async move { Ok(fresh) })
    }

    fn finish<'a>(
        &'a self,
        key: &'a str,
        answer: &'a SettleResponse,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        if let Some(send) = self.sends().get_mut(key) {
            send.answer = Some(answer.clone());
        }
        Box::pin(async move { Ok(()) })
    }

    fn forget<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        self.sends().remove(key);
        Box::pin(async move { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x402_proto::Network;

    #[tokio::test]
    async fn a_key_is_recorded_once_finished_and_forgotten() {
        let log = MemorySvmLog::default();
        let send = SvmSend {
            transaction: "AQ==".into(),
            signature: "sig".into(),
            holder: "call:1".into(),
            payer: None,
            request: "{}".into(),
            answer: None,
        };
        assert!(log.record("k", &send).await.unwrap());
        let other = SvmSend {
            holder: "call:2".into(),
            ..send.clone()
        };
        assert!(!log.record("k", &other).await.unwrap());
        assert_eq!(log.find("k").await.unwrap().unwrap().holder, "call:1");
        let answer = SettleResponse::success(Network::new("solana:x"), None, "sig");
        log.finish("k", &answer).await.unwrap();
        assert_eq!(log.find("k").await.unwrap().unwrap().answer, Some(answer));
        log.forget("k").await.unwrap();
        assert!(log.find("k").await.unwrap().is_none());
    }
}
