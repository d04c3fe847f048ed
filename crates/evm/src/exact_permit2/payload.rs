//! The `exact` Permit2 payload as official clients (`@x402/evm` 2.27) put it on the wire, the
//! Permit2 typed data its signature covers, and the proxy call that settles it.

use alloy::primitives::{Address, B256, Bytes, U256, address};
use alloy::sol_types::{SolCall, SolStruct};
use serde::{Deserialize, Serialize};
use x402_proto::{PaymentRequest, decimal_u256};

use crate::permit2::{OfferTerms, Permitted, permit2_domain};

/// The x402 `exact` proxy every `exact` permit names as its spender, the same on every chain.
pub const EXACT_PERMIT2_PROXY: Address = address!("402085c248EeA27D92E8b30b2C58ed07f9E20001");

crate::permit2::permit2_sol! {
    /// What an `exact` payer's signature binds besides the permit: the payee and the
    /// earliest time.
    #[derive(Debug, PartialEq, Eq)]
    struct Witness {
        address to;
        uint256 validAfter;
    }

    /// The `exact` proxy's settle call.
    #[derive(Debug)]
    interface IExactPermit2Proxy {
        function settle(PermitTransferFrom permit, address owner, Witness witness, bytes signature) external;
        function settleWithPermit(Permit2612 permit2612, PermitTransferFrom permit, address owner, Witness witness, bytes signature) external;
    }
}

/// `payload` of an `exact` payment made with Permit2.
pub type ExactPermit2Payload = crate::permit2::Permit2Payload<ExactPermit2Witness>;

/// The Permit2 authorization of an `exact` payment.
pub type ExactPermit2Authorization = crate::permit2::Permit2Authorization<ExactPermit2Witness>;

/// `witness` on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExactPermit2Witness {
    /// The payee.
    pub to: Address,
    /// The first Unix second it may settle.
    #[serde(with = "decimal_u256")]
    pub valid_after: U256,
}

/// Whether `request` is an `exact` payment made with Permit2: its payload carries
/// `permit2Authorization` (the official facilitator's `isPermit2Payload`).
pub fn is_permit2_payload(request: &PaymentRequest) -> bool {
    request.payload().get("permit2Authorization").is_some()
}

impl ExactPermit2Authorization {
    /// `from`'s authorization of the payment `terms` describe, to the `exact` proxy, valid at
    /// once (`validAfter` 0, as official clients sign it).
    pub(crate) fn for_offer(from: Address, terms: &OfferTerms) -> Self {
        Self {
            from,
            permitted: terms.permitted.clone(),
            spender: EXACT_PERMIT2_PROXY,
            nonce: terms.nonce,
            deadline: terms.deadline,
            witness: ExactPermit2Witness {
                to: terms.to,
                valid_after: U256::ZERO,
            },
        }
    }

    /// The message the payer signs.
    pub fn message(&self) -> PermitWitnessTransferFrom {
        let Self {
            permitted: Permitted { token, amount },
            witness,
            ..
        } = self;
        PermitWitnessTransferFrom {
            permitted: TokenPermissions {
                token: *token,
                amount: *amount,
            },
            spender: self.spender,
            nonce: self.nonce,
            deadline: self.deadline,
            witness: Witness {
                to: witness.to,
                validAfter: witness.valid_after,
            },
        }
    }

    /// The digest the payer signs on chain `chain_id`.
    pub fn digest(&self, chain_id: u64) -> B256 {
        self.message()
            .eip712_signing_hash(&permit2_domain(chain_id))
    }

    /// The proxy's `settle` call with `signature`: the signed message's parts, as the proxy
    /// takes them.
    pub fn settle_call(&self, signature: Bytes) -> Vec<u8> {
        self.settle_call_with(signature, None)
    }

    /// [`Self::settle_call`], first trying `permit2612` (an EIP-2612 approval of Permit2) when
    /// one rides along.
    pub(crate) fn settle_call_with(
        &self,
        signature: Bytes,
        permit2612: Option<crate::permit2::Permit2612Parts>,
    ) -> Vec<u8> {
        let PermitWitnessTransferFrom {
            permitted,
            nonce,
            deadline,
            witness,
            ..
        } = self.message();
        let permit = PermitTransferFrom {
            permitted,
            nonce,
            deadline,
        };
        if let Some(p) = permit2612 {
            return IExactPermit2Proxy::settleWithPermitCall {
                permit2612: p.into(),
                permit,
                owner: self.from,
                witness,
                signature,
            }
            .abi_encode();
        }
        IExactPermit2Proxy::settleCall {
            permit,
            owner: self.from,
            witness,
            signature,
        }
        .abi_encode()
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
                "permitted": {"token": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "amount": "10000"},
                "spender": "0x402085c248EeA27D92E8b30b2C58ed07f9E20001",
                "nonce": "115792089237316195423570985008687907853269984665640564039457584007913129639935",
                "deadline": "1760000000",
                "witness": {
                    "to": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                    "validAfter": "0"
                }
            }
        })
    }

    #[test]
    fn the_wire_form_round_trips() {
        let payload: ExactPermit2Payload = serde_json::from_value(wire()).unwrap();
        let auth = &payload.permit2_authorization;
        assert_eq!(auth.permitted.amount, U256::from(10_000));
        assert_eq!(auth.nonce, U256::MAX);
        assert_eq!(auth.spender, EXACT_PERMIT2_PROXY);
        let written = serde_json::to_value(&payload).unwrap();
        assert_eq!(
            serde_json::from_value::<ExactPermit2Payload>(written).unwrap(),
            payload
        );
    }

    #[test]
    fn the_typed_data_is_the_proxys_witness_type() {
        assert_eq!(
            PermitWitnessTransferFrom::eip712_encode_type(),
            "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)"
        );
    }

    #[test]
    fn upto_and_eip3009_payloads_do_not_parse() {
        let mut upto = wire();
        upto["permit2Authorization"]["witness"]["facilitator"] =
            json!("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
        assert!(serde_json::from_value::<ExactPermit2Payload>(upto).is_err());
        let eip3009 = json!({"signature": "0x12", "authorization": {}});
        assert!(serde_json::from_value::<ExactPermit2Payload>(eip3009).is_err());
    }
}
