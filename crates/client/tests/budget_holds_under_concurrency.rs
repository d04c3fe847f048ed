//! 100 concurrent paid calls against a budget that allows 40 make exactly 40 payments, and the
//! ledger agrees with the payee's on-chain balance. A price above the client's maximum is
//! refused without signing anything.

mod common;

use alloy::primitives::U256;
use common::PaidRoute;
use x402_client::{
    Budget, Ledger, LedgerError, PayError, PayingClient, Policy, PolicyError, TotalsBy,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_for_40_allows_exactly_40_of_100_concurrent_payments() {
    let server = PaidRoute::start("$0.01").await;
    let before = server.payee_balance().await;
    let client = server.client();
    let ledger = client.ledger();
    // 40 payments of $0.01 = 400,000 micro-USD.
    ledger.set_budget(&Budget::total(400_000)).unwrap();

    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let client = client.clone();
        let url = server.url.clone();
        calls.spawn(async move {
            let request = client.http().get(&url).build().unwrap();
            client.send(request, Some("data")).await
        });
    }
    let (mut paid, mut refused) = (0, 0);
    for outcome in calls.join_all().await {
        match outcome {
            Ok(response) => {
                assert_eq!(response.response.status(), 200);
                assert!(response.receipt.unwrap().success);
                paid += 1;
            }
            Err(PayError::Budget(LedgerError::BudgetExceeded {
                limit_name: "total",
                limit: 400_000,
                asked: 10_000,
                ..
            })) => refused += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((paid, refused), (40, 60));
    // Refused calls never signed: the server saw exactly 40 payments.
    assert_eq!(server.paid_requests().len(), 40);
    let moved = server.payee_balance().await - before;
    assert_eq!(moved, U256::from(400_000));
    let totals = ledger.totals(0, TotalsBy::Payee).unwrap();
    assert_eq!(totals.len(), 1);
    assert_eq!((totals[0].1, totals[0].2), (400_000, 40));
    let records = ledger.payments(0).unwrap();
    assert_eq!(records.iter().filter(|r| r.status == "paid").count(), 40);
    assert!(records.iter().filter(|r| r.status == "paid").all(|r| {
        r.transaction
            .as_deref()
            .is_some_and(|t| t.starts_with("0x"))
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_above_the_maximum_is_refused_without_signing() {
    let server = PaidRoute::start("$0.50").await;
    let ledger = Ledger::in_memory().unwrap();
    let client = PayingClient::new(
        reqwest::Client::new(),
        server.payer().clone(),
        Policy {
            max_per_payment: "0.10".parse().unwrap(),
            ..Policy::default()
        },
        ledger.clone(),
    );
    let request = client.http().get(&server.url).build().unwrap();
    match client.send(request, None).await {
        Err(PayError::Policy(PolicyError::AboveMax { asked, max })) => {
            assert_eq!((asked.as_str(), max.as_str()), ("0.5", "0.10"));
        }
        other => panic!("expected AboveMax, got {other:?}"),
    }
    assert_eq!(
        server.paid_requests().len(),
        0,
        "nothing was signed or sent"
    );
    assert!(ledger.payments(0).unwrap().is_empty());
}
