//! `upto` as a server's scheme plug-in: offers carry what the facilitator advertises for the
//! kind (`facilitatorAddress`), and the amount settled is the usage the handler reported, or
//! the whole maximum when it reported none (as official servers settle without an override).

use x402_proto::{Scheme, SchemeServer, U256, v2};

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
}
