//! The gateway killed with SIGKILL while a paid async job runs, then restarted on the same
//! job database: `/status` still knows the job, the restarted gateway runs it again from its
//! recorded input, and it completes. The payment moved exactly once; nothing was paid for and
//! lost.
//!
//! The job is an LLM call to an OpenAI-compatible upstream started inside the test (the only
//! thing mocked: a real one costs money). The upstream holds the first call open, so the
//! gateway is killed while the job is certainly running; it answers the second.

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use x402_testkit::{Chain, Wire, payment_for, receipt_of};

mod common;

struct Gateway {
    child: Child,
    url: String,
}

fn spawn_gateway(config: &std::path::Path) -> Gateway {
    let (child, url) = common::spawn_listening("gateway", config, &[]);
    Gateway { child, url }
}

/// An upstream that never answers its first call and echoes the prompt after that.
async fn start_upstream() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |Json(request): Json<Value>| {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                    std::future::pending::<()>().await;
                }
                let prompt = request["messages"][0]["content"].clone();
                Json(json!({
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": request["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("echo: {}", prompt.as_str().unwrap_or_default())}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

async fn status(http: &reqwest::Client, gateway: &str, job: &str) -> Value {
    let response = http
        .get(format!("{gateway}/status/{job}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "/status/{job} on {gateway}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_job_killed_mid_run_completes_after_restart_and_is_charged_once() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let facilitator = x402_testkit::start_facilitator(&chain, dir.path()).await;
    let (upstream, calls) = start_upstream().await;
    let token = chain.devnet.token();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nmodels_dir = {models:?}\njobs_db = {jobs:?}\n\
             [facilitator]\nurl = \"{facilitator}\"\n\
             [payment]\npay_to = \"{pay_to}\"\n\
             [[payment.accepts]]\nnetwork = \"{network}\"\nasset = \"{asset}\"\ndecimals = {decimals}\nname = {name:?}\nversion = {version:?}\n\
             [services.llm-4090.upstream]\nbase_url = \"{upstream}\"\nmodel = \"tiny-test-model\"\n",
            // No local models: this job needs none, and the gateway starts faster.
            models = dir.path().join("no-models").display().to_string(),
            jobs = dir.path().join("gateway-jobs.db").display().to_string(),
            facilitator = facilitator.url(),
            pay_to = chain.devnet.pay_to().address.to_checksum(None),
            network = chain.devnet.network(),
            asset = token.address.to_checksum(None),
            decimals = token.decimals,
            name = token.name,
            version = token.version,
        ),
    )
    .unwrap();
    let payer = &chain.devnet.payers()[0];
    let pay_to_before = chain.balance(chain.devnet.pay_to().address).await;
    let payer_before = chain.balance(payer.address).await;
    let txs_before = chain.facilitator_tx_count().await;

    // A paid async job.
    let mut first = spawn_gateway(&config);
    let http = reqwest::Client::new();
    let request =
        json!({"service": "llm-4090", "input": {"prompt": "survive this", "max_tokens": 16}});
    let run = || {
        http.post(format!("{}/run", first.url))
            .header("prefer", "respond-async")
            .json(&request)
    };
    let challenge = run().send().await.unwrap();
    assert_eq!(challenge.status(), 402);
    let amount = x402_testkit::challenge_of(challenge.headers()).accepts[0]
        .amount
        .0;
    let (name, value) = payment_for(challenge, &payer.signer, Wire::V2).await;
    let accepted = run().header(name, value).send().await.unwrap();
    assert_eq!(accepted.status(), 202);
    let receipt = receipt_of(accepted.headers()).expect("settled before the job started");
    assert!(receipt.success);
    let job = accepted.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The job is running: the upstream has its first call.
    let deadline = Instant::now() + Duration::from_secs(20);
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the job never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let running = status(&http, &first.url, &job).await;
    assert_eq!(running["status"], "running", "{running}");
    assert_eq!(running["attempts"], 1);

    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Restarted on the same job database: /status answers, and the job runs again.
    let mut second = spawn_gateway(&config);
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let view = status(&http, &second.url, &job).await;
        if view["status"] == "completed" || view["status"] == "failed" {
            break view;
        }
        assert!(Instant::now() < deadline, "the job did not finish: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["text"], "echo: survive this");
    assert_eq!(done["attempts"], 2);
    assert_eq!(done["charged"], true);
    assert_eq!(done["transaction"], receipt.transaction);
    assert_eq!(
        done["payer"].as_str().unwrap().to_lowercase(),
        payer.address.to_string().to_lowercase()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "run again exactly once");

    // Paid once: one transfer, of the quoted amount.
    assert_eq!(
        chain.balance(chain.devnet.pay_to().address).await,
        pay_to_before + amount
    );
    assert_eq!(chain.balance(payer.address).await, payer_before - amount);
    assert_eq!(chain.facilitator_tx_count().await, txs_before + 1);
    assert!(amount > U256::ZERO);

    // A third start finds nothing left to run, and still answers for the job.
    common::stop_cleanly(&mut second.child);
    let mut third = spawn_gateway(&config);
    let view = status(&http, &third.url, &job).await;
    assert_eq!(view["status"], "completed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a finished job is not run again"
    );
    third.child.kill().unwrap();
    third.child.wait().unwrap();
    facilitator.shutdown().await;
}
