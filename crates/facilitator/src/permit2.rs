//! Permit2 settlements (`upto`, and `exact` with `permit2Authorization`) in the settlement log:
//! the Permit2 settle path's seam ([`SendLog`]) over the [`SettlementStore`].
//!
//! They share the table and the lifecycle of EIP-3009 settlements rather than a table of
//! their own: a record is claimed together with its first signed transaction before the
//! broadcast, ended with its answer, handed to one holder, and reconciled at start and tracked
//! (receipts, rebroadcasts, fee bumps) by the same code. What differs is the key: a Permit2
//! nonce belongs to its owner whatever the token, so the key's `asset` is Permit2 itself (two
//! permits of one owner and nonce in different tokens are one settlement, the second refused
//! as spent), and the token moved is kept beside it (`token`, added by the log's migration to
//! schema version 2). A request with an idempotency key has its success promised to that key
//! in the claim, so another key gets `duplicate_settlement` even while it is pending.

use std::sync::Arc;

use alloy::primitives::B256;
use x402_evm::TransferExpectation;
use x402_evm::permit2::{
    Ending, Holder, PERMIT2_ADDRESS, Permit2Nonce, Permit2Send, Recorded, SendLog, SendState,
    SentSettlement,
};
use x402_proto::{BoxFuture, FacilitatorError, SettleResponse};

use crate::store::{
    Claim, NewSettlement, SettlementKey, SettlementRecord, SettlementState, SettlementStore,
    TxRecord,
};

/// The Permit2 settle path's sends, recorded in the facilitator's settlement log.
#[derive(Debug, Clone)]
pub(crate) struct LoggedSends {
    store: Arc<dyn SettlementStore>,
}

impl LoggedSends {
    /// Records in `store`.
    pub(crate) fn new(store: Arc<dyn SettlementStore>) -> Self {
        Self { store }
    }
}

/// The log's key for a Permit2 nonce.
fn key(nonce: &Permit2Nonce) -> SettlementKey {
    SettlementKey {
        chain_id: nonce.chain_id,
        asset: PERMIT2_ADDRESS,
        payer: nonce.owner,
        nonce: B256::from(nonce.nonce.to_be_bytes::<32>()),
    }
}

/// A log record as the Permit2 settle path reads it.
fn sent(record: SettlementRecord) -> SentSettlement {
    let settlement = record.settlement;
    SentSettlement {
        fingerprint: settlement.fingerprint,
        transfer: TransferExpectation {
            asset: settlement.token,
            from: settlement.key.payer,
            to: settlement.pay_to,
            value: settlement.amount,
        },
        tx_hashes: record.txs.iter().map(|tx| tx.tx_hash).collect(),
        state: match (record.state, record.response) {
            (SettlementState::Abandoned, _) => SendState::Abandoned,
            (SettlementState::Confirmed | SettlementState::Failed, Some(answer)) => {
                SendState::Ended(answer)
            }
            // Not ended (or ended without its answer): its transaction tells.
            _ => SendState::Sent,
        },
        holder: record.answered_to.map(Holder::stored),
    }
}

impl SendLog for LoggedSends {
    fn find<'a>(
        &'a self,
        nonce: &'a Permit2Nonce,
    ) -> BoxFuture<'a, Result<Option<SentSettlement>, FacilitatorError>> {
        Box::pin(async move {
            let record = self
                .store
                .get(&key(nonce))
                .await
                .map_err(FacilitatorError::from)?;
            Ok(record.map(sent))
        })
    }

    fn record<'a>(
        &'a self,
        send: &'a Permit2Send,
    ) -> BoxFuture<'a, Result<Recorded, FacilitatorError>> {
        Box::pin(async move {
            let new = NewSettlement {
                key: key(&send.nonce),
                fingerprint: send.fingerprint,
                token: send.transfer.asset,
                pay_to: send.transfer.to,
                amount: send.transfer.value,
                valid_before: send.deadline,
                wire_network: send.request.wire_network().clone(),
                request: serde_json::to_string(&send.request)
                    .map_err(|e| FacilitatorError::Internal(e.to_string()))?,
            };
            let tx = TxRecord {
                tx_hash: send.tx.tx_hash,
                raw: send.tx.raw.clone(),
                signer: send.signer,
                signer_nonce: send.tx.signer_nonce,
            };
            let holder = send.holder.as_ref().map(Holder::as_str);
            let claim = self.store.claim_with_transaction(&new, &tx, holder);
            Ok(match claim.await.map_err(FacilitatorError::from)? {
                Claim::Fresh => Recorded::Fresh,
                Claim::Existing(record) => Recorded::Existing(Box::new(sent(*record))),
            })
        })
    }

    fn finish<'a>(
        &'a self,
        nonce: &'a Permit2Nonce,
        ending: Ending,
        answer: &'a SettleResponse,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        let state = match ending {
            Ending::Confirmed => SettlementState::Confirmed,
            Ending::Failed => SettlementState::Failed,
            Ending::Abandoned => SettlementState::Abandoned,
        };
        Box::pin(async move {
            let key = key(nonce);
            let finish = self.store.finish(&key, state, answer, None);
            finish.await.map_err(FacilitatorError::from)
        })
    }

    fn hand_out<'a>(
        &'a self,
        nonce: &'a Permit2Nonce,
        holder: &'a Holder,
    ) -> BoxFuture<'a, Result<bool, FacilitatorError>> {
        Box::pin(async move {
            let key = key(nonce);
            let handed = self.store.hand_out(&key, holder.as_str());
            handed.await.map_err(FacilitatorError::from)
        })
    }
}
