//! Our facilitator service routes `exact` payloads carrying `permit2Authorization` to its
//! Permit2 path: payments for a token without EIP-3009, signed by the official client
//! (`@x402/evm` 2.27) and by ours, verify and settle over HTTP for exactly the price, once,
//! while EIP-3009 payments keep their own path on the same chain.

use alloy::primitives::U256;
use serde_json::json;
use x402_evm::exact_permit2::ExactPermit2Client;
use x402_evm::unix_now;
use x402_proto::{Facilitator, SchemeClient};
use x402_testkit::{PLAIN_TOKEN, Stack, official_exact_payload, request_paying};

#[tokio::test]
async fn official_and_our_permit2_payments_settle_once_over_http() {
    // Our facilitator accepts the plain token beside the devnet's USDC.
    let stack = Stack::with_plain_token(2, 1_000_000).await;
    let chain = &stack.chain;
    let offer = chain.plain_token_offer(2_500);
    let payee = chain.devnet.pay_to().address;
    let paid_before = chain.devnet.balance_of(PLAIN_TOKEN, payee).await.unwrap();

    let official = official_exact_payload(&offer, &chain.devnet.payers()[0].signer).await;
    let ours = ExactPermit2Client::new(chain.devnet.payers()[1].signer.clone())
        .sign(&offer, unix_now())
        .await
        .unwrap()
        .payload;
    for (who, payload) in [("official", official), ("ours", ours)] {
        let request = request_paying(payload, &offer);
        let (status, verdict) = stack.verify(&request).await;
        assert_eq!(
            (status, &verdict["isValid"]),
            (200, &json!(true)),
            "{who}: {verdict}"
        );
        stack
            .in_process()
            .payment_id(&request)
            .unwrap_or_else(|e| panic!("{who}: {e}"));
        let (status, receipt) = stack.settle(&request).await;
        assert_eq!(
            (status, &receipt["success"]),
            (200, &json!(true)),
            "{who}: {receipt}"
        );
        let (_, again) = stack.settle(&request).await;
        assert_eq!(again["success"], json!(false), "{who}: {again}");
        assert_eq!(
            again["errorReason"],
            json!("permit2_invalid_nonce"),
            "{who}"
        );
    }
    assert_eq!(
        chain.devnet.balance_of(PLAIN_TOKEN, payee).await.unwrap(),
        paid_before + U256::from(5_000)
    );

    // An EIP-3009 payment on the same chain still takes the built-in path.
    let before = stack.before().await;
    let (status, receipt) = stack.settle(&stack.payment(0, 1_000)).await;
    assert_eq!(
        (status, &receipt["success"]),
        (200, &json!(true)),
        "{receipt}"
    );
    stack.assert_since(before, 1, 1_000).await;
}

#[tokio::test]
async fn a_permit2_payment_in_a_token_not_accepted_is_refused_before_anything_is_sent() {
    // Default settings: the devnet's USDC only.
    let stack = Stack::start().await;
    let chain = &stack.chain;
    chain.place_plain_token(1, 1_000_000).await;
    chain
        .approve_permit2_for(PLAIN_TOKEN, &chain.devnet.payers()[0].signer)
        .await;
    let offer = chain.plain_token_offer(2_500);
    let official = official_exact_payload(&offer, &chain.devnet.payers()[0].signer).await;
    let request = request_paying(official, &offer);
    let before = stack.before().await;
    let (_, verdict) = stack.verify(&request).await;
    assert_eq!(verdict["isValid"], false, "{verdict}");
    assert_eq!(
        verdict["invalidReason"], "invalid_payment_requirements",
        "{verdict}"
    );
    let (_, receipt) = stack.settle(&request).await;
    assert_eq!(receipt["success"], false, "{receipt}");
    assert!(
        receipt["errorMessage"]
            .as_str()
            .unwrap()
            .contains("not accepted"),
        "{receipt}"
    );
    stack.assert_since(before, 0, 0).await;
}
