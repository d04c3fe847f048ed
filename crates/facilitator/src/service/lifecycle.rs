//! A settlement's life: looked up in the log, verified, claimed together with its first
//! signed transaction, broadcast, tracked, and written down with its final answer.

use std::time::Instant;

use tokio::sync::watch;
use x402_evm::{BroadcastError, Sent, SettleError, VerifiedPayment};
use x402_proto::{FacilitatorError, Network, PaymentRequest, SettleResponse};

use super::single_flight::{Progress, lock_slot};
use super::{ChainService, FacilitatorService, Identity, answers, internal};
use crate::store::{
    Claim, NewSettlement, SettlementKey, SettlementRecord, SettlementState, TxRecord,
};

/// How many signer nonces one settlement may use in all (the first, plus new transactions
/// for ones the chain dropped). Fee bumps reuse their transaction's nonce and do not count.
pub(super) const MAX_SENDS: usize = 3;

/// How many distinct signer nonces `txs` use.
pub(super) fn nonces_used(txs: &[TxRecord]) -> usize {
    let mut nonces: Vec<u64> = txs.iter().map(|tx| tx.signer_nonce).collect();
    nonces.sort_unstable();
    nonces.dedup();
    nonces.len()
}

/// Why [`FacilitatorService::send`] stopped before a broadcast.
// One per settle call: the size of an answer costs nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum SendStop {
    /// The settlement's answer; nothing is in the chain's hands.
    Answer(Result<SettleResponse, FacilitatorError>),
    /// Someone else recorded the settlement first: follow their record.
    Existing(Box<SettlementRecord>),
}

impl FacilitatorService {
    /// Owns one settlement from the log lookup to its end.
    pub(super) async fn run_settlement(
        &self,
        identity: Identity,
        request: PaymentRequest,
        progress: &watch::Sender<Progress>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = request.wire_network().clone();
        let chain = self
            .inner
            .chains
            .get(&identity.key.chain_id)
            .ok_or_else(|| FacilitatorError::Internal("chain vanished".into()))?;
        let store = &self.inner.store;
        if let Some(record) = store.get(&identity.key).await?
            && let Some(answer) = self.resume(chain, &identity, record, progress).await?
        {
            return Ok(answer);
        }
        let payment = match chain.scheme.verify(&request).await {
            Ok(payment) => payment,
            Err(error) => {
                // Another instance sharing the log may have recorded and settled the payment
                // between our lookup and our verify (its nonce is spent now): its record
                // answers, not the refusal.
                if let Some(record) = store.get(&identity.key).await?
                    && let Some(answer) = self.resume(chain, &identity, record, progress).await?
                {
                    return Ok(answer);
                }
                return answers::settle_refusal(&error, &request);
            }
        };
        let new = NewSettlement {
            key: identity.key,
            fingerprint: identity.fingerprint,
            token: payment.asset(),
            pay_to: payment.pay_to(),
            amount: payment.amount(),
            valid_before: u64::try_from(identity.payload.authorization.valid_before)
                .unwrap_or(u64::MAX),
            wire_network: network.clone(),
            request: serde_json::to_string(&request).map_err(internal)?,
        };
        // The claim is written together with the first signed transaction: one durable write
        // before the broadcast instead of two.
        let mut txs = Vec::new();
        match self
            .send(chain, &new, &payment, &mut txs, progress, false)
            .await
        {
            Ok(sent) => {
                // A node that mines at once answered with the receipt: no poll needed.
                if let Some(outcome) = sent.outcome(&payment.expectation()) {
                    let payer = Some(payment.payer().to_checksum(None));
                    return self.conclude(&new, network, payer, outcome).await;
                }
            }
            Err(SendStop::Answer(outcome)) => return outcome,
            Err(SendStop::Existing(record)) => {
                // Another instance recorded it between our lookup and our claim.
                return match self.resume(chain, &identity, *record, progress).await? {
                    Some(answer) => Ok(answer),
                    None => Err(FacilitatorError::Unavailable(
                        "the settlement was taken over concurrently; settle again".into(),
                    )),
                };
            }
        }
        self.track(chain, &new, txs, progress).await
    }

    /// Handles a settlement already in the log. `None` means it was abandoned and may start
    /// over.
    async fn resume(
        &self,
        chain: &ChainService,
        identity: &Identity,
        record: SettlementRecord,
        progress: &watch::Sender<Progress>,
    ) -> Result<Option<SettleResponse>, FacilitatorError> {
        if record.settlement.fingerprint != identity.fingerprint {
            let network = record.settlement.wire_network.clone();
            return Ok(Some(answers::nonce_conflict(network, &identity.key)));
        }
        match record.state {
            SettlementState::Confirmed | SettlementState::Failed => {
                Ok(Some(record.response.ok_or_else(|| {
                    FacilitatorError::Internal("final settlement without answer".into())
                })?))
            }
            SettlementState::Abandoned => Ok(None),
            SettlementState::Submitted => {
                if let Some(last) = record.txs.last() {
                    progress.send_replace(Progress::Submitted(last.tx_hash));
                }
                let txs = record.txs.clone();
                self.track(chain, &record.settlement, txs, progress)
                    .await
                    .map(Some)
            }
            // Claimed by another instance that has not sent yet: watch the log.
            SettlementState::Claimed => {
                let deadline = Instant::now() + self.inner.settle_wait;
                while Instant::now() < deadline {
                    tokio::time::sleep(chain.scheme.poll_interval()).await;
                    let Some(now) = self.inner.store.get(&identity.key).await? else {
                        return Ok(None);
                    };
                    if now.state != SettlementState::Claimed {
                        return Box::pin(self.resume(chain, identity, now, progress)).await;
                    }
                }
                Err(FacilitatorError::Unavailable(
                    "another facilitator instance holds this settlement; settle again later".into(),
                ))
            }
        }
    }

    /// Signs, records and broadcasts one transaction for the settlement. `Err` carries the
    /// final answer when nothing could be sent.
    ///
    /// Unless `claimed`, the settlement is claimed in the same write as its first transaction;
    /// a settlement someone else recorded first stops the send with its record.
    pub(super) async fn send(
        &self,
        chain: &ChainService,
        settlement: &NewSettlement,
        payment: &VerifiedPayment,
        txs: &mut Vec<TxRecord>,
        progress: &watch::Sender<Progress>,
        mut claimed: bool,
    ) -> Result<Sent, SendStop> {
        let network = settlement.wire_network.clone();
        let payer = Some(payment.payer().to_checksum(None));
        let store = &self.inner.store;
        loop {
            let slot = match chain.scheme.reserve_send().await {
                Ok(slot) => slot,
                Err(error) => {
                    let answer = self.give_up(settlement, network, payer, &error, claimed);
                    return Err(SendStop::Answer(answer.await));
                }
            };
            let signed = match slot.sign(payment).await {
                Ok(signed) => signed,
                Err(error) => {
                    let answer = self.give_up(settlement, network, payer, &error, claimed);
                    return Err(SendStop::Answer(answer.await));
                }
            };
            let record = TxRecord {
                tx_hash: signed.tx_hash,
                raw: signed.raw.clone(),
                signer: chain.scheme.signer_address(),
                signer_nonce: signed.signer_nonce,
            };
            // Durable before broadcast: if we die after sending, the restart finds the hash. A
            // slot dropped without a broadcast gives its nonce back.
            if claimed {
                if let Err(error) = store.add_transaction(&settlement.key, &record).await {
                    drop(slot);
                    return Err(SendStop::Answer(Err(error.into())));
                }
            } else {
                match store
                    .claim_with_transaction(settlement, &record, None)
                    .await
                {
                    Ok(Claim::Fresh) => claimed = true,
                    Ok(Claim::Existing(existing)) => {
                        drop(slot);
                        return Err(SendStop::Existing(existing));
                    }
                    Err(error) => {
                        drop(slot);
                        return Err(SendStop::Answer(Err(error.into())));
                    }
                }
            }
            txs.push(record);
            progress.send_replace(Progress::Submitted(signed.tx_hash));
            match slot.broadcast(&signed).await {
                Ok(sent) => {
                    tracing::debug!(tx_hash = %signed.tx_hash, key = %settlement.key, "settlement broadcast");
                    return Ok(sent);
                }
                Err(BroadcastError::Uncertain { detail }) => {
                    // It may have arrived; tracking rebroadcasts it if the node does not know it.
                    tracing::warn!(tx_hash = %signed.tx_hash, %detail, "broadcast unconfirmed; tracking");
                    return Ok(Sent::Pooled);
                }
                Err(BroadcastError::Refused {
                    nonce_used: true,
                    reason,
                    ..
                }) if nonces_used(txs) < MAX_SENDS => {
                    // Our local nonce was stale (the key is used elsewhere too): the slot has
                    // resynced; sign again with the next one.
                    tracing::warn!(%reason, "nonce already used; re-signing");
                }
                Err(refused) => {
                    let error = refused.into_settle_error(signed.tx_hash);
                    let answer = self.give_up(settlement, network, payer, &error, true);
                    return Err(SendStop::Answer(answer.await));
                }
            }
        }
    }

    /// Ends a settlement for which nothing is in the chain's hands. A retry may start over.
    /// Only a settlement this call `recorded` is marked abandoned in the log (a record may
    /// belong to another instance).
    async fn give_up(
        &self,
        settlement: &NewSettlement,
        network: Network,
        payer: Option<String>,
        error: &SettleError,
        recorded: bool,
    ) -> Result<SettleResponse, FacilitatorError> {
        let answer = answers::not_sent(network, payer, error);
        if recorded {
            self.inner
                .store
                .finish(&settlement.key, SettlementState::Abandoned, &answer, None)
                .await?;
        }
        if error.is_retryable() {
            Err(FacilitatorError::Unavailable(error.to_string()))
        } else {
            Ok(answer)
        }
    }

    /// Writes down a mined settlement's outcome and returns its answer.
    pub(super) async fn conclude(
        &self,
        settlement: &NewSettlement,
        network: Network,
        payer: Option<String>,
        outcome: Result<x402_evm::Settlement, SettleError>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let (state, answer) = match outcome {
            Ok(settled) => (
                SettlementState::Confirmed,
                answers::settled(network, payer, settled.tx_hash),
            ),
            Err(error) => (
                SettlementState::Failed,
                answers::failed(network, payer, &error),
            ),
        };
        self.finish(&settlement.key, state, answer).await
    }

    /// Writes down a settlement's final state and answer; a confirmed one goes to the caller
    /// waiting for it in the same write.
    pub(super) async fn finish(
        &self,
        key: &SettlementKey,
        state: SettlementState,
        answer: SettleResponse,
    ) -> Result<SettleResponse, FacilitatorError> {
        // A confirmed settlement is handed to the caller waiting for it, in the same write.
        let holder = if state == SettlementState::Confirmed {
            let slot = self.lock_in_flight().get(key).map(|f| f.answer.clone());
            slot.and_then(|slot| lock_slot(&slot).seal())
        } else {
            None
        };
        self.inner
            .store
            .finish(key, state, &answer, holder.as_deref())
            .await?;
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, B256};

    use super::*;

    fn tx(byte: u8, signer_nonce: u64) -> TxRecord {
        TxRecord {
            tx_hash: B256::repeat_byte(byte),
            raw: alloy::primitives::Bytes::new(),
            signer: Address::ZERO,
            signer_nonce,
        }
    }

    #[test]
    fn fee_bumps_on_one_nonce_count_as_one_send() {
        assert_eq!(nonces_used(&[]), 0);
        // A first send, two fee bumps of it, and a new send after a drop.
        let txs = [tx(1, 7), tx(2, 7), tx(3, 7), tx(4, 9)];
        assert_eq!(nonces_used(&txs), 2);
        assert!(nonces_used(&txs) < MAX_SENDS, "one more send is allowed");
    }
}
