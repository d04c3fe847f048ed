//! With its Postgres settlement log unreachable, the facilitator answers `/settle` with a 503
//! saying why (never a 500, never a settlement it cannot record) and `/health` fails naming
//! the database; once the database is back the same payment settles, once.

use x402_testkit::{Stack, TempDatabase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_a_503_with_its_reason_and_nothing_is_sent() {
    let database = TempDatabase::create().await;
    let stack = Stack::on_postgres(&database, |config| {
        config.postgres.connect_timeout_ms = 1_000;
    })
    .await;
    let before = stack.before().await;
    let request = stack.payment(0, 3_000);

    database.cut().await;
    let (status, health) = stack.get("/health").await;
    assert_eq!(status, 503, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["database"]["reachable"], false, "{health}");
    assert_eq!(health["chains"][0]["reachable"], true, "{health}");
    assert!(
        health["reasons"][0]
            .as_str()
            .unwrap()
            .contains("settlement log"),
        "{health}"
    );

    let started = std::time::Instant::now();
    let (status, settled) = stack.settle(&request).await;
    assert_eq!(status, 503, "{settled}");
    assert_eq!(settled["success"], false, "{settled}");
    let message = settled["errorMessage"].as_str().unwrap();
    assert!(message.contains("settlement log"), "{settled}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "answered within the connect timeout, not held"
    );
    // Verify needs only the chain.
    let (status, verified) = stack.verify(&request).await;
    assert_eq!(
        (status, &verified["isValid"]),
        (200, &serde_json::json!(true))
    );
    assert_eq!(
        stack.chain.facilitator_tx_count().await,
        before.sent,
        "nothing is sent that cannot be recorded"
    );

    database.restore().await;
    let (status, health) = stack.get("/health").await;
    assert_eq!(status, 200, "{health}");
    let (status, settled) = stack.settle(&request).await;
    assert_eq!(status, 200, "{settled}");
    assert_eq!(settled["success"], true, "{settled}");
    stack.assert_since(before, 1, 3_000).await;
}
