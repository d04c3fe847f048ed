//! The `exact` EVM payload: an EIP-3009 authorization and its signature.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol_types::{Eip712Domain, SolStruct};
use serde::{Deserialize, Serialize};
use x402_proto::decimal_u256;

use crate::abi::TransferWithAuthorization;

/// The EIP-3009 authorization a payer signs. Numbers are decimal strings on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// The payer.
    pub from: Address,
    /// The recipient (`payTo`).
    pub to: Address,
    /// Atomic units.
    #[serde(with = "decimal_u256")]
    pub value: U256,
    /// Unix seconds; the transfer is valid strictly after this.
    #[serde(with = "decimal_u256")]
    pub valid_after: U256,
    /// Unix seconds; the transfer is valid strictly before this.
    #[serde(with = "decimal_u256")]
    pub valid_before: U256,
    /// 32 random bytes; each (payer, nonce) can be used once.
    pub nonce: B256,
}

/// The scheme payload of an `exact` EVM payment (`paymentPayload.payload`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExactEvmPayload {
    /// A 65-byte ECDSA signature (r‖s‖v), or a longer smart-wallet signature.
    pub signature: Bytes,
    /// What was signed.
    pub authorization: Authorization,
}

impl Authorization {
    /// The typed-data message for this authorization.
    pub fn message(&self) -> TransferWithAuthorization {
        TransferWithAuthorization {
            from: self.from,
            to: self.to,
            value: self.value,
            validAfter: self.valid_after,
            validBefore: self.valid_before,
            nonce: self.nonce,
        }
    }
}

/// The EIP-712 domain of an EIP-3009 token.
pub fn eip712_domain(name: &str, version: &str, chain_id: u64, token: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some(name.to_owned().into()),
        Some(version.to_owned().into()),
        Some(U256::from(chain_id)),
        Some(token),
        None,
    )
}

/// The digest a payer signs for `authorization` under `domain`.
pub fn authorization_digest(authorization: &Authorization, domain: &Eip712Domain) -> B256 {
    authorization.message().eip712_signing_hash(domain)
}
