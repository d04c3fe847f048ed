//! `upto` on a real chain with the real Permit2 and our proxy: the payer signs a maximum, the
//! facilitator verifies it in the official order and settles the usage the server names —
//! once, never above the maximum, nothing at all for zero — from the witnessed address.

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use serde_json::{Value, json};
use x402_evm::unix_now;
use x402_evm::upto::{UptoEvmClient, UptoEvmFacilitator, UptoPayload};
use x402_proto::{
    Facilitator, PaymentRequest, ReasonCode, Scheme, SettleResponse, TokenAmount, V2,
    VerifyResponse, v2,
};
use x402_testkit::Chain;

/// One way to spoil a signed payload (as JSON).
type Edit<'a> = Box<dyn FnOnce(&mut Value) + 'a>;

struct Upto {
    chain: Chain,
    requirements: v2::PaymentRequirements,
}

impl Upto {
    /// A devnet whose first payer approved Permit2; an offer of up to `maximum`.
    async fn start(maximum: u128) -> Self {
        let chain = Chain::start().await;
        chain
            .devnet
            .approve_permit2(&chain.devnet.payers()[0].signer)
            .await
            .unwrap();
        let mut requirements = chain.requirements(maximum);
        requirements.scheme = Scheme::UPTO;
        requirements.max_timeout_seconds = 300;
        let extra = requirements.extra.get_or_insert_with(|| json!({}));
        extra["assetTransferMethod"] = json!("permit2");
        extra["facilitatorAddress"] = json!(chain.scheme.signer_address().to_checksum(None));
        Self {
            chain,
            requirements,
        }
    }

    /// Our facilitator's `upto` plug-in on the chain (sharing its signer and nonces).
    fn facilitator(&self) -> UptoEvmFacilitator {
        UptoEvmFacilitator::new(self.chain.scheme.clone())
    }

    /// Payer `index`'s signed payload for the offer.
    async fn sign(&self, index: usize) -> UptoPayload {
        UptoEvmClient::new(self.chain.devnet.payers()[index].signer.clone())
            .sign_upto(&self.requirements, unix_now())
            .await
            .unwrap()
    }

    /// The request carrying `payload`, asking for `amount` (the maximum at verify, the usage
    /// at settle).
    fn request(&self, payload: &impl serde::Serialize, amount: u128) -> PaymentRequest {
        PaymentRequest::V2 {
            payload: v2::PaymentPayload {
                x402_version: V2::default(),
                resource: None,
                accepted: self.requirements.clone(),
                payload: serde_json::to_value(payload).unwrap(),
                extensions: None,
            },
            requirements: v2::PaymentRequirements {
                amount: TokenAmount::from_atomic(amount),
                ..self.requirements.clone()
            },
        }
    }

    /// Settles `amount` of `payload`.
    async fn settle(&self, payload: &UptoPayload, amount: u128) -> SettleResponse {
        let request = self.request(payload, amount);
        self.facilitator().settle(&request, None).await.unwrap()
    }

    async fn paid(&self) -> U256 {
        self.chain.balance(self.chain.devnet.pay_to().address).await
    }

    /// The verdict on `payload` edited by `edit` (as JSON; `|_| {}` for none), at the maximum.
    async fn verdict(
        &self,
        payload: &UptoPayload,
        edit: impl FnOnce(&mut Value),
    ) -> VerifyResponse {
        let mut value = serde_json::to_value(payload).unwrap();
        edit(&mut value);
        let maximum = self.requirements.amount.0.to::<u128>();
        self.facilitator()
            .verify(&self.request(&value, maximum))
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn the_usage_is_settled_once_and_the_receipt_names_it() {
    let upto = Upto::start(20_000).await;
    let payload = upto.sign(0).await;
    let verdict = upto.verdict(&payload, |_| {}).await;
    assert!(verdict.is_valid, "{verdict:?}");
    let before = upto.paid().await;
    let sent_before = upto.chain.facilitator_tx_count().await;

    let receipt = upto.settle(&payload, 1_858).await;
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(receipt.amount, Some(TokenAmount::from_atomic(1_858)));
    assert_eq!(receipt.transaction.len(), 66);
    assert_eq!(upto.paid().await, before + U256::from(1_858));

    // The same permit again: its nonce is spent, nothing more moves.
    let again = upto.settle(&payload, 1_000).await;
    assert!(!again.success, "{again:?}");
    assert_eq!(upto.paid().await, before + U256::from(1_858));
    assert_eq!(upto.chain.facilitator_tx_count().await, sent_before + 1);
}

#[tokio::test]
async fn zero_sends_nothing_and_above_the_maximum_is_refused() {
    let upto = Upto::start(5_000).await;
    let payload = upto.sign(0).await;
    let sent_before = upto.chain.facilitator_tx_count().await;
    let before = upto.paid().await;

    let nothing = upto.settle(&payload, 0).await;
    assert!(nothing.success, "{nothing:?}");
    assert_eq!(
        (nothing.transaction.as_str(), nothing.amount),
        ("", Some(TokenAmount::from_atomic(0)))
    );

    let above = upto.settle(&payload, 5_001).await;
    assert_eq!(
        above.error_reason,
        Some(ReasonCode::UPTO_EVM_SETTLEMENT_EXCEEDS_AMOUNT)
    );
    assert_eq!(upto.chain.facilitator_tx_count().await, sent_before);
    assert_eq!(upto.paid().await, before);

    // The whole maximum is allowed.
    let all = upto.settle(&payload, 5_000).await;
    assert!(all.success, "{all:?}");
    assert_eq!(upto.paid().await, before + U256::from(5_000));
}

#[tokio::test]
async fn verify_refuses_in_the_official_order_with_its_codes() {
    let upto = Upto::start(1_000).await;
    let payload = upto.sign(0).await;
    let stranger = Address::repeat_byte(0x77).to_checksum(None);
    let later = (unix_now() + 86_400).to_string();
    let soon = (unix_now() + 2).to_string();
    let cases: Vec<(&str, Edit<'_>, ReasonCode)> = vec![
        (
            "spender",
            Box::new(|p| p["permit2Authorization"]["spender"] = json!(stranger)),
            ReasonCode::PERMIT2_INVALID_SPENDER,
        ),
        (
            "payee",
            Box::new(|p| p["permit2Authorization"]["witness"]["to"] = json!(stranger)),
            ReasonCode::PERMIT2_RECIPIENT_MISMATCH,
        ),
        (
            "facilitator",
            Box::new(|p| p["permit2Authorization"]["witness"]["facilitator"] = json!(stranger)),
            ReasonCode::UPTO_FACILITATOR_MISMATCH,
        ),
        (
            "deadline",
            Box::new(move |p| p["permit2Authorization"]["deadline"] = json!(soon)),
            ReasonCode::PERMIT2_DEADLINE_EXPIRED,
        ),
        (
            "validAfter",
            Box::new(move |p| p["permit2Authorization"]["witness"]["validAfter"] = json!(later)),
            ReasonCode::PERMIT2_NOT_YET_VALID,
        ),
        (
            "amount",
            Box::new(|p| p["permit2Authorization"]["permitted"]["amount"] = json!("999")),
            ReasonCode::PERMIT2_AMOUNT_MISMATCH,
        ),
        (
            "token",
            Box::new(|p| p["permit2Authorization"]["permitted"]["token"] = json!(stranger)),
            ReasonCode::PERMIT2_TOKEN_MISMATCH,
        ),
        (
            "nonce",
            Box::new(|p| p["permit2Authorization"]["nonce"] = json!("12345")),
            ReasonCode::PERMIT2_INVALID_SIGNATURE,
        ),
        (
            "shape",
            Box::new(|p| *p = json!({"authorization": {}})),
            ReasonCode::UNSUPPORTED_PAYLOAD_TYPE,
        ),
    ];
    for (name, edit, code) in cases {
        let verdict = upto.verdict(&payload, edit).await;
        assert!(!verdict.is_valid, "{name}");
        assert_eq!(verdict.invalid_reason, Some(code), "{name}: {verdict:?}");
    }
}

#[tokio::test]
async fn a_payer_without_an_allowance_is_told_to_approve_permit2() {
    let upto = Upto::start(1_000).await;
    // Payer 1 never approved Permit2.
    let payload = upto.sign(1).await;
    let verdict = upto.verdict(&payload, |_| {}).await;
    assert_eq!(
        verdict.invalid_reason,
        Some(ReasonCode::PERMIT2_ALLOWANCE_REQUIRED),
        "{verdict:?}"
    );
    let settled = upto.settle(&payload, 10).await;
    assert_eq!(
        settled.error_reason,
        Some(ReasonCode::PERMIT2_ALLOWANCE_REQUIRED)
    );
}

#[tokio::test]
async fn supported_names_the_facilitator_address_payers_witness() {
    let upto = Upto::start(1).await;
    let supported = upto.facilitator().supported().await.unwrap();
    assert_eq!(supported.kinds.len(), 1);
    let kind = &supported.kinds[0];
    assert_eq!((kind.x402_version, &kind.scheme), (2, &Scheme::UPTO));
    assert_eq!(
        kind.extra.as_ref().unwrap()["facilitatorAddress"],
        json!(upto.chain.scheme.signer_address().to_checksum(None))
    );
}

#[tokio::test]
async fn a_retry_of_a_pending_settlement_waits_for_its_transaction_and_sends_no_other() {
    let upto = Upto::start(20_000).await;
    let payload = upto.sign(0).await;
    let devnet = &upto.chain.devnet;
    // A facilitator that answers `settlement_pending` after half a second without a receipt.
    let mut config = x402_evm::ChainConfig::new(devnet.chain_id(), devnet.rpc_url().clone());
    config.receipt_timeout = std::time::Duration::from_millis(500);
    let scheme = x402_evm::ExactEvmScheme::connect(config, devnet.facilitator().signer.clone())
        .await
        .unwrap();
    let facilitator = UptoEvmFacilitator::new(scheme);
    let before = upto.paid().await;
    let sent_before = upto.chain.facilitator_tx_count().await;
    devnet
        .provider()
        .raw_request::<_, ()>("evm_setAutomine".into(), (false,))
        .await
        .unwrap();

    let request = upto.request(&payload, 1_000);
    let first = facilitator.settle(&request, None).await.unwrap();
    assert_eq!(
        first.error_reason,
        Some(ReasonCode::SETTLEMENT_PENDING),
        "{first:?}"
    );
    assert_eq!(first.transaction.len(), 66);
    // The retry waits for the same transaction: still pending, nothing else sent.
    let again = facilitator.settle(&request, None).await.unwrap();
    assert_eq!(
        again.error_reason,
        Some(ReasonCode::SETTLEMENT_PENDING),
        "{again:?}"
    );
    assert_eq!(again.transaction, first.transaction);

    devnet.mine().await.unwrap();
    let settled = facilitator.settle(&request, None).await.unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(settled.transaction, first.transaction);
    assert_eq!(settled.amount, Some(TokenAmount::from_atomic(1_000)));
    assert_eq!(upto.paid().await, before + U256::from(1_000));
    assert_eq!(upto.chain.facilitator_tx_count().await, sent_before + 1);
}

#[tokio::test]
async fn a_settled_payment_answers_its_request_again_and_no_other() {
    let upto = Upto::start(20_000).await;
    let facilitator = upto.facilitator();
    let request = upto.request(&upto.sign(0).await, 1_000);
    let key = |k: &str| x402_proto::IdempotencyKey::new(k).unwrap();
    let sent_before = upto.chain.facilitator_tx_count().await;

    // Concurrent settles of one payment for one request send one transaction, and all of them
    // get its success.
    let k = key("request-a");
    let settle = || facilitator.settle(&request, Some(&k));
    let (a, b, c, d) = tokio::join!(settle(), settle(), settle(), settle());
    let answers = [a, b, c, d];
    let first = answers[0].as_ref().unwrap().clone();
    assert!(first.success, "{first:?}");
    for answer in &answers {
        let answer = answer.as_ref().unwrap();
        assert_eq!(
            (answer.success, &answer.transaction),
            (true, &first.transaction)
        );
        assert_eq!(answer.amount, Some(TokenAmount::from_atomic(1_000)));
    }
    assert_eq!(upto.chain.facilitator_tx_count().await, sent_before + 1);

    // Its lost answer is given again to that request; another request, or a caller without a
    // key, learns that the payment bought something else.
    let again = facilitator
        .settle(&request, Some(&key("request-a")))
        .await
        .unwrap();
    assert_eq!(again.transaction, first.transaction);
    for other in [Some(key("request-b")), None] {
        let answer = facilitator.settle(&request, other.as_ref()).await.unwrap();
        assert_eq!(
            answer.error_reason,
            Some(ReasonCode::DUPLICATE_SETTLEMENT),
            "{answer:?}"
        );
    }
    assert_eq!(upto.chain.facilitator_tx_count().await, sent_before + 1);
}
