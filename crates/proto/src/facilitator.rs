//! The facilitator's answers and the [`Facilitator`] trait.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    IdempotencyKey, Network, PaymentId, PaymentIdError, PaymentRequest, ReasonCode, Scheme,
    TokenAmount,
};

/// The answer to `POST /verify`. A refused payment is an answer, not an error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    /// Whether the payment would settle.
    pub is_valid: bool,
    /// Why not, as a code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<ReasonCode>,
    /// Why not, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_message: Option<String>,
    /// The paying address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// Extension data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Value>,
    /// Scheme-specific data about the payment (a `batch-settlement` channel's state on chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

impl VerifyResponse {
    /// A valid payment by `payer`.
    pub fn valid(payer: impl Into<String>) -> Self {
        Self {
            is_valid: true,
            invalid_reason: None,
            invalid_message: None,
            payer: Some(payer.into()),
            extensions: None,
            extra: None,
        }
    }

    /// A refused payment.
    pub fn invalid(reason: ReasonCode, message: impl Into<String>, payer: Option<String>) -> Self {
        Self {
            is_valid: false,
            invalid_reason: Some(reason),
            invalid_message: Some(message.into()),
            payer,
            extensions: None,
            extra: None,
        }
    }
}

/// The answer to `POST /settle`, and the receipt in `PAYMENT-RESPONSE` / `X-PAYMENT-RESPONSE`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    /// Whether the payment is settled on chain.
    pub success: bool,
    /// Why not, as a code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<ReasonCode>,
    /// Why not, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The paying address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// The transaction hash; empty when nothing was sent.
    #[serde(default)]
    pub transaction: String,
    /// The network, as the request named it.
    pub network: Network,
    /// The amount actually settled (schemes that settle less than the maximum). An empty
    /// string on the wire (as `@x402/evm` writes for a `batch-settlement` voucher or claim)
    /// reads as none.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    pub amount: Option<TokenAmount>,
    /// Extension data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Value>,
    /// Scheme-specific data about the settlement (a `batch-settlement` channel's state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

/// Reads an optional amount where `""` (and `null`) mean none.
fn empty_as_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<TokenAmount>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) if text.is_empty() => Ok(None),
        Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

impl SettleResponse {
    /// A settlement by `payer` in `transaction` on `network`.
    pub fn success(
        network: Network,
        payer: Option<String>,
        transaction: impl Into<String>,
    ) -> Self {
        Self {
            success: true,
            error_reason: None,
            error_message: None,
            payer,
            transaction: transaction.into(),
            network,
            amount: None,
            extensions: None,
            extra: None,
        }
    }

    /// A failed settlement.
    pub fn failure(
        network: Network,
        reason: ReasonCode,
        message: impl Into<String>,
        payer: Option<String>,
        transaction: Option<String>,
    ) -> Self {
        Self {
            success: false,
            error_reason: Some(reason),
            error_message: Some(message.into()),
            payer,
            transaction: transaction.unwrap_or_default(),
            network,
            amount: None,
            extensions: None,
            extra: None,
        }
    }
}

/// One (version, scheme, network) a facilitator serves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedKind {
    /// The protocol version.
    pub x402_version: u8,
    /// The scheme.
    pub scheme: Scheme,
    /// The network, as that version names it.
    pub network: Network,
    /// Scheme-specific data for servers to copy into their requirements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

/// The answer to `GET /supported`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedResponse {
    /// Everything served.
    pub kinds: Vec<SupportedKind>,
    /// Extension keys understood.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Signer addresses by CAIP-2 family pattern (`"eip155:*"`).
    #[serde(default)]
    pub signers: BTreeMap<String, Vec<String>>,
}

/// Why a facilitator could not give an answer at all (as opposed to refusing a payment).
#[derive(Debug, Clone, thiserror::Error)]
pub enum FacilitatorError {
    /// The request itself is malformed; sending it again will not help.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The facilitator or the chain behind it cannot be reached now.
    #[error("facilitator unavailable: {0}")]
    Unavailable(String),
    /// The facilitator answered with something that is not a valid response.
    #[error("facilitator answered badly: {0}")]
    BadResponse(String),
    /// An internal fault.
    #[error("facilitator failed: {0}")]
    Internal(String),
}

impl FacilitatorError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// A boxed, sendable future, so [`Facilitator`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Verifies and settles payments: in process, or a remote one over HTTP.
///
/// A refused payment is an `Ok` answer with `is_valid` / `success` false; `Err` means no answer
/// could be had.
pub trait Facilitator: Send + Sync {
    /// Checks that a payment would settle, without moving money.
    fn verify<'a>(
        &'a self,
        request: &'a PaymentRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>>;

    /// Verifies again and moves the money.
    ///
    /// A payment's success is given to one caller only: the one whose call settled it (or,
    /// when that call was answered `settlement_pending`, the first later call). Every other
    /// call for a payment settled or being settled is refused with
    /// [`ReasonCode::DUPLICATE_SETTLEMENT`]. A settler that wants to ask again for the same
    /// request sends the same `idempotency_key` (one key per request it serves): calls with
    /// that key get the same answer.
    fn settle<'a>(
        &'a self,
        request: &'a PaymentRequest,
        idempotency_key: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>>;

    /// What this facilitator serves.
    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>>;

    /// The identity of a payment: what makes two presentations of it the same payment,
    /// however they are encoded. No I/O.
    fn payment_id(&self, request: &PaymentRequest) -> Result<PaymentId, PaymentIdError> {
        PaymentId::derive(request)
    }
}

impl<F: Facilitator + ?Sized> Facilitator for std::sync::Arc<F> {
    fn verify<'a>(
        &'a self,
        request: &'a PaymentRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        (**self).verify(request)
    }

    fn settle<'a>(
        &'a self,
        request: &'a PaymentRequest,
        idempotency_key: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        (**self).settle(request, idempotency_key)
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        (**self).supported()
    }

    fn payment_id(&self, request: &PaymentRequest) -> Result<PaymentId, PaymentIdError> {
        (**self).payment_id(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_empty_settled_amount_reads_as_none_and_an_extra_survives_a_round_trip() {
        let wire = json!({
            "success": true,
            "transaction": "",
            "network": "eip155:8453",
            "payer": "0x1111111111111111111111111111111111111111",
            "amount": "",
            "extra": {"channelState": {"balance": "10"}, "chargedAmount": "1"}
        });
        let answer: SettleResponse = serde_json::from_value(wire).unwrap();
        assert_eq!(answer.amount, None);
        assert_eq!(answer.extra.as_ref().unwrap()["chargedAmount"], "1");
        let again = serde_json::to_value(&answer).unwrap();
        assert!(again.get("amount").is_none());
        assert_eq!(again["extra"]["channelState"]["balance"], "10");
    }

    #[test]
    fn a_settled_amount_still_must_be_a_decimal() {
        let read = |amount: Value| {
            serde_json::from_value::<SettleResponse>(json!({
                "success": true, "transaction": "0x", "network": "eip155:8453", "amount": amount
            }))
        };
        assert_eq!(
            read(json!("250")).unwrap().amount,
            Some(TokenAmount::from_atomic(250))
        );
        assert!(read(json!("-1")).is_err());
        assert!(read(json!("0x10")).is_err());
    }

    #[test]
    fn answers_without_extra_write_none() {
        let valid = serde_json::to_value(VerifyResponse::valid("0xabc")).unwrap();
        assert!(valid.get("extra").is_none());
        let read: VerifyResponse =
            serde_json::from_value(json!({"isValid": true, "extra": {"balance": "5"}})).unwrap();
        assert_eq!(read.extra, Some(json!({"balance": "5"})));
    }
}
