//! The official `@x402/express` server with `@x402/svm` 2.27's `exact` server scheme sends
//! its Solana route's payments to our facilitator over HTTP; the official `@x402/fetch`
//! client with `@x402/svm`'s client scheme pays it: the content comes back with a receipt
//! whose signature is on chain, and the payee is paid once.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_pays_the_official_server_through_our_facilitator() {
    let stack = x402_testkit::SolanaStack::start(1, "").await;
    let state = stack.state().clone();
    let (_server, port) = stack.official_express_server().await;
    let before = stack.pay_to_balance().await;

    let url = format!("http://127.0.0.1:{port}/solana");
    let result = stack.official_fetch(&url, 0).await;
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["body"]["ok"], true, "{result}");
    let receipt = &result["paymentResponse"];
    assert_eq!(receipt["success"], true, "{receipt}");
    assert_eq!(receipt["network"], state.network, "{receipt}");
    assert_eq!(receipt["payer"], state.payers[0], "{receipt}");
    let signature = receipt["transaction"].as_str().unwrap();
    let landed = stack.rpc.signature_status(signature).await.unwrap();
    assert!(
        landed.is_some_and(|s| s.err.is_none() && s.is_confirmed()),
        "the receipt's transaction is on chain: {signature}"
    );
    // $0.001 in 6-decimal USDC.
    assert_eq!(stack.pay_to_balance().await, before + 1_000);
}
