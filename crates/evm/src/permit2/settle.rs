//! A proxy's settle: simulated as it will be sent (and diagnosed when it fails);
//! Permit2 and proxy errors named.

use super::*;

/// A proxy settle: which proxy, its calldata, and the transfer it must make.
#[derive(Debug)]
pub(crate) struct ProxySettle {
    pub(crate) proxy: Address,
    pub(crate) input: Vec<u8>,
    pub(crate) transfer: TransferExpectation,
}

impl ProxySettle {
    /// Simulates the settle as it will be sent: from the facilitator address, with the gas
    /// limit and fees of the real transaction, so a payer's wallet sees in the simulation what
    /// it will see when the transaction runs (`gasleft()`, `tx.gasprice`, `tx.origin`). A
    /// failure is diagnosed by reading the proxy, the payer's balance and its allowance to
    /// Permit2 (the official order).
    pub(crate) async fn simulate(
        &self,
        chain: &ExactEvmScheme,
    ) -> Result<Option<Refusal>, FacilitatorError> {
        let call = TransactionRequest::default()
            .to(self.proxy)
            .input(Bytes::from(self.input.clone()).into());
        let call = chain
            .as_sent(call, SETTLE_GAS_LIMIT)
            .await
            .map_err(unavailable)?;
        match chain.provider().call(call).await {
            Ok(_) => Ok(None),
            Err(alloy::transports::RpcError::ErrorResp(payload)) => {
                let named = payload.as_revert_data().and_then(|data| revert_name(&data));
                let message = match named {
                    Some(name) => format!("{} ({name})", payload.message),
                    None => payload.message.to_string(),
                };
                Ok(Some(self.diagnose(chain, &message).await?))
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn diagnose(
        &self,
        chain: &ExactEvmScheme,
        message: &str,
    ) -> Result<Refusal, FacilitatorError> {
        // A spent nonce says the payment was settled already (perhaps for this very request,
        // whose answer was lost): named, so a server can ask for that settlement's receipt.
        if permit2_revert_reason(message) == Some(ReasonCode::PERMIT2_INVALID_NONCE) {
            return Ok(refuse(
                ReasonCode::PERMIT2_INVALID_NONCE,
                format!("the permit's nonce is spent: {message}"),
            ));
        }
        let provider = chain.provider();
        let read = |to: Address, input: Vec<u8>| {
            provider.call(
                TransactionRequest::default()
                    .to(to)
                    .input(Bytes::from(input).into()),
            )
        };
        let proxy = read(self.proxy, IPermit2Reads::PERMIT2Call {}.abi_encode()).await;
        if !proxy.is_ok_and(|answer| answer.len() == 32) {
            return Ok(refuse(
                ReasonCode::PERMIT2_PROXY_NOT_DEPLOYED,
                format!("no Permit2 proxy answers at {}", self.proxy),
            ));
        }
        let owner = self.transfer.from;
        let balance = IPermit2Reads::balanceOfCall { owner };
        let allowance = IPermit2Reads::allowanceCall {
            owner,
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
            let answer = read(self.transfer.asset, input)
                .await
                .map_err(unavailable)?;
            if U256::try_from_be_slice(&answer).unwrap_or_default() < self.transfer.value {
                return Ok(refuse(code, why));
            }
        }
        Ok(refuse(
            ReasonCode::PERMIT2_SIMULATION_FAILED,
            format!("the settlement would fail: {message}"),
        ))
    }
}

/// The Permit2 or proxy error a revert's data names, by its selector.
pub(super) fn revert_name(data: &[u8]) -> Option<&'static str> {
    const ERRORS: [&str; 12] = [
        "InvalidNonce()",
        "SignatureExpired(uint256)",
        "InvalidSignature()",
        "InvalidSigner()",
        "InvalidSignatureLength()",
        "InvalidAmount()",
        "InvalidDestination()",
        "InvalidOwner()",
        "PaymentTooEarly()",
        "AmountExceedsPermitted()",
        "UnauthorizedFacilitator()",
        "ReentrancyGuardReentrantCall()",
    ];
    let selector = data.get(..4)?;
    ERRORS
        .into_iter()
        .find(|error| &alloy::primitives::keccak256(error.as_bytes())[..4] == selector)
}

/// The reason code of a Permit2 or proxy revert both schemes share, by the error it names
/// (as the official `mapSettleError` reads it).
pub(crate) fn permit2_revert_reason(message: &str) -> Option<ReasonCode> {
    [
        ("InvalidNonce", ReasonCode::PERMIT2_INVALID_NONCE),
        ("PaymentTooEarly", ReasonCode::PERMIT2_PAYMENT_TOO_EARLY),
        ("InvalidSignature", ReasonCode::PERMIT2_INVALID_SIGNATURE),
        ("SignatureExpired", ReasonCode::PERMIT2_INVALID_SIGNATURE),
    ]
    .into_iter()
    .find(|(needle, _)| message.contains(needle))
    .map(|(_, code)| code)
}
