//! A gateway keeping its state in Postgres whose database cannot be reached answers paid
//! requests 503 with a reason and `Retry-After`, charging nothing and serving nothing, and
//! `/status` 503 too; once the database is back, the same payment buys its response, once.
//! The outage is real: the test database stops taking connections and its sessions are ended.

mod common;

use common::Stack;
use serde_json::{Value, json};
use x402_testkit::{TempDatabase, Wire, payment_for, postgres_server};

/// Runs `sql` on the test server (not in the gateway's database).
async fn admin(sql: &str) {
    let (client, connection) = tokio_postgres::connect(&postgres_server(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    client.batch_execute(sql).await.unwrap();
    drop(client);
    let _ = driver.await;
}

/// Stops `database` taking connections and ends the gateway's, or lets it take them again.
async fn reachable(database: &TempDatabase, yes: bool) {
    let name = database.url.rsplit('/').next().unwrap();
    admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {yes}")).await;
    if !yes {
        admin(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_answered_503_and_nothing_is_charged() {
    let database = TempDatabase::create().await;
    let stack = Stack::with_database(&database.url, "").await;
    let chain = &stack.base.chain;
    let body = json!({"service": "embed-l4", "input": {"text": "is the database there?"}});
    let (paid, _) = stack.pay_post("/run", &body, 0, Wire::V2).await;
    assert_eq!(paid.status(), 200, "served while the database is up");

    let unpaid = stack.post_json("/run", &body).await;
    let (name, payment) = payment_for(unpaid, stack.payer(0), Wire::V2).await;
    let (payee, txs) = (
        stack.pay_to_balance().await,
        chain.facilitator_tx_count().await,
    );
    reachable(&database, false).await;
    let send = || {
        stack
            .http
            .post(format!("{}/run", stack.url))
            .header(name, &payment)
            .json(&body)
            .send()
    };
    let refused = send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let reason: Value = refused.json().await.unwrap();
    assert!(
        reason["detail"].as_str().unwrap().contains("database"),
        "the reason names the database: {reason}"
    );
    let status = stack.get("/status/job_0123").await;
    assert_eq!(status.status(), 503);
    assert_eq!(stack.pay_to_balance().await, payee, "nothing charged");
    assert_eq!(chain.facilitator_tx_count().await, txs, "nothing sent");

    reachable(&database, true).await;
    let served = send().await.unwrap();
    assert_eq!(
        served.status(),
        200,
        "the same payment, once the database is back"
    );
    assert!(
        stack.pay_to_balance().await > payee,
        "charged once it served"
    );
    assert_eq!(chain.facilitator_tx_count().await, txs + 1);
    stack.gateway.shutdown().await;
}
