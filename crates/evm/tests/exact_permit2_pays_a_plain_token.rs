//! `exact` with Permit2 on a token without EIP-3009 (a plain ERC-20 placed on the devnet),
//! through the built-in `exact` facilitator, which hands `permit2Authorization` payloads to
//! its Permit2 path: our client's payment verifies and settles exactly the price, once; every
//! refusal carries the official code, the same verdict the official facilitator library
//! (`@x402/evm` 2.27) gives; and the official client's payment settles too.

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};
use x402_evm::exact_permit2::{ExactPermit2Client, ExactPermit2Payload};
use x402_evm::{ExactEvmClient, ExactEvmFacilitator, unix_now};
use x402_proto::{Facilitator, PaymentRequest, ReasonCode, SchemeClient, VerifyResponse, v2};
use x402_testkit::{Chain, PLAIN_TOKEN, official_exact_payload, request_paying};

/// What each payer is minted.
const MINTED: u128 = 1_000_000;

/// A devnet with a plain ERC-20, an `exact` Permit2 offer for it, and our facilitator.
struct PlainToken {
    chain: Chain,
    facilitator: ExactEvmFacilitator,
    requirements: v2::PaymentRequirements,
}

impl PlainToken {
    /// Places the token; mints to payers 0 and 1; payer 0 approves Permit2 (payer 1 does not).
    async fn start(price: u128) -> Self {
        let chain = Chain::start().await;
        chain.place_plain_token(2, MINTED).await;
        chain
            .approve_permit2_for(PLAIN_TOKEN, &chain.devnet.payers()[0].signer)
            .await;
        let requirements = chain.plain_token_offer(price);
        Self {
            facilitator: ExactEvmFacilitator::new(chain.scheme.clone()),
            chain,
            requirements,
        }
    }

    fn payer(&self, index: usize) -> &PrivateKeySigner {
        &self.chain.devnet.payers()[index].signer
    }

    /// Payer `index`'s payment, signed by our client through its `SchemeClient` face.
    async fn sign(&self, index: usize) -> Value {
        let client = ExactPermit2Client::new(self.payer(index).clone());
        assert!(client.can_pay(&self.requirements));
        client
            .sign(&self.requirements, unix_now())
            .await
            .unwrap()
            .payload
    }

    /// The request carrying `payload` for the offer.
    fn request(&self, payload: Value) -> PaymentRequest {
        request_paying(payload, &self.requirements)
    }

    async fn verify(&self, payload: Value) -> VerifyResponse {
        self.facilitator
            .verify(&self.request(payload))
            .await
            .unwrap()
    }

    async fn balance(&self, owner: Address) -> U256 {
        self.chain
            .devnet
            .balance_of(PLAIN_TOKEN, owner)
            .await
            .unwrap()
    }

    /// Asserts that each case's payload is refused with its code at verify (the official
    /// facilitator library's verdict too) and at settle, and that nothing is sent.
    async fn assert_refused(&self, cases: &[(&str, Value, ReasonCode)]) {
        let requests: Vec<PaymentRequest> = cases
            .iter()
            .map(|(_, payload, _)| self.request(payload.clone()))
            .collect();
        let official = x402_testkit::official_verify(
            &self.chain.devnet,
            &requests.iter().collect::<Vec<_>>(),
            &[],
        )
        .await;
        let sent_before = self.chain.facilitator_tx_count().await;
        for (((name, _, code), request), theirs) in cases.iter().zip(&requests).zip(&official) {
            let verdict = self.facilitator.verify(request).await.unwrap();
            assert_eq!(
                verdict.invalid_reason.as_ref(),
                Some(code),
                "{name}: {verdict:?}"
            );
            let ours = serde_json::to_value(&verdict).unwrap();
            x402_testkit::assert_same_verdict(name, &ours, theirs);
            let receipt = self.facilitator.settle(request, None).await.unwrap();
            assert_eq!(
                receipt.error_reason.as_ref(),
                Some(code),
                "{name}: {receipt:?}"
            );
        }
        assert_eq!(self.chain.facilitator_tx_count().await, sent_before);
    }

    fn pay_to(&self) -> Address {
        self.chain.devnet.pay_to().address
    }
}

#[tokio::test]
async fn our_payment_settles_exactly_the_price_once() {
    let plain = PlainToken::start(12_345).await;
    let payer = plain.chain.devnet.payers()[0].address;
    let payload = plain.sign(0).await;
    let typed: ExactPermit2Payload = serde_json::from_value(payload.clone()).unwrap();
    assert_eq!(
        typed.permit2_authorization.spender,
        x402_evm::exact_permit2::EXACT_PERMIT2_PROXY
    );

    let verdict = plain.verify(payload.clone()).await;
    assert!(verdict.is_valid, "{verdict:?}");
    assert_eq!(verdict.payer, Some(payer.to_checksum(None)));
    // Its identity is the payer's Permit2 nonce; another payment is another.
    let id = plain
        .facilitator
        .payment_id(&plain.request(payload.clone()));
    let other = plain
        .facilitator
        .payment_id(&plain.request(plain.sign(0).await));
    assert!(
        id.is_ok() && other.is_ok() && id != other,
        "{id:?} {other:?}"
    );

    let (paid_before, held_before) = (
        plain.balance(plain.pay_to()).await,
        plain.balance(payer).await,
    );
    let sent_before = plain.chain.facilitator_tx_count().await;
    let request = plain.request(payload.clone());
    let receipt = plain.facilitator.settle(&request, None).await.unwrap();
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(receipt.transaction.len(), 66);
    assert_eq!(receipt.payer, Some(payer.to_checksum(None)));
    assert_eq!(
        plain.balance(plain.pay_to()).await,
        paid_before + U256::from(12_345)
    );
    assert_eq!(plain.balance(payer).await, held_before - U256::from(12_345));
    assert_eq!(plain.chain.facilitator_tx_count().await, sent_before + 1);

    // The same permit again: Permit2 spent its nonce; nothing is sent, nothing moves.
    let again = plain.facilitator.settle(&request, None).await.unwrap();
    assert!(!again.success, "{again:?}");
    assert_eq!(again.error_reason, Some(ReasonCode::PERMIT2_INVALID_NONCE));
    // Verify names the spent nonce too (the official facilitator says only that the
    // simulation failed), so a server can ask for the receipt of a lost answer.
    let verdict = plain.verify(payload).await;
    assert_eq!(
        verdict.invalid_reason,
        Some(ReasonCode::PERMIT2_INVALID_NONCE),
        "{verdict:?}"
    );
    assert_eq!(
        plain.balance(plain.pay_to()).await,
        paid_before + U256::from(12_345)
    );
    assert_eq!(plain.chain.facilitator_tx_count().await, sent_before + 1);
}

#[tokio::test]
async fn refusals_carry_the_official_codes_and_verdicts() {
    let plain = PlainToken::start(1_000).await;
    let payload = plain.sign(0).await;
    let stranger = Address::repeat_byte(0x77).to_checksum(None);
    let other_token = plain.chain.devnet.token().address.to_checksum(None);
    let later = (unix_now() + 86_400).to_string();
    let soon = (unix_now() + 2).to_string();
    let by_another_key = plain.sign(1).await["signature"].clone();
    let edit = |path: &str, value: Value| {
        let mut edited = payload.clone();
        *edited.pointer_mut(path).unwrap() = value;
        edited
    };
    let cases = [
        (
            "spender",
            edit("/permit2Authorization/spender", json!(stranger)),
            ReasonCode::PERMIT2_INVALID_SPENDER,
        ),
        (
            "payee",
            edit("/permit2Authorization/witness/to", json!(stranger)),
            ReasonCode::PERMIT2_RECIPIENT_MISMATCH,
        ),
        (
            "deadline",
            edit("/permit2Authorization/deadline", json!(soon)),
            ReasonCode::PERMIT2_DEADLINE_EXPIRED,
        ),
        (
            "validAfter",
            edit("/permit2Authorization/witness/validAfter", json!(later)),
            ReasonCode::PERMIT2_NOT_YET_VALID,
        ),
        (
            "amount",
            edit("/permit2Authorization/permitted/amount", json!("999")),
            ReasonCode::PERMIT2_AMOUNT_MISMATCH,
        ),
        (
            "token",
            edit("/permit2Authorization/permitted/token", json!(other_token)),
            ReasonCode::PERMIT2_TOKEN_MISMATCH,
        ),
        (
            "nonce",
            edit("/permit2Authorization/nonce", json!("12345")),
            ReasonCode::PERMIT2_INVALID_SIGNATURE,
        ),
        (
            "signer",
            edit("/signature", by_another_key),
            ReasonCode::PERMIT2_INVALID_SIGNATURE,
        ),
    ];
    plain.assert_refused(&cases).await;
}

#[tokio::test]
async fn a_payer_without_an_allowance_is_told_to_approve_permit2() {
    let plain = PlainToken::start(1_000).await;
    // Payer 1 holds the token but never approved Permit2; payer 2 approved but holds none.
    plain
        .chain
        .approve_permit2_for(PLAIN_TOKEN, plain.payer(2))
        .await;
    let cases = [
        (
            "no allowance",
            plain.sign(1).await,
            ReasonCode::PERMIT2_ALLOWANCE_REQUIRED,
        ),
        (
            "no balance",
            plain.sign(2).await,
            ReasonCode::PERMIT2_INSUFFICIENT_BALANCE,
        ),
    ];
    plain.assert_refused(&cases).await;
}

#[tokio::test]
async fn the_official_clients_permit2_payment_settles() {
    let plain = PlainToken::start(4_200).await;
    let payer = plain.chain.devnet.payers()[0].address;
    let payload = official_exact_payload(&plain.requirements, plain.payer(0)).await;
    assert!(payload.get("permit2Authorization").is_some(), "{payload}");
    let before = plain.balance(plain.pay_to()).await;
    let request = plain.request(payload);
    let verdict = plain.facilitator.verify(&request).await.unwrap();
    assert!(verdict.is_valid, "{verdict:?}");
    let receipt = plain.facilitator.settle(&request, None).await.unwrap();
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(receipt.payer, Some(payer.to_checksum(None)));
    assert_eq!(
        plain.balance(plain.pay_to()).await,
        before + U256::from(4_200)
    );
}

#[tokio::test]
async fn the_plain_token_cannot_pay_through_eip3009_and_offers_pick_their_client() {
    let plain = PlainToken::start(1_000).await;
    let eip3009_offer = v2::PaymentRequirements {
        extra: Some(json!({"name": "Plain Token", "version": "1"})),
        ..plain.requirements.clone()
    };
    // Our Permit2 client pays only offers that ask for Permit2.
    let permit2_client = ExactPermit2Client::new(plain.payer(0).clone());
    assert!(!permit2_client.can_pay(&eip3009_offer));
    assert!(!permit2_client.can_pay(&plain.chain.requirements(1_000)));
    // An EIP-3009 payment for the plain token is refused: it has no transferWithAuthorization.
    let signed = ExactEvmClient::new(plain.payer(0).clone())
        .sign(&eip3009_offer, unix_now())
        .await
        .unwrap();
    let request = request_paying(signed.payload, &eip3009_offer);
    let verdict = plain.facilitator.verify(&request).await.unwrap();
    assert_eq!(
        verdict.invalid_reason,
        Some(ReasonCode::EXACT_EVM_EIP3009_NOT_SUPPORTED),
        "{verdict:?}"
    );
}
