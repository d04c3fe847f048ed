//! The operator dashboard reads the payment journal the paywall writes: a paid call (and a
//! paid job) appears in its API with its transaction, service, job and request fingerprint,
//! and its revenue is what the payee received on chain. With `dashboard_listen` the dashboard
//! and `/operator/*` are served only there, never on `listen`. Replicas sharing a Postgres
//! database share the journal: a payment made through one is on the other's dashboard.
//! (Real anvil chain, our facilitator in process, the gateway; the browser view is tested in
//! `crates/cli/tests/the_operator_dashboard_shows_the_money.rs`.)

mod common;

use alloy::signers::local::PrivateKeySigner;
use common::{OPERATOR_TOKEN, Stack};
use serde_json::{Value, json};
use x402_testkit::Wire;

const DOCUMENT: &str = "<html><body><h1>Journaled</h1></body></html>";

async fn api(http: &reqwest::Client, base: &str, path: &str) -> Value {
    let answer = http
        .get(format!("{base}/dashboard/api/{path}"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{path}");
    answer.json().await.unwrap()
}

/// A free port on loopback (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_only_on_its_own_address_and_shows_each_payment() {
    let port = free_port();
    let authorizer = PrivateKeySigner::random();
    let chain = x402_testkit::Chain::start().await;
    let base = x402_testkit::Stack::with_receiver_authorizer(chain, &authorizer).await;
    let config = common::gateway_config(
        &base,
        &format!(
            "operator_token = \"{OPERATOR_TOKEN}\"\ndashboard_listen = \"127.0.0.1:{port}\"\n"
        ),
        &common::batch_table(&base),
    );
    let gateway = x402_gateway::start(&config, Some(base.in_process()))
        .await
        .unwrap();
    let dashboard_base = format!("http://127.0.0.1:{port}");
    assert_eq!(
        gateway.dashboard_url(),
        format!("{dashboard_base}/dashboard")
    );
    let stack = Stack {
        url: gateway.url(),
        base,
        gateway,
        http: reqwest::Client::new(),
    };
    let http = &stack.http;

    // Not on `listen`: neither the dashboard nor the operator's routes; metrics stay.
    for (method, path) in [
        ("GET", "/dashboard"),
        ("GET", "/dashboard/api/overview"),
        ("POST", "/operator/claim"),
    ] {
        let request = match method {
            "GET" => http.get(format!("{}{path}", stack.url)),
            _ => http.post(format!("{}{path}", stack.url)),
        };
        let answer = request.bearer_auth(OPERATOR_TOKEN).send().await.unwrap();
        assert_eq!(answer.status(), 404, "{path} on listen");
    }
    assert_eq!(stack.get("/metrics").await.status(), 200);
    // On its own address: the sign-in form, and the API with the token only.
    let form = http
        .get(format!("{dashboard_base}/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 401);
    let refused = http
        .get(format!("{dashboard_base}/dashboard/api/overview"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // A paid call and a paid job.
    let before = stack.pay_to_balance().await;
    let request = json!({"service": "pdf-parse", "input": {"html": DOCUMENT}});
    let (paid, amount) = stack.pay_post("/run", &request, 0, Wire::V2).await;
    assert_eq!(paid.status(), 200);
    let receipt = x402_testkit::receipt_of(paid.headers()).unwrap();
    let (job, job_receipt) = stack.pay_job(&request).await;
    assert_eq!(stack.job_outcome(&job).await["status"], "completed");
    let received = stack.pay_to_balance().await - before;
    assert_eq!(received, amount * alloy::primitives::U256::from(2u8));

    let overview = api(http, &dashboard_base, "overview").await;
    let all = &overview["revenue"]["all_time"][0];
    assert_eq!(all["settled"], received.to_string(), "{overview}");
    assert_eq!(all["charged"], "0");
    assert_eq!(all["calls"], 2);
    assert_eq!(all["symbol"], "USDC");
    assert_eq!(all["decimals"], 6);
    assert_eq!(overview["top_services"][0]["name"], "pdf-parse");
    let minutes: u64 = overview["calls_per_minute"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(minutes, 2);

    let page = api(http, &dashboard_base, "payments").await;
    assert_eq!(page["total"], 2);
    let rows = page["payments"].as_array().unwrap();
    let job_row = &rows[0];
    assert_eq!(job_row["tx"], job_receipt.transaction.to_lowercase());
    assert_eq!(job_row["job"], job.as_str());
    assert_eq!(rows[1]["tx"], receipt.transaction.to_lowercase());
    assert_eq!(rows[1]["state"], "settled");
    assert_eq!(rows[1]["service"], "pdf-parse");
    assert_eq!(rows[1]["resource"], "POST /run");
    assert_eq!(rows[1]["amount"], amount.to_string());

    let details = api(
        http,
        &dashboard_base,
        &format!("payments/{}", job_row["id"]),
    )
    .await;
    assert_eq!(details["fingerprint"].as_str().unwrap().len(), 64);
    assert_eq!(details["receipt"]["transaction"], job_receipt.transaction);
    assert_eq!(details["job_record"]["id"], job.as_str());
    assert_eq!(details["job_record"]["state"], "completed");
    assert_eq!(details["job_record"]["charged"], true);

    let found = api(
        http,
        &dashboard_base,
        &format!("payments?q={}", receipt.transaction),
    )
    .await;
    assert_eq!(found["total"], 1);
    let settlement = api(http, &dashboard_base, "settlement").await;
    assert_eq!(settlement["pending"]["total"], 0);
    assert_eq!(settlement["batch"]["channels"], 0);
    let jobs = api(http, &dashboard_base, "jobs").await;
    assert_eq!(jobs["running"], json!([]));
    stack.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_a_database_show_each_others_payments() {
    let database = x402_testkit::TempDatabase::create().await;
    let (stack, second) = Stack::replicas(&PrivateKeySigner::random(), &database.url, "").await;
    let request = json!({"service": "pdf-parse", "input": {"html": DOCUMENT}});
    let (paid, amount) = stack.pay_post("/run", &request, 0, Wire::V2).await;
    assert_eq!(paid.status(), 200);
    let receipt = x402_testkit::receipt_of(paid.headers()).unwrap();

    // The other replica's dashboard has it.
    let page = api(&stack.http, &second.url(), "payments").await;
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(
        page["payments"][0]["tx"],
        receipt.transaction.to_lowercase()
    );
    let overview = api(&stack.http, &second.url(), "overview").await;
    assert_eq!(
        overview["revenue"]["all_time"][0]["settled"],
        amount.to_string()
    );
    second.shutdown().await;
    stack.gateway.shutdown().await;
}
