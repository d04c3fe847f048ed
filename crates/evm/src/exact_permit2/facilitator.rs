//! `exact` with Permit2 on one EVM chain behind the [`Facilitator`](x402_proto::Facilitator)
//! trait: verify in the order of the official facilitator (2.27) — shape, scheme, network,
//! spender, payee, deadline, validity start, amount, token, signature (and the asset being a
//! contract), then the log's word on an earlier settlement of the permit (one that failed on
//! chain is not valid again) and a settle simulated as it will be sent (from the facilitator
//! address, with its gas limit and fees), diagnosed when it fails —
//! and settle through the `exact` proxy from the chain's signer.

use std::sync::Arc;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use x402_proto::{
    FacilitatorError, PaymentId, PaymentIdError, PaymentRequest, ReasonCode, Scheme,
    SettleResponse, SupportedKind, SupportedResponse, VerifyResponse,
};

use super::payload::{EXACT_PERMIT2_PROXY, ExactPermit2Payload};
use crate::permit2::{
    DEADLINE_BUFFER_SECS, Opened, Opening, Prepared, ProxySettle, Refusal, SendLog, Sends,
    permit_payer, permit2_revert_reason, refuse, signed_by,
};
use crate::scheme::ExactEvmScheme;
use crate::sender::TransferExpectation;

/// A facilitator for `exact` payments made with Permit2 on one EVM chain, sending from the
/// chain's signer. [`ExactEvmFacilitator`](crate::ExactEvmFacilitator) hands it the payloads
/// that carry `permit2Authorization`.
#[derive(Debug, Clone)]
pub struct ExactPermit2Facilitator {
    chain: Arc<ExactEvmScheme>,
    sends: Sends,
}

/// How `exact` with Permit2 names its first refusals (the official codes: another scheme is
/// an unsupported payload).
const OPENING: Opening = Opening {
    scheme: Scheme::EXACT,
    name: "exact with Permit2",
    shape: "{signature, permit2Authorization: {from, permitted, spender, nonce, deadline, witness: {to, validAfter}}}",
    wrong_scheme: ReasonCode::UNSUPPORTED_PAYLOAD_TYPE,
    network_mismatch: ReasonCode::EXACT_EVM_NETWORK_MISMATCH,
};

/// A payment that passed verification.
#[derive(Debug)]
struct Verified {
    payload: ExactPermit2Payload,
    /// The EIP-2612 approval of Permit2 that came with it, if any.
    permit2612: Option<crate::permit2::Permit2612Parts>,
}

impl Verified {
    /// The proxy's settle, and the transfer it makes: exactly the permitted amount.
    fn proxy_settle(&self) -> ProxySettle {
        let auth = &self.payload.permit2_authorization;
        ProxySettle {
            proxy: EXACT_PERMIT2_PROXY,
            input: auth.settle_call_with(self.payload.signature.clone(), self.permit2612),
            transfer: TransferExpectation {
                asset: auth.permitted.token,
                from: auth.from,
                to: auth.witness.to,
                value: auth.permitted.amount,
            },
        }
    }
}

impl ExactPermit2Facilitator {
    /// Serves `exact` with Permit2 on `chain`'s network with its signer, remembering what it
    /// sent in memory (for five minutes).
    pub fn new(chain: ExactEvmScheme) -> Self {
        Self::shared(Arc::new(chain))
    }

    /// [`Self::new`], recording what it sends in `log` (a facilitator's durable settlement
    /// log: a retry after a restart is answered for the transaction already sent).
    pub fn with_log(chain: ExactEvmScheme, log: Arc<dyn SendLog>) -> Self {
        Self {
            chain: Arc::new(chain),
            sends: Sends::new(log),
        }
    }

    /// Serves `chain`, shared with its EIP-3009 facilitator.
    pub(crate) fn shared(chain: Arc<ExactEvmScheme>) -> Self {
        Self {
            chain,
            sends: Sends::default(),
        }
    }

    /// The kind it serves: `exact` (v2) on its network.
    pub fn kind(&self) -> SupportedKind {
        SupportedKind {
            x402_version: 2,
            scheme: Scheme::EXACT,
            network: self.chain.network().clone(),
            extra: None,
        }
    }

    /// Runs the checks of the official facilitator, in its order.
    async fn check(
        &self,
        request: &PaymentRequest,
    ) -> Result<Result<Verified, Refusal>, FacilitatorError> {
        let Opened {
            payload: permit,
            requirements,
            asset,
        } = match OPENING.open::<ExactPermit2Payload>(request, &self.chain) {
            Ok(opened) => opened,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let auth = &permit.permit2_authorization;
        let now = U256::from(crate::unix_now());
        let terms = [
            (
                auth.spender == EXACT_PERMIT2_PROXY,
                ReasonCode::PERMIT2_INVALID_SPENDER,
                "the spender must be the exact proxy 0x402085c248EeA27D92E8b30b2C58ed07f9E20001",
            ),
            (
                requirements.pay_to.parse::<Address>().ok() == Some(auth.witness.to),
                ReasonCode::PERMIT2_RECIPIENT_MISMATCH,
                "witness.to is not payTo",
            ),
            (
                auth.deadline >= now + U256::from(DEADLINE_BUFFER_SECS),
                ReasonCode::PERMIT2_DEADLINE_EXPIRED,
                "the permit's deadline has passed (or is within 6 seconds)",
            ),
            (
                auth.witness.valid_after <= now,
                ReasonCode::PERMIT2_NOT_YET_VALID,
                "witness.validAfter is in the future",
            ),
            (
                auth.permitted.amount == requirements.amount.0,
                ReasonCode::PERMIT2_AMOUNT_MISMATCH,
                "the permitted amount is not the required amount",
            ),
            (
                auth.permitted.token == asset,
                ReasonCode::PERMIT2_TOKEN_MISMATCH,
                "the permitted token is not the asset",
            ),
        ];
        if let Some((_, code, why)) = terms.into_iter().find(|(holds, ..)| !holds) {
            return Ok(Err(refuse(code, why)));
        }
        let digest = auth.digest(self.chain.chain_id());
        let signed = signed_by(&self.chain, digest, auth.from, &permit.signature).await?;
        // The official facilitator reports an asset without code before a bad signature.
        let asset_code = self
            .chain
            .provider()
            .get_code_at(asset)
            .await
            .map_err(|e| FacilitatorError::Unavailable(e.to_string()))?;
        if asset_code.is_empty() {
            return Ok(Err(refuse(
                ReasonCode::ASSET_NOT_DEPLOYED_CONTRACT,
                format!("no contract at {asset}"),
            )));
        }
        if !signed {
            return Ok(Err(refuse(
                ReasonCode::PERMIT2_INVALID_SIGNATURE,
                "the signature is not the payer's",
            )));
        }
        // A gasless EIP-2612 approval of Permit2 may ride along: checked, then used.
        let permit2612 = match permit.sponsoring(request) {
            Ok(permit2612) => permit2612,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let verified = Verified {
            permit2612,
            payload: permit,
        };
        let failed = ReasonCode::EXACT_EVM_TRANSACTION_FAILED;
        let settle = verified.proxy_settle();
        let last = self
            .sends
            .final_refusal(&self.chain, &verified.payload, failed, settle);
        if let Some(refusal) = last.await? {
            return Ok(Err(refusal));
        }
        Ok(Ok(verified))
    }

    async fn verify_payment(
        &self,
        request: &PaymentRequest,
    ) -> Result<VerifyResponse, FacilitatorError> {
        Ok(match self.check(request).await? {
            Ok(verified) => VerifyResponse::valid(
                verified
                    .payload
                    .permit2_authorization
                    .from
                    .to_checksum(None),
            ),
            Err(refusal) => {
                VerifyResponse::invalid(refusal.code, refusal.message, permit_payer(request))
            }
        })
    }

    /// Verifies again (with the simulation, so nothing is sent that would revert) and sends
    /// the proxy's settle; a settlement of the payment recorded already is answered for.
    /// Every answer names the amount moved (nothing, for a failure).
    async fn settle_payment(
        &self,
        request: &PaymentRequest,
        key: Option<&x402_proto::IdempotencyKey>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let parsed = serde_json::from_value::<ExactPermit2Payload>(request.payload().clone());
        let Ok(permit) = parsed else {
            // Not a Permit2 payload: the checks say precisely what is wrong.
            return self.refused(request).await;
        };
        let failures = (
            ReasonCode::EXACT_EVM_TRANSACTION_FAILED,
            permit2_revert_reason as fn(&str) -> _,
        );
        let call = Sends::call(&self.chain, request, &permit, key, failures);
        let fresh = async {
            Ok(match self.check(request).await? {
                Ok(verified) => Prepared::Send(verified.proxy_settle()),
                Err(refusal) => Prepared::Refused(refuse(settle_code(&refusal), refusal.message)),
            })
        };
        self.sends.settle(&call, fresh).await
    }

    /// The answer for a payment the checks refuse (or, unexpectedly, pass: it could not be
    /// read for settling).
    async fn refused(&self, request: &PaymentRequest) -> Result<SettleResponse, FacilitatorError> {
        let refusal = match self.check(request).await? {
            Err(refusal) => refusal,
            Ok(_) => refuse(
                ReasonCode::UNSUPPORTED_PAYLOAD_TYPE,
                "the Permit2 payload could not be read",
            ),
        };
        let mut answer = SettleResponse::failure(
            request.wire_network().clone(),
            settle_code(&refusal),
            refusal.message,
            permit_payer(request),
            None,
        );
        answer.amount = Some(x402_proto::TokenAmount(U256::ZERO));
        Ok(answer)
    }

    /// A payment's identity: its network, payer and Permit2 nonce (Permit2 spends an owner's
    /// nonce once, whatever the token).
    fn identify(&self, request: &PaymentRequest) -> Result<PaymentId, PaymentIdError> {
        // The same identity a server derives on its own: the owner's Permit2 nonce.
        serde_json::from_value::<ExactPermit2Payload>(request.payload().clone())
            .map_err(|e| PaymentIdError(format!("the Permit2 payload does not parse: {e}")))?;
        PaymentId::derive(request)
    }

    /// What `/supported` lists: `exact` on this chain, and the signer.
    fn supported_now(&self) -> SupportedResponse {
        SupportedResponse {
            kinds: vec![self.kind()],
            extensions: Vec::new(),
            signers: crate::facilitator::evm_signers(self.chain.signer_address()),
        }
    }
}

crate::facilitator::facilitator_from_methods!(ExactPermit2Facilitator, payment_id: identify);

/// What sending would have reverted with (a spent nonce, say), when the simulation names it;
/// the refusal's own code otherwise.
fn settle_code(refusal: &Refusal) -> ReasonCode {
    if refusal.code == ReasonCode::PERMIT2_SIMULATION_FAILED {
        permit2_revert_reason(&refusal.message).unwrap_or_else(|| refusal.code.clone())
    } else {
        refusal.code.clone()
    }
}
