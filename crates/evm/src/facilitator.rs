//! One chain's `exact` scheme behind the [`Facilitator`](x402_proto::Facilitator) trait.

use std::collections::BTreeMap;
use std::sync::Arc;

use x402_proto::{
    Facilitator, FacilitatorError, Network, PaymentId, PaymentIdError, PaymentRequest, ReasonCode,
    Scheme, SettleResponse, SupportedKind, SupportedResponse, VerifyResponse,
};

use crate::error::{SettleError, VerifyError};
use crate::exact_permit2::{ExactPermit2Facilitator, is_permit2_payload};
use crate::scheme::ExactEvmScheme;

/// A facilitator for the `exact` scheme on one EVM chain, v1 and v2, with no memory: it
/// verifies and sends a transaction on every `settle`, so a payment settles at most once (the
/// chain refuses a used nonce) but its success is not given again to a retry. For a
/// facilitator that answers retries and hands each success to one caller, use the
/// facilitator service with its settlement log.
///
/// Payloads carrying `permit2Authorization` (`exact` with Permit2, for tokens without
/// EIP-3009) go to an [`ExactPermit2Facilitator`] on the same chain and signer.
#[derive(Debug, Clone)]
pub struct ExactEvmFacilitator {
    scheme: Arc<ExactEvmScheme>,
    permit2: ExactPermit2Facilitator,
}

impl ExactEvmFacilitator {
    /// Serves `scheme`'s chain.
    pub fn new(scheme: ExactEvmScheme) -> Self {
        let scheme = Arc::new(scheme);
        Self {
            permit2: ExactPermit2Facilitator::shared(scheme.clone()),
            scheme,
        }
    }

    /// The scheme behind it.
    pub fn scheme(&self) -> &ExactEvmScheme {
        &self.scheme
    }
}

/// What `exact` on `network` is served as: v2 under its CAIP-2 name, and v1 under its v1
/// name when it has one.
pub fn exact_kinds(network: &Network) -> Vec<SupportedKind> {
    let v2 = SupportedKind {
        x402_version: 2,
        scheme: Scheme::EXACT,
        network: network.clone(),
        extra: None,
    };
    let v1 = network.to_v1_name().map(|v1_name| SupportedKind {
        x402_version: 1,
        network: v1_name,
        ..v2.clone()
    });
    std::iter::once(v2).chain(v1).collect()
}

/// The payer named in a request, as the client wrote it, for answers about refused payments.
pub fn claimed_payer(request: &PaymentRequest) -> Option<String> {
    request
        .payload()
        .pointer("/authorization/from")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

/// The verify answer for a refused payment, or `Unavailable` when the chain could not judge it.
pub fn verify_refusal(
    error: &VerifyError,
    request: &PaymentRequest,
) -> Result<VerifyResponse, FacilitatorError> {
    if error.is_retryable() {
        return Err(FacilitatorError::Unavailable(error.to_string()));
    }
    Ok(VerifyResponse::invalid(
        ReasonCode::from(error),
        error.to_string(),
        claimed_payer(request),
    ))
}

impl ExactEvmFacilitator {
    /// Verifies `request`: [`Facilitator::verify`].
    async fn verify_payment(
        &self,
        request: &PaymentRequest,
    ) -> Result<VerifyResponse, FacilitatorError> {
        if is_permit2_payload(request) {
            return self.permit2.verify(request).await;
        }
        match self.scheme.verify(request).await {
            Ok(payment) => Ok(VerifyResponse::valid(payment.payer().to_checksum(None))),
            Err(error) => verify_refusal(&error, request),
        }
    }

    /// Verifies `request` again and sends its transaction: [`Facilitator::settle`].
    async fn settle_payment(
        &self,
        request: &PaymentRequest,
        idempotency_key: Option<&x402_proto::IdempotencyKey>,
    ) -> Result<SettleResponse, FacilitatorError> {
        if is_permit2_payload(request) {
            return self.permit2.settle(request, idempotency_key).await;
        }
        let network = request.wire_network().clone();
        let payment = match self.scheme.verify(request).await {
            Ok(payment) => payment,
            Err(error) if error.is_retryable() => {
                return Err(FacilitatorError::Unavailable(error.to_string()));
            }
            Err(error) => {
                return Ok(SettleResponse::failure(
                    network,
                    ReasonCode::from(&error),
                    error.to_string(),
                    claimed_payer(request),
                    None,
                ));
            }
        };
        let payer = payment.payer().to_checksum(None);
        match self.scheme.settle(payment).await {
            Ok(settlement) => Ok(SettleResponse::success(
                network,
                Some(payer),
                settlement.tx_hash.to_string(),
            )),
            Err(error @ SettleError::ChainUnavailable { .. }) => {
                Err(FacilitatorError::Unavailable(error.to_string()))
            }
            Err(error) => Ok(SettleResponse::failure(
                network,
                ReasonCode::from(&error),
                error.to_string(),
                Some(payer),
                error.tx_hash().map(|h| h.to_string()),
            )),
        }
    }
}

/// The `signers` of a `/supported` answer for one EVM signer.
pub(crate) fn evm_signers(signer: alloy::primitives::Address) -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([("eip155:*".to_owned(), vec![signer.to_checksum(None)])])
}

/// What a facilitator's methods answer with: a `T`, or no answer at all.
pub(crate) type Answer<'a, T> = x402_proto::BoxFuture<'a, Result<T, x402_proto::FacilitatorError>>;

/// Implements [`Facilitator`](x402_proto::Facilitator) for a type with async
/// `verify_payment(request)` and `settle_payment(request)` methods and a `supported_now()` answer; the idempotency key is not
/// used (such a facilitator keeps no record of its own). `payment_id: method` names a method
/// giving payments their identity, instead of [`PaymentId::derive`](x402_proto::PaymentId::derive).
macro_rules! facilitator_from_methods {
    ($ty:ty $(, payment_id: $identify:ident)?) => {
        impl x402_proto::Facilitator for $ty {
            fn verify<'a>(
                &'a self,
                request: &'a x402_proto::PaymentRequest,
            ) -> $crate::facilitator::Answer<'a, x402_proto::VerifyResponse> {
                Box::pin(self.verify_payment(request))
            }

            fn settle<'a>(
                &'a self,
                request: &'a x402_proto::PaymentRequest,
                _idempotency_key: Option<&'a x402_proto::IdempotencyKey>,
            ) -> $crate::facilitator::Answer<'a, x402_proto::SettleResponse> {
                Box::pin(self.settle_payment(request, _idempotency_key))
            }

            fn supported(&self) -> $crate::facilitator::Answer<'_, x402_proto::SupportedResponse> {
                Box::pin(std::future::ready(Ok(self.supported_now())))
            }
            $(
                fn payment_id(
                    &self,
                    request: &x402_proto::PaymentRequest,
                ) -> Result<x402_proto::PaymentId, x402_proto::PaymentIdError> {
                    self.$identify(request)
                }
            )?
        }
    };
}
pub(crate) use facilitator_from_methods;

facilitator_from_methods!(ExactEvmFacilitator, payment_id: identify);

impl ExactEvmFacilitator {
    /// A payment's identity: the Permit2 one for a Permit2 payload, the token's
    /// (asset, payer, nonce) otherwise.
    fn identify(&self, request: &PaymentRequest) -> Result<PaymentId, PaymentIdError> {
        if is_permit2_payload(request) {
            return self.permit2.payment_id(request);
        }
        PaymentId::derive(request)
    }

    /// What `/supported` lists for this chain.
    fn supported_now(&self) -> SupportedResponse {
        SupportedResponse {
            kinds: exact_kinds(self.scheme.network()),
            extensions: Vec::new(),
            signers: evm_signers(self.scheme.signer_address()),
        }
    }
}
