//! The `upto` payload as official clients (`@x402/evm` 2.27) put it on the wire, the Permit2
//! typed data its signature covers, and the proxy call that settles it.

use alloy::primitives::{Address, B256, Bytes, U256, address};
use alloy::sol_types::{SolCall, SolStruct};
use serde::{Deserialize, Serialize};
use x402_proto::decimal_u256;

pub use crate::permit2::{PERMIT2_ADDRESS, Permitted, permit2_domain};

/// The x402 `upto` proxy every `upto` permit names as its spender, the same on every chain.
pub const UPTO_PERMIT2_PROXY: Address = address!("4020A4f3b7b90ccA423B9fabCc0CE57C6C240002");

crate::permit2::permit2_sol! {
    /// What an `upto` payer's signature binds besides the permit: the payee, the one
    /// facilitator that may submit, and the earliest time.
    #[derive(Debug, PartialEq, Eq)]
    struct Witness {
        address to;
        address facilitator;
        uint256 validAfter;
    }

    /// The `upto` proxy's settle call.
    #[derive(Debug)]
    interface IUptoPermit2Proxy {
        function settle(PermitTransferFrom permit, uint256 amount, address owner, Witness witness, bytes signature) external;
        function settleWithPermit(Permit2612 permit2612, PermitTransferFrom permit, uint256 amount, address owner, Witness witness, bytes signature) external;
    }
}

/// `payload` of an `upto` payment.
pub type UptoPayload = crate::permit2::Permit2Payload<WireWitness>;

/// The Permit2 authorization of an `upto` payment.
pub type UptoAuthorization = crate::permit2::Permit2Authorization<WireWitness>;

/// `witness` on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WireWitness {
    /// The payee.
    pub to: Address,
    /// The only facilitator that may submit it.
    pub facilitator: Address,
    /// The first Unix second it may settle.
    #[serde(with = "decimal_u256")]
    pub valid_after: U256,
}

impl UptoAuthorization {
    /// The message the payer signs.
    pub fn message(&self) -> PermitWitnessTransferFrom {
        PermitWitnessTransferFrom {
            permitted: self.token_permissions(),
            spender: self.spender,
            nonce: self.nonce,
            deadline: self.deadline,
            witness: self.witness(),
        }
    }

    /// The digest the payer signs on chain `chain_id`.
    pub fn digest(&self, chain_id: u64) -> B256 {
        self.message()
            .eip712_signing_hash(&permit2_domain(chain_id))
    }

    /// The proxy's `settle` call moving `amount` with `signature`.
    pub fn settle_call(&self, amount: U256, signature: Bytes) -> Vec<u8> {
        self.settle_call_with(amount, signature, None)
    }

    /// [`Self::settle_call`], first trying `permit2612` (an EIP-2612 approval of Permit2) when
    /// one rides along.
    pub(crate) fn settle_call_with(
        &self,
        amount: U256,
        signature: Bytes,
        permit2612: Option<crate::permit2::Permit2612Parts>,
    ) -> Vec<u8> {
        let permit = PermitTransferFrom {
            permitted: self.token_permissions(),
            nonce: self.nonce,
            deadline: self.deadline,
        };
        if let Some(p) = permit2612 {
            return IUptoPermit2Proxy::settleWithPermitCall {
                permit2612: p.into(),
                permit,
                amount,
                owner: self.from,
                witness: self.witness(),
                signature,
            }
            .abi_encode();
        }
        IUptoPermit2Proxy::settleCall {
            permit,
            amount,
            owner: self.from,
            witness: self.witness(),
            signature,
        }
        .abi_encode()
    }

    fn token_permissions(&self) -> TokenPermissions {
        TokenPermissions {
            token: self.permitted.token,
            amount: self.permitted.amount,
        }
    }

    fn witness(&self) -> Witness {
        Witness {
            to: self.witness.to,
            facilitator: self.witness.facilitator,
            validAfter: self.witness.valid_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wire() -> serde_json::Value {
        json!({
            "signature": "0x1234",
            "permit2Authorization": {
                "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
                "permitted": {"token": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "amount": "20000"},
                "spender": "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002",
                "nonce": "115792089237316195423570985008687907853269984665640564039457584007913129639935",
                "deadline": "1760000000",
                "witness": {
                    "to": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                    "facilitator": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
                    "validAfter": "0"
                }
            }
        })
    }

    #[test]
    fn the_wire_form_round_trips() {
        let payload: UptoPayload = serde_json::from_value(wire()).unwrap();
        assert_eq!(
            payload.permit2_authorization.permitted.amount,
            U256::from(20_000)
        );
        assert_eq!(payload.permit2_authorization.nonce, U256::MAX);
        // Written back, it reads the same (addresses in lower case, numbers as decimals).
        let written = serde_json::to_value(&payload).unwrap();
        assert_eq!(
            written["permit2Authorization"]["nonce"],
            wire()["permit2Authorization"]["nonce"]
        );
        assert_eq!(
            serde_json::from_value::<UptoPayload>(written).unwrap(),
            payload
        );
    }

    #[test]
    fn the_typed_data_names_the_witness_after_the_permit() {
        assert_eq!(
            PermitWitnessTransferFrom::eip712_encode_type(),
            "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)"
        );
    }

    #[test]
    fn a_payload_of_another_shape_does_not_parse() {
        let mut exact = wire();
        exact["authorization"] = json!({});
        assert!(serde_json::from_value::<UptoPayload>(exact).is_err());
    }
}
