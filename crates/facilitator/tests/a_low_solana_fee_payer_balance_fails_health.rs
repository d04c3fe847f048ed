//! `/health` reports each Solana network's RPC and its fee payer's SOL balance, and fails,
//! naming the balance, while that balance is below `min_fee_payer_lamports`.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_fails_below_the_fee_payers_floor() {
    let mut stack = x402_testkit::SolanaStack::start(1, "min_fee_payer_lamports = 1").await;
    let state = stack.state().clone();
    let (status, body) = stack.get("/health").await;
    assert_eq!(status, 200, "{body}");
    let report = body["chains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["network"] == state.network)
        .cloned()
        .expect("the Solana network is reported");
    assert_eq!(report["reachable"], true, "{body}");
    assert_eq!(report["healthy"], true);
    assert_eq!(report["signer"], state.fee_payer);
    assert!(report["block_number"].as_u64().is_some(), "{report}");
    let balance = report["signer_balance_lamports"].as_u64().unwrap();
    let funded = stack
        .rpc
        .balance(&x402_testkit::solana_address(&state.fee_payer))
        .await
        .unwrap();
    assert_eq!(balance, funded);

    // A floor one lamport above what it holds.
    stack.config.solana_networks[0].min_fee_payer_lamports = Some(funded + 1);
    stack.restart().await;
    let (status, body) = stack.get("/health").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unhealthy");
    let reason = body["reasons"][0].as_str().unwrap();
    assert!(reason.contains("SOL balance"), "{reason}");
    assert!(reason.contains(&funded.to_string()), "{reason}");
    assert!(reason.contains("min_fee_payer_lamports"), "{reason}");
}
