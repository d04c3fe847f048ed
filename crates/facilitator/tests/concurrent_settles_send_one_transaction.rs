//! Fifty concurrent `/settle` calls with one payment send one transaction and move the money
//! once. Its success goes to one caller: without a key, one call succeeds and 49 are refused
//! as duplicates (a second request presenting the same payment must not be served); with one
//! shared `Idempotency-Key`, all fifty get the same success; after `settlement_pending`, the
//! identical retry gets the success, once.

use alloy::primitives::U256;
use serde_json::Value;

fn successes(answers: &[(u16, Value)]) -> Vec<&Value> {
    answers
        .iter()
        .filter(|(_, a)| a["success"] == true)
        .map(|(_, a)| a)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_settles_without_a_key_give_one_success() {
    let stack = x402_testkit::Stack::start().await;
    let request = stack.payment(0, 10_000);
    let before = stack.before().await;

    let answers = stack.settle_concurrently(&request, 50, None).await;
    let won = successes(&answers);
    assert_eq!(won.len(), 1, "exactly one caller is given the success");
    let tx = won[0]["transaction"].as_str().unwrap().to_owned();
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
        if answer["success"] == false {
            assert_eq!(answer["errorReason"], "duplicate_settlement", "{answer}");
            assert_eq!(answer["transaction"], "", "a refusal names no transaction");
            assert!(
                answer["errorMessage"]
                    .as_str()
                    .unwrap()
                    .contains("sign a new payment"),
                "{answer}"
            );
        }
    }
    // One transaction, one transfer.
    stack.assert_since(before, 1, 10_000).await;

    // Later calls without a key are other requests: refused.
    let (status, again) = stack.settle(&request).await;
    assert_eq!(status, 200);
    assert_eq!(again["success"], false, "{again}");
    assert_eq!(again["errorReason"], "duplicate_settlement");

    // Verify after settlement says the nonce is used.
    let (_, verified) = stack.verify(&request).await;
    assert_eq!(verified["isValid"], false);
    assert_eq!(
        verified["invalidReason"],
        "invalid_exact_evm_nonce_already_used"
    );
    assert!(!tx.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_is_answered_the_same_every_time_even_after_a_restart() {
    let mut stack = x402_testkit::Stack::start().await;
    let request = stack.payment(0, 10_000);
    let before = stack.before().await;

    let answers = stack
        .settle_concurrently(&request, 50, Some("req-one"))
        .await;
    let first = &answers[0].1;
    assert_eq!(first["success"], true, "{first}");
    for (status, answer) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(
            answer, first,
            "every call with the key gets the same answer"
        );
    }
    stack.assert_since(before, 1, 10_000).await;

    // Another key, or none, is another request.
    let (_, other) = stack.settle_with_key(&request, "req-two").await;
    assert_eq!(other["errorReason"], "duplicate_settlement", "{other}");

    // The key is in the durable log: after a restart it still gets its answer, others not.
    stack.restart().await;
    let (_, again) = stack.settle_with_key(&request, "req-one").await;
    assert_eq!(&again, first);
    let (_, anonymous) = stack.settle(&request).await;
    assert_eq!(
        anonymous["errorReason"], "duplicate_settlement",
        "{anonymous}"
    );
    assert_eq!(stack.chain.facilitator_tx_count().await, before.sent + 1);

    // A malformed key is a 400 that says what to fix.
    let (status, refused) = stack.settle_with_key(&request, "").await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("Idempotency-Key"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_settlement_pending_the_identical_retry_gets_the_success_once() {
    let stack = x402_testkit::Stack::start_with(
        x402_devnet::DevnetConfig::default(),
        "[limits]\nsettle_wait_ms = 300",
    )
    .await;
    stack.stop_automine().await;
    let request = stack.payment(2, 3_000);
    let before = stack.pay_to_balance().await;

    let (_, pending) = stack.settle(&request).await;
    assert_eq!(pending["errorReason"], "settlement_pending", "{pending}");
    let tx = pending["transaction"].as_str().unwrap().to_owned();
    stack.mine().await;

    // The official server retries once with the identical body: that retry gets the outcome.
    let mut retry = stack.settle(&request).await.1;
    for _ in 0..20 {
        if retry["errorReason"] != "settlement_pending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        retry = stack.settle(&request).await.1;
    }
    assert_eq!(retry["success"], true, "{retry}");
    assert_eq!(retry["transaction"], tx.as_str());
    // Once only.
    let (_, third) = stack.settle(&request).await;
    assert_eq!(third["errorReason"], "duplicate_settlement", "{third}");
    assert_eq!(stack.pay_to_balance().await, before + U256::from(3_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_payment_reusing_a_settled_nonce_is_refused() {
    let stack = x402_testkit::Stack::start().await;
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
    let stack = x402_testkit::Stack::start().await;
    let before = stack.before().await;
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
    stack.assert_since(before, 24, 24_000).await;
}
