//! Replicas on one Postgres database share the jobs, and each sweeps for jobs nobody runs any
//! more: a job left `running` by a replica that died (its lease lapsed) is taken up by a live
//! replica while it runs, not only at its next start, and run to completion; a job whose
//! runner is alive (its lease renewed) is left to it. The dead and the live runner are rows
//! as such replicas leave them in the database.

mod common;

use std::time::Duration;

use common::{Stack, testdata};
use serde_json::{Value, json};
use x402_testkit::TempDatabase;

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_runner_died_is_run_by_a_live_replica() {
    let database = TempDatabase::create().await;
    let stack = Stack::with_database(&database.url, "").await;
    let request =
        json!({"service": "pdf-parse", "input": {"file_base64": b64(&testdata("two-pages.pdf"))}});
    let (dead, _) = stack.pay_job(&request).await;
    let (alive, _) = stack.pay_job(&request).await;
    for id in [&dead, &alive] {
        assert_eq!(stack.job_outcome(id).await["status"], "completed");
    }

    // As replicas leave them: one mid-attempt on a replica that died a while ago, one on a
    // replica that is alive and renewing its lease.
    let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    for (id, runner, lease) in [
        (&dead, "a-replica-that-died", "-1 second"),
        (&alive, "a-live-replica", "1 hour"),
    ] {
        let changed = client
            .execute(
                "UPDATE gateway_jobs SET state = 'running', output = NULL, finished_at = NULL,
                    runner = $2, lease_until = now() + $3::text::interval WHERE id = $1",
                &[id, &runner, &lease],
            )
            .await
            .unwrap();
        assert_eq!(changed, 1);
    }

    let mut view = Value::Null;
    for _ in 0..200 {
        view = stack.get_json(&format!("/status/{dead}")).await;
        if view["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        view["status"], "completed",
        "taken up without a restart: {view}"
    );
    assert_eq!(view["output"]["pages"], 2);
    assert_eq!(view["attempts"], 2, "run once more: {view}");

    let left = stack.get_json(&format!("/status/{alive}")).await;
    assert_eq!(left["status"], "running", "left to its live runner: {left}");
    assert_eq!(left["attempts"], 1);
    let row = client
        .query_one("SELECT runner FROM gateway_jobs WHERE id = $1", &[&alive])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("a-live-replica")
    );
    stack.gateway.shutdown().await;
}
