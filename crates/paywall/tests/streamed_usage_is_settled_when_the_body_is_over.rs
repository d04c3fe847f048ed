//! A metered handler whose body streams puts a `UsageMeter` in its response: the paywall sends
//! the body at once and settles what the meter read when the body ended, or when it was dropped
//! (the client went away), exactly once, capped at the price paid. An event stream read to its
//! end carries the receipt as its last event (after `data: [DONE]`), a failed settlement
//! included; the stream is never served again for the same payment. A fixed-price (`exact`)
//! stream settles its price before it is sent, as before. As the content leaves before the
//! money moves, a stream is cut off in time to settle before its payment's deadline; a payment
//! whose deadline leaves too little time is refused before the handler runs, and so is a payer
//! with a stream unsettled, or who left one unpaid (who may still buy answers that settle
//! before they leave). Runs as `oneshot` calls in front of a scripted facilitator that records
//! what it was asked to settle.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use http::StatusCode;
use http_body_util::BodyExt;
use x402_paywall::{PaywallConfig, RECEIPT_EVENT};
use x402_proto::{FacilitatorError, ReasonCode, SettleResponse, U256, decode_header, v2};
use x402_testkit::{MOCK_PAYER, MockFacilitator, mock_settled};

mod common;
use common::streams::{
    PER_EVENT, START, pay, payment, receipt_event_in, send, settle_calls, shop, two_events_read,
};

/// Unix time now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sends `path` with a payment (`nonce`) that can settle for `seconds` more: the answer.
async fn send_settling_within(app: &Router, path: &str, nonce: u8, seconds: u64) -> Response {
    let header = payment(app, path, nonce).await;
    let mut payment: serde_json::Value = decode_header(header.as_bytes()).unwrap();
    let settle_by = unix_now() + seconds;
    payment["payload"]["authorization"]["validBefore"] = settle_by.to_string().into();
    send(app, path, &x402_proto::encode_header(&payment)).await
}

/// The `error` of a refusal's JSON body, or of its challenge.
async fn refusal_message(response: Response) -> String {
    let challenge = response
        .headers()
        .get("payment-required")
        .map(|value| decode_header::<v2::PaymentRequired>(value.as_bytes()).unwrap());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    match challenge.and_then(|c| c.error) {
        Some(error) => error,
        None => String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The receipt carried by the last event of `events`, which must be the receipt event after
/// `data: [DONE]`.
fn last_event_receipt(events: &str) -> SettleResponse {
    let (before, _) = events.rsplit_once("event: ").unwrap();
    assert!(before.ends_with("data: [DONE]\n\n"), "{events:?}");
    receipt_event_in(events)
}

#[tokio::test]
async fn an_event_stream_read_to_its_end_ends_with_its_receipt_and_is_not_sent_again() {
    let facilitator = Arc::new(MockFacilitator::default());
    let (app, runs) = shop(facilitator.clone(), PaywallConfig::default());
    let (paying, response) = pay(&app, "/metered?events=3", 1).await;
    assert!(
        !response.headers().contains_key("payment-response"),
        "the headers left before the money moved"
    );
    // Nothing is settled before the body is read.
    assert_eq!(facilitator.settle_calls(), 0);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let events = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        events.starts_with("data: {\"n\":0}\n\ndata: {\"n\":1}\n\ndata: {\"n\":2}\n\n"),
        "{events}"
    );
    let receipt = last_event_receipt(&events);
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(receipt.transaction, "0xabc");
    assert_eq!(
        facilitator.settled_amounts(),
        vec![U256::from(START + 3 * PER_EVENT)]
    );

    // The same request with the same payment: told it was served, with the receipt; the
    // handler does not run again.
    let again = send(&app, "/metered?events=3", &paying).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert!(again.headers().contains_key("payment-response"));
    let text = again.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&text).contains(ReasonCode::PAYMENT_ALREADY_USED.as_str()),
        "{text:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // Ending and then dropping the body settled once.
    assert_eq!(facilitator.settle_calls(), 1);

    // Usage above the price paid settles the price.
    let (_, response) = pay(&app, "/metered?events=20", 2).await;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(last_event_receipt(&String::from_utf8_lossy(&body)).success);
    assert_eq!(facilitator.settled_amounts()[1], U256::from(100u64));
}

#[tokio::test]
async fn a_stream_dropped_midway_is_settled_once_for_what_was_sent() {
    let facilitator = Arc::new(MockFacilitator::default());
    let (app, _) = shop(facilitator.clone(), PaywallConfig::default());
    let (paying, body) = two_events_read(&app, "/metered?events=1000", 3).await;
    // The client goes away: the server drops the body.
    drop(body);
    settle_calls(&facilitator, 1).await;
    assert_eq!(
        facilitator.settled_amounts(),
        vec![U256::from(START + 2 * PER_EVENT)]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(facilitator.settle_calls(), 1, "settled once");

    // The payment bought that stream: another request with it is refused.
    let other = send(&app, "/metered?events=2", &paying).await;
    assert_eq!(other.status(), 402);
    assert_eq!(facilitator.settle_calls(), 1);
}

#[tokio::test]
async fn a_failed_settlement_is_the_last_event() {
    let mut refused = mock_settled("");
    refused.success = false;
    refused.error_reason = Some(ReasonCode::INSUFFICIENT_FUNDS);
    let facilitator = Arc::new(MockFacilitator::new(
        vec![Ok(x402_proto::VerifyResponse::valid(MOCK_PAYER))],
        vec![
            Err(FacilitatorError::Unavailable("down".into())),
            Ok(refused),
            Ok(mock_settled("0xdef")),
        ],
    ));
    let (app, _) = shop(facilitator.clone(), PaywallConfig::default());
    let mut reasons = Vec::new();
    // The facilitator's failure is not the payer's: it is served its next stream.
    for nonce in [4, 5] {
        let (_, response) = pay(&app, "/metered", nonce).await;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let receipt = last_event_receipt(&String::from_utf8_lossy(&body));
        assert!(!receipt.success, "{receipt:?}");
        reasons.push(receipt.error_reason.unwrap().to_string());
    }
    assert_eq!(reasons, ["unexpected_settle_error", "insufficient_funds"]);
}

#[tokio::test]
async fn a_payer_who_left_a_stream_unpaid_gets_no_more_streams_but_may_still_pay() {
    let mut refused = mock_settled("");
    refused.success = false;
    refused.error_reason = Some(ReasonCode::PERMIT2_INSUFFICIENT_BALANCE);
    refused.error_message = Some("the payer moved its funds away".into());
    let facilitator = Arc::new(MockFacilitator::new(
        vec![Ok(x402_proto::VerifyResponse::valid(MOCK_PAYER))],
        vec![Ok(refused), Ok(mock_settled("0xdef"))],
    ));
    let (app, runs) = shop(facilitator.clone(), PaywallConfig::default());
    // The payer drains its balance while its stream runs: the answer went out unpaid.
    let (_, response) = pay(&app, "/announced?events=3", 10).await;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!last_event_receipt(&String::from_utf8_lossy(&body)).success);
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // Its next stream is refused before the handler runs, naming the unpaid settlement.
    let paying = payment(&app, "/announced", 11).await;
    let refusal = send(&app, "/announced", &paying).await;
    assert_eq!(refusal.status(), 402);
    let message = refusal_message(refusal).await;
    assert!(
        message.contains("left a streamed answer unpaid"),
        "{message}"
    );
    assert!(
        message.contains("permit2_insufficient_balance") && message.contains(MOCK_PAYER),
        "{message}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the handler did not run");
    // On a route whose quote does not say it streams, the handler's stream is dropped unsent.
    let paying = payment(&app, "/metered", 12).await;
    let refusal = send(&app, "/metered", &paying).await;
    assert_eq!(refusal.status(), 402);
    assert!(refusal_message(refusal).await.contains("unpaid"));
    assert_eq!(facilitator.settle_calls(), 1, "nothing more was settled");

    // What settles before it leaves is still sold to it: a metered answer that is not
    // streamed, and an `exact` stream.
    let (_, plain) = pay(&app, "/metered?plain", 13).await;
    assert!(plain.headers().contains_key("payment-response"));
    let body = plain.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"a plain answer");
    let (_, fixed) = pay(&app, "/fixed?events=1", 14).await;
    assert!(fixed.headers().contains_key("payment-response"));
    assert_eq!(
        facilitator.settled_amounts()[1..],
        [U256::from(START + PER_EVENT), U256::from(100u64)]
    );
}

#[tokio::test]
async fn a_payer_gets_one_stream_at_a_time() {
    let facilitator = Arc::new(MockFacilitator::default());
    let (app, runs) = shop(facilitator.clone(), PaywallConfig::default());
    let (_, running) = pay(&app, "/announced?events=1&hang", 20).await;
    let paying = payment(&app, "/announced", 21).await;
    let busy = send(&app, "/announced", &paying).await;
    assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refusal_message(busy).await.contains("not yet settled"));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // Once the first is over and settled, the same payment is served.
    drop(running);
    settle_calls(&facilitator, 1).await;
    let mut served = send(&app, "/announced?events=1", &paying).await;
    for _ in 0..100 {
        if served.status() == 200 {
            break;
        }
        // The first stream's hold goes once its settlement is recorded.
        tokio::time::sleep(Duration::from_millis(50)).await;
        served = send(&app, "/announced?events=1", &paying).await;
    }
    assert_eq!(served.status(), 200);
}

#[tokio::test]
async fn a_payment_whose_deadline_leaves_too_little_time_is_refused_before_the_handler() {
    let facilitator = Arc::new(MockFacilitator::default());
    let (app, runs) = shop(facilitator.clone(), PaywallConfig::default());
    // 25 s left: less the 10-second margin, 15 s to stream, short of the 20 s needed.
    let refusal = send_settling_within(&app, "/announced", 30, 25).await;
    assert_eq!(refusal.status(), 402);
    let message = refusal_message(refusal).await;
    assert!(message.contains("needs at least 20 s"), "{message}");
    assert!(message.contains("maxTimeoutSeconds (300)"), "{message}");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(facilitator.settle_calls(), 0);
}

#[tokio::test]
async fn a_stream_is_cut_off_in_time_to_settle_before_its_payments_deadline() {
    let facilitator = Arc::new(MockFacilitator::default());
    let (app, _) = shop(facilitator.clone(), PaywallConfig::default());
    // The offer allows 300 s; the payer signed a deadline 33 s away: about 23 s to stream.
    let started = std::time::Instant::now();
    let response = send_settling_within(&app, "/announced?events=2&hang", 31, 33).await;
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(120), response.into_body().collect())
        .await
        .expect("the stream is cut off")
        .unwrap()
        .to_bytes();
    let ran = started.elapsed();
    // Cut off by the payment's deadline, long before the offer's timeout would have.
    assert!(ran < Duration::from_secs(60), "ran {ran:?}");
    assert!(ran >= Duration::from_secs(20), "ran {ran:?}");
    let events = String::from_utf8(body.to_vec()).unwrap();
    assert!(receipt_event_in(&events).success, "{events}");
    assert_eq!(
        facilitator.settled_amounts(),
        vec![U256::from(START + 2 * PER_EVENT)]
    );
}

#[tokio::test]
async fn a_fixed_price_stream_settles_its_price_before_it_is_sent() {
    let facilitator = Arc::new(MockFacilitator::default());
    let (app, _) = shop(facilitator.clone(), PaywallConfig::default());
    let (_, response) = pay(&app, "/fixed", 6).await;
    assert_eq!(facilitator.settled_amounts(), vec![U256::from(100u64)]);
    assert!(response.headers().contains_key("payment-response"));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let events = String::from_utf8(body.to_vec()).unwrap();
    assert!(events.ends_with("data: [DONE]\n\n"), "{events}");
    assert!(!events.contains(RECEIPT_EVENT), "{events}");
}

#[tokio::test]
async fn a_stream_that_would_outlive_its_payment_is_cut_off_and_settled() {
    let facilitator = Arc::new(MockFacilitator::default());
    let (app, _) = shop(facilitator.clone(), PaywallConfig::default());
    // The handler sends two events, then never ends; the offer's timeout is 2 s.
    let (_, response) = pay(&app, "/short?events=2&hang", 8).await;
    let body = tokio::time::timeout(Duration::from_secs(30), response.into_body().collect())
        .await
        .expect("the stream is cut off")
        .unwrap()
        .to_bytes();
    let events = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        events.starts_with("data: {\"n\":0}\n\ndata: {\"n\":1}\n\nevent: "),
        "{events}"
    );
    assert!(receipt_event_in(&events).success);
    assert_eq!(
        facilitator.settled_amounts(),
        vec![U256::from(START + 2 * PER_EVENT)]
    );
}
