//! The official `@x402/express` server (2.27) in front of our facilitator: one payment header
//! sent five times at once, or seven re-encoded copies of one payment at once, buys one
//! response. The server verifies every copy (none is settled yet) and asks us to settle each;
//! we give the success to one call and refuse the others as duplicates, so it serves one 200
//! and answers the rest 402, as with the official facilitators. One transfer each time.

use alloy::primitives::U256;
use x402_testkit::{challenge_of, reencodings};

/// Sends each header to `url` at once; the statuses, sorted.
async fn send_at_once(url: &str, headers: Vec<String>) -> Vec<u16> {
    let http = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for header in headers {
        let request = http.get(url).header("PAYMENT-SIGNATURE", header);
        tasks.spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            if status == 200 {
                assert_eq!(response.text().await.unwrap(), r#"{"ok":true}"#);
            }
            status
        });
    }
    let mut statuses = tasks.join_all().await;
    statuses.sort_unstable();
    statuses
}

/// A payment for the server's challenge, signed as an official client would.
async fn signed_header(stack: &x402_testkit::Stack, url: &str, payer: usize) -> String {
    let challenge = reqwest::get(url).await.unwrap();
    assert_eq!(challenge.status(), 402);
    let challenge = challenge_of(challenge.headers());
    let payment = x402_evm::sign_payment(
        &stack.chain.devnet.payers()[payer].signer,
        &challenge.accepts[0],
        Some(challenge.resource.clone()),
        x402_evm::unix_now(),
    )
    .await
    .unwrap();
    x402_proto::encode_header(&payment)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_payment_sent_many_times_at_once_is_served_once() {
    let stack = x402_testkit::Stack::start().await;
    let (_server, port) = x402_testkit::official_express_server(&stack, None).await;
    let url = format!("http://127.0.0.1:{port}/paid");
    let before = stack.pay_to_balance().await;
    let txs = stack.chain.facilitator_tx_count().await;

    let header = signed_header(&stack, &url, 5).await;
    let statuses = send_at_once(&url, vec![header; 5]).await;
    assert_eq!(
        statuses,
        [200, 402, 402, 402, 402],
        "one identical header, five times"
    );
    assert_eq!(stack.pay_to_balance().await, before + U256::from(10_000));
    assert_eq!(stack.chain.facilitator_tx_count().await, txs + 1);

    let header = signed_header(&stack, &url, 6).await;
    let statuses = send_at_once(&url, reencodings(&header, 7)).await;
    assert_eq!(
        statuses,
        [200, 402, 402, 402, 402, 402, 402],
        "seven re-encodings"
    );
    assert_eq!(stack.pay_to_balance().await, before + U256::from(20_000));
    assert_eq!(stack.chain.facilitator_tx_count().await, txs + 2);
}
