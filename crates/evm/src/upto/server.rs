//! `upto` as a server's scheme plug-in: offers carry what the facilitator advertises for the
//! kind (`facilitatorAddress`), and the amount settled is the usage the handler reported, or
//! the whole maximum when it reported none (as official servers settle without an override).
//! A payment must be settled before its Permit2 `deadline` (less the facilitators' buffer):
//! [`SchemeServer::settle_by`] says when, so that a metered stream is cut off in time.

use serde::Deserialize as _;
use serde_json::Value;
use x402_proto::{Scheme, SchemeServer, U256, v2};

use super::UptoPayload;
use crate::permit2::DEADLINE_BUFFER_SECS;

/// The server side of `upto` on EVM.
#[derive(Debug, Clone, Copy, Default)]
pub struct UptoEvmServer;

impl SchemeServer for UptoEvmServer {
    fn scheme(&self) -> Scheme {
        Scheme::UPTO
    }

    fn settlement_amount(&self, paid: &v2::PaymentRequirements, used: Option<U256>) -> U256 {
        used.unwrap_or(paid.amount.0)
    }

    /// The permit's `deadline` less the seconds facilitators refuse a permit within
    /// (`None` for a payload that is not an `upto` one, which no facilitator verifies).
    fn settle_by(&self, payload: &Value) -> Option<u64> {
        let payload = UptoPayload::deserialize(payload).ok()?;
        let deadline = payload.permit2_authorization.deadline;
        let deadline = u64::try_from(deadline).unwrap_or(u64::MAX);
        Some(deadline.saturating_sub(DEADLINE_BUFFER_SECS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usage_is_settled_and_no_report_settles_the_maximum() {
        let paid: v2::PaymentRequirements = serde_json::from_value(serde_json::json!({
            "scheme": "upto", "network": "eip155:8453", "amount": "20000", "maxTimeoutSeconds": 300,
            "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
            "payTo": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        }))
        .unwrap();
        assert_eq!(
            UptoEvmServer.settlement_amount(&paid, Some(U256::from(1_858))),
            U256::from(1_858)
        );
        assert_eq!(
            UptoEvmServer.settlement_amount(&paid, Some(U256::ZERO)),
            U256::ZERO
        );
        assert_eq!(
            UptoEvmServer.settlement_amount(&paid, None),
            U256::from(20_000)
        );
    }

    #[test]
    fn a_payment_settles_by_its_deadline_less_the_facilitators_buffer() {
        // As the official client signs: the deadline at the offer's timeout from now.
        let payload = |deadline: &str| {
            serde_json::json!({
                "signature": "0x1234",
                "permit2Authorization": {
                    "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
                    "permitted": {"token": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "amount": "20000"},
                    "spender": "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002",
                    "nonce": "7",
                    "deadline": deadline,
                    "witness": {
                        "to": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                        "facilitator": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
                        "validAfter": "0"
                    }
                }
            })
        };
        let signed_at = 1_760_000_000u64;
        let deadline = (signed_at + 300).to_string();
        assert_eq!(
            UptoEvmServer.settle_by(&payload(&deadline)),
            Some(signed_at + 300 - DEADLINE_BUFFER_SECS)
        );
        assert_eq!(UptoEvmServer.settle_by(&payload("3")), Some(0));
        let far = U256::MAX.to_string();
        assert_eq!(UptoEvmServer.settle_by(&payload(&far)), Some(u64::MAX - 6));
        assert_eq!(
            UptoEvmServer.settle_by(&serde_json::json!({"authorization": {}})),
            None
        );
    }
}
