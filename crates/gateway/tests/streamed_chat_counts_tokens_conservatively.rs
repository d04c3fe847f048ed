//! A streamed chat answer is charged the tokens the upstream counted, and never less than a
//! token a character when it did not count. The gateway asks the upstream for its usage chunk
//! (`stream_options.include_usage`); when the chunk comes, the charge is its prompt plus
//! completion tokens at the service's rate, whatever the text looked like. An upstream that
//! sends no count has its CJK answer charged by the conservative estimate, at least one token a
//! character (not the 4 characters a token of English). The usage chunk reaches the client only
//! when the client asked for it, as from OpenAI; the charge uses it either way. Real anvil chain
//! and our facilitator,
//! paid by `upto`; a small OpenAI-compatible upstream inside the test stands in for the LLM.

mod common;

use alloy::primitives::U256;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use common::Stack;
use serde_json::{Value, json};
use x402_paywall::RECEIPT_EVENT;
use x402_proto::{SettleResponse, decode_header};

/// What the upstream streams: `PIECES` deltas of this CJK text.
const PIECE: &str = "你好";
const PIECES: u64 = 50;
/// What the counting upstream reports.
const PROMPT_TOKENS: u64 = 17;
const COMPLETION_TOKENS: u64 = 23;

/// An upstream that streams `PIECES` CJK deltas; it insists on being asked for its usage, and
/// sends it (OpenAI's last chunk: no choices, the counts) unless the prompt is "do not count".
async fn start_upstream() -> String {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|Json(request): Json<Value>| async move {
            assert_eq!(
                request["stream_options"]["include_usage"], true,
                "the gateway asks for the usage chunk: {request}"
            );
            let counts = request["messages"][0]["content"] != "do not count";
            let mut events: Vec<String> = (0..PIECES)
                .map(|_| json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": PIECE}}]}))
                .chain(counts.then(|| json!({"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS, "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}})))
                .map(|chunk| format!("data: {chunk}\n\n"))
                .collect();
            events.push("data: [DONE]\n\n".to_owned());
            ([("content-type", "text/event-stream")], events.concat()).into_response()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// What the client received: a stream, with its chunks that have no choices.
struct Streamed {
    charged: U256,
    maximum: U256,
    prompt_estimate: u64,
    without_choices: Vec<Value>,
}

/// A stack with `upto`, `llm-4090` at one micro-USDC a token from the upstream, asked `content`
/// in a stream paid by `upto` (`stream_options` as given, if any): what was charged (the receipt
/// at the stream's end, checked against the payee's balance), the maximum signed, the prompt's
/// estimate, and the chunks the client got without choices.
async fn streamed_charge(content: &str, stream_options: Option<Value>) -> Streamed {
    let stack = Stack::upto_llm(&start_upstream().await).await;
    let messages = json!([{"role": "user", "content": content}]);
    let prompt_estimate = messages.to_string().len().div_ceil(4) as u64;
    let mut request = json!({"model": "tiny-test-model", "messages": messages, "max_tokens": 2000, "stream": true});
    if let Some(options) = stream_options {
        request["stream_options"] = options;
    }
    let payee_before = stack.pay_to_balance().await;
    let (payment, maximum) = stack
        .upto_payment("/v1/chat/completions", &request, 0)
        .await;
    let response = stack
        .post_paid("/v1/chat/completions", &request, &payment)
        .await;
    assert_eq!(response.status(), 200);
    let events = response.text().await.unwrap();
    assert_eq!(events.matches(PIECE).count() as u64, PIECES, "{events}");
    assert!(events.contains("data: [DONE]\n\n"), "{events}");
    let without_choices = events
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter(|chunk| chunk["choices"].as_array().is_none_or(Vec::is_empty))
        .collect();
    let (_, receipt) = events
        .split_once(&format!("event: {RECEIPT_EVENT}\ndata: "))
        .unwrap_or_else(|| panic!("no receipt event: {events}"));
    let receipt: SettleResponse = decode_header(receipt.trim_end().as_bytes()).unwrap();
    assert!(receipt.success, "{receipt:?}");
    let charged = receipt.amount.expect("an amount").0;
    assert_eq!(stack.pay_to_balance().await, payee_before + charged);
    Streamed {
        charged,
        maximum,
        prompt_estimate,
        without_choices,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_the_upstreams_usage_chunk_is_charged_that_usage_the_client_did_not_ask_for()
{
    // Not asked for, or asked not to: the client gets no chunk without choices.
    for options in [None, Some(json!({"include_usage": false}))] {
        let streamed = streamed_charge("count your tokens", options.clone()).await;
        assert_eq!(streamed.without_choices, Vec::<Value>::new(), "{options:?}");
        assert_eq!(
            streamed.charged,
            U256::from(PROMPT_TOKENS + COMPLETION_TOKENS)
        );
        assert!(streamed.charged < streamed.maximum);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_asks_for_the_usage_chunk_gets_it_and_is_charged_it() {
    let streamed = streamed_charge("count your tokens", Some(json!({"include_usage": true}))).await;
    let [usage_chunk] = &streamed.without_choices[..] else {
        panic!("one usage chunk: {:?}", streamed.without_choices);
    };
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(usage_chunk["usage"]["completion_tokens"], COMPLETION_TOKENS);
    assert_eq!(
        streamed.charged,
        U256::from(PROMPT_TOKENS + COMPLETION_TOKENS)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cjk_stream_without_usage_is_charged_at_least_a_token_a_character() {
    let Streamed {
        charged,
        maximum,
        prompt_estimate,
        ..
    } = streamed_charge("do not count", None).await;
    let characters = PIECES * PIECE.chars().count() as u64;
    assert!(
        charged >= U256::from(prompt_estimate + characters),
        "charged {charged} for {prompt_estimate} prompt tokens and {characters} CJK characters"
    );
    assert!(charged <= maximum, "{charged} of {maximum}");
}
