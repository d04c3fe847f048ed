//! `upto` end to end on a real chain: a route behind our paywall offers up to $0.02, its
//! handler reports what the call used, and our facilitator (serving `upto` by default) settles
//! exactly that through Permit2 and our proxy. The official `@x402/fetch` client (2.27, `upto`
//! scheme) and our paying client (`upto` is one of its plug-ins) both pay it; the receipt names the
//! amount used, the payer's balance moves by exactly that, and our client's ledger counts
//! exactly that against its budget.

use std::sync::Arc;

use alloy::primitives::U256;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use x402_client::PayingClient;
use x402_evm::upto::{UptoEvmClient, UptoEvmServer};
use x402_paywall::{PaymentOption, Paywall, PaywallConfig, RoutePrice};
use x402_proto::{Network, Scheme, SettleResponse, TokenAmount, Usage, V2, encode_header, v2};
use x402_testkit::{Chain, Stack, official_fetch};

mod common;

/// What the handler says each call used, in atomic units.
const USED: u128 = 1_858;

/// The stack with the `upto` plug-in, and the metered route's URL.
async fn metered_route() -> (Stack, String) {
    let chain = Chain::start().await;
    for payer in &chain.devnet.payers()[..2] {
        chain.devnet.approve_permit2(&payer.signer).await.unwrap();
    }
    // Our facilitator serves `upto` beside `exact` by default.
    let dir = tempfile::tempdir().unwrap();
    let config = x402_testkit::config_for(chain.devnet.rpc_url().as_ref(), dir.path(), "");
    let stack = Stack::serve(chain, dir, config).await;
    let mut requirements = stack.chain.requirements(1);
    requirements.scheme = Scheme::UPTO;
    let option = PaymentOption::from_requirements(&requirements, 6).with_max_timeout(300);
    let paywall = Paywall::new(stack.in_process(), vec![option], PaywallConfig::default())
        .unwrap()
        .with_schemes(vec![Arc::new(UptoEvmServer)]);
    // The offer gets the facilitator address payers must witness from /supported.
    paywall.initialize().await.unwrap();
    let handler = get(|| async {
        let mut response = axum::Json(json!({"tokens": 42})).into_response();
        response.extensions_mut().insert(Usage::atomic(USED));
        response
    });
    let route = handler.layer(paywall.layer(RoutePrice::fixed("$0.02".parse().unwrap())));
    let url = common::serve(axum::Router::new().route("/chat", route), "/chat").await;
    (stack, url)
}

/// `client` GETs `url` (paying): the answer, asserted served and charged exactly the usage.
async fn pay_for_usage(client: &PayingClient, url: &str) -> x402_client::PaidResponse {
    let request = reqwest::Client::new().get(url).build().unwrap();
    let paid = client.send(request, None).await.unwrap();
    assert_eq!(paid.response.status(), 200);
    let receipt = paid.receipt.as_ref().expect("a receipt");
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(
        receipt.amount,
        Some(TokenAmount::from_atomic(USED)),
        "{receipt:?}"
    );
    paid
}

#[tokio::test]
async fn the_official_client_pays_the_usage_not_the_maximum() {
    let (stack, url) = metered_route().await;
    let payer = &stack.chain.devnet.payers()[0];
    let (payer_before, payee_before) = (
        stack.chain.balance(payer.address).await,
        stack.pay_to_balance().await,
    );
    let result = official_fetch(vec![
        ("URL", url),
        ("PRIVATE_KEY", payer.signer.to_bytes().to_string()),
    ])
    .await;
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["body"]["tokens"], 42);
    let receipt = &result["paymentResponse"];
    assert_eq!(receipt["success"], true, "{receipt}");
    assert_eq!(receipt["amount"], USED.to_string(), "{receipt}");
    assert_eq!(
        stack.chain.balance(payer.address).await,
        payer_before - U256::from(USED)
    );
    assert_eq!(
        stack.pay_to_balance().await,
        payee_before + U256::from(USED)
    );
}

#[tokio::test]
async fn a_payer_without_an_allowance_pays_in_one_step_with_an_eip2612_approval() {
    let (stack, url) = metered_route().await;
    // Payer 3 never approved Permit2 and sends no transaction: the official client (able to
    // read the chain) signs an EIP-2612 approval of Permit2, which the 402 declares accepted.
    let payer = &stack.chain.devnet.payers()[3];
    let before = stack.before().await;
    let payer_before = stack.chain.balance(payer.address).await;
    let result = official_fetch(vec![
        ("URL", url),
        ("PRIVATE_KEY", payer.signer.to_bytes().to_string()),
        ("SCHEMES", "upto".into()),
        ("RPC_URL", stack.chain.devnet.rpc_url().to_string()),
    ])
    .await;
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(
        result["paymentResponse"]["amount"],
        USED.to_string(),
        "{result}"
    );
    // One transaction (the approval and the transfer together), exactly the usage moved.
    stack.assert_since(before, 1, USED as u64).await;
    assert_eq!(
        stack.chain.balance(payer.address).await,
        payer_before - U256::from(USED)
    );
}

#[tokio::test]
async fn our_client_reading_the_chain_pays_without_an_allowance_in_one_step() {
    let (stack, url) = metered_route().await;
    // Payer 4 never approved Permit2; our client reads its allowance and signs an EIP-2612
    // approval of Permit2 into the payment.
    let payer = &stack.chain.devnet.payers()[4];
    let before = stack.before().await;
    let upto =
        UptoEvmClient::new(payer.signer.clone()).with_chain(stack.chain.devnet.rpc_url().clone());
    let client =
        common::paying_client(reqwest::Client::new(), &payer.signer).with_scheme(Arc::new(upto));
    pay_for_usage(&client, &url).await;
    stack.assert_since(before, 1, USED as u64).await;
}

#[tokio::test]
async fn our_client_pays_the_usage() {
    let (stack, url) = metered_route().await;
    let payer = &stack.chain.devnet.payers()[1];
    let before = stack.pay_to_balance().await;
    // upto is one of the client's own plug-ins.
    let client = common::paying_client(reqwest::Client::new(), &payer.signer);
    let paid = pay_for_usage(&client, &url).await;
    assert_eq!(stack.pay_to_balance().await, before + U256::from(USED));
    // The ledger counts what was taken, not the maximum reserved: the rest is back in the
    // budget.
    let (charged, _) = paid.paid.expect("paid");
    assert_eq!(charged.atomic, TokenAmount::from_atomic(USED));
    let rows = client.ledger().payments(0).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].status.as_str(), rows[0].amount.as_str()),
        ("paid", "1858")
    );
    assert_eq!(
        client.ledger().spent(0).unwrap(),
        1_858,
        "micro-USD of $0.001858"
    );
}

#[tokio::test]
async fn a_payer_without_a_permit2_allowance_gets_412_and_pays_nothing() {
    let (stack, url) = metered_route().await;
    // Payer 2 never approved Permit2.
    let payer = &stack.chain.devnet.payers()[2];
    let before = stack.chain.balance(payer.address).await;
    let client = common::paying_client(reqwest::Client::new(), &payer.signer);
    let refused = client
        .send(reqwest::Client::new().get(&url).build().unwrap(), None)
        .await
        .unwrap_err();
    match refused {
        x402_client::PayError::Refused { status, reason, .. } => {
            assert_eq!(status, 412);
            assert!(reason.contains("permit2_allowance_required"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(stack.chain.balance(payer.address).await, before);
    assert_eq!(client.ledger().spent(0).unwrap(), 0);
}

#[tokio::test]
async fn a_receipt_claiming_more_than_was_signed_is_counted_at_the_maximum() {
    // A server whose receipt says it took 20,500 of a 20,000 maximum (Permit2 would never move
    // more than signed; the receipt lies).
    let offer = v2::PaymentRequirements {
        scheme: Scheme::UPTO,
        network: Network::BASE,
        amount: TokenAmount::from_atomic(20_000),
        asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into(),
        pay_to: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
        max_timeout_seconds: 300,
        extra: Some(json!({"facilitatorAddress": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"})),
    };
    let handler = move |headers: HeaderMap| {
        let offer = offer.clone();
        async move {
            if !headers.contains_key("payment-signature") {
                let challenge = v2::PaymentRequired {
                    x402_version: V2::default(),
                    error: None,
                    resource: v2::ResourceInfo {
                        url: "http://shop.test/chat".into(),
                        description: None,
                        mime_type: None,
                    },
                    accepts: vec![offer],
                    extensions: None,
                };
                let header = [("payment-required", encode_header(&challenge))];
                return (StatusCode::PAYMENT_REQUIRED, header, "").into_response();
            }
            let mut receipt =
                SettleResponse::success(Network::BASE, None, format!("0x{}", "ab".repeat(32)));
            receipt.amount = Some(TokenAmount::from_atomic(20_500));
            ([("payment-response", encode_header(&receipt))], "answer").into_response()
        }
    };
    let url = common::serve(axum::Router::new().route("/chat", get(handler)), "/chat").await;
    let signer = alloy::signers::local::PrivateKeySigner::random();
    let client = common::paying_client(reqwest::Client::new(), &signer);
    let paid = client
        .send(reqwest::Client::new().get(&url).build().unwrap(), None)
        .await
        .unwrap();
    let (charged, _) = paid.paid.expect("paid");
    assert_eq!(charged.atomic, TokenAmount::from_atomic(20_000));
    let rows = client.ledger().payments(0).unwrap();
    assert_eq!(rows[0].amount, "20000");
    assert_eq!(client.ledger().spent(0).unwrap(), 20_000);
}
