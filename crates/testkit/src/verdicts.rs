//! What facilitator tests assert of a verify verdict and a settle receipt.

use alloy::primitives::Address;
use x402_proto::{Facilitator, PaymentRequest, ReasonCode, SettleResponse, VerifyResponse};

/// Asks `facilitator` to verify `request`, then to settle it.
async fn verify_then_settle(
    facilitator: &impl Facilitator,
    request: &PaymentRequest,
) -> (VerifyResponse, SettleResponse) {
    let verdict = facilitator.verify(request).await.expect("verify answers");
    let receipt = facilitator.settle(request, None).await;
    (verdict, receipt.expect("settle answers"))
}

/// Asserts that `facilitator` verifies `request` as paid by `payer` and settles it, with the
/// payer named in the verdict and in the receipt; returns the receipt.
pub async fn assert_verifies_and_settles(
    facilitator: &impl Facilitator,
    request: &PaymentRequest,
    payer: Address,
) -> SettleResponse {
    let (verdict, receipt) = verify_then_settle(facilitator, request).await;
    let payer = payer.to_checksum(None);
    assert!(
        verdict.is_valid && receipt.success,
        "{verdict:?}\n{receipt:?}"
    );
    for named in [&verdict.payer, &receipt.payer] {
        assert_eq!(
            named.as_deref(),
            Some(payer.as_str()),
            "{verdict:?}\n{receipt:?}"
        );
    }
    receipt
}

/// Asserts that `facilitator` refuses `request` with `expected`, on verify and on settle;
/// returns the verdict, for what a test asserts of its message.
pub async fn assert_verify_and_settle_refuse(
    facilitator: &impl Facilitator,
    request: &PaymentRequest,
    expected: ReasonCode,
) -> VerifyResponse {
    let (verdict, receipt) = verify_then_settle(facilitator, request).await;
    assert!(!verdict.is_valid, "{verdict:?}");
    assert_eq!(
        verdict.invalid_reason.as_ref(),
        Some(&expected),
        "{verdict:?}"
    );
    assert!(!receipt.success, "{receipt:?}");
    assert_eq!(receipt.error_reason, Some(expected), "{receipt:?}");
    verdict
}

/// The reason `facilitator` gives for finding `request` invalid (`None` when it is valid).
pub async fn verify_reason(
    facilitator: &impl Facilitator,
    request: &PaymentRequest,
) -> Option<ReasonCode> {
    let verdict = facilitator.verify(request).await.expect("verify answers");
    verdict.invalid_reason
}
