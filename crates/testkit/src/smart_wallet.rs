//! Smart-wallet payers: deployed (ERC-1271) and counterfactual (ERC-6492).

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use x402_devnet::Devnet;
use x402_evm::{Erc6492Deployment, ExactEvmPayload, wrap_erc6492};
use x402_proto::{V2, v2};

use crate::*;

/// One of our minimal ERC-1271 wallets (`X402Wallet`) on the devnet, deployed or not.
#[derive(Clone, Debug)]
pub struct SmartWallet {
    /// The wallet's address (its counterfactual address while not deployed).
    pub address: Address,
    /// The key that signs for the wallet (the owner's, or another key for a wallet that
    /// should refuse).
    pub signer: PrivateKeySigner,
    /// The call that deploys it through its factory (what an ERC-6492 signature carries).
    pub deployment: Erc6492Deployment,
}

impl SmartWallet {
    /// A wallet owned by `owner` from the devnet factory, with a random salt, not deployed.
    pub async fn counterfactual(devnet: &Devnet, owner: &PrivateKeySigner) -> Self {
        Self::counterfactual_from(devnet, devnet.wallet_factory(), owner).await
    }

    /// Like [`Self::counterfactual`], from a factory at `factory` (a copy of the devnet's).
    pub async fn counterfactual_from(
        devnet: &Devnet,
        factory: Address,
        owner: &PrivateKeySigner,
    ) -> Self {
        let salt = B256::random();
        let calldata = Devnet::create_wallet_calldata(owner.address(), salt);
        let address = devnet
            .wallet_address_from(factory, owner.address(), salt)
            .await
            .expect("factory answers walletAddress");
        Self {
            address,
            signer: owner.clone(),
            deployment: Erc6492Deployment {
                factory,
                factory_calldata: calldata,
            },
        }
    }

    /// A wallet owned by `owner`, deployed through the devnet factory.
    pub async fn deployed(devnet: &Devnet, owner: &PrivateKeySigner) -> Self {
        let wallet = Self::counterfactual(devnet, owner).await;
        wallet.deploy(devnet).await;
        wallet
    }

    /// Deploys the wallet by sending its factory call from the devnet's account 0.
    pub async fn deploy(&self, devnet: &Devnet) {
        use alloy::network::TransactionBuilder;
        use alloy::providers::Provider;
        let tx = alloy::rpc::types::TransactionRequest::default()
            .with_to(self.deployment.factory)
            .with_input(self.deployment.factory_calldata.clone());
        let receipt = devnet
            .provider()
            .send_transaction(tx)
            .await
            .expect("deployment sent")
            .get_receipt()
            .await
            .expect("deployment mined");
        assert!(receipt.status(), "wallet deployment reverted");
        assert!(devnet.has_code(self.address).await.expect("code readable"));
    }

    /// The same wallet, but signing with `signer` instead of its owner's key.
    pub fn signing_with(&self, signer: &PrivateKeySigner) -> Self {
        Self {
            signer: signer.clone(),
            ..self.clone()
        }
    }

    /// An ERC-1271 payment from the wallet: the authorization is from the wallet, and the
    /// signature is the signing key's signature of its EIP-712 digest (which `X402Wallet`
    /// accepts from its owner).
    pub fn payment(&self, requirements: &v2::PaymentRequirements) -> ExactEvmPayload {
        let authorization = authorization_for(self.address, requirements);
        let signature = sign_for(&self.signer, &authorization, requirements);
        ExactEvmPayload {
            signature,
            authorization,
        }
    }

    /// Like [`Self::payment`], with the signature wrapped in ERC-6492 (factory, calldata),
    /// as a wallet that is not deployed yet signs.
    pub fn counterfactual_payment(
        &self,
        requirements: &v2::PaymentRequirements,
    ) -> ExactEvmPayload {
        let mut payload = self.payment(requirements);
        payload.signature = wrap_erc6492(
            self.deployment.factory,
            &self.deployment.factory_calldata,
            &payload.signature,
        );
        payload
    }
}

impl SmartWallet {
    /// The `PAYMENT-SIGNATURE` header value that pays the first option of a v2 challenge
    /// from this wallet, ERC-6492 wrapped when `counterfactual`.
    pub fn pay_challenge(&self, challenge: &v2::PaymentRequired, counterfactual: bool) -> String {
        let requirements = &challenge.accepts[0];
        let exact = if counterfactual {
            self.counterfactual_payment(requirements)
        } else {
            self.payment(requirements)
        };
        let payment = v2::PaymentPayload {
            x402_version: V2::default(),
            resource: Some(challenge.resource.clone()),
            accepted: requirements.clone(),
            payload: serde_json::to_value(&exact).expect("payload serializes"),
            extensions: None,
        };
        x402_proto::encode_header(&payment)
    }
}
