//! A server shutting down settles the metered streams still running before it exits:
//! `Paywall::settle_pending` cuts them off, each settled once for what it delivered, and
//! returns only when their settlements have finished; one that cannot finish in time is
//! counted. Runs in front of a scripted facilitator whose settlements take a while
//! (`MockFacilitator::with_settle_delay`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use x402_paywall::{Paywall, PaywallConfig, RoutePrice};
use x402_proto::U256;
use x402_testkit::MockFacilitator;

mod common;
use common::streams::{
    PER_EVENT, START, only_a_successful_receipt_follows, streaming_handler, two_events_read,
};
use common::{ToyMetered, exact_and_metered_options};

/// `/metered` (300-second timeout) behind a paywall settling through a facilitator that
/// takes `delay` to settle: the app, the paywall and the facilitator.
fn shop(delay: Duration) -> (Router, Paywall, Arc<MockFacilitator>) {
    let facilitator = Arc::new(MockFacilitator::default().with_settle_delay(delay));
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
    assert_eq!(facilitator.settle_calls(), 0, "not over yet");

    let unfinished = paywall.settle_pending(Duration::from_secs(30)).await;
    assert_eq!(unfinished, 0);
    // Settled, and the settlement answered, before `settle_pending` returned.
    assert_eq!(facilitator.settles_answered.load(Ordering::SeqCst), 1);
    assert_eq!(
        facilitator.settled_amounts(),
        vec![U256::from(START + 2 * PER_EVENT)]
    );

    // The client still reading gets the receipt and the stream's end, nothing more.
    only_a_successful_receipt_follows(body).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(facilitator.settle_calls(), 1, "settled once");
}

#[tokio::test]
async fn a_settlement_that_cannot_finish_in_time_is_counted_unfinished() {
    let (app, paywall, facilitator) = shop(Duration::from_secs(3_600));
    let (_, body) = two_events_read(&app, "/metered?events=2&hang", 61).await;
    // Nothing is pending without a stream; with one whose settlement hangs, it is reported.
    let unfinished = paywall.settle_pending(Duration::from_millis(200)).await;
    assert_eq!(unfinished, 1);
    assert_eq!(facilitator.settle_calls(), 1);
    assert_eq!(facilitator.settles_answered.load(Ordering::SeqCst), 0);
    drop(body);
}

#[tokio::test]
async fn a_paywall_with_no_stream_running_shuts_down_at_once() {
    let (_, paywall, facilitator) = shop(Duration::from_millis(500));
    assert_eq!(paywall.settle_pending(Duration::from_secs(30)).await, 0);
    assert_eq!(facilitator.settle_calls(), 0);
}
