//! A handler that fails (status >= 400) is passed through and its payment is never settled.

mod common;

use common::Shop;
use x402_testkit::{Wire, pay_and_retry, receipt_of};

#[tokio::test]
async fn a_failing_handler_is_not_charged() {
    let shop = Shop::start().await;
    let url = format!("{}/fail", shop.url);
    let payer = shop.payer().address();
    let payer_before = shop.base.chain.balance(payer).await;
    let txs_before = shop.base.chain.facilitator_tx_count().await;

    let response = pay_and_retry(|| shop.http.post(&url), shop.payer(), Wire::V2).await;
    assert_eq!(response.status(), 500);
    assert!(receipt_of(response.headers()).is_none());
    assert_eq!(response.text().await.unwrap(), "backend exploded");

    assert_eq!(shop.base.chain.balance(payer).await, payer_before);
    assert_eq!(shop.base.chain.facilitator_tx_count().await, txs_before);
}
