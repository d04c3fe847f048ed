//! Asking a local chat model through the gateway: one question paid by `upto`, whole and
//! streamed, checking that both give the same text, report their usage, and are charged
//! exactly those tokens.

use alloy::primitives::U256;
use serde_json::{Value, json};
use x402_testkit::receipt_of;

use super::{Stack, receipt_in_stream};

const PATH: &str = "/v1/chat/completions";

/// The OpenAI request asking `service` for `prompt`, greedy, at most `max_tokens`.
pub fn question(service: &str, prompt: &str, max_tokens: u64, stream: bool) -> Value {
    json!({
        "model": service,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
        "stream_options": {"include_usage": true},
    })
}

/// Prompt, completion and total tokens of a `usage` object, checked to add up.
pub fn tokens(usage: &Value) -> (u64, u64, u64) {
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    let completion = usage["completion_tokens"].as_u64().unwrap();
    let total = usage["total_tokens"].as_u64().unwrap();
    assert_eq!(prompt + completion, total, "{usage}");
    assert!(prompt > 10 && completion > 0, "{usage}");
    (prompt, completion, total)
}

/// Asks `service` `prompt` paid by `upto` (one micro-USDC a token: the service priced at
/// $0.001 per 1K tokens, payer 0 having approved Permit2), whole then streamed; checks that
/// both answers are the same text, end with `stop`, report the same usage and are charged
/// exactly their tokens. Returns the answer and the model that gave it.
pub async fn ask_whole_and_streamed(
    stack: &Stack,
    service: &str,
    prompt: &str,
    max_tokens: u64,
) -> (String, String) {
    // Whole: charged its reported tokens.
    let whole = question(service, prompt, max_tokens, false);
    let (payment, maximum) = stack.upto_payment(PATH, &whole, 0).await;
    let payee_before = stack.pay_to_balance().await;
    let response = stack.post_paid(PATH, &whole, &payment).await;
    assert_eq!(response.status(), 200);
    let receipt = receipt_of(response.headers()).expect("a receipt");
    let completion: Value = response.json().await.unwrap();
    let answer = completion["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        completion["choices"][0]["finish_reason"], "stop",
        "{completion}"
    );
    let model = completion["model"].as_str().unwrap().to_owned();
    let (_, _, total) = tokens(&completion["usage"]);
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(receipt.amount.map(|a| a.0), Some(U256::from(total)));
    assert!(U256::from(total) < maximum);
    let payee_after_whole = stack.pay_to_balance().await;
    assert_eq!(payee_after_whole - payee_before, U256::from(total));

    // Streamed: the same text in deltas, its usage chunk, charged its tokens.
    let streamed = question(service, prompt, max_tokens, true);
    let (payment, _) = stack.upto_payment(PATH, &streamed, 0).await;
    let response = stack.post_paid(PATH, &streamed, &payment).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = response.text().await.unwrap();
    let (events, receipt) = receipt_in_stream(&events).expect("a receipt event");
    let mut text = String::new();
    let mut usage = None;
    let mut finish = None;
    let mut done = false;
    for data in events.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], model.as_str());
        if let Some(choice) = chunk["choices"].get(0) {
            text.push_str(choice["delta"]["content"].as_str().unwrap_or(""));
            if let Some(reason) = choice["finish_reason"].as_str() {
                finish = Some(reason.to_owned());
            }
        }
        if chunk["usage"].is_object() {
            usage = Some(chunk["usage"].clone());
        }
    }
    assert!(done, "{events}");
    assert_eq!(text, answer, "streamed and whole answers differ");
    assert_eq!(finish.as_deref(), Some("stop"));
    let usage = usage.expect("a usage chunk");
    assert_eq!(tokens(&usage), tokens(&completion["usage"]));
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(receipt.amount.map(|a| a.0), Some(U256::from(total)));
    assert_eq!(
        stack.pay_to_balance().await - payee_after_whole,
        U256::from(total)
    );
    (answer, model)
}

/// The catalog entry of `service`.
pub async fn catalog_entry(stack: &Stack, service: &str) -> Value {
    let catalog = stack.get_json("/catalog").await;
    catalog["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == service)
        .unwrap_or_else(|| panic!("{service} in {catalog}"))
        .clone()
}
