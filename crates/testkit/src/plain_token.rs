//! A token without EIP-3009 on the devnet (`contracts/src/PlainToken.sol`, a bare ERC-20 with
//! an open `mint`), the `exact` offers that pay it through Permit2, and the official client's
//! signature of such an offer.

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};
use x402_proto::{PaymentRequest, TokenAmount, v2};

use crate::Chain;

/// Where [`Chain::place_plain_token`] puts the plain token.
pub const PLAIN_TOKEN: Address = Address::repeat_byte(0x91);

impl Chain {
    /// Places the plain token at [`PLAIN_TOKEN`] and mints `minted` of it to each of the first
    /// `payers` payers.
    pub async fn place_plain_token(&self, payers: usize, minted: u128) {
        let artifact =
            x402_devnet::Artifact::parse(include_str!("../../../contracts/out/PlainToken.json"))
                .expect("the PlainToken artifact parses");
        self.devnet
            .set_code(PLAIN_TOKEN, artifact.deployed_bytecode)
            .await
            .expect("code placed");
        for payer in &self.devnet.payers()[..payers] {
            self.devnet
                .mint(PLAIN_TOKEN, payer.address, TokenAmount::from_atomic(minted))
                .await
                .expect("minted");
        }
    }

    /// `owner` approves Permit2 for any amount of `token` (a transaction it pays for): what a
    /// payer does once before paying with Permit2.
    pub async fn approve_permit2_for(&self, token: Address, owner: &PrivateKeySigner) {
        self.devnet
            .approve_permit2_for(token, owner)
            .await
            .expect("Permit2 approved");
    }

    /// An `exact` offer of `price` atomic units of the plain token, paid through Permit2
    /// (`extra.assetTransferMethod: "permit2"`), to the devnet's payee.
    pub fn plain_token_offer(&self, price: u128) -> v2::PaymentRequirements {
        v2::PaymentRequirements {
            asset: PLAIN_TOKEN.to_checksum(None),
            max_timeout_seconds: 300,
            extra: Some(json!({"assetTransferMethod": "permit2"})),
            ..self.requirements(price)
        }
    }
}

impl crate::Stack {
    /// A devnet and our facilitator accepting the plain token beside the devnet's USDC; the
    /// token placed, `minted` of it given to each of the first `payers` payers, who approved
    /// Permit2 for it.
    pub async fn with_plain_token(payers: usize, minted: u128) -> Self {
        let chain = Chain::start().await;
        let usdc = chain.devnet.token();
        let accepted = format!(
            "[[networks.assets]]\naddress = \"{}\"\nname = \"{}\"\nversion = \"{}\"\ndecimals = 6\n\
             [[networks.assets]]\naddress = \"{}\"\nname = \"Plain\"\nversion = \"1\"\ndecimals = 6\n",
            usdc.address, usdc.name, usdc.version, PLAIN_TOKEN
        );
        let stack = Self::on_chain(chain, "", &accepted).await;
        stack.chain.place_plain_token(payers, minted).await;
        for payer in &stack.chain.devnet.payers()[..payers] {
            stack
                .chain
                .approve_permit2_for(PLAIN_TOKEN, &payer.signer)
                .await;
        }
        stack
    }
}

/// The official client's scheme payload for `requirements`, signed by `signer`
/// (`tools/interop/official-exact-sign.mjs`: `@x402/evm` 2.27's exact client, which
/// `@x402/fetch` registers; Permit2 for offers that ask for it).
pub async fn official_exact_payload(
    requirements: &v2::PaymentRequirements,
    signer: &PrivateKeySigner,
) -> Value {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("node")
        .arg(crate::interop_dir().join("official-exact-sign.mjs"))
        .env("PRIVATE_KEY", signer.to_bytes().to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().expect("stdin piped");
    stdin
        .write_all(&serde_json::to_vec(requirements).expect("requirements serialize"))
        .await
        .expect("requirements written");
    drop(stdin);
    let output = child.wait_with_output().await.expect("node ends");
    assert!(output.status.success(), "the official client did not sign");
    let signed: Value = serde_json::from_slice(&output.stdout).expect("it prints JSON");
    signed["payload"].clone()
}

/// The `/verify` or `/settle` request carrying scheme `payload` for `requirements` (x402 v2).
pub fn request_paying(payload: Value, requirements: &v2::PaymentRequirements) -> PaymentRequest {
    serde_json::from_value(json!({
        "x402Version": 2,
        "paymentPayload": {"x402Version": 2, "accepted": requirements, "payload": payload},
        "paymentRequirements": requirements,
    }))
    .expect("a v2 request")
}
