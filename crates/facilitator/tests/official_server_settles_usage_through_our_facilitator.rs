//! The official `@x402/express` server (2.27) offering `upto` settles the usage its handler
//! reports with the official `setSettlementOverrides` through our facilitator (which serves
//! `upto` by default and names its address in `/supported`): the official `@x402/fetch` client
//! signs for up to $0.02, and on anvil the payer pays exactly the usage, through Permit2 and our
//! proxy, in one transaction; a usage of zero settles nothing and sends nothing.

use alloy::primitives::U256;
use serde_json::{Value, json};
use x402_evm::upto::UPTO_PERMIT2_PROXY;
use x402_testkit::{
    Before, KillOnDrop, Stack, assert_official_upto_offer, assert_settlement_mined,
    official_express_server_with, official_fetch,
};

/// The most `GET /metered` may cost: $0.02 of the devnet's USDC.
const MAX: u64 = 20_000;

/// The official server's metered route, reporting `usage` atomic units, in front of our
/// facilitator on a fresh chain whose first payer has approved Permit2: the stack, the server
/// and the route's URL.
async fn metered_route(usage: u64) -> (Stack, KillOnDrop, String) {
    let stack = Stack::start().await;
    let payer = &stack.chain.devnet.payers()[0];
    stack
        .chain
        .devnet
        .approve_permit2(&payer.signer)
        .await
        .unwrap();
    let env = [
        ("UPTO_PRICE", "$0.02".to_owned()),
        ("UPTO_USAGE", usage.to_string()),
    ];
    let (server, port) = official_express_server_with(&stack, None, &env).await;
    (stack, server, format!("http://127.0.0.1:{port}/metered"))
}

/// The official client pays `url` as the first payer: its result, and the payer's balance and
/// the payee's balance and signer's count before.
async fn pay(stack: &Stack, url: String) -> (Value, U256, Before) {
    let payer = &stack.chain.devnet.payers()[0];
    let payer_before = stack.chain.balance(payer.address).await;
    let before = stack.before().await;
    let result = official_fetch(vec![
        ("URL", url),
        ("PRIVATE_KEY", payer.signer.to_bytes().to_string()),
    ])
    .await;
    (result, payer_before, before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_server_settles_the_reported_usage_not_the_maximum() {
    const USAGE: u64 = 1_234;
    const { assert!(USAGE < MAX) };
    let (stack, _server, url) = metered_route(USAGE).await;

    // The 402 offers upto for the maximum, witnessing our facilitator's address.
    let facilitator = stack.chain.devnet.facilitator().address;
    assert_official_upto_offer(&url, MAX.into(), facilitator).await;

    let (result, payer_before, before) = pay(&stack, url).await;
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(
        result["body"],
        json!({"ok": true, "usage": USAGE.to_string()})
    );
    let receipt = &result["paymentResponse"];
    assert_eq!(receipt["success"], true, "{receipt}");
    assert_eq!(receipt["amount"], USAGE.to_string(), "{receipt}");
    assert_eq!(receipt["network"], "eip155:8453", "{receipt}");
    let payer = stack.chain.devnet.payers()[0].address;
    assert_eq!(receipt["payer"], payer.to_checksum(None), "{receipt}");
    // The one transaction: from our facilitator's signer to our upto proxy, mined.
    let transaction = receipt["transaction"].as_str().unwrap();
    assert_settlement_mined(
        &stack.chain.devnet,
        transaction,
        facilitator,
        UPTO_PERMIT2_PROXY,
    )
    .await;
    assert_eq!(
        stack.chain.balance(payer).await,
        payer_before - U256::from(USAGE)
    );
    stack.assert_since(before, 1, USAGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_of_zero_settles_nothing_and_sends_nothing() {
    let (stack, _server, url) = metered_route(0).await;
    let (result, payer_before, before) = pay(&stack, url).await;
    assert_eq!(result["status"], 200, "{result}");
    let receipt = &result["paymentResponse"];
    assert_eq!(receipt["success"], true, "{receipt}");
    assert_eq!(receipt["amount"], "0", "{receipt}");
    assert_eq!(receipt["transaction"], "", "{receipt}");
    let payer = stack.chain.devnet.payers()[0].address;
    assert_eq!(stack.chain.balance(payer).await, payer_before);
    stack.assert_since(before, 0, 0).await;
}
