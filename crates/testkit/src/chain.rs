//! A devnet with an `exact` scheme connected to it, and our facilitator serving it.

use std::time::Duration;

use alloy::primitives::{Address, U256};
use serde_json::json;
use x402_devnet::{Devnet, DevnetConfig};
use x402_evm::{ChainConfig, ExactEvmScheme};
use x402_proto::{Scheme, TokenAmount, v2};

/// A devnet and a scheme settling on it with the devnet's facilitator key.
#[derive(Debug)]
pub struct Chain {
    /// The chain.
    pub devnet: Devnet,
    /// The `exact` scheme connected to it.
    pub scheme: ExactEvmScheme,
}

impl Chain {
    /// Starts a devnet (automine) and connects a scheme to it.
    pub async fn start() -> Self {
        Self::start_with(DevnetConfig::default()).await
    }

    /// Starts a devnet that mines a block every `seconds` and connects a scheme to it.
    pub async fn with_block_time(seconds: u64) -> Self {
        Self::start_with(DevnetConfig {
            block_time: Some(seconds),
            ..DevnetConfig::default()
        })
        .await
    }

    /// Starts a devnet with `config` and connects a scheme to it. The scheme allows the
    /// devnet's smart-wallet factory for ERC-6492 payers.
    pub async fn start_with(config: DevnetConfig) -> Self {
        let devnet = Devnet::start(config).await.expect("devnet starts");
        let mut chain = ChainConfig::new(devnet.chain_id(), devnet.rpc_url().clone());
        chain.receipt_timeout = Duration::from_secs(20);
        chain.eip6492_allowed_factories = vec![devnet.wallet_factory()];
        let scheme = ExactEvmScheme::connect(chain, devnet.facilitator().signer.clone())
            .await
            .expect("scheme connects");
        Self { devnet, scheme }
    }

    /// v2 requirements for `amount` atomic units of the devnet token, paid to account 1.
    pub fn requirements(&self, amount: u128) -> v2::PaymentRequirements {
        let token = self.devnet.token();
        v2::PaymentRequirements {
            scheme: Scheme::EXACT,
            network: self.devnet.network(),
            amount: TokenAmount::from_atomic(amount),
            asset: token.address.to_checksum(None),
            pay_to: self.devnet.pay_to().address.to_checksum(None),
            max_timeout_seconds: 60,
            extra: Some(json!({"name": token.name, "version": token.version})),
        }
    }

    /// The devnet token balance of `owner`.
    pub async fn balance(&self, owner: Address) -> U256 {
        self.devnet
            .balance_of(self.devnet.token().address, owner)
            .await
            .expect("balance readable")
    }

    /// The facilitator's transaction count (to prove nothing was sent).
    pub async fn facilitator_tx_count(&self) -> u64 {
        self.devnet
            .transaction_count(self.devnet.facilitator().address)
            .await
            .expect("nonce readable")
    }
}

impl Chain {
    /// An `upto` offer of at most `maximum` atomic units of the devnet's token (signed
    /// payments valid five minutes), naming the devnet facilitator's address for payers to
    /// witness.
    pub fn upto_offer(&self, maximum: u128) -> v2::PaymentRequirements {
        let mut offer = self.requirements(maximum);
        offer.scheme = Scheme::UPTO;
        offer.max_timeout_seconds = 300;
        let extra = offer.extra.get_or_insert_with(|| json!({}));
        extra["assetTransferMethod"] = json!("permit2");
        extra["facilitatorAddress"] = json!(self.devnet.facilitator().address.to_checksum(None));
        offer
    }
}

/// The `/settle` request for `used` atomic units of an `upto` `payload` signed for `offer`.
pub fn upto_usage(
    payload: serde_json::Value,
    offer: &v2::PaymentRequirements,
    used: u128,
) -> x402_proto::PaymentRequest {
    let mut request = crate::request_paying(payload, offer);
    if let x402_proto::PaymentRequest::V2 { requirements, .. } = &mut request {
        requirements.amount = TokenAmount::from_atomic(used);
    }
    request
}
