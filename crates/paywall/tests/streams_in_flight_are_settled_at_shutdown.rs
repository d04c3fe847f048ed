//! A server shutting down settles the metered streams still running before it exits:
//! `Paywall::settle_pending` cuts them off, each settled once for what it delivered, and
//! returns only when their settlements have finished; one that cannot finish in time is
//! counted. Runs in front of a scripted facilitator whose settlements take a while.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use x402_paywall::{Paywall, PaywallConfig, RoutePrice};
use x402_proto::{
    BoxFuture, Facilitator, FacilitatorError, IdempotencyKey, PaymentRequest, SettleResponse,
    SupportedResponse, U256, VerifyResponse,
};
use x402_testkit::MockFacilitator;

mod common;
use common::streams::{
    PER_EVENT, START, only_a_successful_receipt_follows, streaming_handler, two_events_read,
};
use common::{ToyMetered, exact_and_metered_options};

/// The scripted facilitator, each settlement answered after `delay`; counts those answered.
struct SlowSettling {
    script: MockFacilitator,
    delay: Duration,
    answered: AtomicUsize,
}

impl Facilitator for SlowSettling {
    fn verify<'a>(
        &'a self,
        request: &'a PaymentRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        self.script.verify(request)
    }

    fn settle<'a>(
        &'a self,
        request: &'a PaymentRequest,
        idempotency_key: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(async move {
            let answer = self.script.settle(request, idempotency_key).await;
            tokio::time::sleep(self.delay).await;
            self.answered.fetch_add(1, Ordering::SeqCst);
            answer
        })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        self.script.supported()
    }
}

/// `/metered` (300-second timeout) behind a paywall settling through a facilitator that
/// takes `delay` to settle: the app, the paywall and the facilitator.
fn shop(delay: Duration) -> (Router, Paywall, Arc<SlowSettling>) {
    let facilitator = Arc::new(SlowSettling {
        script: MockFacilitator::default(),
        delay,
        answered: AtomicUsize::new(0),
    });
    let (_, metered) = exact_and_metered_options();
    let paywall = Paywall::new(facilitator.clone(), vec![metered], PaywallConfig::default())
        .unwrap()
        .with_schemes(vec![Arc::new(ToyMetered)]);
    let runs = Arc::new(AtomicUsize::new(0));
    let price = RoutePrice::fixed("$0.0001".parse().unwrap());
    let app = Router::new().route(
        "/metered",
        streaming_handler(runs).layer(paywall.layer(price)),
    );
    (app, paywall, facilitator)
}

#[tokio::test]
async fn a_stream_running_at_shutdown_is_settled_for_what_it_delivered_before_it_returns() {
    let (app, paywall, facilitator) = shop(Duration::from_millis(500));
    // Two events delivered, then the handler's stream waits for more that never come.
    let (_, body) = two_events_read(&app, "/metered?events=2&hang", 60).await;
    assert_eq!(facilitator.script.settle_calls(), 0, "not over yet");

    let unfinished = paywall.settle_pending(Duration::from_secs(30)).await;
    assert_eq!(unfinished, 0);
    // Settled, and the settlement answered, before `settle_pending` returned.
    assert_eq!(facilitator.answered.load(Ordering::SeqCst), 1);
    assert_eq!(
        facilitator.script.settled_amounts(),
        vec![U256::from(START + 2 * PER_EVENT)]
    );

    // The client still reading gets the receipt and the stream's end, nothing more.
    only_a_successful_receipt_follows(body).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(facilitator.script.settle_calls(), 1, "settled once");
}

#[tokio::test]
async fn a_settlement_that_cannot_finish_in_time_is_counted_unfinished() {
    let (app, paywall, facilitator) = shop(Duration::from_secs(3_600));
    let (_, body) = two_events_read(&app, "/metered?events=2&hang", 61).await;
    // Nothing is pending without a stream; with one whose settlement hangs, it is reported.
    let unfinished = paywall.settle_pending(Duration::from_millis(200)).await;
    assert_eq!(unfinished, 1);
    assert_eq!(facilitator.script.settle_calls(), 1);
    assert_eq!(facilitator.answered.load(Ordering::SeqCst), 0);
    drop(body);
}

#[tokio::test]
async fn a_paywall_with_no_stream_running_shuts_down_at_once() {
    let (_, paywall, facilitator) = shop(Duration::from_millis(500));
    assert_eq!(paywall.settle_pending(Duration::from_secs(30)).await, 0);
    assert_eq!(facilitator.script.settle_calls(), 0);
}
