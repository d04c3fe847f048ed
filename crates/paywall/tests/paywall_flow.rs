//! One route, both protocol versions: the challenge (v2 header, v1 body, HTML for browsers),
//! payment with PAYMENT-SIGNATURE or X-PAYMENT, the matching receipt, prices computed from the
//! body, settling before the handler, and what the handler learns about the payment.

mod common;

use alloy::primitives::U256;
use common::{PRICE_ATOMIC, Shop};
use serde_json::{Value, json};
use x402_proto::{Network, TokenAmount, v1};
use x402_testkit::{Wire, challenge_of, pay_and_retry, payment_for, receipt_of};

#[tokio::test]
async fn v1_and_v2_clients_both_pay_the_same_route() {
    let shop = Shop::start().await;
    let url = format!("{}/weather", shop.url);

    // The challenge speaks both versions at once.
    let challenge = shop.http.get(&url).send().await.unwrap();
    assert_eq!(challenge.status(), 402);
    let headers = challenge.headers().clone();
    assert_eq!(headers["cache-control"], "no-store");
    let exposed = headers["access-control-expose-headers"].to_str().unwrap();
    for name in ["PAYMENT-REQUIRED", "PAYMENT-RESPONSE", "X-PAYMENT-RESPONSE"] {
        assert!(exposed.contains(name), "{exposed}");
    }
    let v2 = challenge_of(&headers);
    assert_eq!(
        v2.accepts[0].amount,
        TokenAmount::from_atomic(PRICE_ATOMIC.into())
    );
    assert_eq!(v2.accepts[0].network, Network::BASE);
    assert_eq!(v2.resource.url, url);
    assert_eq!(v2.resource.description.as_deref(), Some("Today's weather"));
    let v1: v1::PaymentRequired = challenge.json().await.unwrap();
    assert_eq!(v1.accepts[0].network.as_str(), "base");
    assert_eq!(v1.accepts[0].max_amount_required, v2.accepts[0].amount);
    assert_eq!(v1.accepts[0].resource, url);

    for (wire, receipt_header) in [
        (Wire::V2, "payment-response"),
        (Wire::V1, "x-payment-response"),
    ] {
        let paid = pay_and_retry(|| shop.http.get(&url), shop.payer(), wire).await;
        assert_eq!(paid.status(), 200, "{wire:?}");
        assert!(
            paid.headers().contains_key(receipt_header),
            "{wire:?}: {:?}",
            paid.headers()
        );
        let receipt = receipt_of(paid.headers()).unwrap();
        assert!(receipt.success, "{receipt:?}");
        assert!(receipt.transaction.starts_with("0x"));
        let body: Value = paid.json().await.unwrap();
        assert_eq!(body["report"], "sunny");
        assert_eq!(body["amount"], "0.01");
        assert_eq!(body["version"], if wire == Wire::V1 { 1 } else { 2 });
        assert_eq!(
            body["payer"].as_str().unwrap().to_lowercase(),
            shop.payer().address().to_string().to_lowercase()
        );
    }
    shop.assert_paid(2 * PRICE_ATOMIC).await;
}

#[tokio::test]
async fn browsers_get_an_html_paywall_that_still_carries_the_header() {
    let shop = Shop::start().await;
    let response = shop
        .http
        .get(format!("{}/weather", shop.url))
        .header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64)")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 402);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    let challenge = challenge_of(response.headers());
    assert_eq!(challenge.accepts.len(), 1);
    let page = response.text().await.unwrap();
    assert!(page.contains("<h1>Payment required</h1>"), "{page}");
    assert!(page.contains("$0.01"), "{page}");
    assert!(page.contains("Today&#39;s weather"), "{page}");
}

#[tokio::test]
async fn prices_are_quoted_from_the_body_and_bad_input_is_refused_before_payment() {
    let shop = Shop::start().await;
    let url = format!("{}/priced", shop.url);

    let bad = shop
        .http
        .post(&url)
        .json(&json!({"units": "many"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(!bad.headers().contains_key("payment-required"));
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"], "units must be a positive integer");

    let huge = shop
        .http
        .post(&url)
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 400);
    let body: Value = huge.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("larger than"),
        "{body}"
    );

    let request = json!({"units": 7});
    let first = shop.http.post(&url).json(&request).send().await.unwrap();
    // $0.001 per unit × 7 = $0.007 = 7000 micro-USDC.
    assert_eq!(
        challenge_of(first.headers()).accepts[0].amount,
        TokenAmount::from_atomic(7000)
    );
    let before = shop.pay_to_balance().await;
    let (name, value) = payment_for(first, shop.payer(), Wire::V2).await;
    let paid = shop
        .http
        .post(&url)
        .json(&request)
        .header(name, value)
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    let body: Value = paid.json().await.unwrap();
    assert_eq!(body, json!({"units": 7, "charged": "0.007"}));
    assert_eq!(shop.pay_to_balance().await - before, U256::from(7000));

    // A payment for 7 units does not buy 8: the quote differs, so nothing matches.
    let first = shop.http.post(&url).json(&request).send().await.unwrap();
    let (name, value) = payment_for(first, shop.payer(), Wire::V2).await;
    let more = shop
        .http
        .post(&url)
        .json(&json!({"units": 8}))
        .header(name, value)
        .send()
        .await
        .unwrap();
    assert_eq!(more.status(), 402);
    let error = challenge_of(more.headers()).error.unwrap();
    assert!(
        error.contains("No matching payment requirements"),
        "{error}"
    );
}

#[tokio::test]
async fn settling_before_the_handler_gives_it_the_transaction() {
    let shop = Shop::start().await;
    let url = format!("{}/job", shop.url);
    let paid = pay_and_retry(|| shop.http.post(&url), shop.payer(), Wire::V2).await;
    assert_eq!(paid.status(), 200);
    let receipt = receipt_of(paid.headers()).unwrap();
    let body: Value = paid.json().await.unwrap();
    assert_eq!(body["transaction"], receipt.transaction);
}
