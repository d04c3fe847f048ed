//! `exact` with Permit2 through our paywall: a route priced in a token without EIP-3009 (so
//! its offer asks for Permit2) is paid by our client (its own plug-in signs Permit2 for such
//! offers) and by the official `@x402/fetch` 2.27 client, each settled for exactly the price by
//! our facilitator (replays: `crates/evm/tests/exact_permit2_pays_a_plain_token.rs`).

use alloy::primitives::U256;
use axum::routing::get;
use x402_client::{KnownAsset, Ledger, PayingClient, Policy};
use x402_paywall::{PaymentOption, Paywall, PaywallConfig, RoutePrice};
use x402_proto::Network;
use x402_testkit::{PLAIN_TOKEN, Stack, official_fetch};

mod common;

/// The plain token's price of the route: 0.5 of a 6-decimal token.
const PRICE: u128 = 500_000;

/// The stack, with the plain token placed and minted to the first two payers (who approved
/// Permit2 for it), and the URL of a route priced in it.
async fn plain_token_route() -> (Stack, String) {
    // Our facilitator accepts the plain token beside the devnet's USDC.
    let stack = Stack::with_plain_token(2, 10_000_000).await;
    let chain = &stack.chain;
    let option = PaymentOption::from_requirements(&chain.plain_token_offer(PRICE), 6);
    let paywall = Paywall::new(stack.in_process(), vec![option], PaywallConfig::default()).unwrap();
    let route = get(|| async { "paid in a plain token" })
        .layer(paywall.layer(RoutePrice::fixed("$0.5".parse().unwrap())));
    let url = common::serve(axum::Router::new().route("/data", route), "/data").await;
    (stack, url)
}

/// The payee's balance of the plain token.
async fn payee_balance(stack: &Stack) -> U256 {
    let payee = stack.chain.devnet.pay_to().address;
    stack
        .chain
        .devnet
        .balance_of(PLAIN_TOKEN, payee)
        .await
        .unwrap()
}

#[tokio::test]
async fn our_client_pays_a_permit2_offer() {
    let (stack, url) = plain_token_route().await;
    let before = payee_balance(&stack).await;
    let payer = &stack.chain.devnet.payers()[0];
    // The plain token is allowed by the client's policy, up to one whole token a payment.
    let mut policy = Policy::default();
    policy.assets.push(KnownAsset {
        network: Network::BASE,
        address: PLAIN_TOKEN.to_checksum(None),
        decimals: 6,
    });
    policy.max_per_payment = "1".parse().unwrap();
    let client = PayingClient::new(
        reqwest::Client::new(),
        payer.signer.clone(),
        policy,
        Ledger::in_memory().unwrap(),
    );
    let paid = client
        .send(reqwest::Client::new().get(&url).build().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(paid.response.status(), 200);
    assert!(
        paid.receipt.as_ref().is_some_and(|r| r.success),
        "{:?}",
        paid.receipt
    );
    assert_eq!(payee_balance(&stack).await, before + U256::from(PRICE));
}

#[tokio::test]
async fn the_official_client_pays_a_permit2_offer() {
    let (stack, url) = plain_token_route().await;
    let before = payee_balance(&stack).await;
    let result = official_fetch(vec![
        ("URL", url),
        (
            "PRIVATE_KEY",
            stack.chain.devnet.payers()[1].signer.to_bytes().to_string(),
        ),
        // The plain token is not one of the SDK's known assets.
        ("SPEND_CONTROLS", "off".into()),
    ])
    .await;
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["paymentResponse"]["success"], true, "{result}");
    assert_eq!(payee_balance(&stack).await, before + U256::from(PRICE));
}
