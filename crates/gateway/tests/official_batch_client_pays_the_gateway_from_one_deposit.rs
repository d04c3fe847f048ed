//! Interop: the official `@x402/fetch` client with the 2.27 `batch-settlement` client scheme
//! pays our gateway's `POST /run` for embeddings 200 times from one deposit (then 199
//! vouchers). Each voucher is charged the call's units at the service's rate (its quote); after the
//! operator's claim, the payee's on-chain balance grew by exactly the sum charged, with at most
//! three transactions for the 200 calls (the deposit, one claim, one settle).

mod common;

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use common::Stack;
use serde_json::{Value, json};

const CALLS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_batch_client_pays_200_calls_from_one_deposit() {
    let stack = Stack::with_batch(&PrivateKeySigner::random(), "").await;
    let chain = &stack.base.chain;
    let url = &stack.url;
    let http = &stack.http;

    // The catalog lists both ways to pay.
    let catalog: Value = http
        .get(format!("{url}/catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schemes: Vec<&str> = catalog["payment_methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["scheme"].as_str().unwrap())
        .collect();
    assert_eq!(schemes, ["exact", "batch-settlement"], "{catalog}");

    // What one call costs: the quote of its body (embeddings are priced by their tokens).
    let body = json!({"service": "embed-l4", "input": {"texts": ["agents pay per call", "from one deposit"]}});
    let challenge = http
        .post(format!("{url}/run"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 402);
    let required: x402_proto::v2::PaymentRequired =
        x402_proto::decode_header(challenge.headers()["payment-required"].as_bytes()).unwrap();
    let offer = required
        .accepts
        .iter()
        .find(|o| o.scheme.as_str() == "batch-settlement")
        .expect("a batch-settlement offer");
    let price = offer.amount.0;
    assert!(price > U256::ZERO);

    let payer = &chain.devnet.payers()[3].signer;
    let payee_before = stack.pay_to_balance().await;
    let facilitator = chain.devnet.facilitator().address;
    let sent_before = chain.devnet.transaction_count(facilitator).await.unwrap();
    let output = x402_testkit::official_batch_fetch(vec![
        ("URL", format!("{url}/run")),
        ("METHOD", "POST".into()),
        ("BODY", body.to_string()),
        ("PRIVATE_KEY", payer.to_bytes().to_string()),
        ("COUNT", CALLS.to_string()),
    ])
    .await;
    let requests = output["requests"].as_array().unwrap();
    assert_eq!(requests.len(), CALLS);
    let mut charged = U256::ZERO;
    let mut deposits = 0;
    for (i, request) in requests.iter().enumerate() {
        assert_eq!(request["status"], 200, "call {i}: {request}");
        assert_eq!(
            request["body"]["output"]["embeddings"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let receipt = &request["paymentResponse"];
        assert_eq!(receipt["success"], true, "call {i}: {receipt}");
        let this: U256 = receipt["extra"]["chargedAmount"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            this, price,
            "call {i} is charged its units at the rate (its quote)"
        );
        charged += this;
        let cumulative: U256 = receipt["extra"]["channelState"]["chargedCumulativeAmount"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(cumulative, charged, "call {i}");
        if !receipt["transaction"].as_str().unwrap_or("").is_empty() {
            deposits += 1;
        }
    }
    assert_eq!(deposits, 1, "one deposit, then vouchers");
    assert_eq!(
        stack.pay_to_balance().await,
        payee_before,
        "nothing claimed yet"
    );

    // The operator claims and settles now.
    let claimed = stack.operator_claim().await;
    assert_eq!(
        stack.pay_to_balance().await - payee_before,
        charged,
        "the payee got exactly what was charged: {claimed}"
    );
    let transactions = chain.devnet.transaction_count(facilitator).await.unwrap() - sent_before;
    assert!(
        transactions <= 3,
        "{transactions} transactions for {CALLS} calls: {claimed}"
    );
    stack.gateway.shutdown().await;
}
