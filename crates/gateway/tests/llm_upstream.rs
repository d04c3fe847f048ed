//! LLM services through an OpenAI-compatible upstream: a small server started inside the test
//! stands in for Groq/OpenAI (the only thing mocked, as it costs money). Paid chat completions
//! (plain and streamed), GPU-Bridge `/run` for `llm-*`, and an upstream failure not charged.

mod common;

use std::sync::{Arc, Mutex};

use alloy::primitives::U256;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use common::Stack;
use serde_json::{Value, json};
use x402_testkit::{Wire, assert_text_at, receipt_of};

/// What the upstream was asked, for assertions.
type Seen = Arc<Mutex<Vec<Value>>>;

async fn start_upstream() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |headers: axum::http::HeaderMap, Json(request): Json<Value>| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(json!({"request": request, "auth": headers.get("authorization").map(|v| v.to_str().unwrap().to_owned())}));
                let last = request["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_owned();
                if last == "fail" {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "upstream on fire").into_response();
                }
                if request["stream"] == json!(true) {
                    let mut events = String::new();
                    for word in ["Hello", " from", " upstream"] {
                        let chunk = json!({"object": "chat.completion.chunk", "model": request["model"], "choices": [{"index": 0, "delta": {"content": word}}]});
                        events.push_str(&format!("data: {chunk}\n\n"));
                    }
                    events.push_str("data: [DONE]\n\n");
                    return ([("content-type", "text/event-stream")], events).into_response();
                }
                Json(json!({
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": request["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("echo: {last}")}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
                }))
                .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// An upstream, and the stack with `settings` (TOML) and `llm-4090` served by it.
async fn with_upstream(settings: &str) -> (Stack, Seen) {
    let (upstream, seen) = start_upstream().await;
    (Stack::with_llm_upstream(&upstream, settings).await, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_are_paid_and_passed_through() {
    // The key is read from the environment; cargo sets CARGO_PKG_NAME for test runs, which
    // spares an unsafe `set_var` (the workspace forbids unsafe code).
    let (upstream, seen) = start_upstream().await;
    let stack = Stack::start(&format!(
        "[services.llm-4090]\nprice = \"0.001\"\n[services.llm-4090.upstream]\nbase_url = \"{upstream}\"\nmodel = \"tiny-test-model\"\napi_key_env = \"CARGO_PKG_NAME\"\n\
         [services.llm-stream.upstream]\nbase_url = \"{upstream}\"\nmodel = \"tiny-test-model\"\n"
    ))
    .await;
    let start = stack.pay_to_balance().await;

    // OpenAI route, by upstream model name; the price covers the prompt estimate + max_tokens.
    let request = json!({"model": "tiny-test-model", "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 100});
    let (response, amount) = stack
        .pay_post("/v1/chat/completions", &request, 0, Wire::V2)
        .await;
    assert_eq!(response.status(), 200);
    assert!(receipt_of(response.headers()).unwrap().success);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "echo: hi there");
    let prompt_tokens = serde_json::to_string(&request["messages"])
        .unwrap()
        .len()
        .div_ceil(4) as u64;
    // $0.001 per 1K tokens, in micro-USDC: one per token.
    assert_eq!(amount, U256::from(prompt_tokens + 100));
    let asked = seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(asked["request"]["model"], "tiny-test-model");
    assert_eq!(asked["request"]["max_tokens"], 100);
    assert_eq!(asked["auth"], "Bearer x402-gateway");

    // Streamed: the event stream is passed through as it came.
    let request = json!({"model": "llm-4090", "messages": [{"role": "user", "content": "stream please"}], "stream": true});
    let (response, _) = stack
        .pay_post("/v1/chat/completions", &request, 1, Wire::V2)
        .await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    assert!(receipt_of(response.headers()).unwrap().success);
    let events = response.text().await.unwrap();
    assert!(events.contains("\" upstream\""), "{events}");
    assert!(events.trim_end().ends_with("data: [DONE]"), "{events}");

    // GPU-Bridge /run shape for an LLM service.
    let (response, _) = stack
        .pay_post(
            "/run",
            &json!({"service": "llm-4090", "input": {"prompt": "say hi", "max_tokens": 20}}),
            2,
            Wire::V1,
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["output"]["text"], "echo: say hi");
    assert_eq!(body["output"]["usage"]["total_tokens"], 12);

    // An upstream failure is a 502 and is not charged.
    let before = stack.pay_to_balance().await;
    let (response, _) = stack
        .pay_run("llm-4090", json!({"prompt": "fail"}), 3)
        .await;
    assert_eq!(response.status(), 502);
    assert!(receipt_of(response.headers()).is_none());
    assert_eq!(stack.pay_to_balance().await, before);

    // Unknown models are refused before payment, naming the ones served.
    let request = json!({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]});
    let response = stack.post_json("/v1/chat/completions", &request).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["models"]
            .as_array()
            .unwrap()
            .contains(&json!("tiny-test-model")),
        "{body}"
    );

    assert!(stack.pay_to_balance().await > start);
}

/// A paid job whose upstream keeps failing: tried `limits.job_attempts` times, then reported
/// failed, saying the payer was charged (it settled before it ran) and not refunded, as the
/// catalog's policy states. The payment moved once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_job_that_keeps_failing_says_it_was_charged_and_not_refunded() {
    let (stack, seen) = with_upstream("[limits]\njob_attempts = 2\n").await;
    let catalog: Value = stack.get_json("/catalog").await;
    assert_eq!(catalog["jobs"]["refunds"], false, "{}", catalog["jobs"]);
    assert_eq!(catalog["jobs"]["max_attempts"], 2);

    let before = stack.pay_to_balance().await;
    let request = json!({"service": "llm-4090", "input": {"prompt": "fail", "max_tokens": 8}});
    let (job_id, receipt) = stack.pay_job(&request).await;
    let view = stack.job_outcome(&job_id).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["attempts"], 2);
    assert_text_at(&view, "/error", "upstream");
    assert_eq!(view["charged"], true);
    assert_eq!(view["refunded"], false);
    assert_eq!(view["refund_amount_usd"], "0");
    assert_eq!(view["transaction"], receipt.transaction);
    let asked = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s["request"]["messages"][0]["content"] == "fail")
        .count();
    assert_eq!(asked, 2, "one upstream call per attempt");
    let cost: x402_proto::Price = view["cost_usd"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        stack.pay_to_balance().await,
        before + cost.to_atomic(6).unwrap().0,
        "charged once"
    );
}

/// POSTs `body` to `path` with an upto-only official client paying as `payer`: what it printed.
async fn pay_upto(
    stack: &Stack,
    path: &str,
    body: &Value,
    payer: &alloy::signers::local::PrivateKeySigner,
) -> Value {
    x402_testkit::official_fetch(vec![
        ("URL", format!("{}{path}", stack.url)),
        ("METHOD", "POST".into()),
        ("BODY", body.to_string()),
        ("SCHEMES", "upto".into()),
        ("PRIVATE_KEY", payer.to_bytes().to_string()),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_paid_with_upto_is_charged_for_the_tokens_used() {
    // The accept entry also offers upto (after exact); the facilitator serves it.
    let (stack, _) = with_upstream("upto = true\n[services.llm-4090]\nprice = \"0.001\"\n").await;
    let chain = &stack.base.chain;
    let payer = &chain.devnet.payers()[0];
    chain.devnet.approve_permit2(&payer.signer).await.unwrap();
    let (payer_before, payee_before) = (
        chain.balance(payer.address).await,
        stack.pay_to_balance().await,
    );

    // An upto-only official client; the answer uses 12 tokens of a 1,000-token budget.
    let request = json!({"model": "tiny-test-model", "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 1000});
    let result = pay_upto(&stack, "/v1/chat/completions", &request, &payer.signer).await;
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(
        result["body"]["choices"][0]["message"]["content"],
        "echo: hi there"
    );
    let receipt = &result["paymentResponse"];
    assert_eq!(receipt["success"], true, "{receipt}");
    // $0.001 per 1K tokens is one micro-USDC a token: 12 tokens used, not ~1,003 quoted.
    assert_eq!(receipt["amount"], "12", "{receipt}");
    assert_eq!(
        chain.balance(payer.address).await,
        payer_before - U256::from(12)
    );
    assert_eq!(stack.pay_to_balance().await, payee_before + U256::from(12));

    // GPU-Bridge `/run`: the answer says what the call cost, the usage.
    let run = json!({"service": "llm-4090", "input": {"prompt": "hi there", "max_tokens": 1000}});
    let result = pay_upto(&stack, "/run", &run, &payer.signer).await;
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["paymentResponse"]["amount"], "12", "{result}");
    assert_eq!(result["body"]["cost_usd"], "0.000012", "{result}");
    assert_eq!(stack.pay_to_balance().await, payee_before + U256::from(24));

    // An exact client still pays the quoted maximum for the same call.
    let (response, amount) = stack
        .pay_post("/v1/chat/completions", &request, 1, Wire::V2)
        .await;
    assert_eq!(response.status(), 200);
    assert!(amount > U256::from(1_000), "exact pays the quote: {amount}");
    assert_eq!(
        stack.pay_to_balance().await,
        payee_before + U256::from(24) + amount
    );
}
