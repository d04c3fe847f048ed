//! Every refusal, pending and failure answer of `/settle`, built in one place.

use alloy::primitives::B256;
use x402_evm::{SettleError, VerifyError, verify_refusal};
use x402_proto::{
    FacilitatorError, Network, PaymentRequest, ReasonCode, SettleResponse, VerifyResponse,
};

use crate::store::SettlementKey;

/// A payment refused before anything was sent, for the reason verify gives.
pub(super) fn settle_refusal(
    error: &VerifyError,
    request: &PaymentRequest,
) -> Result<SettleResponse, FacilitatorError> {
    verify_refusal(error, request)
        .map(|refused| refused_settlement(request.wire_network().clone(), refused))
}

/// A verify refusal as a settle answer.
pub(super) fn refused_settlement(network: Network, refused: VerifyResponse) -> SettleResponse {
    SettleResponse::failure(
        network,
        refused
            .invalid_reason
            .unwrap_or(ReasonCode::UNEXPECTED_SETTLE_ERROR),
        refused.invalid_message.unwrap_or_default(),
        refused.payer,
        None,
    )
}

/// Another payment with the same (asset, payer, nonce) is settling or settled.
pub(super) fn nonce_conflict(network: Network, key: &SettlementKey) -> SettleResponse {
    SettleResponse::failure(
        network,
        ReasonCode::EXACT_EVM_NONCE_ALREADY_USED,
        format!(
            "a different payment with nonce {} from {} is already being settled or was settled",
            key.nonce, key.payer
        ),
        Some(key.payer.to_checksum(None)),
        None,
    )
}

/// The payment's success went (or goes) to another caller.
pub(super) fn duplicate(network: Network, payer: Option<String>) -> SettleResponse {
    SettleResponse::failure(
        network,
        ReasonCode::DUPLICATE_SETTLEMENT,
        "this payment is settled or being settled for another request, which was given its \
         success; sign a new payment for this one",
        payer,
        None,
    )
}

/// The settlement's transaction `tx_hash` is sent and not mined yet.
pub(super) fn pending(network: Network, payer: Option<String>, tx_hash: B256) -> SettleResponse {
    SettleResponse::failure(
        network,
        ReasonCode::SETTLEMENT_PENDING,
        format!(
            "transaction {tx_hash} is sent and not confirmed yet; settle again with the same payment for its outcome"
        ),
        payer,
        Some(tx_hash.to_string()),
    )
}

/// The settlement has no transaction yet.
pub(super) fn preparing(network: Network, payer: Option<String>) -> SettleResponse {
    SettleResponse::failure(
        network,
        ReasonCode::SETTLEMENT_PENDING,
        "the settlement is still being prepared; settle again with the same payment for its outcome",
        payer,
        None,
    )
}

/// Nothing was sent (or what was sent was refused) for `error`; a retry may start over.
pub(super) fn not_sent(
    network: Network,
    payer: Option<String>,
    error: &SettleError,
) -> SettleResponse {
    settle_error(network, payer, error, None)
}

/// A settlement transaction was mined: success with its hash.
pub(super) fn settled(network: Network, payer: Option<String>, tx_hash: B256) -> SettleResponse {
    SettleResponse::success(network, payer, tx_hash.to_string())
}

/// A settlement transaction was mined without moving the payment (its hash, when known).
pub(super) fn failed(
    network: Network,
    payer: Option<String>,
    error: &SettleError,
) -> SettleResponse {
    let transaction = error.tx_hash().map(|h| h.to_string());
    settle_error(network, payer, error, transaction)
}

/// A failure for `error`, with its reason code and message, naming `transaction` when given.
fn settle_error(
    network: Network,
    payer: Option<String>,
    error: &SettleError,
    transaction: Option<String>,
) -> SettleResponse {
    SettleResponse::failure(
        network,
        ReasonCode::from(error),
        error.to_string(),
        payer,
        transaction,
    )
}

/// The authorization was used by a transaction this facilitator did not send.
pub(super) fn used_elsewhere(network: Network, payer: Option<String>) -> SettleResponse {
    SettleResponse::failure(
        network,
        ReasonCode::EXACT_EVM_NONCE_ALREADY_USED,
        "the authorization was used by a transaction this facilitator did not send",
        payer,
        None,
    )
}

/// Every transaction was dropped and the payment can no longer be settled.
pub(super) fn dropped(network: Network, payer: Option<String>) -> SettleResponse {
    SettleResponse::failure(
        network,
        ReasonCode::UNEXPECTED_SETTLE_ERROR,
        "the settlement transaction was dropped by the chain and the payment can no longer be settled; nothing was transferred",
        payer,
        None,
    )
}

/// A previous run stopped before sending the settlement.
pub(super) fn never_sent(network: Network, payer: Option<String>) -> SettleResponse {
    SettleResponse::failure(
        network,
        ReasonCode::UNEXPECTED_SETTLE_ERROR,
        "the facilitator stopped before sending this settlement; nothing was transferred; settle again",
        payer,
        None,
    )
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, address, b256};

    use super::*;

    const PAYER: Address = address!("0x1111111111111111111111111111111111111111");
    const TX: B256 = b256!("0x2222222222222222222222222222222222222222222222222222222222222222");

    fn payer() -> Option<String> {
        Some(PAYER.to_checksum(None))
    }

    /// A refusal: not a success, with `reason`, a message, and no transaction.
    fn assert_refusal(answer: &SettleResponse, reason: &ReasonCode) {
        assert!(!answer.success, "{answer:?}");
        assert_eq!(answer.error_reason.as_ref(), Some(reason), "{answer:?}");
        assert!(
            answer
                .error_message
                .as_deref()
                .is_some_and(|m| !m.is_empty()),
            "{answer:?}"
        );
        assert_eq!(answer.transaction, "", "a refusal names no transaction");
        assert_eq!(answer.network, Network::BASE_SEPOLIA);
    }

    #[test]
    fn refusals_carry_their_reason_and_no_transaction() {
        let net = || Network::BASE_SEPOLIA;
        let key = SettlementKey {
            chain_id: 84532,
            asset: Address::ZERO,
            payer: PAYER,
            nonce: TX,
        };
        let conflict = nonce_conflict(net(), &key);
        assert_refusal(&conflict, &ReasonCode::EXACT_EVM_NONCE_ALREADY_USED);
        assert_eq!(
            conflict.payer,
            payer(),
            "the conflict names the key's payer"
        );
        assert!(
            conflict
                .error_message
                .as_deref()
                .is_some_and(|m| m.contains(&TX.to_string())),
            "the conflict names the nonce: {conflict:?}"
        );
        assert_refusal(
            &duplicate(net(), payer()),
            &ReasonCode::DUPLICATE_SETTLEMENT,
        );
        assert_refusal(&preparing(net(), payer()), &ReasonCode::SETTLEMENT_PENDING);
        assert_refusal(
            &used_elsewhere(net(), payer()),
            &ReasonCode::EXACT_EVM_NONCE_ALREADY_USED,
        );
        assert_refusal(
            &dropped(net(), payer()),
            &ReasonCode::UNEXPECTED_SETTLE_ERROR,
        );
        assert_refusal(
            &never_sent(net(), payer()),
            &ReasonCode::UNEXPECTED_SETTLE_ERROR,
        );
    }

    #[test]
    fn a_verify_refusal_keeps_its_reason_and_payer() {
        let refused = VerifyResponse::invalid(
            ReasonCode::INVALID_PAYMENT_REQUIREMENTS,
            "asset not accepted",
            payer(),
        );
        let answer = refused_settlement(Network::BASE_SEPOLIA, refused);
        assert_refusal(&answer, &ReasonCode::INVALID_PAYMENT_REQUIREMENTS);
        assert_eq!(answer.error_message.as_deref(), Some("asset not accepted"));
        assert_eq!(answer.payer, payer());
        // A verify answer without a reason still refuses, with the generic settle reason.
        let reasonless = refused_settlement(
            Network::BASE_SEPOLIA,
            VerifyResponse::valid(PAYER.to_checksum(None)),
        );
        assert!(!reasonless.success);
        assert_eq!(
            reasonless.error_reason,
            Some(ReasonCode::UNEXPECTED_SETTLE_ERROR)
        );
    }

    #[test]
    fn pending_names_the_transaction_to_wait_for() {
        let answer = pending(Network::BASE_SEPOLIA, payer(), TX);
        assert!(!answer.success);
        assert_eq!(answer.error_reason, Some(ReasonCode::SETTLEMENT_PENDING));
        assert_eq!(answer.transaction, TX.to_string());
    }

    #[test]
    fn nothing_sent_names_no_transaction_but_a_mined_failure_does() {
        let reverted = SettleError::Reverted { tx_hash: TX };
        let unsent = not_sent(Network::BASE_SEPOLIA, payer(), &reverted);
        assert_refusal(&unsent, &ReasonCode::EXACT_EVM_TRANSACTION_FAILED);
        let mined = failed(Network::BASE_SEPOLIA, payer(), &reverted);
        assert!(!mined.success);
        assert_eq!(
            mined.error_reason,
            Some(ReasonCode::EXACT_EVM_TRANSACTION_FAILED)
        );
        assert_eq!(mined.transaction, TX.to_string());
        let unreachable = SettleError::ChainUnavailable {
            detail: "connection refused".into(),
        };
        assert_refusal(
            &not_sent(Network::BASE_SEPOLIA, payer(), &unreachable),
            &ReasonCode::CHAIN_UNAVAILABLE,
        );
    }

    #[test]
    fn a_settled_answer_is_a_success_with_its_transaction() {
        let answer = settled(Network::BASE_SEPOLIA, payer(), TX);
        assert!(answer.success);
        assert_eq!(answer.error_reason, None);
        assert_eq!(answer.error_message, None);
        assert_eq!(answer.transaction, TX.to_string());
        assert_eq!(answer.payer, payer());
    }
}
