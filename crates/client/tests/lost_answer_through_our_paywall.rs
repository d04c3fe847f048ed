//! The paying client against our own paywall, with an answer that takes longer than the
//! client waits: the first answer is lost, the payment is recorded `unknown`, and the retry
//! with the same payment (told `payment_in_use` while the server still works) gets the kept
//! response and its receipt. The ledger row becomes `paid` with the transaction; the handler
//! ran once and the payee was paid once.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy::primitives::U256;
use axum::routing::get;
use common::{PaidRoute, paying_client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_lost_to_a_timeout_is_recovered_and_paid_once() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let slow = get(move || {
        let counter = counter.clone();
        async move {
            let run = counter.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            format!("answer of run {run}")
        }
    });
    let server = PaidRoute::with_handler("$0.01", slow).await;

    let before = server.payee_balance().await;
    // The client gives up on an answer after one second; the handler takes 2.5.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let client = paying_client(http, server.payer());
    let ledger = client.ledger();
    let request = client.http().get(&server.url).build().unwrap();
    let paid = client.send(request, Some("slow")).await.expect("recovered");
    assert_eq!(paid.response.status(), 200);
    let receipt = paid.receipt.clone().expect("a receipt");
    assert!(receipt.success);
    assert_eq!(paid.response.text().await.unwrap(), "answer of run 1");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the handler ran once");

    let rows = ledger.payments(0).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "paid");
    assert_eq!(
        rows[0].transaction.as_deref(),
        Some(receipt.transaction.as_str())
    );
    assert_eq!(
        server.payee_balance().await,
        before + U256::from(10_000),
        "paid once"
    );
}
