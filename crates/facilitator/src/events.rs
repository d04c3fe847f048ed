//! What the log records, told as it happens: the service records every settlement (and every
//! `batch-settlement` send) through a [`Watched`] log, which passes each successful write on to
//! whoever listens (the dashboard's live updates). Nobody listening costs nothing; a listener
//! that falls behind is told it missed some and reads the log again.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;
use x402_evm::batch::{BatchSend, BatchSendKey, BatchSendLog, BatchTx};
use x402_proto::{BoxFuture, FacilitatorError, SettleResponse};

use crate::store::{
    Claim, LogHealth, NewSettlement, Party, PartyTally, SeriesPoint, SettlementFilter,
    SettlementKey, SettlementPage, SettlementRecord, SettlementState, SettlementStore,
    SettlementSummary, StoreError, TxRecord,
};

/// One write to the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogEvent {
    /// A settlement was recorded or changed state.
    Settlement {
        /// Its key (`<chain id>:<asset>:<payer>:<nonce>`).
        key: String,
        /// Where it stands now.
        state: &'static str,
    },
    /// A `batch-settlement` send was recorded, answered or forgotten.
    BatchSend {
        /// Its key.
        key: String,
        /// `sent`, `answered` or `forgotten`.
        state: &'static str,
    },
}

/// How many events a slow listener may fall behind before it is told it missed some.
const BACKLOG: usize = 256;

/// Where the log's writes are told.
#[derive(Debug, Clone)]
pub(crate) struct LogEvents(broadcast::Sender<LogEvent>);

impl LogEvents {
    pub(crate) fn new() -> Self {
        Self(broadcast::channel(BACKLOG).0)
    }

    /// A new listener, hearing what is written from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<LogEvent> {
        self.0.subscribe()
    }

    fn settlement(&self, key: &SettlementKey, state: SettlementState) {
        // No listener is not an error.
        let _ = self.0.send(LogEvent::Settlement {
            key: key.to_string(),
            state: state.as_str(),
        });
    }

    fn batch_send(&self, key: &BatchSendKey, state: &'static str) {
        let _ = self.0.send(LogEvent::BatchSend {
            key: key.as_str().to_owned(),
            state,
        });
    }
}

/// A log that tells [`LogEvents`] of every successful write, and otherwise does exactly what
/// the log it wraps does.
#[derive(Debug)]
pub(crate) struct Watched<L: ?Sized> {
    log: Arc<L>,
    events: LogEvents,
}

impl<L: ?Sized> Watched<L> {
    pub(crate) fn new(log: Arc<L>, events: LogEvents) -> Self {
        Self { log, events }
    }
}

impl SettlementStore for Watched<dyn SettlementStore> {
    fn backend(&self) -> &'static str {
        self.log.backend()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.log.check()
    }

    fn claim<'a>(&'a self, new: &'a NewSettlement) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(async move {
            let claim = self.log.claim(new).await?;
            if claim == Claim::Fresh {
                self.events.settlement(&new.key, SettlementState::Claimed);
            }
            Ok(claim)
        })
    }

    fn claim_with_transaction<'a>(
        &'a self,
        new: &'a NewSettlement,
        tx: &'a TxRecord,
        answered_to: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(async move {
            let claim = self
                .log
                .claim_with_transaction(new, tx, answered_to)
                .await?;
            if claim == Claim::Fresh {
                self.events.settlement(&new.key, SettlementState::Submitted);
            }
            Ok(claim)
        })
    }

    fn add_transaction<'a>(
        &'a self,
        key: &'a SettlementKey,
        tx: &'a TxRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.log.add_transaction(key, tx).await?;
            self.events.settlement(key, SettlementState::Submitted);
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
            self.log.finish(key, state, response, answered_to).await?;
            self.events.settlement(key, state);
            Ok(())
        })
    }

    fn hand_out<'a>(
        &'a self,
        key: &'a SettlementKey,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.log.hand_out(key, holder)
    }

    fn get<'a>(
        &'a self,
        key: &'a SettlementKey,
    ) -> BoxFuture<'a, Result<Option<SettlementRecord>, StoreError>> {
        self.log.get(key)
    }

    fn unfinished(&self) -> BoxFuture<'_, Result<Vec<SettlementRecord>, StoreError>> {
        self.log.unfinished()
    }

    fn settled_days(&self, since: u64) -> BoxFuture<'_, Result<Vec<SeriesPoint>, StoreError>> {
        self.log.settled_days(since)
    }

    fn settled_series(
        &self,
        since: u64,
        bucket_seconds: u64,
    ) -> BoxFuture<'_, Result<Vec<SeriesPoint>, StoreError>> {
        self.log.settled_series(since, bucket_seconds)
    }

    fn top_parties(
        &self,
        party: Party,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<PartyTally>, StoreError>> {
        self.log.top_parties(party, limit)
    }

    fn settlements<'a>(
        &'a self,
        filter: &'a SettlementFilter,
    ) -> BoxFuture<'a, Result<SettlementPage, StoreError>> {
        self.log.settlements(filter)
    }

    fn summary<'a>(
        &'a self,
        key: &'a SettlementKey,
    ) -> BoxFuture<'a, Result<Option<SettlementSummary>, StoreError>> {
        self.log.summary(key)
    }

    fn log_health(&self) -> BoxFuture<'_, Result<LogHealth, StoreError>> {
        self.log.log_health()
    }

    fn heartbeat(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.log.heartbeat()
    }

    fn retire(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.log.retire()
    }

    fn take_over(
        &self,
        stale_after: std::time::Duration,
    ) -> BoxFuture<'_, Result<Vec<SettlementRecord>, StoreError>> {
        self.log.take_over(stale_after)
    }
}

impl BatchSendLog for Watched<dyn BatchSendLog> {
    fn find<'a>(
        &'a self,
        key: &'a BatchSendKey,
    ) -> BoxFuture<'a, Result<Option<BatchSend>, FacilitatorError>> {
        self.log.find(key)
    }

    fn record<'a>(
        &'a self,
        key: &'a BatchSendKey,
        tx: &'a BatchTx,
        request: &'a str,
    ) -> BoxFuture<'a, Result<bool, FacilitatorError>> {
        Box::pin(async move {
            let recorded = self.log.record(key, tx, request).await?;
            if recorded {
                self.events.batch_send(key, "sent");
            }
            Ok(recorded)
        })
    }

    fn add_transaction<'a>(
        &'a self,
        key: &'a BatchSendKey,
        tx: &'a BatchTx,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        self.log.add_transaction(key, tx)
    }

    fn finish<'a>(
        &'a self,
        key: &'a BatchSendKey,
        answer: &'a SettleResponse,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        Box::pin(async move {
            self.log.finish(key, answer).await?;
            self.events.batch_send(key, "answered");
            Ok(())
        })
    }

    fn forget<'a>(&'a self, key: &'a BatchSendKey) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        Box::pin(async move {
            self.log.forget(key).await?;
            self.events.batch_send(key, "forgotten");
            Ok(())
        })
    }

    fn unfinished(
        &self,
    ) -> BoxFuture<'_, Result<Vec<(BatchSendKey, BatchSend)>, FacilitatorError>> {
        self.log.unfinished()
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, B256, U256};
    use x402_proto::Network;

    use super::*;
    use crate::sqlite::SqliteStore;

    #[tokio::test]
    async fn each_write_is_told_and_reads_and_lost_claims_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn SettlementStore> =
            Arc::new(SqliteStore::open(&dir.path().join("log.db")).unwrap());
        let events = LogEvents::new();
        let mut heard = events.subscribe();
        let watched = Watched::new(log, events);
        let new = NewSettlement {
            key: SettlementKey {
                chain_id: 8453,
                asset: Address::repeat_byte(1),
                payer: Address::repeat_byte(2),
                nonce: B256::repeat_byte(3),
            },
            fingerprint: B256::repeat_byte(9),
            token: Address::repeat_byte(1),
            pay_to: Address::repeat_byte(4),
            amount: U256::from(5),
            valid_before: 1_900_000_000,
            wire_network: Network::BASE,
            request: "{}".into(),
        };
        assert_eq!(watched.claim(&new).await.unwrap(), Claim::Fresh);
        assert!(matches!(
            watched.claim(&new).await.unwrap(),
            Claim::Existing(_)
        ));
        watched.get(&new.key).await.unwrap();
        let answer = SettleResponse::success(Network::BASE, None, "0x01");
        watched
            .finish(&new.key, SettlementState::Confirmed, &answer, None)
            .await
            .unwrap();
        let told: Vec<LogEvent> = std::iter::from_fn(|| heard.try_recv().ok()).collect();
        let key = new.key.to_string();
        assert_eq!(
            told,
            [
                LogEvent::Settlement {
                    key: key.clone(),
                    state: "claimed"
                },
                LogEvent::Settlement {
                    key,
                    state: "confirmed"
                },
            ]
        );
        assert_eq!(
            serde_json::to_value(&told[1]).unwrap()["type"],
            "settlement"
        );
    }
}
