//! `exact` with Permit2 as a paying client's scheme plug-in: for offers that say
//! `extra.assetTransferMethod: "permit2"`, signs a Permit2 witness transfer of exactly the
//! price to the `exact` proxy, as official clients do (random 256-bit nonce, `validAfter` 0,
//! deadline at the offer's timeout). The payer must have approved Permit2 for the token.

use alloy::signers::Signer;
use x402_proto::{Scheme, SchemeSignError, SignedPayload, v2};

use super::payload::{ExactPermit2Authorization, ExactPermit2Payload};
use crate::permit2::{OfferTerms, sign_digest};

crate::client::evm_scheme_client!(
    /// Pays `exact` offers on `eip155` networks whose asset moves through Permit2.
    ExactPermit2Client
);

/// Whether an offer asks for Permit2 (`extra.assetTransferMethod == "permit2"`).
pub(crate) fn offers_permit2(requirements: &v2::PaymentRequirements) -> bool {
    requirements
        .extra
        .as_ref()
        .and_then(|extra| extra.get("assetTransferMethod"))
        .and_then(|method| method.as_str())
        == Some("permit2")
}

impl<S> ExactPermit2Client<S>
where
    S: Signer + Send + Sync,
{
    /// Signs an `exact` Permit2 payment of `requirements.amount` at Unix time `now`.
    pub async fn sign_permit2(
        &self,
        requirements: &v2::PaymentRequirements,
        now: u64,
    ) -> Result<ExactPermit2Payload, SchemeSignError> {
        let terms = OfferTerms::read(requirements, now, "exact Permit2")?;
        let permit2_authorization =
            ExactPermit2Authorization::for_offer(self.signer.address(), &terms);
        let digest = permit2_authorization.digest(terms.chain_id);
        Ok(ExactPermit2Payload {
            signature: sign_digest(&self.signer, digest).await?,
            permit2_authorization,
        })
    }
}

impl<S> ExactPermit2Client<S> {
    /// An `exact` payment moves its price, whatever its receipt says.
    fn receipt_charge(_receipt: &x402_proto::SettleResponse) -> Option<x402_proto::TokenAmount> {
        None
    }

    fn offers(requirements: &v2::PaymentRequirements) -> bool {
        requirements.scheme == Scheme::EXACT
            && requirements.network.evm_chain_id().is_some()
            && offers_permit2(requirements)
    }
}

impl<S: Signer + Send + Sync> ExactPermit2Client<S> {
    async fn signed(
        &self,
        requirements: &v2::PaymentRequirements,
        now: u64,
    ) -> Result<SignedPayload, SchemeSignError> {
        let payment = self.sign_permit2(requirements, now).await?;
        payment
            .signed_reading(&self.signer, self.chain.as_ref(), requirements)
            .await
    }
}
