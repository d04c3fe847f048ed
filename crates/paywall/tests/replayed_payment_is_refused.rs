//! One signed payment buys one response: replayed after settlement for the same request it
//! gets the same answer again (charged once); for another request, or twice at once, it is
//! refused.

mod common;

use common::{PRICE_ATOMIC, Shop};
use x402_testkit::{Wire, challenge_of, receipt_of};

#[tokio::test]
async fn a_replayed_payment_is_answered_again_for_its_request_and_refused_for_others() {
    let shop = Shop::start().await;
    let url = format!("{}/weather", shop.url);
    let payment = shop.payment_for(&url, Wire::V2).await;

    let paid = shop.get_paid(&url, &payment).await;
    assert_eq!(paid.status(), 200);
    let receipt = receipt_of(paid.headers()).unwrap();
    let body = paid.text().await.unwrap();
    let replay = shop.get_paid(&url, &payment).await;
    assert_eq!(replay.status(), 200, "the same request is answered again");
    assert_eq!(receipt_of(replay.headers()).unwrap(), receipt);
    assert_eq!(replay.text().await.unwrap(), body);

    // The same payment for another request of the same price.
    let other = shop.get_paid(&format!("{url}?city=paris"), &payment).await;
    assert_eq!(other.status(), 402);
    let error = challenge_of(other.headers()).error.unwrap();
    assert!(error.contains("payment_already_used"), "{error}");
    assert!(!other.text().await.unwrap().contains("sunny"));
    shop.assert_paid(PRICE_ATOMIC).await;
}

#[tokio::test]
async fn the_same_payment_sent_twice_at_once_buys_one_response() {
    let shop = Shop::start().await;
    let url = format!("{}/slow", shop.url);
    let payment = shop.payment_for(&url, Wire::V2).await;

    let (a, b) = tokio::join!(shop.get_paid(&url, &payment), shop.get_paid(&url, &payment));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 402]);
    shop.assert_paid(PRICE_ATOMIC).await;
}
