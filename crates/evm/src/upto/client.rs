//! `upto` as a paying client's scheme plug-in: signs a Permit2 witness transfer of up to the
//! offer's amount, as official clients do (random nonce, `validAfter` 0, deadline at the
//! offer's timeout). The payer must have approved Permit2 for the token.

use alloy::primitives::{Address, U256};
use alloy::signers::Signer;
use x402_proto::{Scheme, SchemeSignError, SignedPayload, v2};

use super::payload::{UPTO_PERMIT2_PROXY, UptoAuthorization, UptoPayload, WireWitness};
use crate::permit2::{OfferTerms, sign_digest};

crate::client::evm_scheme_client!(
    /// Pays `upto` offers on `eip155` networks that name the facilitator to witness.
    UptoEvmClient
);

/// The facilitator an offer names in `extra.facilitatorAddress`.
fn facilitator_of(requirements: &v2::PaymentRequirements) -> Option<Address> {
    requirements
        .extra
        .as_ref()?
        .get("facilitatorAddress")?
        .as_str()?
        .parse()
        .ok()
}

impl<S> UptoEvmClient<S>
where
    S: Signer + Send + Sync,
{
    /// Signs an `upto` payment of at most `requirements.amount` at Unix time `now`.
    pub async fn sign_upto(
        &self,
        requirements: &v2::PaymentRequirements,
        now: u64,
    ) -> Result<UptoPayload, SchemeSignError> {
        let terms = OfferTerms::read(requirements, now, "upto")?;
        let facilitator = facilitator_of(requirements).ok_or_else(|| {
            SchemeSignError(
                "cannot sign this upto offer: extra.facilitatorAddress is missing".into(),
            )
        })?;
        let authorization = UptoAuthorization {
            from: self.signer.address(),
            permitted: terms.permitted,
            spender: UPTO_PERMIT2_PROXY,
            nonce: terms.nonce,
            deadline: terms.deadline,
            witness: WireWitness {
                to: terms.to,
                facilitator,
                valid_after: U256::ZERO,
            },
        };
        Ok(UptoPayload {
            signature: sign_digest(&self.signer, authorization.digest(terms.chain_id)).await?,
            permit2_authorization: authorization,
        })
    }
}

impl<S> UptoEvmClient<S> {
    /// An `upto` payment costs what its receipt says was settled (at most its maximum).
    fn receipt_charge(receipt: &x402_proto::SettleResponse) -> Option<x402_proto::TokenAmount> {
        receipt.amount
    }

    fn offers(requirements: &v2::PaymentRequirements) -> bool {
        requirements.scheme == Scheme::UPTO
            && requirements.network.evm_chain_id().is_some()
            && facilitator_of(requirements).is_some()
    }
}

impl<S: Signer + Send + Sync> UptoEvmClient<S> {
    async fn signed(
        &self,
        requirements: &v2::PaymentRequirements,
        now: u64,
    ) -> Result<SignedPayload, SchemeSignError> {
        let payment = self.sign_upto(requirements, now).await?;
        payment
            .signed_reading(&self.signer, self.chain.as_ref(), requirements)
            .await
    }
}
