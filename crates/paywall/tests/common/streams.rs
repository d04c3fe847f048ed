//! A metered streaming handler and the calls that pay it, for tests in front of a scripted
//! facilitator ([`MockFacilitator`]) that send requests as `oneshot` calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::StreamExt;
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use x402_paywall::{Paywall, PaywallConfig, Quote, RECEIPT_EVENT, RoutePrice};

use super::{ToyMetered, exact_and_metered_options};
use x402_proto::{SettleResponse, Usage, UsageMeter, decode_header, v2};
use x402_testkit::{MockFacilitator, mock_payment_header};

/// What the meter reads before any event is sent (a prompt), and what each event adds.
pub const START: u64 = 5;
pub const PER_EVENT: u64 = 10;

/// Streams `?events=N` server-sent events (each padded with `&pad=BYTES`), then `data: [DONE]`
/// (or, with `&hang`, nothing more and never ends); the meter grows as each event is handed
/// on. Counts its runs.
pub fn streaming_handler(runs: Arc<AtomicUsize>) -> axum::routing::MethodRouter {
    get(move |uri: http::Uri| {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            let query = uri.query().unwrap_or_default().to_owned();
            let number = |name: &str| {
                query
                    .split('&')
                    .find_map(|q| q.strip_prefix(name)?.strip_prefix('='))
                    .and_then(|n| n.parse::<u64>().ok())
            };
            let events = number("events").unwrap_or(3);
            let padding = match number("pad") {
                Some(bytes) => format!(",\"pad\":\"{}\"", "x".repeat(bytes as usize)),
                None => String::new(),
            };
            let hang = query.split('&').any(|q| q == "hang");
            if query.split('&').any(|q| q == "plain") {
                // Not streamed: the usage is reported with the whole answer.
                let mut response: Response = "a plain answer".into_response();
                response
                    .extensions_mut()
                    .insert(Usage::atomic((START + PER_EVENT).into()));
                return response;
            }
            let meter = UsageMeter::starting_at(Usage::atomic(START.into()));
            let recorder = meter.clone();
            let sent = futures_util::stream::iter(0..events).map(move |i| {
                recorder.record(Usage::atomic((START + PER_EVENT * (i + 1)).into()));
                let event = format!("data: {{\"n\":{i}{padding}}}\n\n");
                Ok::<_, std::convert::Infallible>(Bytes::from(event))
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

/// `/metered` (scheme `toy-metered`, 300-second timeout) and `/fixed` (`exact`), both $0.0001
/// = 100 units, both streaming, `/short`, metered with a 2-second timeout, and `/announced`,
/// metered, whose quote says it streams, behind the same paywall as `/metered`; the handler's
/// runs. Every paywall has `config`.
pub fn shop(
    facilitator: Arc<MockFacilitator>,
    config: PaywallConfig,
) -> (Router, Arc<AtomicUsize>) {
    let (exact, metered) = exact_and_metered_options();
    let short = metered.clone().with_max_timeout(2);
    let price = || RoutePrice::fixed("$0.0001".parse().unwrap());
    let announced =
        RoutePrice::computed(|_, _| Ok(Quote::usd("$0.0001".parse().unwrap()).streamed()));
    let paywall = |option| {
        Paywall::new(facilitator.clone(), vec![option], config.clone())
            .unwrap()
            .with_schemes(vec![Arc::new(ToyMetered)])
    };
    let runs = Arc::new(AtomicUsize::new(0));
    // One paywall, so one guard, for both metered routes.
    let metered = paywall(metered);
    let app = Router::new()
        .route(
            "/metered",
            streaming_handler(runs.clone()).layer(metered.layer(price())),
        )
        .route(
            "/fixed",
            streaming_handler(runs.clone()).layer(paywall(exact).layer(price())),
        )
        .route(
            "/short",
            streaming_handler(runs.clone()).layer(paywall(short).layer(price())),
        )
        .route(
            "/announced",
            streaming_handler(runs.clone()).layer(metered.layer(announced)),
        );
    (app, runs)
}

/// The header paying `path` (payment `nonce`).
pub async fn payment(app: &Router, path: &str, nonce: u8) -> String {
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
pub async fn pay(app: &Router, path: &str, nonce: u8) -> (String, Response) {
    let paying = payment(app, path, nonce).await;
    let response = send(app, path, &paying).await;
    assert_eq!(response.status(), 200);
    (paying, response)
}

/// Pays `path` (payment `nonce`) and reads the first two events of its stream: the payment, and
/// the rest of the body, unread.
pub async fn two_events_read(app: &Router, path: &str, nonce: u8) -> (String, Body) {
    let (paying, response) = pay(app, path, nonce).await;
    let mut body = response.into_body();
    for _ in 0..2 {
        let frame = body.frame().await.unwrap().unwrap();
        assert!(frame.is_data());
    }
    (paying, body)
}

pub async fn send(app: &Router, path: &str, payment: &str) -> Response {
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

/// The receipt carried by the last event of `events`, which must be the receipt event.
pub fn receipt_event_in(events: &str) -> SettleResponse {
    let (_, receipt) = events
        .rsplit_once(&format!("event: {RECEIPT_EVENT}\ndata: "))
        .unwrap_or_else(|| panic!("no receipt event in {events:?}"));
    let receipt = receipt.strip_suffix("\n\n").expect("the event is complete");
    decode_header(receipt.as_bytes()).unwrap()
}

/// Reads the rest of a stream that was cut off after some events: it must be only the receipt
/// event, a successful one, and the end.
pub async fn only_a_successful_receipt_follows(body: Body) {
    let rest = body.collect().await.unwrap().to_bytes();
    let rest = String::from_utf8(rest.to_vec()).unwrap();
    assert!(rest.starts_with("event: "), "{rest}");
    assert!(!rest.contains("\"n\":"), "{rest}");
    assert!(receipt_event_in(&rest).success, "{rest}");
}

/// Waits (at most 5 s) until `facilitator` was asked to settle `calls` times.
pub async fn settle_calls(facilitator: &MockFacilitator, calls: usize) {
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
