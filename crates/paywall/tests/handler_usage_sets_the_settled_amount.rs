//! A handler reports what a paid request used (a `Usage` extension, or the official SDKs'
//! `Settlement-Overrides` header); the route's scheme plug-in turns it into the amount settled,
//! never above the price paid. A fixed-price (`exact`) route settles its price whatever is
//! reported, an unreadable report settles the price paid, and the header never reaches the
//! client. Runs as `oneshot` calls in front of a
//! scripted facilitator that records what it was asked to settle.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, Request};
use tower::ServiceExt;
use x402_paywall::{Paywall, PaywallConfig, RoutePrice};
use x402_proto::{Network, Scheme, U256, Usage, decode_header, v2};
use x402_testkit::{MockFacilitator, mock_payment_header};

mod common;
use common::{ToyMetered, exact_and_metered_options};

/// Reports the request's `x-report` header as usage: `ext:<usage>` as an extension, anything
/// else as the `Settlement-Overrides` header's JSON.
async fn metered_handler(headers: HeaderMap) -> Response {
    let report = headers
        .get("x-report")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut response = "tokens".into_response();
    match report
        .as_deref()
        .map(|r| r.split_once("ext:").map(|(_, u)| u))
    {
        Some(Some(usage)) => {
            response
                .extensions_mut()
                .insert(usage.parse::<Usage>().unwrap());
        }
        Some(None) => {
            let json = report.unwrap();
            response
                .headers_mut()
                .insert("settlement-overrides", json.parse().unwrap());
        }
        None => {}
    }
    response
}

/// `/metered` (scheme `toy-metered`, $0.0001 = 100 units) and `/fixed` (`exact`, the same price).
fn shop(facilitator: Arc<MockFacilitator>) -> Router {
    let (exact, metered) = exact_and_metered_options();
    let price = || RoutePrice::fixed("$0.0001".parse().unwrap());
    let paywall = |option| {
        Paywall::new(facilitator.clone(), vec![option], PaywallConfig::default())
            .unwrap()
            .with_schemes(vec![Arc::new(ToyMetered)])
    };
    Router::new()
        .route(
            "/metered",
            get(metered_handler).layer(paywall(metered).layer(price())),
        )
        .route(
            "/fixed",
            get(metered_handler).layer(paywall(exact).layer(price())),
        )
}

/// Pays `path` once (payment `nonce`) with `report` as the handler's usage; the status and
/// whether the overrides header leaked.
async fn pay(app: &Router, path: &str, nonce: u8, report: Option<&str>) -> (u16, bool) {
    let unpaid = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let challenge: v2::PaymentRequired =
        decode_header(unpaid.headers()["payment-required"].as_bytes()).unwrap();
    let mut paid = Request::get(path).header(
        "PAYMENT-SIGNATURE",
        mock_payment_header(&challenge.accepts[0], nonce),
    );
    if let Some(report) = report {
        paid = paid.header("x-report", report);
    }
    let response = app
        .clone()
        .oneshot(paid.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let leaked = response.headers().contains_key("settlement-overrides");
    (response.status().as_u16(), leaked)
}

#[tokio::test]
async fn a_metered_route_settles_the_reported_usage_capped_at_the_price() {
    let facilitator = Arc::new(MockFacilitator::default());
    let app = shop(facilitator.clone());
    let cases: [(Option<&str>, u64); 7] = [
        (Some("ext:40"), 40),
        (Some(r#"{"amount":"25%"}"#), 25),
        (Some(r#"{"amount":"$0.00005"}"#), 50),
        (Some("ext:150"), 100),
        // Unreadable: the price paid, as the official SDKs settle it.
        (Some(r#"{"amount":"lots"}"#), 100),
        (Some("not json"), 100),
        (None, 0),
    ];
    for (nonce, (report, _)) in cases.iter().enumerate() {
        let (status, leaked) = pay(&app, "/metered", nonce as u8 + 1, *report).await;
        assert_eq!(status, 200, "{report:?}");
        assert!(
            !leaked,
            "the overrides header reached the client: {report:?}"
        );
    }
    let expected: Vec<U256> = cases.iter().map(|(_, a)| U256::from(*a)).collect();
    assert_eq!(facilitator.settled_amounts(), expected);
}

#[tokio::test]
async fn a_fixed_price_route_settles_its_price_whatever_is_reported() {
    let facilitator = Arc::new(MockFacilitator::default());
    let app = shop(facilitator.clone());
    for (nonce, report) in [Some("ext:40"), Some(r#"{"amount":"1%"}"#), None]
        .into_iter()
        .enumerate()
    {
        let (status, leaked) = pay(&app, "/fixed", nonce as u8 + 1, report).await;
        assert_eq!((status, leaked), (200, false), "{report:?}");
    }
    assert_eq!(facilitator.settled_amounts(), vec![U256::from(100u64); 3]);
}

#[tokio::test]
async fn an_option_the_facilitator_does_not_serve_is_not_offered() {
    // The facilitator serves exact on Base, not toy-metered.
    let mut facilitator = MockFacilitator::default();
    facilitator.supported.kinds = vec![x402_proto::SupportedKind {
        x402_version: 2,
        scheme: Scheme::EXACT,
        network: Network::BASE,
        extra: None,
    }];
    let (exact, metered) = exact_and_metered_options();
    let paywall = Paywall::new(
        Arc::new(facilitator),
        vec![metered, exact],
        PaywallConfig::default(),
    )
    .unwrap();
    let app = Router::new().route(
        "/data",
        get(|| async { "data" })
            .layer(paywall.layer(RoutePrice::fixed("$0.0001".parse().unwrap()))),
    );
    let offered = |app: Router| async move {
        let unpaid = app
            .oneshot(Request::get("/data").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let challenge: v2::PaymentRequired =
            decode_header(unpaid.headers()["payment-required"].as_bytes()).unwrap();
        challenge
            .accepts
            .iter()
            .map(|a| a.scheme.to_string())
            .collect::<Vec<_>>()
    };
    // Before the facilitator was asked, every option goes out; after, only what it serves.
    assert_eq!(offered(app.clone()).await, ["toy-metered", "exact"]);
    paywall.initialize().await.unwrap();
    assert_eq!(offered(app).await, ["exact"]);
}
