//! The settlement log's Postgres goes away in the middle of a load of settlements and comes
//! back. While it is away, settles are answered 503 with a reason (never a 500, never a
//! transaction that cannot be recorded); afterwards every payment, retried until it settles,
//! has moved exactly once: as many transactions as payments, the payee paid their sum.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use x402_testkit::{Stack, TempDatabase};

const PAYMENTS: usize = 200;
const AMOUNT: u128 = 1_000;
const CONCURRENCY: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_under_load_loses_nothing_and_settles_nothing_twice() {
    let database = TempDatabase::create().await;
    let stack = Arc::new(
        Stack::on_postgres(&database, |config| {
            config.postgres.connect_timeout_ms = 1_000;
        })
        .await,
    );
    let before = stack.before().await;
    let payers = stack.chain.devnet.payers().len();
    let requests: Arc<Vec<_>> = Arc::new(
        (0..PAYMENTS)
            .map(|i| stack.payment(i % payers, AMOUNT))
            .collect(),
    );

    // The load: every payment settled once, CONCURRENCY at a time.
    let answered = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (stack, requests, answered, next) = (
            stack.clone(),
            requests.clone(),
            answered.clone(),
            next.clone(),
        );
        load.spawn(async move {
            let mut answers = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(request) = requests.get(i) else {
                    return answers;
                };
                let answer = stack.settle(request).await;
                answered.fetch_add(1, Ordering::SeqCst);
                answers.push((i, answer));
            }
        });
    }

    // Postgres goes away once the load is under way, and comes back a moment later.
    while answered.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    database.cut().await;
    // Whatever the load is doing, a settle now is refused for want of the database (the
    // settlement log, or the signer's nonce record, whichever it reaches first).
    let (status, refused) = stack.settle(&stack.payment(0, AMOUNT)).await;
    assert_eq!(status, 503, "{refused}");
    assert!(
        refused["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("settlement log") || m.contains("Postgres")),
        "{refused}"
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    database.restore().await;

    // Every answer was a success or a 503 with a reason; none was a 500.
    let mut unsettled = Vec::new();
    let mut unavailable = 0;
    for (i, (status, answer)) in load.join_all().await.into_iter().flatten() {
        match status {
            200 => assert_eq!(answer["success"], true, "payment {i}: {answer}"),
            503 => {
                unavailable += 1;
                assert_eq!(answer["success"], false, "payment {i}: {answer}");
                assert!(
                    answer["errorMessage"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()),
                    "payment {i}: {answer}"
                );
                unsettled.push(i);
            }
            other => panic!("payment {i} answered {other}: {answer}"),
        }
    }
    eprintln!("{unavailable} of {PAYMENTS} settles answered 503 during the outage");

    // Retried after the outage, each unsettled payment settles, once.
    for i in unsettled {
        let mut last = None;
        for _ in 0..40 {
            let (status, answer) = stack.settle(&requests[i]).await;
            if status == 200 {
                assert_eq!(answer["success"], true, "payment {i}: {answer}");
                last = None;
                break;
            }
            last = Some((status, answer));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(last.is_none(), "payment {i} never settled: {last:?}");
    }
    stack
        .assert_since(before, PAYMENTS as u64, (PAYMENTS as u128 * AMOUNT) as u64)
        .await;
}
