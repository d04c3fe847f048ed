//! One signed payment buys one response: replayed after settlement for the same request it
//! gets the same answer again (charged once); for another request, or twice at once, it is
//! refused.

mod common;

use alloy::primitives::U256;
use common::{PRICE_ATOMIC, Shop};
use x402_testkit::{Wire, challenge_of, payment_for, receipt_of};

#[tokio::test]
async fn a_replayed_payment_is_answered_again_for_its_request_and_refused_for_others() {
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
    let receipt = receipt_of(paid.headers()).unwrap();
    let body = paid.text().await.unwrap();
    let replay = shop
        .http
        .get(&url)
        .header(name, &value)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 200, "the same request is answered again");
    assert_eq!(receipt_of(replay.headers()).unwrap(), receipt);
    assert_eq!(replay.text().await.unwrap(), body);

    // The same payment for another request of the same price.
    let other = shop
        .http
        .get(format!("{url}?city=paris"))
        .header(name, &value)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 402);
    let error = challenge_of(other.headers()).error.unwrap();
    assert!(error.contains("payment_already_used"), "{error}");
    assert!(!other.text().await.unwrap().contains("sunny"));
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
