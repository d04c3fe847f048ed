//! The paywall as a tower service (`oneshot`: no socket, no chain) in front of a scripted
//! facilitator: it waits through `settlement_pending` with the same idempotency key until the
//! outcome, gives up after its patience without serving, withholds the body when the
//! facilitator refuses the settlement as a duplicate, and answers 503 when no facilitator
//! answers.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use x402_paywall::{PaymentOption, Paywall, PaywallConfig, RoutePrice};
use x402_proto::{
    FacilitatorError, Network, ReasonCode, SettleResponse, VerifyResponse, decode_header, v2,
};
use x402_testkit::{MOCK_PAYER, MockFacilitator, mock_payment_header, mock_settled};

fn app(facilitator: Arc<MockFacilitator>, patience: Duration) -> Router {
    let option = PaymentOption::exact_evm(
        Network::BASE,
        "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        6,
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "USD Coin",
        "2",
    )
    .with_max_timeout(60);
    let config = PaywallConfig {
        settle_patience: patience,
        ..PaywallConfig::default()
    };
    let paywall = Paywall::new(facilitator, vec![option], config).unwrap();
    Router::new().route(
        "/data",
        get(|| async { "paid data" })
            .layer(paywall.layer(RoutePrice::fixed("$0.01".parse().unwrap()))),
    )
}

fn request(payment: Option<&str>) -> Request<Body> {
    let mut builder = Request::get("/data").header("host", "shop.test");
    if let Some(payment) = payment {
        builder = builder.header("PAYMENT-SIGNATURE", payment);
    }
    builder.body(Body::empty()).unwrap()
}

/// The status, the receipt, the 402's error and the body of one call.
async fn call(
    app: &Router,
    payment: Option<&str>,
) -> (u16, Option<SettleResponse>, String, String) {
    let response = app.clone().oneshot(request(payment)).await.unwrap();
    let status = response.status().as_u16();
    let receipt = response
        .headers()
        .get("payment-response")
        .map(|h| decode_header::<SettleResponse>(h.as_bytes()).unwrap());
    let error = response
        .headers()
        .get("payment-required")
        .and_then(|h| decode_header::<v2::PaymentRequired>(h.as_bytes()).ok())
        .and_then(|c| c.error)
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        receipt,
        error,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

async fn offer(app: &Router) -> v2::PaymentRequirements {
    let response = app.clone().oneshot(request(None)).await.unwrap();
    assert_eq!(response.status(), 402);
    let challenge: v2::PaymentRequired =
        decode_header(response.headers()["payment-required"].as_bytes()).unwrap();
    challenge.accepts[0].clone()
}

fn pending() -> SettleResponse {
    SettleResponse::failure(
        Network::BASE,
        ReasonCode::SETTLEMENT_PENDING,
        "sent, not confirmed yet",
        Some(MOCK_PAYER.into()),
        Some("0xabc".into()),
    )
}

fn valid() -> Result<VerifyResponse, FacilitatorError> {
    Ok(VerifyResponse::valid(MOCK_PAYER))
}

#[tokio::test]
async fn settlement_pending_is_waited_through_with_the_same_key() {
    let facilitator = Arc::new(MockFacilitator::new(
        vec![valid()],
        vec![Ok(pending()), Ok(pending()), Ok(mock_settled("0xabc"))],
    ));
    let app = app(facilitator.clone(), Duration::from_secs(30));
    let payment = mock_payment_header(&offer(&app).await, 1);
    let (status, receipt, _, body) = call(&app, Some(&payment)).await;
    assert_eq!(status, 200);
    assert_eq!(body, "paid data");
    assert_eq!(receipt.unwrap().transaction, "0xabc");
    let keys = facilitator.settle_keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 3, "asked until the outcome came");
    assert!(
        keys[0].is_some() && keys.iter().all(|k| *k == keys[0]),
        "{keys:?}"
    );
}

#[tokio::test]
async fn a_settlement_still_pending_after_the_patience_serves_nothing() {
    let facilitator = Arc::new(MockFacilitator::new(vec![valid()], vec![Ok(pending())]));
    let app = app(facilitator.clone(), Duration::from_millis(300));
    let payment = mock_payment_header(&offer(&app).await, 2);
    let (status, receipt, error, body) = call(&app, Some(&payment)).await;
    assert_eq!(status, 402);
    assert_ne!(body, "paid data");
    assert!(error.contains("settlement_pending"), "{error}");
    let receipt = receipt.expect("the pending receipt names the transaction");
    assert_eq!(receipt.error_reason, Some(ReasonCode::SETTLEMENT_PENDING));
    assert_eq!(receipt.transaction, "0xabc");
    assert!(facilitator.settle_calls() >= 1);
}

#[tokio::test]
async fn a_duplicate_settlement_refusal_withholds_the_body() {
    let duplicate = SettleResponse::failure(
        Network::BASE,
        ReasonCode::DUPLICATE_SETTLEMENT,
        "settled for another request",
        Some(MOCK_PAYER.into()),
        None,
    );
    let facilitator = Arc::new(MockFacilitator::new(vec![valid()], vec![Ok(duplicate)]));
    let app = app(facilitator, Duration::from_secs(5));
    let payment = mock_payment_header(&offer(&app).await, 3);
    let (status, _, error, body) = call(&app, Some(&payment)).await;
    assert_eq!(status, 402);
    assert_ne!(body, "paid data");
    assert!(error.contains("duplicate_settlement"), "{error}");
}

#[tokio::test]
async fn no_facilitator_answer_is_a_503_and_nothing_is_served() {
    let facilitator = Arc::new(MockFacilitator::new(
        vec![Err(FacilitatorError::Unavailable(
            "connection refused".into(),
        ))],
        vec![Ok(mock_settled("0xabc"))],
    ));
    let app = app(facilitator.clone(), Duration::from_secs(5));
    let payment = mock_payment_header(&offer(&app).await, 4);
    let (status, _, _, body) = call(&app, Some(&payment)).await;
    assert_eq!(status, 503);
    assert!(body.contains("unavailable"), "{body}");
    assert_eq!(facilitator.settle_calls(), 0, "nothing settled");
}
