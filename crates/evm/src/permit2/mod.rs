//! What `exact` with Permit2 and `upto` share: Permit2's address and EIP-712 domain, the
//! payload and `permitted` wire shapes, the first checks of a request, reading an offer and
//! signing for it, and the payer's signature check. `settle` simulates and diagnoses a proxy's
//! settle; `sends` runs one settle call from the log lookup to its end, through the seam a
//! facilitator records its sends in ([`SendLog`]; `pending` is its in-memory default, with the
//! turns that keep one settlement of a payment at a time); `sponsoring` handles the EIP-2612
//! gas-sponsoring extension.

use alloy::primitives::{Address, B256, Bytes, Signature, U256, address};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::signers::Signer;
use alloy::sol_types::{Eip712Domain, SolCall};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use x402_proto::{
    FacilitatorError, PaymentRequest, ReasonCode, Scheme, SchemeSignError, TokenAmount,
    decimal_u256, v2,
};

use crate::scheme::ExactEvmScheme;
use crate::sender::{BroadcastError, TransferExpectation};

mod log;
mod pending;
mod sends;
mod settle;
mod sponsoring;

pub use log::{
    Ending, Holder, Permit2Nonce, Permit2Send, Recorded, SendLog, SendState, SentSettlement,
};
pub(crate) use pending::Turns;
pub(crate) use sends::{Prepared, Sends};
#[cfg(test)]
use settle::revert_name;
pub(crate) use settle::{ProxySettle, permit2_revert_reason};
pub(crate) use sponsoring::{
    EIP2612_GAS_SPONSORING, Permit2612Parts, eip2612_extension, eip2612_sponsoring,
};

/// Uniswap's Permit2, the same on every chain.
pub const PERMIT2_ADDRESS: Address = address!("000000000022D473030F116dDEE9F6B43aC78BA3");

/// Seconds a permit must still be valid for when it is judged (the official facilitator's).
pub(crate) const DEADLINE_BUFFER_SECS: u64 = 6;

/// Gas for a proxy's settle (Permit2 signature check and transfer).
pub(crate) const SETTLE_GAS_LIMIT: u64 = 300_000;

alloy::sol! {
    /// What the diagnosis of a failed simulation reads of the token and the proxy.
    #[derive(Debug)]
    interface IPermit2Reads {
        function balanceOf(address owner) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
        function PERMIT2() external view returns (address);
        function nonces(address owner) external view returns (uint256);
        function nonceBitmap(address owner, uint256 wordPos) external view returns (uint256);
    }

    /// The EIP-2612 approval a payer signs (the token's domain).
    #[derive(Debug)]
    struct Permit {
        address owner;
        address spender;
        uint256 value;
        uint256 nonce;
        uint256 deadline;
    }
}

/// A `sol!` block with Permit2's types for a scheme whose `Witness` struct (and proxy
/// interface) the caller gives: `TokenPermissions`, `PermitTransferFrom` (the permit as a
/// proxy takes it) and `PermitWitnessTransferFrom` (the EIP-712 message the payer signs).
macro_rules! permit2_sol {
    ($($scheme_items:tt)*) => {
        alloy::sol! {
            /// The token and the most Permit2 may move of it.
            #[derive(Debug, PartialEq, Eq)]
            struct TokenPermissions {
                address token;
                uint256 amount;
            }

            /// The permit as the proxy takes it (Permit2's `PermitTransferFrom`).
            #[derive(Debug)]
            struct PermitTransferFrom {
                TokenPermissions permitted;
                uint256 nonce;
                uint256 deadline;
            }

            /// An EIP-2612 approval of Permit2 a proxy tries before settling (gas sponsoring).
            #[derive(Debug, PartialEq, Eq)]
            struct Permit2612 {
                uint256 value;
                uint256 deadline;
                bytes32 r;
                bytes32 s;
                uint8 v;
            }

            /// The EIP-712 message a payer signs (Permit2's witness transfer).
            #[derive(Debug, PartialEq, Eq)]
            struct PermitWitnessTransferFrom {
                TokenPermissions permitted;
                address spender;
                uint256 nonce;
                uint256 deadline;
                Witness witness;
            }

            $($scheme_items)*
        }

        impl From<crate::permit2::Permit2612Parts> for Permit2612 {
            /// The approval as a proxy's `settleWithPermit` takes it (the signature split).
            fn from(parts: crate::permit2::Permit2612Parts) -> Self {
                let signature = parts.signature;
                Self {
                    value: parts.value,
                    deadline: parts.deadline,
                    r: alloy::primitives::B256::from_slice(&signature[..32]),
                    s: alloy::primitives::B256::from_slice(&signature[32..64]),
                    v: signature[64],
                }
            }
        }
    };
}
pub(crate) use permit2_sol;

/// A Permit2 payment on the wire (`payload` of an `upto`, or of an `exact` made with Permit2):
/// the payer's signature over the `PermitWitnessTransferFrom` that `permit2_authorization`
/// describes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Permit2Payload<W> {
    /// The payer's signature.
    pub signature: Bytes,
    /// What was signed.
    pub permit2_authorization: Permit2Authorization<W>,
}

/// A Permit2 authorization as official clients write it (numbers as decimal strings), with
/// the scheme's witness `W`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Permit2Authorization<W> {
    /// The payer.
    pub from: Address,
    /// The token and the amount (the price, or the maximum).
    pub permitted: Permitted,
    /// The proxy allowed to spend it.
    pub spender: Address,
    /// A random Permit2 nonce (each settles once).
    #[serde(with = "decimal_u256")]
    pub nonce: U256,
    /// The last Unix second it may settle.
    #[serde(with = "decimal_u256")]
    pub deadline: U256,
    /// What the scheme binds besides the permit (the payee, …).
    pub witness: W,
}

impl<W> Permit2Payload<W> {
    /// The EIP-2612 approval of Permit2 riding along with `request`, checked against this
    /// payment's payer and token ([`eip2612_sponsoring`]).
    pub(crate) fn sponsoring(
        &self,
        request: &PaymentRequest,
    ) -> Result<Option<Permit2612Parts>, Refusal> {
        let auth = &self.permit2_authorization;
        eip2612_sponsoring(request, auth.from, auth.permitted.token)
    }
}

impl<W: Serialize> Permit2Payload<W> {
    /// What a client's ledger keeps of this payment: it, its Permit2 nonce, its deadline.
    pub(crate) fn signed(&self) -> Result<x402_proto::SignedPayload, x402_proto::SchemeSignError> {
        let auth = &self.permit2_authorization;
        crate::client::signed_payload(self, auth.nonce.to_string(), auth.deadline)
    }

    /// [`Self::signed`], with an EIP-2612 approval of Permit2 by `signer` riding along when
    /// `chain` (if the client may read one) says the allowance is short.
    pub(crate) async fn signed_reading<S: Signer + Send + Sync>(
        &self,
        signer: &S,
        chain: Option<&alloy::providers::DynProvider>,
        requirements: &v2::PaymentRequirements,
    ) -> Result<x402_proto::SignedPayload, x402_proto::SchemeSignError> {
        let mut signed = self.signed()?;
        if let Some(chain) = chain {
            let deadline = self.permit2_authorization.deadline;
            signed.extensions = eip2612_extension(signer, chain, requirements, deadline).await?;
        }
        Ok(signed)
    }
}

/// `permitted` on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permitted {
    /// The token.
    pub token: Address,
    /// The amount (the maximum, for `upto`), in atomic units.
    #[serde(with = "decimal_u256")]
    pub amount: U256,
}

/// Permit2's EIP-712 domain on chain `chain_id` (a name, no version).
pub fn permit2_domain(chain_id: u64) -> Eip712Domain {
    Eip712Domain::new(
        Some("Permit2".into()),
        None,
        Some(U256::from(chain_id)),
        Some(PERMIT2_ADDRESS),
        None,
    )
}

/// Why a payment is refused, as the wire says it.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) code: ReasonCode,
    pub(crate) message: String,
}

pub(crate) fn refuse(code: ReasonCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// The parts of a Permit2 scheme's request its first checks read: the payload as `P`, the
/// requirements and the asset.
pub(crate) struct Opened<'a, P> {
    pub(crate) payload: P,
    pub(crate) requirements: &'a v2::PaymentRequirements,
    pub(crate) asset: Address,
}

/// How a Permit2 scheme names its first refusals.
pub(crate) struct Opening {
    /// The scheme it serves.
    pub(crate) scheme: Scheme,
    /// Its name in messages.
    pub(crate) name: &'static str,
    /// The payload shape it takes, for the message refusing another.
    pub(crate) shape: &'static str,
    /// The code for another scheme.
    pub(crate) wrong_scheme: ReasonCode,
    /// The code for another network.
    pub(crate) network_mismatch: ReasonCode,
}

impl Opening {
    /// The official facilitator's first checks, in its order: an x402 v2 request, the
    /// payload's shape, the scheme, the network (the one `chain` serves), an asset address.
    pub(crate) fn open<'a, P: serde::de::DeserializeOwned>(
        &self,
        request: &'a PaymentRequest,
        chain: &ExactEvmScheme,
    ) -> Result<Opened<'a, P>, Refusal> {
        let PaymentRequest::V2 {
            payload,
            requirements,
        } = request
        else {
            return Err(refuse(
                ReasonCode::INVALID_X402_VERSION,
                format!("{} is an x402 v2 scheme", self.name),
            ));
        };
        let parsed = serde_json::from_value::<P>(payload.payload.clone()).map_err(|_| {
            refuse(
                ReasonCode::UNSUPPORTED_PAYLOAD_TYPE,
                format!("the payload is not {}", self.shape),
            )
        })?;
        if payload.accepted.scheme != self.scheme || requirements.scheme != self.scheme {
            return Err(refuse(
                self.wrong_scheme.clone(),
                format!("the scheme is not {}", self.scheme),
            ));
        }
        if payload.accepted.network != requirements.network
            || !requirements.network.same_as(chain.network())
        {
            return Err(refuse(
                self.network_mismatch.clone(),
                format!(
                    "the payment is for {}, this facilitator serves {}",
                    payload.accepted.network,
                    chain.network()
                ),
            ));
        }
        let asset = requirements.asset.parse::<Address>().map_err(|_| {
            refuse(
                ReasonCode::INVALID_PAYMENT_REQUIREMENTS,
                "asset is not an address",
            )
        })?;
        Ok(Opened {
            payload: parsed,
            requirements,
            asset,
        })
    }
}

/// What a Permit2 payer signs for an offer, read from it as official clients do: the
/// offer's token and amount, its payee, a random 256-bit nonce, the deadline at the offer's
/// timeout from `now`.
#[derive(Debug)]
pub(crate) struct OfferTerms {
    pub(crate) chain_id: u64,
    pub(crate) permitted: Permitted,
    pub(crate) to: Address,
    pub(crate) nonce: U256,
    pub(crate) deadline: U256,
}

impl OfferTerms {
    /// Reads `requirements` for a `scheme` payment signed at Unix time `now`.
    pub(crate) fn read(
        requirements: &v2::PaymentRequirements,
        now: u64,
        scheme: &str,
    ) -> Result<Self, SchemeSignError> {
        let fail = |what: &str| SchemeSignError(format!("cannot sign this {scheme} offer: {what}"));
        Ok(Self {
            chain_id: requirements
                .network
                .evm_chain_id()
                .ok_or_else(|| fail("not an eip155 network"))?,
            permitted: Permitted {
                token: requirements
                    .asset
                    .parse()
                    .map_err(|_| fail("asset is not an address"))?,
                amount: requirements.amount.0,
            },
            to: requirements
                .pay_to
                .parse()
                .map_err(|_| fail("payTo is not an address"))?,
            nonce: U256::from_be_bytes(B256::random().0),
            deadline: U256::from(now.saturating_add(requirements.max_timeout_seconds)),
        })
    }
}

/// `signer`'s signature over `digest`, as the payload carries it.
pub(crate) async fn sign_digest<S: Signer + Send + Sync>(
    signer: &S,
    digest: B256,
) -> Result<Bytes, SchemeSignError> {
    let signature = signer
        .sign_hash(&digest)
        .await
        .map_err(|e| SchemeSignError(e.to_string()))?;
    Ok(signature.as_bytes().into())
}

/// The payer a request's permit names, for answers about it.
pub(crate) fn permit_payer(request: &PaymentRequest) -> Option<String> {
    let payload = request.payload();
    let from = payload.get("permit2Authorization")?.get("from")?.as_str()?;
    Some(from.to_owned())
}

/// The node could not be asked: `error` says why.
pub(crate) fn unavailable(error: impl std::fmt::Display) -> FacilitatorError {
    FacilitatorError::Unavailable(error.to_string())
}

/// Whether Permit2 on `chain` counts `owner`'s `nonce` as spent (used, or invalidated by its
/// owner): then no permit with it can move anything any more.
pub async fn nonce_used(
    chain: &ExactEvmScheme,
    owner: Address,
    nonce: U256,
) -> Result<bool, FacilitatorError> {
    let word_pos: U256 = nonce >> 8;
    let bit = nonce.byte(0);
    let read = IPermit2Reads::nonceBitmapCall {
        owner,
        wordPos: word_pos,
    };
    let call = TransactionRequest::default()
        .to(PERMIT2_ADDRESS)
        .input(Bytes::from(read.abi_encode()).into());
    let answer = chain.provider().call(call).await.map_err(unavailable)?;
    let bitmap =
        IPermit2Reads::nonceBitmapCall::abi_decode_returns(&answer).map_err(unavailable)?;
    Ok(bitmap.bit(usize::from(bit)))
}

/// Whether `signature` over `digest` is `from`'s: ECDSA for an address without code,
/// ERC-1271 for a contract.
pub(crate) async fn signed_by(
    chain: &ExactEvmScheme,
    digest: B256,
    from: Address,
    signature: &Bytes,
) -> Result<bool, FacilitatorError> {
    let code = code_at(chain, from).await?;
    Ok(signed_given_code(chain, &code, digest, from, signature).await)
}

/// The code at `address` on `chain` (empty for an account without code).
pub(crate) async fn code_at(
    chain: &ExactEvmScheme,
    address: Address,
) -> Result<Bytes, FacilitatorError> {
    chain
        .provider()
        .get_code_at(address)
        .await
        .map_err(unavailable)
}

/// [`signed_by`] when `from`'s `code` was read already: ECDSA when it is empty, ERC-1271
/// otherwise.
pub(crate) async fn signed_given_code(
    chain: &ExactEvmScheme,
    code: &Bytes,
    digest: B256,
    from: Address,
    signature: &Bytes,
) -> bool {
    if code.is_empty() {
        return Signature::try_from(signature.as_ref())
            .ok()
            .and_then(|signature| signature.recover_address_from_prehash(&digest).ok())
            == Some(from);
    }
    let check = crate::smart_wallet::IErc1271::isValidSignatureCall {
        hash: digest,
        signature: signature.clone(),
    };
    let call = TransactionRequest::default()
        .to(from)
        .input(Bytes::from(check.abi_encode()).into());
    // A wallet that reverts refuses the signature.
    let answer = chain.provider().call(call).await.unwrap_or_default();
    crate::smart_wallet::is_erc1271_magic(&answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revert_data_is_named_by_its_selector() {
        let invalid_nonce = alloy::primitives::keccak256("InvalidNonce()");
        assert_eq!(revert_name(&invalid_nonce[..4]), Some("InvalidNonce()"));
        assert_eq!(revert_name(&[0x08, 0xc3, 0x79, 0xa0, 0, 0]), None);
        assert_eq!(revert_name(&[0x75]), None);
    }

    #[test]
    fn permit2_errors_map_to_the_official_codes() {
        for (message, code) in [
            (
                "execution reverted (InvalidNonce())",
                Some("permit2_invalid_nonce"),
            ),
            ("PaymentTooEarly()", Some("permit2_payment_too_early")),
            ("SignatureExpired(1)", Some("invalid_permit2_signature")),
            ("out of gas", None),
        ] {
            assert_eq!(
                permit2_revert_reason(message)
                    .as_ref()
                    .map(ReasonCode::as_str),
                code,
                "{message}"
            );
        }
    }

    #[test]
    fn an_eip2612_approval_is_checked_as_the_official_facilitator_checks_it() {
        let owner = Address::repeat_byte(0x11);
        let token = Address::repeat_byte(0x22);
        let later = (crate::unix_now() + 600).to_string();
        let info = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut info = serde_json::json!({
                "from": owner, "asset": token, "spender": PERMIT2_ADDRESS,
                "amount": "20000", "nonce": "0", "deadline": later,
                "signature": format!("0x{}1b", "ab".repeat(64)), "version": "1",
            });
            edit(&mut info);
            let requirements = serde_json::json!({
                "scheme": "upto", "network": "eip155:8453", "amount": "20000",
                "asset": token, "payTo": owner, "maxTimeoutSeconds": 60,
            });
            let request: PaymentRequest = serde_json::from_value(serde_json::json!({
                "x402Version": 2,
                "paymentPayload": {
                    "x402Version": 2, "accepted": requirements, "payload": {},
                    "extensions": {EIP2612_GAS_SPONSORING: {"info": info}},
                },
                "paymentRequirements": requirements,
            }))
            .unwrap();
            eip2612_sponsoring(&request, owner, token).map_err(|refusal| refusal.code)
        };
        let parts = info(&|_| {}).unwrap().unwrap();
        assert_eq!(
            (parts.value, parts.signature[64]),
            (U256::from(20_000), 0x1b)
        );
        // The server's declaration echoed back carries no approval.
        let echoed = info(&|i| *i = serde_json::json!({"description": "…", "version": "1"}));
        assert_eq!(echoed, Ok(None));
        let stranger = Address::repeat_byte(0x33);
        for (edit, code) in [
            (
                Box::new(|i: &mut serde_json::Value| i["from"] = serde_json::json!(stranger))
                    as Box<dyn Fn(&mut serde_json::Value)>,
                ReasonCode::EIP2612_FROM_MISMATCH,
            ),
            (
                Box::new(|i: &mut serde_json::Value| i["asset"] = serde_json::json!(stranger)),
                ReasonCode::EIP2612_ASSET_MISMATCH,
            ),
            (
                Box::new(|i: &mut serde_json::Value| i["spender"] = serde_json::json!(stranger)),
                ReasonCode::EIP2612_SPENDER_NOT_PERMIT2,
            ),
            (
                Box::new(|i: &mut serde_json::Value| i["deadline"] = serde_json::json!("1")),
                ReasonCode::EIP2612_DEADLINE_EXPIRED,
            ),
            (
                Box::new(|i: &mut serde_json::Value| i["signature"] = serde_json::json!("0x1234")),
                ReasonCode::EIP2612_EXTENSION_FORMAT,
            ),
            (
                Box::new(|i: &mut serde_json::Value| i["amount"] = serde_json::json!("-1")),
                ReasonCode::EIP2612_EXTENSION_FORMAT,
            ),
        ] {
            assert_eq!(info(&*edit), Err(code.clone()), "{code}");
        }
    }
}
