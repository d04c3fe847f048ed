//! Every payment's outcome goes to the paywall's journal before its response goes out: a
//! settlement with its transaction, the service and job the quote named and the request's
//! fingerprint; a settlement still pending after the paywall's patience, replaced by the
//! success when the same payment is sent again; a refused settlement with its reason code.
//! A handler that fails charges nothing and journals nothing, and a journal that fails does
//! not refuse a settled payment. (The paywall as a tower service before a scripted
//! facilitator; the channel-charged outcome is journaled in the gateway's browser test.)

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::post;
use http::Request;
use tower::ServiceExt;
use x402_paywall::{
    JournalError, MemoryJournal, PaymentEntry, PaymentJournal, PaymentOption, PaymentState,
    Paywall, PaywallConfig, Quote, RoutePrice,
};
use x402_proto::{
    BoxFuture, FacilitatorError, Network, ReasonCode, SettleResponse, VerifyResponse,
    decode_header, v2,
};
use x402_testkit::{MOCK_PAYER, MockFacilitator, mock_payment_header, mock_settled};

fn paywall(facilitator: Arc<MockFacilitator>, journal: Arc<dyn PaymentJournal>) -> Paywall {
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
        settle_patience: Duration::from_millis(300),
        ..PaywallConfig::default()
    };
    Paywall::new(facilitator, vec![option], config)
        .unwrap()
        .with_journal(journal)
}

/// `/work` sells "weather" for a cent, and starts `job_7` when the body asks for a job; it
/// fails (500, not charged) when the body says so.
fn app(paywall: &Paywall) -> Router {
    let price = RoutePrice::computed(|_, body| {
        let quote = Quote::usd("$0.01".parse().unwrap()).service("weather");
        Ok(if body.as_ref() == b"job" {
            quote.job("job_7")
        } else {
            quote
        })
    });
    Router::new().route(
        "/work",
        post(|body: String| async move {
            if body == "fail" {
                (StatusCode::INTERNAL_SERVER_ERROR, "broken")
            } else {
                (StatusCode::OK, "done")
            }
        })
        .layer(paywall.layer(price)),
    )
}

fn request(payment: Option<&str>, body: &'static str) -> Request<Body> {
    let mut builder = Request::post("/work").header("host", "shop.test");
    if let Some(payment) = payment {
        builder = builder.header("PAYMENT-SIGNATURE", payment);
    }
    builder.body(Body::from(body)).unwrap()
}

async fn offer(app: &Router) -> v2::PaymentRequirements {
    let response = app.clone().oneshot(request(None, "")).await.unwrap();
    assert_eq!(response.status(), 402);
    let challenge: v2::PaymentRequired =
        decode_header(response.headers()["payment-required"].as_bytes()).unwrap();
    challenge.accepts[0].clone()
}

async fn status(app: &Router, payment: &str, body: &'static str) -> u16 {
    let response = app
        .clone()
        .oneshot(request(Some(payment), body))
        .await
        .unwrap();
    response.status().as_u16()
}

fn valid() -> Result<VerifyResponse, FacilitatorError> {
    Ok(VerifyResponse::valid(MOCK_PAYER))
}

fn pending() -> SettleResponse {
    SettleResponse::failure(
        Network::BASE,
        ReasonCode::SETTLEMENT_PENDING,
        "sent, not confirmed yet",
        Some(MOCK_PAYER.into()),
        Some("0xfeed".into()),
    )
}

#[tokio::test]
async fn a_settled_payment_is_journaled_with_its_transaction_service_job_and_request() {
    let facilitator = Arc::new(MockFacilitator::new(
        vec![valid()],
        vec![Ok(mock_settled("0xabc"))],
    ));
    let journal = Arc::new(MemoryJournal::new());
    let app = app(&paywall(facilitator, journal.clone()));
    let offer = offer(&app).await;
    assert_eq!(
        status(&app, &mock_payment_header(&offer, 1), "job").await,
        200
    );

    let entries = journal.entries();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry.state, PaymentState::Settled);
    assert_eq!(entry.transaction.as_deref(), Some("0xabc"));
    assert_eq!(entry.amount, offer.amount);
    assert_eq!(
        (entry.asset.as_str(), entry.decimals),
        (offer.asset.as_str(), 6)
    );
    assert_eq!(entry.network, Network::BASE);
    assert_eq!(entry.scheme.as_str(), "exact");
    assert_eq!(entry.payer, MOCK_PAYER);
    assert_eq!(entry.service, "weather");
    assert_eq!(entry.resource, "POST /work");
    assert_eq!(entry.job.as_deref(), Some("job_7"));
    assert_eq!(entry.fingerprint.len(), 64);
    assert_eq!(entry.receipt.transaction, "0xabc");
    assert!(entry.receipt.success);
    assert_eq!(entry.reason, None);

    // The same request with the same payment is answered again, not journaled again.
    assert_eq!(
        status(&app, &mock_payment_header(&offer, 1), "job").await,
        200
    );
    assert_eq!(journal.entries().len(), 1);
}

#[tokio::test]
async fn a_pending_settlement_is_journaled_then_replaced_by_its_success() {
    let facilitator = Arc::new(MockFacilitator::new(
        vec![valid()],
        vec![Ok(pending()), Ok(pending()), Ok(mock_settled("0xfeed"))],
    ));
    let journal = Arc::new(MemoryJournal::new());
    let app = app(&paywall(facilitator, journal.clone()));
    let payment = mock_payment_header(&offer(&app).await, 2);

    assert_eq!(status(&app, &payment, "").await, 402);
    let entries = journal.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].state, PaymentState::Pending);
    assert_eq!(entries[0].transaction.as_deref(), Some("0xfeed"));
    assert_eq!(entries[0].reason.as_deref(), Some("settlement_pending"));
    assert_eq!(entries[0].job, None);
    assert_eq!(entries[0].service, "weather");

    assert_eq!(status(&app, &payment, "").await, 200);
    let entries = journal.entries();
    assert_eq!(entries.len(), 1, "one entry per payment: {entries:?}");
    assert_eq!(entries[0].state, PaymentState::Settled);
    assert_eq!(entries[0].reason, None);
}

#[tokio::test]
async fn a_refused_settlement_is_journaled_with_its_reason_and_a_failed_handler_not_at_all() {
    let refused = SettleResponse::failure(
        Network::BASE,
        ReasonCode::new("insufficient_funds"),
        "the payer's balance is too low",
        Some(MOCK_PAYER.into()),
        None,
    );
    let facilitator = Arc::new(MockFacilitator::new(vec![valid()], vec![Ok(refused)]));
    let journal = Arc::new(MemoryJournal::new());
    let app = app(&paywall(facilitator.clone(), journal.clone()));
    let offer = offer(&app).await;

    assert_eq!(
        status(&app, &mock_payment_header(&offer, 3), "fail").await,
        500
    );
    assert_eq!(
        facilitator.settle_calls(),
        0,
        "a failed handler is not charged"
    );
    assert!(journal.entries().is_empty());

    assert_eq!(status(&app, &mock_payment_header(&offer, 4), "").await, 402);
    let entries = journal.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].state, PaymentState::Failed);
    assert_eq!(entries[0].reason.as_deref(), Some("insufficient_funds"));
    assert_eq!(entries[0].transaction, None);
    assert!(!entries[0].receipt.success);
}

/// A journal whose store is down.
#[derive(Debug)]
struct Broken;

impl PaymentJournal for Broken {
    fn record<'a>(&'a self, _: &'a PaymentEntry) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async { Err(JournalError("disk full".into())) })
    }
}

#[tokio::test]
async fn a_journal_that_fails_does_not_refuse_a_settled_payment() {
    let facilitator = Arc::new(MockFacilitator::new(
        vec![valid()],
        vec![Ok(mock_settled("0xabc"))],
    ));
    let app = app(&paywall(facilitator.clone(), Arc::new(Broken)));
    let offer = offer(&app).await;
    assert_eq!(status(&app, &mock_payment_header(&offer, 5), "").await, 200);
    assert_eq!(facilitator.settle_calls(), 1);
}
