//! Helpers shared by the workspace's integration tests: a devnet with an `exact` scheme
//! connected to it, and builders for honest and dishonest payments.

use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use serde_json::json;
use x402_devnet::{Devnet, DevnetConfig};
use x402_evm::{
    Authorization, ChainConfig, Erc6492Deployment, ExactEvmPayload, ExactEvmScheme,
    authorization_digest, eip712_domain, unix_now, wrap_erc6492,
};
use x402_proto::{PaymentRequest, Scheme, TokenAmount, V1, V2, v1, v2};

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

/// An honest authorization by `payer` for `requirements`, valid from 10 minutes ago for
/// `maxTimeoutSeconds`.
pub fn authorization_for(payer: Address, requirements: &v2::PaymentRequirements) -> Authorization {
    let now = unix_now();
    Authorization {
        from: payer,
        to: requirements.pay_to.parse().expect("payTo is an address"),
        value: requirements.amount.0,
        valid_after: U256::from(now - 600),
        valid_before: U256::from(now + requirements.max_timeout_seconds),
        nonce: B256::random(),
    }
}

/// Signs `authorization` under an explicit EIP-712 domain.
pub fn sign_with_domain(
    signer: &PrivateKeySigner,
    authorization: &Authorization,
    name: &str,
    version: &str,
    chain_id: u64,
    token: Address,
) -> Bytes {
    let digest = authorization_digest(
        authorization,
        &eip712_domain(name, version, chain_id, token),
    );
    let signature = signer.sign_hash_sync(&digest).expect("local signing works");
    signature.as_bytes().to_vec().into()
}

/// Signs `authorization` under the domain `requirements` describe.
pub fn sign_for(
    signer: &PrivateKeySigner,
    authorization: &Authorization,
    requirements: &v2::PaymentRequirements,
) -> Bytes {
    let extra = requirements.extra.as_ref().expect("extra present");
    sign_with_domain(
        signer,
        authorization,
        extra["name"].as_str().expect("name"),
        extra["version"].as_str().expect("version"),
        requirements.network.evm_chain_id().expect("EVM network"),
        requirements.asset.parse().expect("asset is an address"),
    )
}

/// A v2 facilitator request carrying `payload` against `requirements` (accepted = requirements).
pub fn v2_request(
    payload: &ExactEvmPayload,
    requirements: &v2::PaymentRequirements,
) -> PaymentRequest {
    PaymentRequest::V2 {
        payload: v2::PaymentPayload {
            x402_version: V2::default(),
            resource: None,
            accepted: requirements.clone(),
            payload: serde_json::to_value(payload).expect("payload serializes"),
            extensions: None,
        },
        requirements: requirements.clone(),
    }
}

/// A v1 facilitator request carrying `payload` against the v1 form of `requirements`.
pub fn v1_request(
    payload: &ExactEvmPayload,
    requirements: &v2::PaymentRequirements,
) -> PaymentRequest {
    let resource = v2::ResourceInfo {
        url: "http://127.0.0.1/test".into(),
        description: Some("test".into()),
        mime_type: None,
    };
    let v1_requirements =
        v1::PaymentRequirements::from_v2(requirements, &resource).expect("network has a v1 name");
    PaymentRequest::V1 {
        payload: v1::PaymentPayload {
            x402_version: V1::default(),
            scheme: Scheme::EXACT,
            network: v1_requirements.network.clone(),
            payload: serde_json::to_value(payload).expect("payload serializes"),
        },
        requirements: v1_requirements,
    }
}

/// An honest, signed v2 payment by `payer`.
pub fn honest_payment(
    payer: &PrivateKeySigner,
    requirements: &v2::PaymentRequirements,
) -> ExactEvmPayload {
    let authorization = authorization_for(payer.address(), requirements);
    let signature = sign_for(payer, &authorization, requirements);
    ExactEvmPayload {
        signature,
        authorization,
    }
}

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

/// Which protocol version a test client pays with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// `X-PAYMENT`, requirements from the v1 JSON body.
    V1,
    /// `PAYMENT-SIGNATURE`, requirements from the `PAYMENT-REQUIRED` header.
    V2,
}

/// The v2 challenge in a 402's `PAYMENT-REQUIRED` header.
pub fn challenge_of(headers: &reqwest::header::HeaderMap) -> v2::PaymentRequired {
    let header = headers
        .get("payment-required")
        .expect("a 402 carries PAYMENT-REQUIRED");
    x402_proto::decode_header(header.as_bytes()).expect("PAYMENT-REQUIRED decodes")
}

/// Reads a 402 and signs a payment for its first accepted option, as a client of `wire`
/// would: returns the header name and value to retry with.
pub async fn payment_for(
    response: reqwest::Response,
    payer: &PrivateKeySigner,
    wire: Wire,
) -> (&'static str, String) {
    assert_eq!(response.status(), 402, "expected a 402 challenge");
    let now = unix_now();
    match wire {
        Wire::V2 => {
            let challenge = challenge_of(response.headers());
            let payment = x402_evm::sign_payment(
                payer,
                &challenge.accepts[0],
                Some(challenge.resource.clone()),
                now,
            )
            .await
            .expect("signs");
            ("PAYMENT-SIGNATURE", x402_proto::encode_header(&payment))
        }
        Wire::V1 => {
            let body: v1::PaymentRequired = response.json().await.expect("v1 JSON challenge");
            let payment = x402_evm::sign_payment_v1(payer, &body.accepts[0], now)
                .await
                .expect("signs");
            ("X-PAYMENT", x402_proto::encode_header(&payment))
        }
    }
}

/// The settlement receipt of a response, from `PAYMENT-RESPONSE` or `X-PAYMENT-RESPONSE`.
pub fn receipt_of(headers: &reqwest::header::HeaderMap) -> Option<x402_proto::SettleResponse> {
    let header = headers
        .get("payment-response")
        .or_else(|| headers.get("x-payment-response"))?;
    Some(x402_proto::decode_header(header.as_bytes()).expect("receipt decodes"))
}

/// Differently encoded copies of one payment header (base64 JSON of a `PaymentPayload`), all
/// carrying the same authorization and signature, as an attacker would send them: signature
/// and nonce hex in upper case, the payer in lower case, an extra field in `payload` and at
/// the top level, keys reordered, whitespace, and a space-padded base64. `count` copies,
/// the original first.
pub fn reencodings(header: &str, count: usize) -> Vec<String> {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let json: serde_json::Value =
        serde_json::from_slice(&engine.decode(header).expect("base64 header")).expect("JSON");
    let upper_hex = |value: &serde_json::Value| {
        let text = value.as_str().expect("hex string");
        serde_json::Value::String(format!("0x{}", text[2..].to_uppercase()))
    };
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let variants: Vec<Edit> = vec![
        Box::new(|_| {}),
        Box::new(move |p| p["payload"]["signature"] = upper_hex(&p["payload"]["signature"])),
        Box::new(move |p| {
            p["payload"]["authorization"]["nonce"] =
                upper_hex(&p["payload"]["authorization"]["nonce"]);
        }),
        Box::new(|p| p["payload"]["note"] = json!("a field the signature does not cover")),
        Box::new(|p| {
            let from = p["payload"]["authorization"]["from"]
                .as_str()
                .unwrap()
                .to_lowercase();
            p["payload"]["authorization"]["from"] = json!(from);
        }),
        Box::new(|p| p["unrelated"] = json!({"x": 1})),
        Box::new(move |p| {
            p["payload"]["signature"] = upper_hex(&p["payload"]["signature"]);
            p["payload"]["authorization"]["nonce"] =
                upper_hex(&p["payload"]["authorization"]["nonce"]);
            p["payload"]["extra"] = json!([1, 2, 3]);
        }),
    ];
    let mut copies = Vec::with_capacity(count);
    for i in 0..count {
        let mut copy = json.clone();
        variants[i % variants.len()](&mut copy);
        let text = if i >= variants.len() {
            // Past the variants: the same JSON pretty-printed, keys in another layout.
            serde_json::to_string_pretty(&copy).unwrap()
        } else {
            serde_json::to_string(&copy).unwrap()
        };
        copies.push(engine.encode(text));
    }
    copies
}

/// A facilitator that answers from a script, for tests of servers without a chain. Each call
/// takes the next scripted answer; the last one repeats. Every settle call's idempotency key is
/// recorded.
#[derive(Debug)]
pub struct MockFacilitator {
    verify: std::sync::Mutex<std::collections::VecDeque<MockAnswer<x402_proto::VerifyResponse>>>,
    settle: std::sync::Mutex<std::collections::VecDeque<MockAnswer<x402_proto::SettleResponse>>>,
    /// How many verify calls were made.
    pub verify_calls: std::sync::atomic::AtomicUsize,
    /// The idempotency key of every settle call, in order.
    pub settle_keys: std::sync::Mutex<Vec<Option<x402_proto::IdempotencyKey>>>,
}

/// One scripted answer: a response, or no answer at all.
pub type MockAnswer<T> = Result<T, x402_proto::FacilitatorError>;

/// The payer every mock answer names.
pub const MOCK_PAYER: &str = "0x857b06519E91e3A54538791bDbb0E22373e36b66";

impl Default for MockFacilitator {
    /// Every payment valid, every settlement a success.
    fn default() -> Self {
        Self::new(
            vec![Ok(x402_proto::VerifyResponse::valid(MOCK_PAYER))],
            vec![Ok(mock_settled("0xabc"))],
        )
    }
}

impl MockFacilitator {
    /// A facilitator answering verify and settle calls from these scripts.
    pub fn new(
        verify: Vec<MockAnswer<x402_proto::VerifyResponse>>,
        settle: Vec<MockAnswer<x402_proto::SettleResponse>>,
    ) -> Self {
        Self {
            verify: std::sync::Mutex::new(verify.into()),
            settle: std::sync::Mutex::new(settle.into()),
            verify_calls: Default::default(),
            settle_keys: Default::default(),
        }
    }

    fn next<T: Clone>(
        script: &std::sync::Mutex<std::collections::VecDeque<MockAnswer<T>>>,
    ) -> MockAnswer<T> {
        let mut script = script.lock().expect("mock script lock");
        if script.len() > 1 {
            script.pop_front().expect("non-empty script")
        } else {
            script.front().cloned().expect("a scripted answer")
        }
    }

    /// How many settle calls were made.
    pub fn settle_calls(&self) -> usize {
        self.settle_keys.lock().expect("mock lock").len()
    }
}

/// A successful settlement receipt with transaction `tx`, on Base.
pub fn mock_settled(tx: &str) -> x402_proto::SettleResponse {
    x402_proto::SettleResponse::success(x402_proto::Network::BASE, Some(MOCK_PAYER.to_owned()), tx)
}

impl x402_proto::Facilitator for MockFacilitator {
    fn verify<'a>(
        &'a self,
        _request: &'a PaymentRequest,
    ) -> x402_proto::BoxFuture<'a, Result<x402_proto::VerifyResponse, x402_proto::FacilitatorError>>
    {
        self.verify_calls
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let answer = Self::next(&self.verify);
        Box::pin(async move { answer })
    }

    fn settle<'a>(
        &'a self,
        _request: &'a PaymentRequest,
        idempotency_key: Option<&'a x402_proto::IdempotencyKey>,
    ) -> x402_proto::BoxFuture<'a, Result<x402_proto::SettleResponse, x402_proto::FacilitatorError>>
    {
        self.settle_keys
            .lock()
            .expect("mock lock")
            .push(idempotency_key.cloned());
        let answer = Self::next(&self.settle);
        Box::pin(async move { answer })
    }

    fn supported(
        &self,
    ) -> x402_proto::BoxFuture<
        '_,
        Result<x402_proto::SupportedResponse, x402_proto::FacilitatorError>,
    > {
        Box::pin(async { Ok(x402_proto::SupportedResponse::default()) })
    }
}

/// A well-formed `exact` payment header for `accepted` (from a challenge) whose signature is
/// not real: for servers in front of a [`MockFacilitator`]. `nonce` tells payments apart.
pub fn mock_payment_header(accepted: &v2::PaymentRequirements, nonce: u8) -> String {
    let payment = json!({
        "x402Version": 2,
        "accepted": accepted,
        "payload": {
            "signature": format!("0x{}", "11".repeat(65)),
            "authorization": {
                "from": MOCK_PAYER,
                "to": accepted.pay_to,
                "value": accepted.amount.to_string(),
                "validAfter": "0",
                "validBefore": "99999999999",
                "nonce": format!("0x{}", format!("{nonce:02x}").repeat(32)),
            }
        }
    });
    x402_proto::encode_header(&payment)
}

/// Our facilitator serving `chain` over HTTP on a free loopback port, with its settlement log
/// in `dir` and default settings: what most tests settle through.
pub async fn start_facilitator(
    chain: &Chain,
    dir: &std::path::Path,
) -> x402_facilitator::RunningFacilitator {
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\n[[networks]]\nchain_id = {}\nrpc_url = \"{}\"\n",
        dir.join("facilitator.db").display(),
        chain.devnet.chain_id(),
        chain.devnet.rpc_url(),
    );
    let config = x402_facilitator::FacilitatorConfig::parse(&text, std::iter::empty())
        .expect("the test facilitator config parses");
    x402_facilitator::start(&config, chain.devnet.facilitator().signer.clone())
        .await
        .expect("the test facilitator starts")
}
