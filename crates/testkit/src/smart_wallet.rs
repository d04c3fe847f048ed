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
        let input = self.deployment.factory_calldata.clone();
        send_from_account_0(devnet, self.deployment.factory, input, "wallet deployment").await;
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

/// Gas left that [`Chain::place_gas_sensitive_wallet`]'s wallet asks for by default: more than
/// any settlement transaction gives it, less than a node's `eth_call` without a gas limit.
pub const GAS_SENSITIVE_MIN_GAS_LEFT: u64 = 1_000_000;

impl Chain {
    /// Places a `GasSensitiveWallet` (`contracts/src/GasSensitiveWallet.sol`) at a random
    /// address: it accepts `owner`'s signatures only while more than `min_gas_left` gas is
    /// left, holds `minted` of the devnet token and has approved Permit2 for it. Its
    /// initialization is sent from the facilitator account: place it before settling.
    pub async fn place_gas_sensitive_wallet(
        &self,
        owner: &PrivateKeySigner,
        min_gas_left: u64,
        minted: u128,
    ) -> Address {
        use alloy::sol_types::SolCall;
        alloy::sol! {
            function initialize(address owner_, uint256 minGasLeft_, address token) external;
        }
        let artifact = x402_devnet::Artifact::parse(include_str!(
            "../../../contracts/out/GasSensitiveWallet.json"
        ))
        .expect("the GasSensitiveWallet artifact parses");
        let wallet = Address::random();
        let devnet = &self.devnet;
        devnet
            .set_code(wallet, artifact.deployed_bytecode)
            .await
            .expect("code placed");
        let token = devnet.token().address;
        let init = initializeCall {
            owner_: owner.address(),
            minGasLeft_: alloy::primitives::U256::from(min_gas_left),
            token,
        };
        send_from_account_0(devnet, wallet, init.abi_encode(), "wallet initialization").await;
        devnet.fund(wallet, minted).await.expect("minted");
        wallet
    }
}

/// Sends a call of `to` with `input` from the devnet's account 0 and waits until it is mined;
/// panics naming `what` unless it succeeded.
async fn send_from_account_0(
    devnet: &Devnet,
    to: Address,
    input: impl Into<alloy::primitives::Bytes>,
    what: &str,
) {
    use alloy::network::TransactionBuilder;
    use alloy::providers::Provider;
    let tx = alloy::rpc::types::TransactionRequest::default()
        .with_to(to)
        .with_input(input.into());
    let receipt = devnet
        .provider()
        .send_transaction(tx)
        .await
        .unwrap_or_else(|e| panic!("{what} not sent: {e}"))
        .get_receipt()
        .await
        .unwrap_or_else(|e| panic!("{what} not mined: {e}"));
    assert!(receipt.status(), "{what} reverted");
}
