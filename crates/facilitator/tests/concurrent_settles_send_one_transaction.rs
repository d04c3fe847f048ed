//! Fifty concurrent `/settle` calls with one payment: one transaction, one transfer, fifty
//! identical successful answers; settling again later gives the same answer.

mod common;

use alloy::primitives::U256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_settles_send_one_transaction() {
    let stack = common::Stack::start().await;
    let request = stack.payment(0, 10_000);
    let before = stack.pay_to_balance().await;
    let nonce_before = stack.chain.facilitator_tx_count().await;

    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let http = stack.http.clone();
        let url = format!("{}/settle", stack.url());
        let body = serde_json::to_value(&request).unwrap();
        calls.spawn(async move {
            let response = http.post(url).json(&body).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        });
    }
    let answers = calls.join_all().await;
    let first = &answers[0];
    assert_eq!(first.0, 200, "{}", first.1);
    let parsed: serde_json::Value = serde_json::from_str(&first.1).unwrap();
    assert_eq!(parsed["success"], true, "{parsed}");
    for answer in &answers {
        assert_eq!(answer, first, "every caller gets the same answer");
    }

    assert_eq!(
        stack.chain.facilitator_tx_count().await,
        nonce_before + 1,
        "one transaction"
    );
    assert_eq!(
        stack.pay_to_balance().await,
        before + U256::from(10_000),
        "one transfer"
    );

    // Later retries read the log: same answer, still one transaction.
    let (status, again) = stack.settle(&request).await;
    assert_eq!(status, 200);
    assert_eq!(again, parsed);
    assert_eq!(stack.chain.facilitator_tx_count().await, nonce_before + 1);

    // Verify after settlement says the nonce is used.
    let (_, verified) = stack.verify(&request).await;
    assert_eq!(verified["isValid"], false);
    assert_eq!(
        verified["invalidReason"],
        "invalid_exact_evm_nonce_already_used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_payment_reusing_a_settled_nonce_is_refused() {
    let stack = common::Stack::start().await;
    let requirements = stack.chain.requirements(10_000);
    let payer = &stack.chain.devnet.payers()[1].signer;
    let payload = x402_testkit::honest_payment(payer, &requirements);
    let request = x402_testkit::v2_request(&payload, &requirements);
    let (_, settled) = stack.settle(&request).await;
    assert_eq!(settled["success"], true, "{settled}");

    // Same nonce, other amount: a different payment. It must not inherit the success.
    let other_requirements = stack.chain.requirements(20_000);
    let mut authorization = payload.authorization.clone();
    authorization.value = U256::from(20_000);
    let signature = x402_testkit::sign_for(payer, &authorization, &other_requirements);
    let other = x402_testkit::v2_request(
        &x402_evm::ExactEvmPayload {
            signature,
            authorization,
        },
        &other_requirements,
    );
    let (status, answer) = stack.settle(&other).await;
    assert_eq!(status, 200);
    assert_eq!(answer["success"], false, "{answer}");
    assert_eq!(
        answer["errorReason"],
        "invalid_exact_evm_nonce_already_used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_payments_pipeline_from_one_signer() {
    let stack = common::Stack::start().await;
    let before = stack.pay_to_balance().await;
    let nonce_before = stack.chain.facilitator_tx_count().await;
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..24 {
        let request = stack.payment(i % 8, 1_000);
        let http = stack.http.clone();
        let url = format!("{}/settle", stack.url());
        calls.spawn(async move {
            let response = http.post(url).json(&request).send().await.unwrap();
            response.json::<serde_json::Value>().await.unwrap()
        });
    }
    for answer in calls.join_all().await {
        assert_eq!(answer["success"], true, "{answer}");
    }
    assert_eq!(stack.chain.facilitator_tx_count().await, nonce_before + 24);
    assert_eq!(stack.pay_to_balance().await, before + U256::from(24_000));
}
