//! What `exact` with Permit2 and `upto` share: Permit2's address and EIP-712 domain, the
//! `permitted` wire shape, the first checks of a request, reading an offer and signing for
//! it, the payer's signature check, the simulated settle from the
//! facilitator address with the official diagnosis of its failure, and sending a proxy's
//! settle through the chain's send slot.

use alloy::primitives::{Address, B256, Bytes, Signature, U256, address};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::signers::Signer;
use alloy::sol_types::{Eip712Domain, SolCall};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use x402_proto::{
    FacilitatorError, IdempotencyKey, Network, PaymentRequest, ReasonCode, Scheme, SchemeSignError,
    SettleResponse, TokenAmount, decimal_u256, v2,
};

use crate::scheme::ExactEvmScheme;
use crate::sender::{BroadcastError, TransferExpectation};

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

/// An `eip2612GasSponsoring` extension approving Permit2 for `requirements.amount` until
/// `deadline`, signed by `signer`, when `chain` says the payer's allowance is short of it
/// (`None` when it is enough, or the offer does not name the token's EIP-712 domain).
pub(crate) async fn eip2612_extension<S: Signer + Send + Sync>(
    signer: &S,
    chain: &alloy::providers::DynProvider,
    requirements: &v2::PaymentRequirements,
    deadline: U256,
) -> Result<Option<serde_json::Value>, SchemeSignError> {
    let fail = |what: String| SchemeSignError(format!("cannot sign the EIP-2612 approval: {what}"));
    let extra = requirements.extra.as_ref();
    let text = |key: &str| {
        extra
            .and_then(|e| e.get(key))
            .and_then(serde_json::Value::as_str)
    };
    let (Some(name), Some(version), Some(chain_id)) = (
        text("name"),
        text("version"),
        requirements.network.evm_chain_id(),
    ) else {
        return Ok(None);
    };
    let token: Address = requirements
        .asset
        .parse()
        .map_err(|_| fail("asset is not an address".into()))?;
    let owner = signer.address();
    let amount = requirements.amount.0;
    let read = |input: Vec<u8>| async {
        let answer = chain
            .call(
                TransactionRequest::default()
                    .to(token)
                    .input(Bytes::from(input).into()),
            )
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok::<U256, SchemeSignError>(U256::try_from_be_slice(&answer).unwrap_or_default())
    };
    let allowance = IPermit2Reads::allowanceCall {
        owner,
        spender: PERMIT2_ADDRESS,
    };
    if read(allowance.abi_encode()).await? >= amount {
        return Ok(None);
    }
    let nonce = read(IPermit2Reads::noncesCall { owner }.abi_encode()).await?;
    let permit = Permit {
        owner,
        spender: PERMIT2_ADDRESS,
        value: amount,
        nonce,
        deadline,
    };
    let domain = crate::payload::eip712_domain(name, version, chain_id, token);
    let digest = alloy::sol_types::SolStruct::eip712_signing_hash(&permit, &domain);
    let signature = sign_digest(signer, digest).await?;
    Ok(Some(serde_json::json!({
        EIP2612_GAS_SPONSORING: {"info": {
            "from": owner.to_checksum(None),
            "asset": token.to_checksum(None),
            "spender": PERMIT2_ADDRESS.to_checksum(None),
            "amount": amount.to_string(),
            "nonce": nonce.to_string(),
            "deadline": deadline.to_string(),
            "signature": signature.to_string(),
            "version": "1",
        }}
    })))
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

fn unavailable(error: impl std::fmt::Display) -> FacilitatorError {
    FacilitatorError::Unavailable(error.to_string())
}

/// Whether `signature` over `digest` is `from`'s: ECDSA for an address without code,
/// ERC-1271 for a contract.
pub(crate) async fn signed_by(
    chain: &ExactEvmScheme,
    digest: B256,
    from: Address,
    signature: &Bytes,
) -> Result<bool, FacilitatorError> {
    let code = chain
        .provider()
        .get_code_at(from)
        .await
        .map_err(unavailable)?;
    if code.is_empty() {
        return Ok(Signature::try_from(signature.as_ref())
            .ok()
            .and_then(|signature| signature.recover_address_from_prehash(&digest).ok())
            == Some(from));
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
    Ok(crate::smart_wallet::is_erc1271_magic(&answer))
}

/// The key of the EIP-2612 gas-sponsoring extension in a payment's `extensions`.
pub(crate) const EIP2612_GAS_SPONSORING: &str = "eip2612GasSponsoring";

/// The EIP-2612 approval of Permit2 riding along with `request` (the `eip2612GasSponsoring`
/// extension), checked as the official facilitator checks it against the payer `owner`, the
/// token paid and the time: `None` when there is none.
pub(crate) fn eip2612_sponsoring(
    request: &PaymentRequest,
    owner: Address,
    token: Address,
) -> Result<Option<Permit2612Parts>, Refusal> {
    let PaymentRequest::V2 { payload, .. } = request else {
        return Ok(None);
    };
    let Some(info) = payload
        .extensions
        .as_ref()
        .and_then(|extensions| extensions.get(EIP2612_GAS_SPONSORING))
        .and_then(|extension| extension.get("info"))
    else {
        return Ok(None);
    };
    let text = |key: &str| info.get(key).and_then(serde_json::Value::as_str);
    // Clients echo the server's declaration ({description, version}) when they sign nothing:
    // an `info` without the approval's fields carries no approval.
    let fields = [
        "from",
        "asset",
        "spender",
        "amount",
        "nonce",
        "deadline",
        "signature",
        "version",
    ];
    if fields.iter().any(|key| text(key).is_none_or(str::is_empty)) {
        return Ok(None);
    }
    let malformed = || {
        refuse(
            ReasonCode::EIP2612_EXTENSION_FORMAT,
            "eip2612GasSponsoring.info needs from, asset, spender (addresses), amount, nonce, \
             deadline (decimal numbers), a 65-byte hex signature and a version",
        )
    };
    let address = |key: &str| text(key).and_then(|v| v.parse::<Address>().ok());
    let number = |key: &str| {
        text(key)
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| U256::from_str_radix(v, 10).ok())
    };
    let (Some(from), Some(asset), Some(spender), Some(value), Some(_nonce), Some(deadline)) = (
        address("from"),
        address("asset"),
        address("spender"),
        number("amount"),
        number("nonce"),
        number("deadline"),
    ) else {
        return Err(malformed());
    };
    let signature = text("signature")
        .and_then(|v| v.parse::<Bytes>().ok())
        .filter(|s| s.len() == 65)
        .ok_or_else(malformed)?;
    if from != owner {
        return Err(refuse(
            ReasonCode::EIP2612_FROM_MISMATCH,
            "info.from is not the payer",
        ));
    }
    if asset != token {
        return Err(refuse(
            ReasonCode::EIP2612_ASSET_MISMATCH,
            "info.asset is not the token paid",
        ));
    }
    if spender != PERMIT2_ADDRESS {
        return Err(refuse(
            ReasonCode::EIP2612_SPENDER_NOT_PERMIT2,
            "info.spender is not Permit2",
        ));
    }
    if deadline < U256::from(crate::unix_now() + DEADLINE_BUFFER_SECS) {
        return Err(refuse(
            ReasonCode::EIP2612_DEADLINE_EXPIRED,
            "info.deadline has passed",
        ));
    }
    Ok(Some(Permit2612Parts {
        value,
        deadline,
        signature: alloy::primitives::FixedBytes::from_slice(&signature),
    }))
}

/// An EIP-2612 approval of Permit2: its value, deadline and 65-byte signature (r, s, v).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Permit2612Parts {
    pub(crate) value: U256,
    pub(crate) deadline: U256,
    pub(crate) signature: alloy::primitives::FixedBytes<65>,
}

/// A proxy settle: which proxy, its calldata, the transfer it must make, and the Permit2
/// nonce it spends.
#[derive(Debug)]
pub(crate) struct ProxySettle {
    pub(crate) proxy: Address,
    pub(crate) input: Vec<u8>,
    pub(crate) transfer: TransferExpectation,
    pub(crate) nonce: U256,
}

/// How long a sent settlement is remembered.
const PENDING_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// A sent settlement: its transaction, the transfer it must make, since when, and the
/// idempotency key of the request it was settled for.
type PendingSend = (
    B256,
    TransferExpectation,
    std::time::Instant,
    Option<IdempotencyKey>,
);

/// Sent settlements by the owner and Permit2 nonce they spend.
type PendingByPermit = std::collections::HashMap<(Address, U256), PendingSend>;

/// One settlement of a Permit2 payment at a time: a turn per owner and nonce.
type Turns = std::collections::HashMap<(Address, U256), Arc<tokio::sync::Mutex<()>>>;

/// Settlements sent for Permit2 payments, by the owner's Permit2 nonce, for five minutes (in
/// memory). A retry of the same payment (the official server retries once after
/// `settlement_pending`; our paywall until its patience runs out, or after a lost answer)
/// waits for that transaction and answers for it instead of verifying again and sending a
/// second one. One settled for a request with an idempotency key answers that key as often as
/// it asks (another key gets `duplicate_settlement`); one with no key hands its success out
/// once. Settlements of one payment take turns, so concurrent calls send one transaction.
#[derive(Debug, Default)]
pub(crate) struct PendingSends {
    entries: std::sync::Mutex<PendingByPermit>,
    turns: std::sync::Mutex<Turns>,
}

/// The owner and Permit2 nonce a request's payment spends.
fn permit_key(request: &PaymentRequest) -> Option<(Address, U256)> {
    let permit = request.payload().get("permit2Authorization")?;
    let owner: Address = permit.get("from")?.as_str()?.parse().ok()?;
    let nonce: U256 = permit.get("nonce")?.as_str()?.parse().ok()?;
    Some((owner, nonce))
}

impl PendingSends {
    fn entries(&self) -> std::sync::MutexGuard<'_, PendingByPermit> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remember(&self, settle: &ProxySettle, tx_hash: B256, key: Option<&IdempotencyKey>) {
        let mut entries = self.entries();
        entries.retain(|_, entry| entry.2.elapsed() < PENDING_TTL);
        entries.insert(
            (settle.transfer.from, settle.nonce),
            (
                tx_hash,
                settle.transfer,
                std::time::Instant::now(),
                key.cloned(),
            ),
        );
    }

    /// Waits for the turn to settle `request`'s payment (`None` when it names none).
    pub(crate) async fn turn(
        &self,
        request: &PaymentRequest,
    ) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let key = permit_key(request)?;
        let turn = {
            let mut turns = self
                .turns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            turns.retain(|_, turn| Arc::strong_count(turn) > 1);
            turns.entry(key).or_default().clone()
        };
        Some(turn.lock_owned().await)
    }

    /// When a settlement of `request`'s payment was sent: waits for its transaction and
    /// answers for it, with the amount it moves (or `duplicate_settlement` for a request with
    /// another idempotency key than the one it was settled for).
    pub(crate) async fn resume(
        &self,
        chain: &ExactEvmScheme,
        request: &PaymentRequest,
        key: Option<&IdempotencyKey>,
        failed: ReasonCode,
    ) -> Option<SettleResponse> {
        let permit = permit_key(request)?;
        let (tx_hash, transfer, _, settled_for) = self.entries().get(&permit).cloned()?;
        let network = request.wire_network().clone();
        if settled_for.is_some() && settled_for.as_ref() != key {
            return Some(SettleResponse::failure(
                network,
                ReasonCode::DUPLICATE_SETTLEMENT,
                "this payment was settled for another request",
                permit_payer(request),
                Some(tx_hash.to_string()),
            ));
        }
        let outcome = chain
            .wait_for_outcome(tx_hash, &transfer, chain.receipt_timeout())
            .await;
        let settle = ProxySettle {
            proxy: Address::ZERO,
            input: Vec::new(),
            transfer,
            nonce: permit.1,
        };
        let mut answer = settle.answer(outcome, self, key, network, permit_payer(request), failed);
        if answer.success {
            answer.amount = Some(TokenAmount(transfer.value));
            if settled_for.is_none() {
                // A settlement with no key hands its success out once.
                self.entries().remove(&permit);
            }
        }
        Some(answer)
    }
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
    fn answer(
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
fn revert_name(data: &[u8]) -> Option<&'static str> {
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
