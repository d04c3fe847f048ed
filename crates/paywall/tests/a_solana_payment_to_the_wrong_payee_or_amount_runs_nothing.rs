//! A Solana payment whose transaction pays someone else, or less than the price, is refused
//! with the facilitator's reason before the handler runs, and moves no money, though it
//! claims to accept the genuine offer.

mod common;

use common::svm::SolanaShop;
use x402_proto::{SchemeClient, TokenAmount, encode_header, v2};
use x402_testkit::{challenge_of, solana_offer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_for_another_payee_or_a_smaller_amount_are_refused_before_the_handler() {
    let shop = SolanaShop::start().await;
    let url = format!("{}/think", shop.url);
    let unpaid = shop.http.post(&url).body("hello").send().await.unwrap();
    assert_eq!(unpaid.status(), 402);
    let challenge = challenge_of(unpaid.headers());
    let offer = solana_offer(&challenge);
    let payer_before = shop.solana.payer_balance(0).await;

    let elsewhere = v2::PaymentRequirements {
        pay_to: shop.solana.state().payers[1].clone(),
        ..offer.clone()
    };
    let less = v2::PaymentRequirements {
        amount: TokenAmount::from_atomic(offer.amount.0.to::<u128>() - 1),
        ..offer.clone()
    };
    for (tampered, reason) in [
        (elsewhere, "invalid_exact_svm_payload_recipient_mismatch"),
        (less, "invalid_exact_svm_payload_amount_mismatch"),
    ] {
        let signed = shop.solana.client(0).sign(&tampered, 0).await.unwrap();
        let payment = v2::PaymentPayload {
            x402_version: Default::default(),
            resource: Some(challenge.resource.clone()),
            accepted: offer.clone(),
            payload: signed.payload,
            extensions: None,
        };
        let refused = shop
            .http
            .post(&url)
            .body("hello")
            .header("PAYMENT-SIGNATURE", encode_header(&payment))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 402, "{reason}");
        let error = challenge_of(refused.headers()).error.unwrap();
        assert!(error.contains(reason), "{error} should say {reason}");
        assert!(!refused.text().await.unwrap().contains("thought about"));
    }
    assert_eq!(shop.think_runs().await, 0, "the handler never ran");
    shop.assert_paid(0).await;
    assert_eq!(shop.solana.payer_balance(0).await, payer_before);
}
