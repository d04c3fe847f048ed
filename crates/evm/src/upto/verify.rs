//! Verifying an `upto` payment in the official order (2.27): shape, scheme, network, asset,
//! spender, payee, facilitator, deadline, validity start, amount, token, signature, then a
//! simulated settle sent from the facilitator address, diagnosed when it fails.

use alloy::primitives::{Address, Bytes, Signature, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use x402_proto::{FacilitatorError, PaymentRequest, ReasonCode, Scheme};

use super::payload::{
    IErc20Reads, IUptoPermit2Proxy, PERMIT2_ADDRESS, UPTO_PERMIT2_PROXY, UptoAuthorization,
    UptoPayload,
};

use super::facilitator::*;

impl UptoEvmFacilitator {
    /// Runs the checks of the official facilitator, in its order, with `requirements.amount`
    /// as the amount the permit must name.
    pub(super) async fn check(
        &self,
        request: &PaymentRequest,
    ) -> Result<Result<Verified, Refusal>, FacilitatorError> {
        let PaymentRequest::V2 {
            payload,
            requirements,
        } = request
        else {
            return Ok(Err(refuse(
                ReasonCode::INVALID_X402_VERSION,
                "upto is an x402 v2 scheme",
            )));
        };
        let Ok(upto) = serde_json::from_value::<UptoPayload>(payload.payload.clone()) else {
            return Ok(Err(refuse(
                ReasonCode::UNSUPPORTED_PAYLOAD_TYPE,
                "the payload is not {signature, permit2Authorization}",
            )));
        };
        let auth = &upto.permit2_authorization;
        if payload.accepted.scheme != Scheme::UPTO || requirements.scheme != Scheme::UPTO {
            return Ok(Err(refuse(
                ReasonCode::UPTO_EVM_SCHEME,
                "the scheme is not upto",
            )));
        }
        if payload.accepted.network != requirements.network
            || !requirements.network.same_as(self.chain.network())
        {
            return Ok(Err(refuse(
                ReasonCode::UPTO_EVM_NETWORK_MISMATCH,
                format!(
                    "the payment is for {}, this facilitator serves {}",
                    payload.accepted.network,
                    self.chain.network()
                ),
            )));
        }
        let Ok(asset) = requirements.asset.parse::<Address>() else {
            return Ok(Err(refuse(
                ReasonCode::INVALID_PAYMENT_REQUIREMENTS,
                "asset is not an address",
            )));
        };
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
        let verified = Verified { payload: upto };
        if let Some(refusal) = self.simulate(&verified, requirements.amount.0).await? {
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
        let code = self
            .chain
            .provider()
            .get_code_at(auth.from)
            .await
            .map_err(|e| FacilitatorError::Unavailable(e.to_string()))?;
        let valid = if code.is_empty() {
            Signature::try_from(upto.signature.as_ref())
                .ok()
                .and_then(|signature| signature.recover_address_from_prehash(&digest).ok())
                == Some(auth.from)
        } else {
            let check = crate::smart_wallet::IErc1271::isValidSignatureCall {
                hash: digest,
                signature: upto.signature.clone(),
            };
            let call = TransactionRequest::default()
                .to(auth.from)
                .input(Bytes::from(check.abi_encode()).into());
            // A wallet that reverts refuses the signature.
            let answer = self.chain.provider().call(call).await.unwrap_or_default();
            crate::smart_wallet::is_erc1271_magic(&answer)
        };
        Ok((!valid).then(|| {
            refuse(
                ReasonCode::PERMIT2_INVALID_SIGNATURE,
                "the signature is not the payer's",
            )
        }))
    }

    /// Simulates the proxy's settle of `amount` from the facilitator address; a failure is
    /// diagnosed by reading the proxy, the payer's balance and its allowance to Permit2.
    pub(super) async fn simulate(
        &self,
        verified: &Verified,
        amount: U256,
    ) -> Result<Option<Refusal>, FacilitatorError> {
        let auth = verified.authorization();
        let call = TransactionRequest::default()
            .from(self.chain.signer_address())
            .to(UPTO_PERMIT2_PROXY)
            .input(
                Bytes::from(auth.settle_call(amount, verified.payload.signature.clone())).into(),
            );
        let provider = self.chain.provider();
        match provider.call(call).await {
            Ok(_) => Ok(None),
            Err(alloy::transports::RpcError::ErrorResp(payload)) => {
                Ok(Some(self.diagnose(auth, amount, &payload.message).await?))
            }
            Err(error) => Err(FacilitatorError::Unavailable(error.to_string())),
        }
    }

    async fn diagnose(
        &self,
        auth: &UptoAuthorization,
        amount: U256,
        message: &str,
    ) -> Result<Refusal, FacilitatorError> {
        let provider = self.chain.provider();
        let unavailable =
            |e: alloy::transports::TransportError| FacilitatorError::Unavailable(e.to_string());
        let read = |to: Address, input: Vec<u8>| {
            provider.call(
                TransactionRequest::default()
                    .to(to)
                    .input(Bytes::from(input).into()),
            )
        };
        let proxy = read(
            UPTO_PERMIT2_PROXY,
            IUptoPermit2Proxy::PERMIT2Call {}.abi_encode(),
        )
        .await;
        if !proxy.is_ok_and(|answer| answer.len() == 32) {
            return Ok(refuse(
                ReasonCode::PERMIT2_PROXY_NOT_DEPLOYED,
                "no upto proxy answers at its address",
            ));
        }
        let token = auth.permitted.token;
        let balance = IErc20Reads::balanceOfCall { owner: auth.from };
        let allowance = IErc20Reads::allowanceCall {
            owner: auth.from,
            spender: PERMIT2_ADDRESS,
        };
        for (input, code, why) in [
            (
                balance.abi_encode(),
                ReasonCode::PERMIT2_INSUFFICIENT_BALANCE,
                "the payer's balance is below the amount",
            ),
            (
                allowance.abi_encode(),
                ReasonCode::PERMIT2_ALLOWANCE_REQUIRED,
                "the payer has not approved Permit2 for the amount: approve it once, or sign an EIP-2612 permit",
            ),
        ] {
            let answer = read(token, input).await.map_err(unavailable)?;
            if U256::try_from_be_slice(&answer).unwrap_or_default() < amount {
                return Ok(refuse(code, why));
            }
        }
        Ok(refuse(
            ReasonCode::PERMIT2_SIMULATION_FAILED,
            format!("the settlement would fail: {message}"),
        ))
    }
}
