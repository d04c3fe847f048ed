//! A proxy's settle: simulated from the facilitator address (and diagnosed when it fails),
//! sent through the chain's send slot, answered; Permit2 and proxy errors named.

use super::*;

/// A proxy settle: which proxy, its calldata, the transfer it must make, and the Permit2
/// nonce it spends.
#[derive(Debug)]
pub(crate) struct ProxySettle {
    pub(crate) proxy: Address,
    pub(crate) input: Vec<u8>,
    pub(crate) transfer: TransferExpectation,
    pub(crate) nonce: U256,
}

impl ProxySettle {
    /// Simulates the settle from the facilitator address; a failure is diagnosed by reading
    /// the proxy, the payer's balance and its allowance to Permit2 (the official order).
    pub(crate) async fn simulate(
        &self,
        chain: &ExactEvmScheme,
    ) -> Result<Option<Refusal>, FacilitatorError> {
        let call = TransactionRequest::default()
            .from(chain.signer_address())
            .to(self.proxy)
            .input(Bytes::from(self.input.clone()).into());
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

    /// Sends the settle from the chain's signer through its send slot and waits for the
    /// transfer, remembered in `pending` for the request with idempotency key `key`. A refused
    /// broadcast is named by `reason_of` (the revert's message); a reverted transaction gets
    /// `failed`.
    pub(crate) async fn send(
        &self,
        chain: &ExactEvmScheme,
        (pending, key): (&PendingSends, Option<&IdempotencyKey>),
        network: Network,
        payer: Option<String>,
        failed: ReasonCode,
        reason_of: fn(&str) -> Option<ReasonCode>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let slot = chain.reserve_send().await.map_err(unavailable)?;
        let signed = slot
            .sign_call(self.proxy, self.input.clone(), SETTLE_GAS_LIMIT)
            .await
            .map_err(unavailable)?;
        let expected = &self.transfer;
        let wait = || chain.wait_for_outcome(signed.tx_hash, expected, chain.receipt_timeout());
        let outcome = match slot.broadcast(&signed).await {
            Ok(sent) => match sent.outcome(expected) {
                Some(outcome) => outcome,
                None => wait().await,
            },
            Err(BroadcastError::Uncertain { .. }) => wait().await,
            Err(BroadcastError::Refused { reason, .. }) => {
                let code = reason_of(&reason).unwrap_or(failed);
                return Ok(SettleResponse::failure(network, code, reason, payer, None));
            }
        };
        Ok(self.answer(outcome, pending, key, network, payer, failed))
    }

    /// The answer for the settle's `outcome`; a settled or pending one is remembered in
    /// `pending`, for the request with idempotency key `key`.
    pub(super) fn answer(
        &self,
        outcome: Result<crate::Settlement, crate::SettleError>,
        pending: &PendingSends,
        key: Option<&IdempotencyKey>,
        network: Network,
        payer: Option<String>,
        failed: ReasonCode,
    ) -> SettleResponse {
        match outcome {
            Ok(settled) => {
                // Kept for the request's key (its lost answer is given again); a success with
                // no key is handed out once.
                if key.is_some() {
                    pending.remember(self, settled.tx_hash, key);
                }
                SettleResponse::success(network, payer, settled.tx_hash.to_string())
            }
            Err(crate::SettleError::Pending { tx_hash }) => {
                pending.remember(self, tx_hash, key);
                SettleResponse::failure(
                    network,
                    ReasonCode::SETTLEMENT_PENDING,
                    "sent, not confirmed yet",
                    payer,
                    Some(tx_hash.to_string()),
                )
            }
            Err(error) => SettleResponse::failure(
                network,
                failed,
                error.to_string(),
                payer,
                error.tx_hash().map(|h| h.to_string()),
            ),
        }
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
