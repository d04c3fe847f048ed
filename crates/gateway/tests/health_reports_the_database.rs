//! A gateway keeping its state in Postgres reports the database on `/health`: reachable (200,
//! with its latency) while it answers, and 503 `unhealthy` with the reason while it cannot be
//! reached (a load balancer then sends requests to another replica), healthy again once it is
//! back. The outage is real: the test database stops taking connections and its sessions are
//! ended. A gateway without a database reports none.

mod common;

use common::Stack;
use serde_json::Value;
use x402_testkit::TempDatabase;

async fn health(stack: &Stack) -> (u16, Value) {
    let answer = stack.get("/health").await;
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_the_database_and_fails_while_it_is_unreachable() {
    let database = TempDatabase::create().await;
    let stack = Stack::with_database(&database.url, "").await;

    let (status, body) = health(&stack).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"]["backend"], "postgres");
    assert_eq!(body["database"]["reachable"], true);
    assert!(body["database"]["latency_ms"].is_u64(), "{body}");

    database.cut().await;
    let (status, body) = health(&stack).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["database"]["reachable"], false);
    assert!(body["database"]["error"].is_string(), "{body}");
    let reason = body["reasons"][0].as_str().unwrap();
    assert!(reason.starts_with("database:"), "{reason}");

    database.restore().await;
    let (status, body) = health(&stack).await;
    assert_eq!(
        status, 200,
        "healthy again once the database is back: {body}"
    );
    assert_eq!(body["database"]["reachable"], true);
    stack.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_without_a_database_reports_none() {
    let stack = Stack::start("").await;
    let (status, body) = health(&stack).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert!(body.get("database").is_none(), "{body}");
    stack.gateway.shutdown().await;
}
