//! Settling an `upto` payment: the amount the server names (its usage), verified against the
//! maximum the permit signs, never above it, nothing sent for zero, from the witnessed
//! facilitator address through the `upto` proxy.

use alloy::primitives::U256;
use x402_proto::{FacilitatorError, PaymentRequest, ReasonCode, SettleResponse, TokenAmount, v2};

use super::payload::UptoPayload;

use super::facilitator::*;

impl UptoEvmFacilitator {
    /// Settles `requirements.amount` (the usage) of a payment whose permit names the maximum.
    pub(super) async fn settle_payment(
        &self,
        request: &PaymentRequest,
        key: Option<&x402_proto::IdempotencyKey>,
    ) -> Result<SettleResponse, FacilitatorError> {
        // One settlement of a payment at a time: checks, sends and retries in turn.
        let _turn = self.pending.turn(request).await;
        let network = request.wire_network().clone();
        let payer = permit_payer(request);
        let failure = |refusal: Refusal| {
            SettleResponse::failure(
                network.clone(),
                refusal.code,
                refusal.message,
                payer.clone(),
                None,
            )
        };
        let PaymentRequest::V2 {
            payload,
            requirements,
        } = request
        else {
            return Ok(failure(refuse(
                ReasonCode::INVALID_X402_VERSION,
                "upto is an x402 v2 scheme",
            )));
        };
        let actual = requirements.amount.0;
        let Ok(upto) = serde_json::from_value::<UptoPayload>(payload.payload.clone()) else {
            return Ok(failure(refuse(
                ReasonCode::UNSUPPORTED_PAYLOAD_TYPE,
                "the payload is not {signature, permit2Authorization}",
            )));
        };
        let auth = &upto.permit2_authorization;
        // A retry of a settlement sent is answered for it, with the amount its transaction
        // moves.
        let failed = ReasonCode::UPTO_EVM_TRANSACTION_FAILED;
        if let Some(mut answer) = self.pending.resume(&self.chain, request, key, failed).await {
            if !answer.success {
                answer.amount = Some(TokenAmount(U256::ZERO));
            }
            return Ok(answer);
        }
        // Verified against the maximum the permit names.
        let maximum = auth.permitted.amount;
        if actual > maximum {
            return Ok(failure(refuse(
                ReasonCode::UPTO_EVM_SETTLEMENT_EXCEEDS_AMOUNT,
                format!("{actual} is above the signed maximum {maximum}"),
            )));
        }
        let at_maximum = PaymentRequest::V2 {
            payload: payload.clone(),
            requirements: v2::PaymentRequirements {
                amount: TokenAmount(maximum),
                ..requirements.clone()
            },
        };
        let verified = match self.check(&at_maximum).await? {
            Ok(verified) => verified,
            Err(refusal) => return Ok(failure(refusal)),
        };
        let mut answer = if actual.is_zero() {
            // Nothing used, nothing sent.
            SettleResponse::success(network.clone(), payer.clone(), "")
        } else {
            self.send(&verified, actual, key, network.clone(), payer.clone())
                .await?
        };
        answer.amount = Some(TokenAmount(if answer.success {
            actual
        } else {
            U256::ZERO
        }));
        Ok(answer)
    }

    async fn send(
        &self,
        verified: &Verified,
        amount: U256,
        key: Option<&x402_proto::IdempotencyKey>,
        network: x402_proto::Network,
        payer: Option<String>,
    ) -> Result<SettleResponse, FacilitatorError> {
        verified
            .proxy_settle(amount)
            .send(
                &self.chain,
                (&self.pending, key),
                network,
                payer,
                ReasonCode::UPTO_EVM_TRANSACTION_FAILED,
                |message| Some(settle_reason(message)),
            )
            .await
    }
}

/// The reason code of a proxy or Permit2 revert, by the error it names.
fn settle_reason(message: &str) -> ReasonCode {
    for (needle, code) in [
        (
            "AmountExceedsPermitted",
            ReasonCode::UPTO_AMOUNT_EXCEEDS_PERMITTED,
        ),
        (
            "UnauthorizedFacilitator",
            ReasonCode::UPTO_UNAUTHORIZED_FACILITATOR,
        ),
    ] {
        if message.contains(needle) {
            return code;
        }
    }
    crate::permit2::permit2_revert_reason(message)
        .unwrap_or(ReasonCode::UPTO_EVM_TRANSACTION_FAILED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_and_permit2_errors_map_to_the_official_codes() {
        for (message, code) in [
            (
                "reverted: AmountExceedsPermitted()",
                "upto_amount_exceeds_permitted",
            ),
            (
                "error UnauthorizedFacilitator()",
                "upto_unauthorized_facilitator",
            ),
            ("InvalidNonce()", "permit2_invalid_nonce"),
            ("PaymentTooEarly", "permit2_payment_too_early"),
            ("SignatureExpired(1)", "invalid_permit2_signature"),
            ("out of gas", "invalid_upto_evm_transaction_failed"),
        ] {
            assert_eq!(settle_reason(message).as_str(), code, "{message}");
        }
    }
}
