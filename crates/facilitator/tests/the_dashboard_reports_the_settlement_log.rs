//! The facilitator's dashboard API reports the settlement log as the chain sees it: after real
//! settlements on anvil, the settled total equals the payee's balance change, each settlement
//! is listed with its transaction hash, found by payer, payee or hash, and detailed with its
//! signer and nonce; health reads the signer's gas from the chain; a write is told on the event
//! stream. Without the operator token there is no data; without a token configured there is no
//! dashboard at all; with `dashboard_listen` it is served only there.

use std::time::Duration;

use alloy::primitives::U256;
use alloy::providers::Provider;
use serde_json::Value;
use x402_testkit::{Chain, Stack};

const TOKEN: &str = "operator-s3cret";

/// GETs `path` of the dashboard API with `token` as a bearer, when given: status and JSON.
async fn api(stack: &Stack, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut call = stack
        .http
        .get(format!("{}/dashboard/api/{path}", stack.url()));
    if let Some(token) = token {
        call = call.bearer_auth(token);
    }
    let response = call.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn operator(stack: &Stack, path: &str) -> Value {
    let (status, body) = api(stack, path, Some(TOKEN)).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_reports_what_the_chain_settled() {
    let extra = format!("operator_token = \"{TOKEN}\"");
    let stack = Stack::on_chain(Chain::start().await, &extra, "").await;

    // No token, a wrong one: no data, on the page and on every API route.
    for token in [None, Some("wrong")] {
        for path in [
            "overview",
            "settlements",
            "health",
            "events",
            "settlements/8453:0x0:0x0:0x0",
        ] {
            let (status, body) = api(&stack, path, token).await;
            assert_eq!(status, 401, "{path} with {token:?}: {body}");
            assert!(
                body["error"].as_str().unwrap().contains("sign in"),
                "{body}"
            );
        }
    }
    let (status, page) = stack.get("/dashboard").await;
    assert_eq!(status, 401);
    assert!(
        page.contains("Operator token") && !page.contains("view.js"),
        "{page}"
    );

    // The event stream, opened before anything is settled.
    let mut events = stack
        .http
        .get(format!("{}/dashboard/api/events", stack.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert!(
        events.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );

    let payee = stack.chain.devnet.pay_to().address;
    let before = stack.chain.balance(payee).await;
    let amounts = [1_000u128, 2_500, 40_000];
    let mut settled = Vec::new();
    for (payer, amount) in amounts.iter().enumerate() {
        let (status, answer) = stack.settle(&stack.payment(payer, *amount)).await;
        assert_eq!(
            (status, &answer["success"]),
            (200, &Value::Bool(true)),
            "{answer}"
        );
        settled.push(answer["transaction"].as_str().unwrap().to_owned());
    }
    let paid = stack.chain.balance(payee).await - before;
    assert_eq!(
        paid,
        U256::from(amounts.iter().sum::<u128>()),
        "the chain moved them"
    );

    // The first settlement's writes were told as they happened.
    let mut told = String::new();
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        while !told.contains("\"state\":\"confirmed\"") {
            let chunk = events
                .chunk()
                .await
                .unwrap()
                .expect("the stream stays open");
            told.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(heard.is_ok(), "no confirmed settlement told: {told}");
    assert!(told.contains("\"type\":\"settlement\""), "{told}");

    // Overview: the settled total is the payee's balance change, today and in all.
    let overview = operator(&stack, "overview").await;
    let asset = stack.chain.devnet.token().address.to_checksum(None);
    let assets = overview["assets"].as_array().unwrap();
    let usdc = assets
        .iter()
        .find(|a| a["asset"] == asset)
        .expect("the token is listed");
    for window in ["today", "week", "all_time"] {
        assert_eq!(usdc[window]["amount"], paid.to_string(), "{window}: {usdc}");
        assert_eq!(usdc[window]["settlements"], 3, "{window}");
    }
    assert_eq!(usdc["decimals"], 6);
    assert_eq!(usdc["network"], "eip155:8453");
    assert_eq!(overview["last_hour"]["settlements"], 3);
    assert_eq!(
        overview["last_hour"]["per_minute"]
            .as_array()
            .unwrap()
            .len(),
        60
    );
    let line = &overview["series"]["tokens"][0];
    let points = line["points"].as_array().unwrap();
    assert_eq!(points.len(), 30, "a point per day");
    assert_eq!(points[29]["amount"], paid.to_string(), "today's point");
    let top = &overview["top_payers"][0];
    let biggest = stack.chain.devnet.payers()[2].address.to_checksum(None);
    assert_eq!(
        (&top["address"], &top["amount"]),
        (&Value::from(biggest.clone()), &Value::from("40000"))
    );
    assert_eq!(
        overview["top_payees"][0]["address"],
        payee.to_checksum(None)
    );
    assert_eq!(overview["top_payees"][0]["amount"], paid.to_string());

    // The table: every settlement with its transaction, newest first.
    let page = operator(&stack, "settlements").await;
    assert_eq!(page["total"], 3);
    let rows = page["settlements"].as_array().unwrap();
    let hashes: Vec<&str> = rows
        .iter()
        .map(|r| r["tx_hash"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = settled.iter().rev().map(String::as_str).collect();
    assert_eq!(hashes, newest_first);
    assert!(rows.iter().all(|r| r["state"] == "confirmed"));
    assert_eq!(rows[0]["amount"], "40000");
    assert_eq!(rows[0]["payer"], biggest);
    // Found by its transaction, by its payer, by the start of its payee; paged.
    let by_tx = operator(&stack, &format!("settlements?q={}", settled[1])).await;
    assert_eq!(by_tx["total"], 1);
    assert_eq!(by_tx["settlements"][0]["amount"], "2500");
    let by_payer = operator(&stack, &format!("settlements?q={biggest}")).await;
    assert_eq!(by_payer["total"], 1);
    let prefix = &format!("{payee:#x}")[..10];
    let by_payee = operator(&stack, &format!("settlements?q={prefix}&per_page=2&page=2")).await;
    assert_eq!(
        (&by_payee["total"], &by_payee["pages"]),
        (&Value::from(3), &Value::from(2))
    );
    assert_eq!(by_payee["settlements"][0]["tx_hash"], settled[0]);
    let none = operator(&stack, "settlements?state=failed").await;
    assert_eq!(none["total"], 0);

    // Details: the request, the answer, and the transaction with its signer and nonce.
    let key = rows[2]["key"].as_str().unwrap();
    let details = operator(&stack, &format!("settlements/{key}")).await;
    let signer = stack.chain.devnet.facilitator().address;
    let sent = &details["transactions"][0];
    assert_eq!(sent["tx_hash"], settled[0]);
    assert_eq!(sent["signer"], signer.to_checksum(None));
    let receipt = stack
        .chain
        .devnet
        .provider()
        .get_transaction_by_hash(settled[0].parse().unwrap())
        .await
        .unwrap()
        .expect("the transaction is on chain");
    assert_eq!(
        sent["signer_nonce"],
        alloy::consensus::Transaction::nonce(&receipt)
    );
    assert_eq!(details["response"]["transaction"], settled[0]);
    assert_eq!(details["request"]["paymentRequirements"]["amount"], "1000");

    // Health: nothing pending or failed, the signer's gas as the chain has it now.
    let health = operator(&stack, "health").await;
    assert_eq!(health["claimed"]["count"], 0);
    assert_eq!(health["submitted"]["count"], 0);
    assert_eq!(health["failures"], Value::Array(Vec::new()));
    let gas = stack
        .chain
        .devnet
        .provider()
        .get_balance(signer)
        .await
        .unwrap();
    let signers = health["signers"].as_array().unwrap();
    assert_eq!(signers.len(), 1, "{health}");
    assert_eq!(signers[0]["address"], signer.to_checksum(None));
    assert_eq!(signers[0]["balance_wei"], gas.to_string());
    assert_eq!(signers[0]["this_instance"], true);
    assert_eq!(health["database"]["reachable"], true);

    // Bad parameters: 400 saying what to send; an unknown settlement: 404.
    for (path, said) in [
        ("settlements?page=0", "`page` must be a whole number"),
        ("settlements?per_page=5000", "`per_page`"),
        ("settlements?state=done", "pending, claimed"),
        ("settlements?q=hello", "`q` searches payers"),
        ("settlements?sort=amount", "unknown parameter `sort`"),
        ("overview?days=3", "overview takes no parameters"),
        (
            "settlements/not-a-key",
            "<chain id>:<asset>:<payer>:<nonce>",
        ),
    ] {
        let (status, body) = api(&stack, path, Some(TOKEN)).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(said),
            "{path}: {body}"
        );
    }
    let missing = key.replace(&key[key.len() - 4..], "beef");
    let (status, body) = api(&stack, &format!("settlements/{missing}"), Some(TOKEN)).await;
    assert_eq!(status, 404, "{body}");

    // Shutting down with a dashboard still listening ends its stream rather than waiting on it.
    let mut stack = stack;
    let running = stack.facilitator.take().unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(15), running.shutdown()).await;
    assert!(stopped.is_ok(), "shutdown waited on the open event stream");
    drop(events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_there_is_no_dashboard_and_with_its_own_address_it_is_only_there() {
    let stack = Stack::start().await;
    let (status, _) = stack.get("/dashboard").await;
    assert_eq!(status, 404, "no operator token, no dashboard");
    let (status, _) = stack.get("/dashboard/api/overview").await;
    assert_eq!(status, 404);
    assert!(
        stack
            .facilitator
            .as_ref()
            .unwrap()
            .dashboard_url()
            .is_none()
    );

    let extra = format!("operator_token = \"{TOKEN}\"\ndashboard_listen = \"127.0.0.1:0\"");
    let apart = Stack::on_chain(stack.chain, &extra, "").await;
    let dashboard = apart.facilitator.as_ref().unwrap().dashboard_url().unwrap();
    assert!(!dashboard.starts_with(&apart.url()), "{dashboard} is apart");
    let (status, _) = apart.get("/dashboard").await;
    assert_eq!(status, 404, "not on the facilitator's own address");
    let (status, _) = apart.get("/dashboard/api/overview").await;
    assert_eq!(status, 404);
    let http = &apart.http;
    let page = http.get(&dashboard).send().await.unwrap();
    assert_eq!(page.status(), 401, "the sign-in form");
    let overview = http
        .get(format!("{dashboard}/api/overview"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(overview.status(), 200);
    let health = apart.get("/health").await;
    assert_eq!(
        health.0, 200,
        "the facilitator still serves on its own address"
    );
}
