//! Three facilitator instances share one Postgres settlement log and one signer key: fifty
//! concurrent `/settle` calls of one payment, with one `Idempotency-Key`, spread across them,
//! send one transaction and get fifty identical successes.

use x402_facilitator::RunningFacilitator;
use x402_testkit::{Stack, TempDatabase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_settles_of_one_payment_across_three_instances_send_one_transaction() {
    let database = TempDatabase::create().await;
    let stack = Stack::on_postgres(&database, |_| {}).await;
    let others = stack.more_instances(2).await;
    let urls: Vec<String> = std::iter::once(stack.url())
        .chain(others.iter().map(RunningFacilitator::url))
        .collect();
    let before = stack.before().await;
    let request = stack.payment(0, 10_000);

    let mut calls = tokio::task::JoinSet::new();
    for n in 0..50 {
        let call = stack
            .http
            .post(format!("{}/settle", urls[n % urls.len()]))
            .header("Idempotency-Key", "order-1")
            .json(&request);
        calls.spawn(async move {
            let response = call.send().await.expect("an instance answers");
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        });
    }
    let answers = calls.join_all().await;
    let first = &answers[0].1;
    assert_eq!(first["success"], true, "{first}");
    for (status, answer) in &answers {
        assert_eq!(
            (*status, answer),
            (200, first),
            "every call gets the same answer"
        );
    }
    stack.assert_since(before, 1, 10_000).await;
    for other in others {
        other.shutdown().await;
    }
}
