//! Settling an `upto` payment: the amount the server names (its usage), verified against the
//! maximum the permit signs, never above it, nothing sent for zero, from the witnessed
//! facilitator address through the `upto` proxy.

use alloy::primitives::U256;
use x402_proto::{FacilitatorError, PaymentRequest, ReasonCode, SettleResponse, TokenAmount, v2};

use super::payload::UptoPayload;
use crate::permit2::{Prepared, Sends};

use super::facilitator::*;

impl UptoEvmFacilitator {
    /// Settles `requirements.amount` (the usage) of a payment whose permit names the maximum.
    /// Every answer names the amount moved (nothing, for a failure).
    pub(super) async fn settle_payment(
        &self,
        request: &PaymentRequest,
        key: Option<&x402_proto::IdempotencyKey>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = request.wire_network().clone();
        let payer = permit_payer(request);
        let unread = |refusal: Refusal| {
            let mut answer = SettleResponse::failure(
                network.clone(),
                refusal.code,
                refusal.message,
                payer.clone(),
                None,
            );
            answer.amount = Some(TokenAmount(U256::ZERO));
            answer
        };
        let PaymentRequest::V2 {
            payload,
            requirements,
        } = request
        else {
            return Ok(unread(refuse(
                ReasonCode::INVALID_X402_VERSION,
                "upto is an x402 v2 scheme",
            )));
        };
        let actual = requirements.amount.0;
        let Ok(upto) = serde_json::from_value::<UptoPayload>(payload.payload.clone()) else {
            return Ok(unread(refuse(
                ReasonCode::UNSUPPORTED_PAYLOAD_TYPE,
                "the payload is not {signature, permit2Authorization}",
            )));
        };
        let failures = (
            ReasonCode::UPTO_EVM_TRANSACTION_FAILED,
            settle_reason as fn(&str) -> _,
        );
        let call = Sends::call(&self.chain, request, &upto, key, failures);
        // A settlement recorded already is answered for, with the amount its transaction
        // moves; otherwise the payment is verified against the maximum the permit names.
        let fresh = async {
            let maximum = upto.permit2_authorization.permitted.amount;
            if actual > maximum {
                return Ok(Prepared::Refused(refuse(
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
            Ok(match self.check(&at_maximum).await? {
                Err(refusal) => Prepared::Refused(refusal),
                // Nothing used, nothing sent.
                Ok(_) if actual.is_zero() => Prepared::Nothing,
                Ok(verified) => Prepared::Send(verified.proxy_settle(actual)),
            })
        };
        self.sends.settle(&call, fresh).await
    }
}

/// The reason code of a proxy or Permit2 revert, by the error it names.
fn settle_reason(message: &str) -> Option<ReasonCode> {
    Some(settle_code(message))
}

/// [`settle_reason`], never empty.
fn settle_code(message: &str) -> ReasonCode {
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
            assert_eq!(settle_code(message).as_str(), code, "{message}");
        }
    }
}
