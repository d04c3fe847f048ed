//! Reconciling at start the batch-settlement sends a previous run left without an answer: a
//! send one of whose transactions is mined gets its answer written down (as a retry of its
//! request would get it); one whose nonce went to another transaction is forgotten (nothing
//! moved: its request may be settled anew); one still pending is rebroadcast when the node
//! lost it and followed in the background (fee bumps included). Claims still pending hold
//! back settles of their receivers, as in the run that sent them.

use x402_proto::{FacilitatorError, PaymentRequest};

use super::facilitator::BatchEvmFacilitator;
use super::sends::{BatchSend, BatchSendKey, Standing, keep_in_pool};
use super::settle::{Call, receivers_of};
use super::wire::FacilitatorSettlePayload;

/// What reconciling the batch-settlement sends left unfinished did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReconcileReport {
    /// Sends found mined, answered with success.
    pub confirmed: usize,
    /// Sends found mined and reverted.
    pub failed: usize,
    /// Sends whose transactions can no longer be mined, forgotten.
    pub abandoned: usize,
    /// Sends still pending (or that could not be judged now), followed in the background.
    pub tracking: usize,
}

impl BatchEvmFacilitator {
    /// Reconciles the sends on this facilitator's chain that a previous run left without an
    /// answer; call it once at start, before serving.
    pub async fn reconcile(&self) -> Result<BatchReconcileReport, FacilitatorError> {
        let mut report = BatchReconcileReport::default();
        let ours = format!("eip155:{}:", self.chain.chain_id());
        for (key, send) in self.sends.log.unfinished().await? {
            if !key.as_str().starts_with(&ours) {
                continue;
            }
            let request = serde_json::from_str::<PaymentRequest>(&send.request).ok();
            if let Some(request) = &request {
                self.note_claims(&key, request);
            }
            match self.sends.standing(&self.chain, &send).await {
                Some(Standing::Mined) => match &request {
                    Some(request) => {
                        let answer = self
                            .settle_call(&Call::new(request, Some(key.clone())))
                            .await?;
                        if answer.success {
                            report.confirmed += 1;
                        } else {
                            report.failed += 1;
                        }
                    }
                    // A log from before kept no request: a retry of it answers.
                    None => tracing::info!(
                        key = key.as_str(),
                        "a batch-settlement send is mined; its answer is written when it is asked again"
                    ),
                },
                Some(Standing::Dead) => {
                    tracing::info!(
                        key = key.as_str(),
                        "a batch-settlement send can no longer be mined; forgetting it"
                    );
                    self.sends.log.forget(&key).await?;
                    report.abandoned += 1;
                }
                Some(Standing::Pending) | None => {
                    self.keep_following(&key, &send).await;
                    report.tracking += 1;
                }
            }
        }
        Ok(report)
    }

    async fn keep_following(&self, key: &BatchSendKey, send: &BatchSend) {
        keep_in_pool(&self.chain, send).await;
        self.sends.follow(&self.chain, key.clone());
    }

    /// Notes the receivers a recorded claim (or refund with claims) claims for.
    fn note_claims(&self, key: &BatchSendKey, request: &PaymentRequest) {
        let Ok(payload) =
            serde_json::from_value::<FacilitatorSettlePayload>(request.payload().clone())
        else {
            return;
        };
        match &payload {
            FacilitatorSettlePayload::Claim(claim) => {
                self.sends.claiming(key, receivers_of(&claim.claims));
            }
            FacilitatorSettlePayload::Refund(refund) => {
                self.sends
                    .claiming(key, receivers_of(&refund.claims.claims));
            }
            _ => {}
        }
    }
}
