//! An operator sees on the gateway's `/metrics` what its `batch-settlement` channels have
//! charged and not yet claimed, and claims it now with `POST /operator/claim`, which needs the
//! operator token: refused 401 without it or with another, answered with the transactions
//! sent with it, after which `/metrics` shows nothing unclaimed.

mod common;

use std::sync::Arc;

use alloy::primitives::{B256, U256};
use alloy::signers::local::PrivateKeySigner;
use common::OPERATOR_TOKEN;
use x402_evm::batch::{ChannelStore, ChannelWrite};
use x402_gateway::channels::SqliteChannelStore;
use x402_testkit::{Chain, Stack};

const PRICE: u128 = 1_000;

/// The value of the metric line starting with `prefix`.
fn metric(text: &str, prefix: &str) -> u128 {
    text.lines()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_route_claims_with_the_token_and_metrics_show_the_exposure() {
    let authorizer = PrivateKeySigner::random();
    let base = Stack::with_receiver_authorizer(Chain::start().await, &authorizer).await;
    let chain = &base.chain;

    // Two channels charged, as the paywall would have recorded them, in the file the gateway
    // then starts on (the file is one process's at a time).
    let offer = chain.batch_offer(PRICE, authorizer.address());
    let store =
        Arc::new(SqliteChannelStore::open(&base.dir.path().join("gateway-channels.db")).unwrap());
    let mut charged = 0;
    for i in 0..2u8 {
        let payer = &chain.devnet.payers()[usize::from(i)].signer;
        let record = base
            .batch_charged_channel(&offer, payer, B256::ZERO, 10 * PRICE, 3 * PRICE)
            .await;
        charged += record.charged;
        store
            .update(&record.id, &mut |_| ChannelWrite::Put(record.clone()))
            .await
            .unwrap();
    }
    drop(store);
    let stack = common::Stack::with_batch_on(base, "").await;
    let chain = &stack.base.chain;
    let (url, http) = (&stack.url, &stack.http);

    let asset = format!("{:#x}", chain.devnet.token().address);
    let series = format!(
        "x402_batch_unclaimed_atomic{{network=\"{}\",asset=\"{asset}\"}}",
        chain.devnet.network()
    );
    let scrape = || async {
        let answer = http.get(format!("{url}/metrics")).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        answer.text().await.unwrap()
    };
    let before = scrape().await;
    assert_eq!(metric(&before, &series), charged, "{before}");
    assert_eq!(metric(&before, "x402_batch_channels{"), 2);
    assert_eq!(metric(&before, "x402_batch_claims_sent_total{"), 0);

    // Without the token, or with another, nothing is claimed.
    let claim = format!("{url}/operator/claim");
    let sent_before = chain.facilitator_tx_count().await;
    for request in [
        http.post(&claim),
        http.post(&claim).bearer_auth("operator-secret-2"),
        http.post(&claim).header("authorization", OPERATOR_TOKEN),
    ] {
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 401);
    }
    assert_eq!(chain.facilitator_tx_count().await, sent_before);

    // With it, everything is claimed and settled now.
    let receiver = chain.devnet.pay_to().address;
    let received_before = chain.balance(receiver).await;
    let body = stack.operator_claim().await;
    let transactions = body["transactions"].as_array().unwrap();
    assert_eq!(transactions.len(), 2, "a claim and a settle: {body}");
    assert_eq!(body["runs"][0]["run"]["failures"], serde_json::json!([]));
    assert_eq!(
        chain.balance(receiver).await,
        received_before + U256::from(charged)
    );
    assert_eq!(chain.facilitator_tx_count().await, sent_before + 2);

    let after = scrape().await;
    assert_eq!(metric(&after, &series), 0, "{after}");
    assert_eq!(metric(&after, "x402_batch_claims_sent_total{"), 1);
    assert_eq!(metric(&after, "x402_batch_settles_sent_total{"), 1);
    assert!(metric(&after, "x402_batch_last_claim_timestamp_seconds{") > 0);

    // Asked again, it sends nothing.
    let body = stack.operator_claim().await;
    assert_eq!(body["transactions"], serde_json::json!([]));
    stack.gateway.shutdown().await;
}
