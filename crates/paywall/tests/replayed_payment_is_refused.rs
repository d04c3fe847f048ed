//! One signed payment buys one response: replayed after settlement, or sent twice at once.

mod common;

use alloy::primitives::U256;
use common::{PRICE_ATOMIC, Shop};
use x402_testkit::{Wire, challenge_of, payment_for};

#[tokio::test]
async fn a_replayed_payment_is_refused() {
    let shop = Shop::start().await;
    let url = format!("{}/weather", shop.url);
    let before = shop.pay_to_balance().await;
    let first = shop.http.get(&url).send().await.unwrap();
    let (name, value) = payment_for(first, shop.payer(), Wire::V2).await;

    let paid = shop
        .http
        .get(&url)
        .header(name, &value)
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    let replay = shop
        .http
        .get(&url)
        .header(name, &value)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 402);
    let error = challenge_of(replay.headers()).error.unwrap();
    assert!(error.contains("nonce"), "{error}");
    assert!(!replay.text().await.unwrap().contains("sunny"));
    assert_eq!(
        shop.pay_to_balance().await - before,
        U256::from(PRICE_ATOMIC)
    );
}

#[tokio::test]
async fn the_same_payment_sent_twice_at_once_buys_one_response() {
    let shop = Shop::start().await;
    let url = format!("{}/slow", shop.url);
    let before = shop.pay_to_balance().await;
    let first = shop.http.get(&url).send().await.unwrap();
    let (name, value) = payment_for(first, shop.payer(), Wire::V2).await;

    let send = || shop.http.get(&url).header(name, &value).send();
    let (a, b) = tokio::join!(send(), send());
    let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 402]);
    assert_eq!(
        shop.pay_to_balance().await - before,
        U256::from(PRICE_ATOMIC)
    );
}
