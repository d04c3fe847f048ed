//! One Solana payment presented to our facilitator over HTTP 50 times at once moves the money
//! once: with one `Idempotency-Key` all 50 get the same success, without one a single call
//! gets it and 49 are refused as duplicates. A new facilitator process on the same log gives
//! the key the same answer and refuses the payment to everyone else, still without a second
//! transfer. `/supported` lists `exact` on the network (v2) and on `solana-devnet` (v1) with
//! the fee payer.

use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_presentations_settle_once_and_a_restart_answers_the_same() {
    let mut stack = x402_testkit::SolanaStack::start(2, "").await;
    let state = stack.state().clone();

    let (status, supported) = stack.get("/supported").await;
    assert_eq!(status, 200);
    let kinds: Vec<(u64, String, Value)> = supported["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["x402Version"].as_u64().unwrap(),
                k["network"].as_str().unwrap().to_owned(),
                k["extra"]["feePayer"].clone(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (
                2,
                state.network.clone(),
                Value::from(state.fee_payer.clone())
            ),
            (
                1,
                "solana-devnet".to_owned(),
                Value::from(state.fee_payer.clone())
            ),
        ]
    );
    assert_eq!(supported["signers"]["solana:*"][0], state.fee_payer);

    // One key, fifty calls at once: one transfer, fifty identical successes.
    let before = stack.pay_to_balance().await;
    let request = stack.payment(0, 1_234).await;
    let answers = stack
        .settle_concurrently(&request, 50, Some("order-1"))
        .await;
    let first = answers[0].1.clone();
    assert_eq!(first["success"], true, "{first}");
    assert_eq!(first["payer"], state.payers[0]);
    let signature = first["transaction"].as_str().unwrap().to_owned();
    let landed = stack.rpc.signature_status(&signature).await.unwrap();
    assert!(
        landed.is_some_and(|s| s.err.is_none()),
        "on chain: {signature}"
    );
    for (status, answer) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(
            answer, &first,
            "every call with the key gets the same answer"
        );
    }
    assert_eq!(stack.pay_to_balance().await, before + 1_234);

    // No key, fifty calls at once: one success, 49 duplicates, one transfer.
    let other = stack.payment(1, 99).await;
    let answers = stack.settle_concurrently(&other, 50, None).await;
    let won: Vec<_> = answers
        .iter()
        .filter(|(_, a)| a["success"] == true)
        .collect();
    assert_eq!(won.len(), 1, "{answers:#?}");
    for (status, answer) in &answers {
        assert_eq!(*status, 200);
        if answer["success"] == false {
            assert_eq!(answer["errorReason"], "duplicate_settlement", "{answer}");
        }
    }
    assert_eq!(stack.pay_to_balance().await, before + 1_234 + 99);

    // A new facilitator on the same log.
    stack.restart().await;
    let (status, again) = stack.post_with_key("/settle", &request, "order-1").await;
    assert_eq!(status, 200);
    assert_eq!(again, first, "the key gets the same answer after a restart");
    let (_, stranger) = stack
        .post("/settle", &serde_json::to_value(&request).unwrap())
        .await;
    assert_eq!(stranger["success"], false, "{stranger}");
    assert_eq!(stranger["errorReason"], "duplicate_settlement");
    let (_, stranger) = stack
        .post("/settle", &serde_json::to_value(&other).unwrap())
        .await;
    assert_eq!(stranger["errorReason"], "duplicate_settlement");
    assert_eq!(stack.pay_to_balance().await, before + 1_234 + 99);
}
