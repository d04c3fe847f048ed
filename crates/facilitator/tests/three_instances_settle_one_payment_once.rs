//! Three facilitator instances share one Postgres settlement log and one signer key: fifty
//! concurrent `/settle` calls of one payment, with one `Idempotency-Key`, spread across them,
//! send one transaction and get fifty identical successes.

use x402_facilitator::{Database, RunningFacilitator};
use x402_testkit::{Chain, Stack, TempDatabase, config_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_settles_of_one_payment_across_three_instances_send_one_transaction() {
    let database = TempDatabase::create().await;
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(chain.devnet.rpc_url().as_ref(), dir.path(), "");
    config.database = Database::parse(&database.url).unwrap();
    let stack = Stack::serve(chain, dir, config).await;
    let signer = stack.chain.devnet.facilitator().signer.clone();
    let mut others: Vec<RunningFacilitator> = Vec::new();
    for _ in 0..2 {
        let started = x402_facilitator::start(&stack.config, signer.clone()).await;
        others.push(started.expect("another instance starts on the same database"));
    }
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
