//! Two gateway replicas started from one config whose `database` is one Postgres database, on
//! one devnet chain and facilitator, behave as one gateway:
//!
//! - one payment, re-encoded many ways and sent to both replicas at once, buys one response:
//!   one upstream call, one transfer; the copies sent meanwhile are refused as in use, those
//!   sent after get that same response again from either replica, and the payment buys no
//!   other request on either;
//! - an async job paid on one replica is reported by the other's `/status`;
//! - a `batch-settlement` channel paid alternately on both keeps one count, a voucher
//!   already charged on one is not charged again on the other, and one operator claim on
//!   either pays the payee exactly what was charged.
//!
//! Real anvil chain, our facilitator and the machine's Postgres; a small OpenAI-compatible
//! upstream inside the test stands in for the LLM.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy::primitives::{B256, U256};
use alloy::signers::local::PrivateKeySigner;
use axum::routing::post;
use axum::{Json, Router};
use common::{OPERATOR_TOKEN, Stack, testdata};
use serde_json::{Value, json};
use x402_gateway::RunningGateway;
use x402_proto::{Scheme, v2};
use x402_testkit::{
    BatchPayer, TempDatabase, Wire, challenge_of, payment_for, receipt_of, reencodings,
};

/// How long the upstream takes to answer: longer than every copy takes to arrive.
const THINK: Duration = Duration::from_millis(1_500);
const COPIES: usize = 8;

/// An upstream that takes [`THINK`] to answer and numbers its answers (so that a second run
/// of the handler would show), and how many times it was asked.
async fn start_upstream() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |Json(request): Json<Value>| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                tokio::time::sleep(THINK).await;
                Json(json!({
                    "id": format!("chatcmpl-{n}"),
                    "object": "chat.completion",
                    "model": request["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("answer number {n}")}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

fn chat(content: &str) -> Value {
    json!({"model": "tiny-test-model", "messages": [{"role": "user", "content": content}], "max_tokens": 20})
}

/// Sends `body` to `url` + `path` with the payment header `(name, value)`: the status, and
/// the 402's error or the body.
async fn send(
    http: &reqwest::Client,
    url: &str,
    path: &str,
    (name, value): (&str, &str),
    body: &Value,
) -> (u16, String) {
    let response = http
        .post(format!("{url}{path}"))
        .header(name, value)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    if status == 402 {
        (
            status,
            challenge_of(response.headers()).error.unwrap_or_default(),
        )
    } else {
        (status, response.text().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_split_across_both_replicas_buys_one_response() {
    let database = TempDatabase::create().await;
    let (upstream, calls) = start_upstream().await;
    let (stack, second) = Stack::replicas(
        &PrivateKeySigner::random(),
        &database.url,
        &common::llm_upstream(&upstream),
    )
    .await;
    let replicas = [stack.url.clone(), second.url()];
    let chain = &stack.base.chain;
    let (payee_before, txs_before) = (
        stack.pay_to_balance().await,
        chain.facilitator_tx_count().await,
    );
    let path = "/v1/chat/completions";
    let body = chat("what is one payment worth?");

    let unpaid = stack.post_json(path, &body).await;
    let price = challenge_of(unpaid.headers()).accepts[0].amount.0;
    let (name, value) = payment_for(unpaid, stack.payer(0), Wire::V2).await;
    let copies = reencodings(&value, COPIES);

    // Every copy at once, half to each replica.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, copy) in copies.iter().cloned().enumerate() {
        let (http, url, body) = (stack.http.clone(), replicas[i % 2].clone(), body.clone());
        tasks.spawn(async move { send(&http, &url, path, (name, &copy), &body).await });
    }
    let answers = tasks.join_all().await;
    let served: Vec<&String> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, text)| text)
        .collect();
    assert_eq!(served.len(), 1, "exactly one response: {answers:?}");
    for (status, error) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(*status, 402, "{error}");
        assert!(error.contains("payment_in_use"), "{error}");
    }
    let response = served[0].clone();
    assert!(response.contains("answer number 1"), "{response}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the handler ran once");

    // Sent again, each copy gets that same response from either replica, run no more.
    for (i, copy) in copies.iter().enumerate() {
        let again = send(&stack.http, &replicas[i % 2], path, (name, copy), &body).await;
        assert_eq!(again, (200, response.clone()), "copy {i}");
    }
    // For another request (at the same price), on either replica, the payment buys nothing.
    let mut other = body.clone();
    other["temperature"] = json!(0.7);
    for url in &replicas {
        let (status, error) = send(&stack.http, url, path, (name, &value), &other).await;
        assert_eq!(status, 402);
        assert!(error.contains("payment_already_used"), "{error}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the handler ran once");
    assert_eq!(
        stack.pay_to_balance().await,
        payee_before + price,
        "paid once"
    );
    assert_eq!(
        chain.facilitator_tx_count().await,
        txs_before + 1,
        "one transfer"
    );
    second.shutdown().await;
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_started_on_one_replica_is_reported_by_the_other() {
    let database = TempDatabase::create().await;
    let (stack, second) = Stack::replicas(&PrivateKeySigner::random(), &database.url, "").await;
    let request =
        json!({"service": "pdf-parse", "input": {"file_base64": b64(&testdata("two-pages.pdf"))}});
    let (job_id, receipt) = stack.pay_job(&request).await;

    let status = |id: &str| {
        let url = format!("{}/status/{id}", second.url());
        let http = stack.http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let mut view = Value::Null;
    for _ in 0..100 {
        let (code, seen) = status(&job_id).await;
        assert_eq!(code, 200, "the other replica knows the job: {seen}");
        view = seen;
        if view["status"] == "completed" || view["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["output"]["pages"], 2);
    assert_eq!(view["transaction"], receipt.transaction);
    assert_eq!(view["charged"], true);
    assert_eq!(status("job_nope").await.0, 404);
    second.shutdown().await;
}

/// `POST {url}/operator/claim` with the operator's token: the answer's body.
async fn operator_claim(http: &reqwest::Client, url: &str) -> Value {
    let answer = http
        .post(format!("{url}/operator/claim"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_paid_on_both_replicas_keeps_one_count_and_one_claim_pays_it() {
    let database = TempDatabase::create().await;
    let (stack, second) = Stack::replicas(&PrivateKeySigner::random(), &database.url, "").await;
    let replicas: [(&str, &RunningGateway); 2] = [
        (stack.url.as_str(), &stack.gateway),
        (&second.url(), &second),
    ];
    let chain = &stack.base.chain;
    let txs_before = chain.facilitator_tx_count().await;
    let payee_before = stack.pay_to_balance().await;
    let (path, http) = ("/run", &stack.http);
    let call = |i: usize| json!({"service": "embed-l4", "input": {"text": format!("call number {i} on a shared channel")}});
    let offer_of = |url: String, body: Value| async move {
        let unpaid = http
            .post(format!("{url}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(unpaid.status(), 402);
        challenge_of(unpaid.headers())
            .accepts
            .into_iter()
            .find(|offer| offer.scheme == Scheme::BATCH_SETTLEMENT)
            .expect("a batch-settlement offer")
    };

    // A deposit on the first replica, then vouchers on each in turn.
    let mut payer: Option<BatchPayer> = None;
    let mut last: Option<(v2::PaymentRequirements, Value)> = None;
    for i in 0..6 {
        let (url, _) = replicas[i % 2];
        let body = call(i);
        let offer: v2::PaymentRequirements = offer_of(url.to_owned(), body.clone()).await;
        let payer = payer.get_or_insert_with(|| chain.batch_payer(&offer, 0, B256::ZERO));
        let payload = if i == 0 {
            payer.deposit(chain, &offer, 100_000).await
        } else {
            payer.voucher(chain, &offer).await
        };
        let header = BatchPayer::header(&offer, payload.clone());
        let response = http
            .post(format!("{url}{path}"))
            .header("PAYMENT-SIGNATURE", &header)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "call {i} on replica {}", i % 2);
        let receipt = receipt_of(response.headers()).expect("a receipt");
        let extra = receipt.extra.expect("the channel's charges");
        let read = |value: &Value| -> u128 { value.as_str().unwrap().parse().unwrap() };
        let charged = read(&extra["chargedAmount"]);
        assert!(
            charged > 0 && U256::from(charged) <= offer.amount.0,
            "{extra}"
        );
        assert_eq!(
            read(&extra["channelState"]["chargedCumulativeAmount"]),
            payer.charged + charged,
            "call {i}: one count across the replicas"
        );
        payer.charged += charged;
        last = Some((offer, payload));
    }
    let payer = payer.unwrap();

    // Both replicas read one record of the channel.
    let records = [
        stack
            .gateway
            .channels()
            .unwrap()
            .get(&payer.id)
            .await
            .unwrap(),
        second.channels().unwrap().get(&payer.id).await.unwrap(),
    ];
    assert_eq!(records[0], records[1]);
    assert_eq!(records[0].as_ref().unwrap().charged, payer.charged);

    // The last voucher, charged on the second replica, is charged nowhere again.
    let (offer, payload) = last.unwrap();
    let header = BatchPayer::header(&offer, payload);
    let (url, _) = replicas[0];
    let (status, _) = send(http, url, path, ("PAYMENT-SIGNATURE", &header), &call(99)).await;
    assert_ne!(status, 200, "a voucher already charged buys nothing more");
    let record = second.channels().unwrap().get(&payer.id).await.unwrap();
    assert_eq!(record.unwrap().charged, payer.charged);

    // One claim, on the replica that did not take the last charge, pays it all; the other
    // then has nothing to claim.
    let (first_url, second_url) = (replicas[0].0.to_owned(), replicas[1].0.to_owned());
    let claimed = operator_claim(http, &first_url).await;
    assert_eq!(
        claimed["transactions"].as_array().unwrap().len(),
        2,
        "a claim and a settle: {claimed}"
    );
    assert_eq!(
        stack.pay_to_balance().await,
        payee_before + U256::from(payer.charged),
        "the payee got exactly what was charged"
    );
    // The other replica claims nothing more; its first run settles again what the store
    // names, which the facilitator answers with the settlement it sent already.
    let nothing = operator_claim(http, &second_url).await;
    assert_eq!(nothing["runs"][0]["run"]["claims"], json!([]), "{nothing}");
    for transaction in nothing["transactions"].as_array().unwrap() {
        assert!(
            claimed["transactions"]
                .as_array()
                .unwrap()
                .contains(transaction),
            "nothing new is sent: {nothing}"
        );
    }
    assert_eq!(
        stack.pay_to_balance().await,
        payee_before + U256::from(payer.charged)
    );
    assert_eq!(
        chain.facilitator_tx_count().await,
        txs_before + 3,
        "the deposit, one claim, one settle"
    );
    second.shutdown().await;
    stack.gateway.shutdown().await;
}
