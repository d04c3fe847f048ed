//! With no facilitator to verify or settle, a paid route answers 503 and serves nothing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Shop;
use x402_paywall::HttpFacilitator;
use x402_proto::Facilitator;
use x402_testkit::{Wire, pay_and_retry};

#[tokio::test]
async fn an_unreachable_facilitator_gives_503_and_no_content() {
    let mut shop = Shop::start_with(|running| {
        let remote = HttpFacilitator::new(&running.url(), Duration::from_secs(10)).unwrap();
        Arc::new(remote) as Arc<dyn Facilitator>
    })
    .await;
    let url = format!("{}/weather", shop.url);

    // Remote facilitator up: paying works.
    let paid = pay_and_retry(|| shop.http.get(&url), shop.payer(), Wire::V2).await;
    assert_eq!(paid.status(), 200);

    // Facilitator gone.
    shop.base.facilitator.take().unwrap().shutdown().await;
    let before = shop.pay_to_balance().await;
    let txs_before = shop.base.chain.facilitator_tx_count().await;

    // Asking the price needs no facilitator (`payment_for` checks it is a 402).
    let payment = shop.payment_for(&url, Wire::V2).await;
    let response = shop.get_paid(&url, &payment).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = response.text().await.unwrap();
    assert!(body.contains("facilitator is unavailable"), "{body}");
    assert!(!body.contains("sunny"), "{body}");

    assert_eq!(shop.pay_to_balance().await, before);
    assert_eq!(shop.base.chain.facilitator_tx_count().await, txs_before);
}
