//! `exact` on one Solana network behind the [`Facilitator`] trait.
//!
//! A payment is identified by its transaction message ([`DecodedPayment::message_key`]), so
//! the facilitator's settlement log, keyed by [`Facilitator::payment_id`], settles it once
//! however often it is presented. Within this process, presentations of one message being
//! settled wait for the first: one send.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use x402_proto::{
    BoxFuture, Facilitator, FacilitatorError, IdempotencyKey, Network, PaymentId, PaymentIdError,
    PaymentRequest, ReasonCode, Scheme, SettleResponse, SupportedKind, SupportedResponse,
    VerifyResponse,
};

use crate::{DecodedPayment, ExactSvmScheme, Landing};

/// How a facilitator settles on a Solana network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettlePolicy {
    /// How long to wait for a sent settlement to be confirmed before answering
    /// `settlement_pending` with its signature.
    pub confirm_within: Duration,
}

impl Default for SettlePolicy {
    fn default() -> Self {
        Self {
            confirm_within: Duration::from_secs(30),
        }
    }
}

type InFlight = Arc<tokio::sync::Mutex<Option<SettleResponse>>>;

/// How long this process remembers a sent message by itself, as the official facilitator's
/// cache does (120 s, past which its blockhash has expired on a real cluster).
const REMEMBER_SENT: Duration = Duration::from_secs(120);

/// The `exact` scheme on one Solana network as a facilitator plug-in.
#[derive(Debug)]
pub struct ExactSvmFacilitator {
    network: Network,
    scheme: ExactSvmScheme,
    policy: SettlePolicy,
    in_flight: Mutex<HashMap<String, (InFlight, Instant)>>,
}

impl ExactSvmFacilitator {
    /// Serves `scheme` on `network` (CAIP-2).
    pub fn new(network: Network, scheme: ExactSvmScheme, policy: SettlePolicy) -> Self {
        Self {
            network,
            scheme,
            policy,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// The scheme.
    pub fn scheme(&self) -> &ExactSvmScheme {
        &self.scheme
    }

    /// The kinds served: v2 on the network, v1 on its v1 name, each with `extra.feePayer`.
    pub fn kinds(&self) -> Vec<SupportedKind> {
        let fee_payer = self
            .scheme
            .fee_payers()
            .addresses()
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        let v2 = SupportedKind {
            x402_version: 2,
            scheme: Scheme::EXACT,
            network: self.network.clone(),
            extra: Some(json!({"feePayer": fee_payer})),
        };
        let v1 = self.network.to_v1_name().map(|name| SupportedKind {
            x402_version: 1,
            network: name,
            ..v2.clone()
        });
        std::iter::once(v2).chain(v1).collect()
    }

    async fn settle_now(
        &self,
        request: &PaymentRequest,
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = request.wire_network().clone();
        let version = request.version();
        let verified = match self.scheme.verify(request).await {
            Ok(verified) => verified,
            Err((error, _)) if error.is_internal() => {
                return Err(FacilitatorError::Unavailable(error.to_string()));
            }
            Err((error, payer)) => {
                return Ok(SettleResponse::failure(
                    network,
                    error.reason(version),
                    error.to_string(),
                    payer.map(|p| p.to_string()),
                    None,
                ));
            }
        };
        let payer = Some(verified.checked.payer.to_string());
        let signed = self
            .scheme
            .cosign(&verified)
            .map_err(FacilitatorError::Internal)?;
        let failed = ReasonCode::from_static("invalid_exact_svm_transaction_failed");
        let landing = match self
            .scheme
            .send_and_confirm(&signed, self.policy.confirm_within)
            .await
        {
            Ok(landing) => landing,
            Err(error) => {
                return Ok(SettleResponse::failure(
                    network,
                    failed,
                    error.to_string(),
                    payer,
                    None,
                ));
            }
        };
        Ok(match landing {
            Landing::Confirmed { signature } => SettleResponse::success(network, payer, signature),
            Landing::Failed { signature, err } => SettleResponse::failure(
                network,
                failed,
                format!("the transaction failed on chain: {err}"),
                payer,
                Some(signature),
            ),
            Landing::Pending { signature } => SettleResponse::failure(
                network,
                ReasonCode::SETTLEMENT_PENDING,
                "sent, not yet confirmed; ask again with the same payment",
                payer,
                Some(signature),
            ),
        })
    }
}

impl ExactSvmFacilitator {
    /// The answer for a settlement that was pending: its signature followed once more.
    async fn follow(&self, request: &PaymentRequest, pending: &SettleResponse) -> SettleResponse {
        let landing = self
            .scheme
            .confirm(pending.transaction.clone(), self.policy.confirm_within)
            .await;
        let network = request.wire_network().clone();
        let payer = pending.payer.clone();
        match landing {
            Landing::Confirmed { signature } => SettleResponse::success(network, payer, signature),
            Landing::Failed { signature, err } => SettleResponse::failure(
                network,
                ReasonCode::from_static("invalid_exact_svm_transaction_failed"),
                format!("the transaction failed on chain: {err}"),
                payer,
                Some(signature),
            ),
            Landing::Pending { .. } => pending.clone(),
        }
    }
}

impl Facilitator for ExactSvmFacilitator {
    fn verify<'a>(
        &'a self,
        request: &'a PaymentRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async move {
            self.scheme
                .verify_response(request)
                .await
                .map_err(|error| FacilitatorError::Unavailable(error.to_string()))
        })
    }

    /// Sends once per message in this process: a presentation that arrives while the same
    /// message is being settled waits for it, and is refused as `duplicate_settlement` if it
    /// was sent (the trait's rule: one caller gets the success). Across presentations over
    /// time and across restarts, the settlement log keyed by [`Self::payment_id`] answers.
    fn settle<'a>(
        &'a self,
        request: &'a PaymentRequest,
        _idempotency_key: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(async move {
            let Ok(decoded) = DecodedPayment::decode(request.payload()) else {
                return self.settle_now(request).await;
            };
            let key = decoded.message_key();
            let slot = {
                let mut in_flight = self
                    .in_flight
                    .lock()
                    .expect("the in-flight map is never poisoned");
                in_flight.retain(|_, (slot, since)| {
                    Arc::strong_count(slot) > 1 || since.elapsed() < REMEMBER_SENT
                });
                in_flight
                    .entry(key.clone())
                    .or_insert_with(|| (InFlight::default(), Instant::now()))
                    .0
                    .clone()
            };
            let (settled, sent) = {
                let mut answer = slot.lock().await;
                let settled = match answer.as_ref() {
                    // Sent but not confirmed when last asked: wait for it again, never resend.
                    Some(sent)
                        if sent.error_reason.as_ref() == Some(&ReasonCode::SETTLEMENT_PENDING) =>
                    {
                        let again = self.follow(request, sent).await;
                        *answer = Some(again.clone());
                        Ok(again)
                    }
                    Some(sent) => Ok(SettleResponse::failure(
                        request.wire_network().clone(),
                        ReasonCode::DUPLICATE_SETTLEMENT,
                        "this payment was settled by another presentation",
                        sent.payer.clone(),
                        None,
                    )),
                    None => {
                        let settled = self.settle_now(request).await;
                        // Remember what was sent (settled or pending), not a refusal.
                        if let Ok(answer_now) = &settled
                            && (answer_now.success || !answer_now.transaction.is_empty())
                        {
                            *answer = Some(answer_now.clone());
                        }
                        settled
                    }
                };
                (settled, answer.is_some())
            };
            // A slot that sent nothing goes with the last presentation out; one that sent is
            // kept for a while (then the settlement log remembers).
            let mut in_flight = self
                .in_flight
                .lock()
                .expect("the in-flight map is never poisoned");
            drop(slot);
            if in_flight
                .get(&key)
                .is_some_and(|(slot, _)| Arc::strong_count(slot) == 1 && !sent)
            {
                in_flight.remove(&key);
            }
            settled
        })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async move {
            let mut signers = std::collections::BTreeMap::new();
            signers.insert(
                "solana:*".to_owned(),
                self.scheme
                    .fee_payers()
                    .addresses()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            );
            Ok(SupportedResponse {
                kinds: self.kinds(),
                extensions: Vec::new(),
                signers,
            })
        })
    }

    /// `exact`, the network (CAIP-2, so v1 and v2 presentations agree) and the message key.
    fn payment_id(&self, request: &PaymentRequest) -> Result<PaymentId, PaymentIdError> {
        let decoded = DecodedPayment::decode(request.payload())
            .map_err(|error| PaymentIdError(error.to_string()))?;
        let network = request.wire_network();
        let network = network.to_caip2().unwrap_or_else(|| network.clone());
        Ok(PaymentId::from_parts([
            "exact",
            network.as_str(),
            "svm",
            &decoded.message_key(),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FeePayers, SolanaRpc, VerifyLimits};

    #[test]
    fn the_payment_id_is_the_one_any_paywall_derives() {
        let golden: serde_json::Value =
            serde_json::from_str(include_str!("../../../testdata/svm/official-exact.json"))
                .unwrap();
        let facilitator = ExactSvmFacilitator::new(
            Network::new(golden["chain"]["network"].as_str().unwrap()),
            ExactSvmScheme::new(
                SolanaRpc::new("http://127.0.0.1:9", Duration::from_secs(1)),
                FeePayers::new(Vec::new()),
                VerifyLimits::default(),
            ),
            SettlePolicy::default(),
        );
        let v2: PaymentRequest = serde_json::from_value(json!({
            "paymentPayload": {"x402Version": 2, "accepted": golden["v2Memo"]["requirements"],
                               "payload": golden["v2Memo"]["payload"]},
            "paymentRequirements": golden["v2Memo"]["requirements"],
        }))
        .unwrap();
        let ours = facilitator.payment_id(&v2).unwrap();
        assert_eq!(ours, PaymentId::derive(&v2).unwrap());
        let key = DecodedPayment::decode(&golden["v2Memo"]["payload"])
            .unwrap()
            .message_key();
        assert!(ours.as_str().ends_with(&key), "{ours}");
        let v1: PaymentRequest = serde_json::from_value(json!({
            "paymentPayload": golden["v1"]["payload"],
            "paymentRequirements": golden["v1"]["requirements"],
        }))
        .unwrap();
        assert_eq!(
            facilitator.payment_id(&v1).unwrap(),
            PaymentId::derive(&v1).unwrap()
        );
    }
}
