//! Verifying an `upto` payment in the official order (2.27): shape, scheme, network, asset,
//! spender, payee, facilitator, deadline, validity start, amount, token, signature, then
//! the log's word on an earlier settlement of the permit (one that failed on chain is not valid
//! again), then a settle simulated as it will be sent, diagnosed when it fails.

use alloy::primitives::U256;
use alloy::providers::Provider;
use x402_proto::{FacilitatorError, PaymentRequest, ReasonCode, Scheme};

use super::payload::{UPTO_PERMIT2_PROXY, UptoPayload};
use crate::permit2::{Opened, Opening, ProxySettle};
use crate::sender::TransferExpectation;

use super::facilitator::*;

/// How `upto` names its first refusals.
const OPENING: Opening = Opening {
    scheme: Scheme::UPTO,
    name: "upto",
    shape: "{signature, permit2Authorization}",
    wrong_scheme: ReasonCode::UPTO_EVM_SCHEME,
    network_mismatch: ReasonCode::UPTO_EVM_NETWORK_MISMATCH,
};

impl UptoEvmFacilitator {
    /// Runs the checks of the official facilitator, in its order, with `requirements.amount`
    /// as the amount the permit must name.
    pub(super) async fn check(
        &self,
        request: &PaymentRequest,
    ) -> Result<Result<Verified, Refusal>, FacilitatorError> {
        let Opened {
            payload: upto,
            requirements,
            asset,
        } = match OPENING.open::<UptoPayload>(request, &self.chain) {
            Ok(opened) => opened,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let auth = &upto.permit2_authorization;
        let provider = self.chain.provider();
        let unavailable =
            |e: alloy::transports::TransportError| FacilitatorError::Unavailable(e.to_string());
        if provider
            .get_code_at(asset)
            .await
            .map_err(unavailable)?
            .is_empty()
        {
            return Ok(Err(refuse(
                ReasonCode::ASSET_NOT_DEPLOYED_CONTRACT,
                format!("no contract at {asset}"),
            )));
        }
        if auth.spender != UPTO_PERMIT2_PROXY {
            return Ok(Err(refuse(
                ReasonCode::PERMIT2_INVALID_SPENDER,
                format!("the spender must be the upto proxy {UPTO_PERMIT2_PROXY}"),
            )));
        }
        if auth.witness.to.to_checksum(None) != requirements.pay_to
            && !auth
                .witness
                .to
                .to_string()
                .eq_ignore_ascii_case(&requirements.pay_to)
        {
            return Ok(Err(refuse(
                ReasonCode::PERMIT2_RECIPIENT_MISMATCH,
                "witness.to is not payTo",
            )));
        }
        if auth.witness.facilitator != self.chain.signer_address() {
            return Ok(Err(refuse(
                ReasonCode::UPTO_FACILITATOR_MISMATCH,
                format!(
                    "witness.facilitator must be {}",
                    self.chain.signer_address()
                ),
            )));
        }
        let now = crate::unix_now();
        if auth.deadline < U256::from(now + DEADLINE_BUFFER_SECS) {
            return Ok(Err(refuse(
                ReasonCode::PERMIT2_DEADLINE_EXPIRED,
                "the permit's deadline has passed",
            )));
        }
        if auth.witness.valid_after > U256::from(now) {
            return Ok(Err(refuse(
                ReasonCode::PERMIT2_NOT_YET_VALID,
                "witness.validAfter is in the future",
            )));
        }
        if auth.permitted.amount != requirements.amount.0 {
            return Ok(Err(refuse(
                ReasonCode::PERMIT2_AMOUNT_MISMATCH,
                "the permitted amount is not the required maximum",
            )));
        }
        if auth.permitted.token != asset {
            return Ok(Err(refuse(
                ReasonCode::PERMIT2_TOKEN_MISMATCH,
                "the permitted token is not the asset",
            )));
        }
        if let Some(refusal) = self.check_signature(&upto).await? {
            return Ok(Err(refusal));
        }
        // A gasless EIP-2612 approval of Permit2 may ride along: checked, then used.
        let verified = match upto.sponsoring(request) {
            Ok(permit2612) => Verified {
                payload: upto,
                permit2612,
            },
            Err(refusal) => return Ok(Err(refusal)),
        };
        let settle = verified.proxy_settle(requirements.amount.0);
        let failed = ReasonCode::UPTO_EVM_TRANSACTION_FAILED;
        let last = self
            .sends
            .final_refusal(&self.chain, &verified.payload, failed, settle);
        if let Some(refusal) = last.await? {
            return Ok(Err(refusal));
        }
        Ok(Ok(verified))
    }

    /// The payer's signature: ECDSA for an address without code, ERC-1271 for a contract.
    async fn check_signature(
        &self,
        upto: &UptoPayload,
    ) -> Result<Option<Refusal>, FacilitatorError> {
        let auth = &upto.permit2_authorization;
        let digest = auth.digest(self.chain.chain_id());
        let valid =
            crate::permit2::signed_by(&self.chain, digest, auth.from, &upto.signature).await?;
        Ok((!valid).then(|| {
            refuse(
                ReasonCode::PERMIT2_INVALID_SIGNATURE,
                "the signature is not the payer's",
            )
        }))
    }
}

impl Verified {
    /// The proxy's settle of `amount`, and the transfer it makes.
    pub(super) fn proxy_settle(&self, amount: U256) -> ProxySettle {
        let auth = self.authorization();
        ProxySettle {
            proxy: UPTO_PERMIT2_PROXY,
            input: auth.settle_call_with(amount, self.payload.signature.clone(), self.permit2612),
            transfer: TransferExpectation {
                asset: auth.permitted.token,
                from: auth.from,
                to: auth.witness.to,
                value: amount,
            },
        }
    }
}
