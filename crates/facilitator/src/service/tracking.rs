//! Following a sent settlement until one of its transactions is mined: receipt polls,
//! rebroadcasts of lost transactions, fee bumps of stuck ones, new sends for dropped ones.

use std::time::{Duration, Instant};

use alloy::primitives::U256;
use tokio::sync::watch;
use x402_evm::{BroadcastError, PollBackoff, Replacement, TransferExpectation, TxStatus};
use x402_proto::{FacilitatorError, PaymentRequest, SettleResponse};

use super::lifecycle::{MAX_SENDS, SendStop, nonces_used};
use super::single_flight::Progress;
use super::{ChainService, FacilitatorService, answers};
use crate::store::{NewSettlement, SettlementState, TxRecord};

/// How often a settlement whose receipt has not come checks that the node still has its
/// transaction (and rebroadcasts it when not).
const LIVENESS_CHECK_EVERY: Duration = Duration::from_secs(2);

/// When the newest transaction of a tracked settlement was last sent or bumped.
struct BumpClock {
    since: Instant,
    /// How many transactions the settlement had then.
    seen: usize,
    /// No further bump is possible (out of bumps, or at the fee cap).
    done: bool,
}

impl BumpClock {
    fn new(seen: usize) -> Self {
        Self {
            since: Instant::now(),
            seen,
            done: false,
        }
    }
}

impl FacilitatorService {
    /// Follows a settlement's transactions until one is mined or none can be: polls receipts
    /// at the chain's interval (any transaction of the settlement may be the one mined),
    /// rebroadcasts transactions the node lost, replaces one left unmined with higher fees on
    /// the same nonce, and re-sends (while the authorization is valid) when the chain used our
    /// nonce for something else.
    pub(super) async fn track(
        &self,
        chain: &ChainService,
        settlement: &NewSettlement,
        mut txs: Vec<TxRecord>,
        progress: &watch::Sender<Progress>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = settlement.wire_network.clone();
        let payer = Some(settlement.key.payer.to_checksum(None));
        let expected = TransferExpectation {
            asset: settlement.token,
            from: settlement.key.payer,
            to: settlement.pay_to,
            value: settlement.amount,
        };
        let mut last_liveness_check = Instant::now();
        let mut bump = BumpClock::new(txs.len());
        let mut backoff = PollBackoff::new(chain.scheme.poll_interval());
        loop {
            for tx in txs.iter().rev() {
                match chain.scheme.mined_outcome(tx.tx_hash, &expected).await {
                    Ok(Some(outcome)) => {
                        return self.conclude(settlement, network, payer, outcome).await;
                    }
                    Ok(None) => {}
                    Err(error) => tracing::debug!(%error, "receipt poll failed"),
                }
            }
            if txs.is_empty() || last_liveness_check.elapsed() >= LIVENESS_CHECK_EVERY {
                last_liveness_check = Instant::now();
                if !self.any_alive(chain, &txs, &expected).await {
                    // Every transaction we sent is dead: none of them can move the money.
                    match self.after_dead(chain, settlement, &mut txs, progress).await {
                        Ok(()) => continue,
                        Err(answer) => return answer,
                    }
                }
            }
            self.bump_if_stuck(chain, settlement, &mut txs, &mut bump, progress)
                .await;
            tokio::time::sleep(backoff.next_wait()).await;
        }
    }

    /// Replaces the newest of `txs` with a higher-fee transaction on the same nonce once it
    /// has waited unmined for the chain's `stuck_after`, at most `max_bumps` times per nonce
    /// (counted from the log, so a restart does not reset it). The replacement is recorded
    /// before it is broadcast. At the cap, or out of bumps, it logs and leaves it to wait.
    async fn bump_if_stuck(
        &self,
        chain: &ChainService,
        settlement: &NewSettlement,
        txs: &mut Vec<TxRecord>,
        clock: &mut BumpClock,
        progress: &watch::Sender<Progress>,
    ) {
        let scheme = &chain.scheme;
        if txs.len() != clock.seen {
            // A transaction was sent since (on a new nonce): it gets its own wait.
            *clock = BumpClock::new(txs.len());
        }
        if clock.done || clock.since.elapsed() < scheme.stuck_after() {
            return;
        }
        let Some(newest) = txs.last().cloned() else {
            return;
        };
        let key = &settlement.key;
        let bumps = txs
            .iter()
            .filter(|tx| tx.signer_nonce == newest.signer_nonce)
            .count()
            - 1;
        let max_bumps = usize::try_from(scheme.fee_bump().max_bumps).unwrap_or(usize::MAX);
        if bumps >= max_bumps {
            tracing::warn!(%key, tx_hash = %newest.tx_hash, bumps, "settlement transaction still unmined and out of fee bumps; waiting for it");
            clock.done = true;
            return;
        }
        // Whatever happens next, the next attempt waits a full `stuck_after`.
        clock.since = Instant::now();
        let signed = match scheme.replacement(&newest.raw).await {
            Ok(Replacement::Signed(signed)) => signed,
            Ok(Replacement::AtCap {
                max_fee_per_gas,
                cap,
            }) => {
                tracing::warn!(%key, tx_hash = %newest.tx_hash, max_fee_per_gas, cap, "settlement transaction still unmined and its fees are at the cap (max_fee_per_gas_cap_gwei); waiting for it");
                clock.done = true;
                return;
            }
            Err(error) => {
                tracing::warn!(%key, %error, "could not prepare a fee bump; trying again later");
                return;
            }
        };
        let record = TxRecord {
            tx_hash: signed.tx_hash,
            raw: signed.raw.clone(),
            signer: scheme.signer_address(),
            signer_nonce: signed.signer_nonce,
        };
        // Durable before broadcast, like the first transaction.
        if let Err(error) = self.inner.store.add_transaction(key, &record).await {
            tracing::warn!(%key, %error, "could not record a fee bump; not sending it");
            return;
        }
        txs.push(record);
        clock.seen = txs.len();
        progress.send_replace(Progress::Submitted(signed.tx_hash));
        match scheme.rebroadcast(&signed.raw).await {
            Ok(()) => {
                tracing::info!(%key, replaced = %newest.tx_hash, tx_hash = %signed.tx_hash, nonce = signed.signer_nonce, bump = bumps + 1, "replaced an unmined settlement transaction with higher fees");
            }
            Err(error) => {
                // The earlier transaction stands (or was mined); the next receipt poll tells.
                tracing::info!(%key, tx_hash = %signed.tx_hash, %error, "fee bump not accepted");
            }
        }
    }

    /// Whether any of `txs` may still be mined: the node has it, takes it again, refuses it
    /// only for its price (a fee bump or lower fees get it in), or cannot be asked. A
    /// transaction whose nonce the signer has used for another one is dead, and so is one
    /// replaced with higher fees.
    pub(super) async fn any_alive(
        &self,
        chain: &ChainService,
        txs: &[TxRecord],
        expected: &TransferExpectation,
    ) -> bool {
        for (i, tx) in txs.iter().enumerate() {
            // A transaction given higher fees on the same nonce has left the pool for good.
            let replaced = txs[i + 1..]
                .iter()
                .any(|later| later.signer_nonce == tx.signer_nonce);
            match chain.scheme.transaction_status(tx.tx_hash, expected).await {
                Ok(TxStatus::InPool | TxStatus::Mined(_)) | Err(_) => return true,
                Ok(TxStatus::Unknown) if replaced => {}
                Ok(TxStatus::Unknown) => match chain.scheme.rebroadcast(&tx.raw).await {
                    Ok(()) => {
                        tracing::info!(tx_hash = %tx.tx_hash, "rebroadcast a settlement the node had lost");
                        return true;
                    }
                    Err(BroadcastError::Uncertain { .. }) => return true,
                    Err(refused) if refused.is_underpriced() => {
                        // Its nonce is still free: it waits for a fee bump, or for fees to
                        // come down. A new nonce would only queue behind the empty one.
                        tracing::info!(tx_hash = %tx.tx_hash, error = %refused, "settlement transaction priced below the chain's fees; waiting");
                        return true;
                    }
                    Err(BroadcastError::Refused { reason, .. }) => {
                        tracing::info!(tx_hash = %tx.tx_hash, %reason, "settlement transaction is dead");
                    }
                },
            }
        }
        false
    }

    /// Every transaction is dead. If the authorization (or Permit2 nonce) was used anyway,
    /// someone else settled it; if an EIP-3009 authorization is still usable, send a new
    /// transaction; otherwise give up with nothing moved.
    async fn after_dead(
        &self,
        chain: &ChainService,
        settlement: &NewSettlement,
        txs: &mut Vec<TxRecord>,
        progress: &watch::Sender<Progress>,
    ) -> Result<(), Result<SettleResponse, FacilitatorError>> {
        let network = settlement.wire_network.clone();
        let key = &settlement.key;
        let payer = Some(key.payer.to_checksum(None));
        let used = if key.is_permit2() {
            let nonce = U256::from_be_bytes(key.nonce.0);
            x402_evm::permit2::nonce_used(&chain.scheme, key.payer, nonce)
                .await
                .ok()
        } else {
            let scheme = &chain.scheme;
            scheme
                .authorization_used(key.asset, key.payer, key.nonce)
                .await
                .ok()
        };
        // Cannot tell now; look again at the next check.
        let Some(used) = used else {
            return Ok(());
        };
        if used {
            let answer = answers::used_elsewhere(network, payer);
            return Err(self.finish(key, SettlementState::Failed, answer).await);
        }
        let request: Option<PaymentRequest> = serde_json::from_str(&settlement.request).ok();
        let payment = match &request {
            // A Permit2 settlement is not sent again from here: nothing moved, so settling
            // the payment again verifies it afresh and sends a new one.
            Some(request) if !key.is_permit2() && nonces_used(txs) < MAX_SENDS => {
                chain.scheme.verify(request).await.ok()
            }
            _ => None,
        };
        match payment {
            Some(payment) => {
                tracing::info!(key = %key, "re-sending a settlement whose transaction was dropped");
                match self
                    .send(chain, settlement, &payment, txs, progress, true)
                    .await
                {
                    // Mined or pooled, the next receipt poll finds where it stands.
                    Ok(_) => Ok(()),
                    Err(SendStop::Answer(answer)) => Err(answer),
                    Err(SendStop::Existing(_)) => Err(Err(FacilitatorError::Internal(
                        "a recorded settlement was claimed again".into(),
                    ))),
                }
            }
            None => {
                let answer = answers::dropped(network, payer);
                Err(self.finish(key, SettlementState::Abandoned, answer).await)
            }
        }
    }
}
