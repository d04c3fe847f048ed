//! A metered handler whose body streams puts a `UsageMeter` in its response: the paywall sends
//! the body at once and settles what the meter read when the body ended, or when it was dropped
//! (the client went away), exactly once, capped at the price paid. An event stream read to its
//! end carries the receipt as its last event (after `data: [DONE]`), a failed settlement
//! included; the stream is never served again for the same payment. A fixed-price (`exact`)
//! stream settles its price before it is sent, as before. Runs as `oneshot` calls in front of a
//! scripted facilitator that records what it was asked to settle.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use x402_paywall::{Paywall, PaywallConfig, RECEIPT_EVENT, RoutePrice};
use x402_proto::{
    FacilitatorError, ReasonCode, SettleResponse, U256, Usage, UsageMeter, decode_header, v2,
};
use x402_testkit::{MOCK_PAYER, MockFacilitator, mock_payment_header, mock_settled};

mod common;
use common::{ToyMetered, exact_and_metered_options};

/// What the meter reads before any event is sent (a prompt), and what each event adds.
const START: u64 = 5;
const PER_EVENT: u64 = 10;

/// Streams `?events=N` server-sent events, then `data: [DONE]` (or, with `&hang`, nothing more
/// and never ends); the meter grows as each event is handed on. Counts its runs.
fn streaming_handler(runs: Arc<AtomicUsize>) -> axum::routing::MethodRouter {
    get(move |uri: http::Uri| {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            let query = uri.query().unwrap_or_default().to_owned();
            let events: u64 = query
                .split('&')
                .find_map(|q| q.strip_prefix("events="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(3);
            let hang = query.split('&').any(|q| q == "hang");
            let meter = UsageMeter::starting_at(Usage::atomic(START.into()));
            let recorder = meter.clone();
            let sent = futures_util::stream::iter(0..events).map(move |i| {
                recorder.record(Usage::atomic((START + PER_EVENT * (i + 1)).into()));
                Ok::<_, std::convert::Infallible>(Bytes::from(format!("data: {{\"n\":{i}}}\n\n")))
            });
            let body = if hang {
                Body::from_stream(sent.chain(futures_util::stream::pending()))
            } else {
                let done = Ok(Bytes::from("data: [DONE]\n\n"));
                Body::from_stream(sent.chain(futures_util::stream::iter([done])))
            };
            let mut response: Response =
                ([(http::header::CONTENT_TYPE, "text/event-stream")], body).into_response();
            response.extensions_mut().insert(meter);
            response
        }
    })
}

/// `/metered` (scheme `toy-metered`) and `/fixed` (`exact`), both $0.0001 = 100 units, both
/// streaming, and `/short`, metered with a 2-second timeout; the handler's runs.
fn shop(facilitator: Arc<MockFacilitator>) -> (Router, Arc<AtomicUsize>) {
    let (exact, metered) = exact_and_metered_options();
    let short = metered.clone().with_max_timeout(2);
    let price = || RoutePrice::fixed("$0.0001".parse().unwrap());
    let paywall = |option| {
        Paywall::new(facilitator.clone(), vec![option], PaywallConfig::default())
            .unwrap()
            .with_schemes(vec![Arc::new(ToyMetered)])
    };
    let runs = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/metered",
            streaming_handler(runs.clone()).layer(paywall(metered).layer(price())),
        )
        .route(
            "/fixed",
            streaming_handler(runs.clone()).layer(paywall(exact).layer(price())),
        )
        .route(
            "/short",
            streaming_handler(runs.clone()).layer(paywall(short).layer(price())),
        );
    (app, runs)
}

/// The header paying `path` (payment `nonce`).
async fn payment(app: &Router, path: &str, nonce: u8) -> String {
    let unpaid = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(unpaid.status(), 402);
    let challenge: v2::PaymentRequired =
        decode_header(unpaid.headers()["payment-required"].as_bytes()).unwrap();
    mock_payment_header(&challenge.accepts[0], nonce)
}

/// Pays `path` (payment `nonce`) and sends it: the payment and the answer, whose body is not
/// read yet.
async fn pay(app: &Router, path: &str, nonce: u8) -> (String, Response) {
    let paying = payment(app, path, nonce).await;
    let response = send(app, path, &paying).await;
    assert_eq!(response.status(), 200);
    (paying, response)
}

async fn send(app: &Router, path: &str, payment: &str) -> Response {
    app.clone()
        .oneshot(
            Request::get(path)
                .header("PAYMENT-SIGNATURE", payment)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap()
}

/// The receipt carried by the last event of `events`, which must be the receipt event after
/// `data: [DONE]`.
fn last_event_receipt(events: &str) -> SettleResponse {
    let (before, _) = events.rsplit_once("event: ").unwrap();
    assert!(before.ends_with("data: [DONE]\n\n"), "{events:?}");
    receipt_event_in(events)
}

/// The receipt carried by the last event of `events`, which must be the receipt event.
fn receipt_event_in(events: &str) -> SettleResponse {
    let (_, receipt) = events
        .rsplit_once(&format!("event: {RECEIPT_EVENT}\ndata: "))
        .unwrap_or_else(|| panic!("no receipt event in {events:?}"));
    let receipt = receipt.strip_suffix("\n\n").expect("the event is complete");
    decode_header(receipt.as_bytes()).unwrap()
}

/// Waits (at most 5 s) until `facilitator` was asked to settle `calls` times.
async fn settle_calls(facilitator: &MockFacilitator, calls: usize) {
    for _ in 0..100 {
        if facilitator.settle_calls() >= calls {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{} settle calls after 5 s, expected {calls}",
        facilitator.settle_calls()
    );
}

#[tokio::test]
async fn an_event_stream_read_to_its_end_ends_with_its_receipt_and_is_not_sent_again() {
    let facilitator = Arc::new(MockFacilitator::default());
    let (app, runs) = shop(facilitator.clone());
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
    let (app, _) = shop(facilitator.clone());
    let (paying, response) = pay(&app, "/metered?events=1000", 3).await;
    let mut body = response.into_body();
    for _ in 0..2 {
        let frame = body.frame().await.unwrap().unwrap();
        assert!(frame.is_data());
    }
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
            Ok(refused),
            Err(FacilitatorError::Unavailable("down".into())),
            Ok(mock_settled("0xdef")),
        ],
    ));
    let (app, _) = shop(facilitator.clone());
    let mut reasons = Vec::new();
    for nonce in [4, 5] {
        let (_, response) = pay(&app, "/metered", nonce).await;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let receipt = last_event_receipt(&String::from_utf8_lossy(&body));
        assert!(!receipt.success, "{receipt:?}");
        reasons.push(receipt.error_reason.unwrap().to_string());
    }
    assert_eq!(reasons, ["insufficient_funds", "unexpected_settle_error"]);
}

#[tokio::test]
async fn a_fixed_price_stream_settles_its_price_before_it_is_sent() {
    let facilitator = Arc::new(MockFacilitator::default());
    let (app, _) = shop(facilitator.clone());
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
    let (app, _) = shop(facilitator.clone());
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
