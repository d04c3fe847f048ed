//! A payment settled for what its streamed answer used buys that answer once. Once the guard
//! has forgotten it (its response cache expired, or the server restarted), the same request
//! with the same payment is found spent by the facilitator, whose log gives our idempotency
//! key its receipt back: it is answered 409 with that receipt, nothing new is sent or settled,
//! and the handler does not run again when the quote announced a stream (one that did not is
//! run, and its stream dropped unsent). An `exact` payment, which settled its price before the
//! answer left, still gets its (lost) answer again. Runs in front of a scripted facilitator.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use http::StatusCode;
use http_body_util::BodyExt;
use x402_paywall::{PaywallConfig, ResponseCacheConfig};
use x402_proto::{ReasonCode, U256, VerifyResponse, decode_header};
use x402_testkit::{MOCK_PAYER, MockFacilitator, mock_settled};

mod common;
use common::streams::{PER_EVENT, START, pay, receipt_event_in, send, shop};

/// How long the guard remembers a paid request here.
const TTL: Duration = Duration::from_millis(300);

/// The facilitator's answer to a payment already settled.
fn spent() -> VerifyResponse {
    VerifyResponse::invalid(
        ReasonCode::PERMIT2_INVALID_NONCE,
        "the permit's nonce is used",
        Some(MOCK_PAYER.to_owned()),
    )
}

/// Waits for the guard to forget, then sends `path` with `paying` again: it must be answered
/// 409 with the receipt (`0xabc`), and so must a retry while the guard remembers, without
/// asking the facilitator.
async fn refused_again(app: &Router, facilitator: &MockFacilitator, path: &str, paying: &str) {
    tokio::time::sleep(TTL * 2).await;
    let again = send(app, path, paying).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let receipt: x402_proto::SettleResponse =
        decode_header(again.headers()["payment-response"].as_bytes()).unwrap();
    assert!(receipt.success);
    assert_eq!(receipt.transaction, "0xabc");
    let text = again.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&text).contains(ReasonCode::PAYMENT_ALREADY_USED.as_str()),
        "{text:?}"
    );
    let calls = facilitator.settle_calls();
    let verified = facilitator.verify_calls.load(Ordering::SeqCst);
    let remembered = send(app, path, paying).await;
    assert_eq!(remembered.status(), StatusCode::CONFLICT);
    assert_eq!(facilitator.settle_calls(), calls);
    assert_eq!(facilitator.verify_calls.load(Ordering::SeqCst), verified);
}

/// Pays `path` with payment `nonce` and reads the stream to its receipt: the payment.
async fn streamed(app: &Router, path: &str, nonce: u8) -> String {
    let (paying, response) = pay(app, path, nonce).await;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(receipt_event_in(&String::from_utf8_lossy(&body)).success);
    paying
}

#[tokio::test]
async fn a_retry_after_the_guard_forgot_gets_409_with_the_receipt_not_a_new_stream() {
    // Each payment verifies once, then is spent; settling answers from the facilitator's log.
    let facilitator = Arc::new(MockFacilitator::new(
        vec![
            Ok(VerifyResponse::valid(MOCK_PAYER)),
            Ok(spent()),
            Ok(spent()),
            Ok(VerifyResponse::valid(MOCK_PAYER)),
            Ok(spent()),
            Ok(VerifyResponse::valid(MOCK_PAYER)),
            Ok(spent()),
        ],
        vec![Ok(mock_settled("0xabc"))],
    ));
    let config = PaywallConfig {
        response_cache: ResponseCacheConfig {
            ttl: TTL,
            ..ResponseCacheConfig::default()
        },
        ..PaywallConfig::default()
    };
    let (app, runs) = shop(facilitator.clone(), config);

    // A stream the quote announces: never run again.
    let path = "/announced?events=3";
    let paying = streamed(&app, path, 50).await;
    assert_eq!(
        facilitator.settled_amounts(),
        vec![U256::from(START + 3 * PER_EVENT)]
    );
    for _ in 0..2 {
        refused_again(&app, &facilitator, path, &paying).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the handler did not run");
    }
    // The facilitator was only asked again under the same key, which its log answers with
    // the settlement made: nothing new was settled.
    let keys = facilitator.settle_keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 3);
    assert!(keys[0].is_some() && keys.iter().all(|key| *key == keys[0]));

    // A stream the quote did not announce: run, and dropped unsent.
    let path = "/metered?events=3";
    let paying = streamed(&app, path, 51).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    refused_again(&app, &facilitator, path, &paying).await;
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let keys = facilitator.settle_keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 5);
    assert!(keys[3].is_some() && keys[4] == keys[3]);

    // `exact` settled its price before its stream left: a retry gets the answer again.
    let (paying, response) = pay(&app, "/fixed?events=1", 52).await;
    response.into_body().collect().await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    tokio::time::sleep(TTL * 2).await;
    let again = send(&app, "/fixed?events=1", &paying).await;
    assert_eq!(again.status(), StatusCode::OK);
    let events = again.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&events).ends_with("data: [DONE]\n\n"));
    assert_eq!(runs.load(Ordering::SeqCst), 5);
}
