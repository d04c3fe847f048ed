//! `upto` on one EVM chain behind the [`Facilitator`](x402_proto::Facilitator) trait: verify
//! in the order of the official facilitator (2.27), settle the amount the server names (at
//! most the signed maximum) through the `upto` Permit2 proxy, sent from the facilitator address
//! the payer witnessed.

use std::sync::Arc;

use serde_json::json;
use x402_proto::{
    FacilitatorError, PaymentRequest, Scheme, SupportedKind, SupportedResponse, VerifyResponse,
};

use super::payload::{UptoAuthorization, UptoPayload};
use crate::scheme::ExactEvmScheme;

pub(super) use crate::permit2::{DEADLINE_BUFFER_SECS, Refusal, permit_payer, refuse};

/// A facilitator for `upto` on one EVM chain, sending from the chain's signer.
#[derive(Debug, Clone)]
pub struct UptoEvmFacilitator {
    pub(super) chain: Arc<ExactEvmScheme>,
    pub(super) sends: crate::permit2::Sends,
}

/// A payment that passed verification.
#[derive(Debug)]
pub(super) struct Verified {
    pub(super) payload: UptoPayload,
    /// The EIP-2612 approval of Permit2 that came with it, if any.
    pub(super) permit2612: Option<crate::permit2::Permit2612Parts>,
}

impl Verified {
    pub(super) fn authorization(&self) -> &UptoAuthorization {
        &self.payload.permit2_authorization
    }
}

impl UptoEvmFacilitator {
    /// Serves `upto` on `chain`'s network with its signer, remembering what it sent in
    /// memory (for five minutes).
    pub fn new(chain: ExactEvmScheme) -> Self {
        Self {
            chain: Arc::new(chain),
            sends: crate::permit2::Sends::default(),
        }
    }

    /// [`Self::new`], recording what it sends in `log` (a facilitator's durable settlement
    /// log: a retry after a restart is answered for the transaction already sent).
    pub fn with_log(chain: ExactEvmScheme, log: Arc<dyn crate::permit2::SendLog>) -> Self {
        Self {
            chain: Arc::new(chain),
            sends: crate::permit2::Sends::new(log),
        }
    }

    /// The kind it serves, with the facilitator address payers must witness.
    pub fn kind(&self) -> SupportedKind {
        SupportedKind {
            x402_version: 2,
            scheme: Scheme::UPTO,
            network: self.chain.network().clone(),
            extra: Some(json!({
                "facilitatorAddress": self.chain.signer_address().to_checksum(None),
            })),
        }
    }

    async fn verify_payment(
        &self,
        request: &PaymentRequest,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let payer = crate::claimed_payer(request).or_else(|| permit_payer(request));
        Ok(match self.check(request).await? {
            Ok(verified) => VerifyResponse::valid(verified.authorization().from.to_checksum(None)),
            Err(refusal) => VerifyResponse::invalid(refusal.code, refusal.message, payer),
        })
    }
}

crate::facilitator::facilitator_from_methods!(UptoEvmFacilitator);

impl UptoEvmFacilitator {
    /// What `/supported` lists: `upto` on this chain, and the signer.
    fn supported_now(&self) -> SupportedResponse {
        SupportedResponse {
            kinds: vec![self.kind()],
            // A payer without a Permit2 allowance may send an EIP-2612 approval along.
            extensions: vec![crate::permit2::EIP2612_GAS_SPONSORING.to_owned()],
            signers: crate::facilitator::evm_signers(self.chain.signer_address()),
        }
    }
}
