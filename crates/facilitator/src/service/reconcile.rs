//! Reconciliation at start: what a previous run left in flight is concluded, abandoned, or
//! tracked in the background before new work is taken.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use x402_evm::TransferExpectation;
use x402_proto::FacilitatorError;

use super::single_flight::{InFlight, InFlightEntry, Progress};
use super::{FacilitatorService, answers};
use crate::store::{SettlementRecord, SettlementState, StoreError};

/// What reconciliation at start did, `batch-settlement` sends (deposits, claims, settles,
/// refunds) counted with the settlements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Settlements found confirmed on chain.
    pub confirmed: usize,
    /// Settlements found mined without moving the payment.
    pub failed: usize,
    /// Settlements recorded but never sent, given up.
    pub abandoned: usize,
    /// Settlements still in flight, tracked in the background (rebroadcast when the node had
    /// lost them).
    pub tracking: usize,
}

impl FacilitatorService {
    /// Settles what a previous run left in flight, before new work is taken: settlements
    /// never sent are abandoned (nothing moved; a retry starts over), sent ones are looked
    /// up on chain, and those still unmined are rebroadcast when the node lost them and then
    /// tracked in the background.
    ///
    /// With a log shared by several instances, "a previous run" is this instance's own rows
    /// and those of instances whose heartbeat is older than `takeover_after` (presumed dead),
    /// which this instance takes over; a live instance's rows are left to it.
    pub async fn reconcile(&self, takeover_after: Duration) -> Result<ReconcileReport, StoreError> {
        let mut report = ReconcileReport::default();
        let store = &self.inner.store;
        store.heartbeat().await?;
        let mut records = store.unfinished().await?;
        records.extend(store.take_over(takeover_after).await?);
        for record in records {
            self.reconcile_one(record, &mut report).await?;
        }
        Ok(report)
    }

    /// Finishes what instances that stopped writing their heartbeat more than
    /// `takeover_after` ago left in flight (see [`reconcile`](Self::reconcile)); run
    /// periodically, with this instance's heartbeat, while it serves.
    pub async fn take_over_stale(
        &self,
        takeover_after: Duration,
    ) -> Result<ReconcileReport, StoreError> {
        let mut report = ReconcileReport::default();
        for record in self.inner.store.take_over(takeover_after).await? {
            // A caller here may already be following it (a retry of the same payment).
            if self.lock_in_flight().contains_key(&record.settlement.key) {
                continue;
            }
            self.reconcile_one(record, &mut report).await?;
        }
        Ok(report)
    }

    /// Writes this instance's heartbeat every `every` and finishes what dead instances left
    /// (see [`take_over_stale`](Self::take_over_stale)), until aborted. A log one process
    /// keeps needs none of it.
    pub(crate) fn spawn_heartbeat(
        &self,
        every: Duration,
        takeover_after: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(error) = service.inner.store.heartbeat().await {
                    tracing::warn!(%error, "could not write this instance's heartbeat");
                    continue;
                }
                match service.take_over_stale(takeover_after).await {
                    Ok(report) if report != ReconcileReport::default() => {
                        tracing::warn!(
                            ?report,
                            "finished settlements of an instance presumed dead"
                        );
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "could not take over a dead instance's settlements");
                    }
                }
            }
        })
    }

    /// Marks this instance stopped in a log shared with others: its unfinished settlements go
    /// to the next instance that starts or writes its heartbeat.
    pub(crate) async fn retire(&self) -> Result<(), StoreError> {
        self.inner.store.retire().await
    }

    /// Concludes, abandons or tracks one unfinished settlement.
    async fn reconcile_one(
        &self,
        record: SettlementRecord,
        report: &mut ReconcileReport,
    ) -> Result<(), StoreError> {
        {
            let key = record.settlement.key;
            let network = record.settlement.wire_network.clone();
            let payer = Some(key.payer.to_checksum(None));
            let Some(chain) = self.inner.chains.get(&key.chain_id) else {
                tracing::warn!(%key, "unfinished settlement on a chain no longer configured; left as is");
                return Ok(());
            };
            if record.state == SettlementState::Claimed || record.txs.is_empty() {
                let answer = answers::never_sent(network, payer);
                self.inner
                    .store
                    .finish(&key, SettlementState::Abandoned, &answer, None)
                    .await?;
                report.abandoned += 1;
                return Ok(());
            }
            let expected = TransferExpectation {
                asset: record.settlement.token,
                from: key.payer,
                to: record.settlement.pay_to,
                value: record.settlement.amount,
            };
            let mut mined = None;
            for tx in &record.txs {
                if let Ok(Some(outcome)) = chain.scheme.mined_outcome(tx.tx_hash, &expected).await {
                    mined = Some(outcome);
                    break;
                }
            }
            if let Some(outcome) = mined {
                if outcome.is_ok() {
                    report.confirmed += 1;
                } else {
                    report.failed += 1;
                }
                self.conclude(&record.settlement, network, payer, outcome)
                    .await
                    .map_err(|e| StoreError(e.to_string()))?;
                return Ok(());
            }
            // Rebroadcast now what the node lost, then follow it in the background.
            self.any_alive(chain, &record.txs, &expected).await;
            report.tracking += 1;
            self.track_in_background(record);
        }
        Ok(())
    }

    fn track_in_background(&self, record: SettlementRecord) {
        let key = record.settlement.key;
        let (sender, receiver) = watch::channel(Progress::Working);
        if let Some(last) = record.txs.last() {
            sender.send_replace(Progress::Submitted(last.tx_hash));
        }
        self.lock_in_flight().insert(
            key,
            InFlight {
                fingerprint: record.settlement.fingerprint,
                progress: receiver,
                answer: Arc::default(),
            },
        );
        let service = self.clone();
        tokio::spawn(async move {
            let entry = InFlightEntry {
                service: service.clone(),
                key,
                sender,
            };
            let outcome = match service.inner.chains.get(&key.chain_id) {
                Some(chain) => {
                    service
                        .track(chain, &record.settlement, record.txs.clone(), &entry.sender)
                        .await
                }
                None => Err(FacilitatorError::Internal("chain vanished".into())),
            };
            entry.sender.send_replace(Progress::Done(outcome));
        });
    }
}
