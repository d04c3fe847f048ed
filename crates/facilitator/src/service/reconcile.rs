//! Reconciliation at start: what a previous run left in flight is concluded, abandoned, or
//! tracked in the background before new work is taken.

use std::sync::Arc;

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
    pub async fn reconcile(&self) -> Result<ReconcileReport, StoreError> {
        let mut report = ReconcileReport::default();
        for record in self.inner.store.unfinished().await? {
            let key = record.settlement.key;
            let network = record.settlement.wire_network.clone();
            let payer = Some(key.payer.to_checksum(None));
            let Some(chain) = self.inner.chains.get(&key.chain_id) else {
                tracing::warn!(%key, "unfinished settlement on a chain no longer configured; left as is");
                continue;
            };
            if record.state == SettlementState::Claimed || record.txs.is_empty() {
                let answer = answers::never_sent(network, payer);
                self.inner
                    .store
                    .finish(&key, SettlementState::Abandoned, &answer, None)
                    .await?;
                report.abandoned += 1;
                continue;
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
                continue;
            }
            // Rebroadcast now what the node lost, then follow it in the background.
            self.any_alive(chain, &record.txs, &expected).await;
            report.tracking += 1;
            self.track_in_background(record);
        }
        Ok(report)
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
