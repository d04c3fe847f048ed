//! An LLM chat paid with a `batch-settlement` voucher through the gateway is charged exactly
//! the tokens the upstream reported using (prompt plus completion) at the service's rate, not
//! its quote (the prompt's estimate plus `max_tokens`): a plain answer by its `usage`, a
//! streamed one by the usage chunk the gateway asks the upstream for
//! (`stream_options.include_usage`), the stream arriving whole with its receipt as its last
//! event. An upstream failure charges nothing, and the same voucher pays the next call. The
//! operator's claim then pays the payee exactly what the channel was charged. Real anvil chain
//! and our facilitator; a small OpenAI-compatible upstream inside the test stands in for the LLM.

mod common;

use alloy::primitives::{B256, U256};
use alloy::signers::local::PrivateKeySigner;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use common::{Stack, receipt_in_stream};
use serde_json::{Value, json};
use x402_proto::{Scheme, SettleResponse, v2};
use x402_testkit::{BatchPayer, challenge_of, receipt_of};

const PATH: &str = "/v1/chat/completions";
/// `llm-4090`'s price: USD per 1K tokens.
const PRICE: &str = "0.003";
/// That price in atomic units of the 6-decimal token per token: $0.003 × 10⁶ / 1000.
const ATOMIC_PER_TOKEN: u128 = 3;
/// The channel's deposit: the gateway's default `min_deposit`, $0.10.
const DEPOSIT: u128 = 100_000;
const MAX_TOKENS: u128 = 1000;
/// What the upstream says a plain answer used, prompt and completion tokens (not what the
/// gateway would estimate).
const PLAIN_USAGE: (u128, u128) = (17, 25);
/// What it says a streamed answer used.
const STREAMED_USAGE: (u128, u128) = (13, 31);
const ANSWER: [&str; 4] = ["Paid", " by", " the", " token"];

/// The events of the streamed answer a client gets that did not ask for the usage chunk.
fn answer_events() -> String {
    let mut events = String::new();
    for word in ANSWER {
        let chunk = json!({"object": "chat.completion.chunk", "model": "tiny-test-model", "choices": [{"index": 0, "delta": {"content": word}}]});
        events.push_str(&format!("data: {chunk}\n\n"));
    }
    events
}

/// An upstream answering `ANSWER` with `PLAIN_USAGE`, or streamed with `STREAMED_USAGE` in a last
/// chunk when asked (`stream_options.include_usage`, as OpenAI does); failing (500) when the
/// last message is "fail".
async fn start_upstream() -> String {
    let app = Router::new().route(
        PATH,
        post(|Json(request): Json<Value>| async move {
            let last = request["messages"].as_array().unwrap().last().unwrap()["content"].clone();
            if last == "fail" {
                return (StatusCode::INTERNAL_SERVER_ERROR, "upstream on fire").into_response();
            }
            if request["stream"] == true {
                let mut events = answer_events();
                if request["stream_options"]["include_usage"] == true {
                    let (prompt, completion) = STREAMED_USAGE;
                    let usage = json!({"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}});
                    events.push_str(&format!("data: {usage}\n\n"));
                }
                events.push_str("data: [DONE]\n\n");
                return ([("content-type", "text/event-stream")], events).into_response();
            }
            let (prompt, completion) = PLAIN_USAGE;
            Json(json!({
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": request["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER.concat()}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
            }))
            .into_response()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A chat request asking `content`, streamed or not.
fn chat(content: &str, stream: bool) -> Value {
    json!({"model": "tiny-test-model", "messages": [{"role": "user", "content": content}], "max_tokens": MAX_TOKENS, "stream": stream})
}

/// The `batch-settlement` offer of the 402 that `body` gets unpaid: its amount is the quote.
async fn batch_offer(stack: &Stack, body: &Value) -> v2::PaymentRequirements {
    let unpaid = stack.post_json(PATH, body).await;
    assert_eq!(unpaid.status(), 402);
    challenge_of(unpaid.headers())
        .accepts
        .into_iter()
        .find(|offer| offer.scheme == Scheme::BATCH_SETTLEMENT)
        .expect("a batch-settlement offer")
}

/// What a paid call got back: for a stream, the events before its receipt.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    receipt: Option<SettleResponse>,
    body: String,
}

/// Sends `body` paying `offer` with the batch `payload`.
async fn send(
    stack: &Stack,
    body: &Value,
    offer: &v2::PaymentRequirements,
    payload: Value,
) -> Answer {
    let response = stack
        .post_paid(PATH, body, &BatchPayer::header(offer, payload))
        .await;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let header = receipt_of(response.headers());
    let text = response.text().await.unwrap();
    let (body, receipt) = match receipt_in_stream(&text) {
        Some((events, receipt)) => {
            assert!(header.is_none(), "a stream's receipt is its last event");
            (events.to_owned(), Some(receipt))
        }
        None => (text, header),
    };
    Answer {
        status,
        content_type,
        receipt,
        body,
    }
}

/// Asserts that `answer`, quoted `quote`, was charged `(prompt, completion)` tokens at the
/// rate, on top of what `payer` was charged before, and less than its quote; advances the
/// payer's count. The charge.
fn assert_charged(
    payer: &mut BatchPayer,
    answer: &Answer,
    quote: U256,
    (prompt, completion): (u128, u128),
) -> u128 {
    let receipt = answer.receipt.as_ref().expect("a receipt");
    assert!(receipt.success, "{receipt:?}");
    let extra = receipt.extra.as_ref().expect("the channel's charges");
    let read = |value: &Value| -> u128 { value.as_str().unwrap().parse().unwrap() };
    let charged = read(&extra["chargedAmount"]);
    let cumulative = read(&extra["channelState"]["chargedCumulativeAmount"]);
    assert_eq!(
        charged,
        (prompt + completion) * ATOMIC_PER_TOKEN,
        "the tokens used at the rate: {receipt:?}"
    );
    assert_eq!(cumulative, payer.charged + charged, "{receipt:?}");
    assert!(
        quote >= U256::from(MAX_TOKENS * ATOMIC_PER_TOKEN),
        "the quote {quote} covers max_tokens at the rate"
    );
    assert!(
        U256::from(charged) < quote,
        "charged {charged}, quoted {quote}"
    );
    payer.charged = cumulative;
    charged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voucher_paid_chats_are_charged_the_tokens_used_and_claimed_exactly() {
    let upstream = start_upstream().await;
    let service = format!(
        "[services.llm-4090]\nprice = \"{PRICE}\"\n{}",
        common::llm_upstream(&upstream)
    );
    let stack = Stack::with_batch(&PrivateKeySigner::random(), &service).await;
    let chain = &stack.base.chain;
    let payee_before = stack.pay_to_balance().await;
    let mut total = 0;

    // The first call opens the channel with a deposit, and is charged its tokens from it.
    let plain = chat("what does a token cost?", false);
    let offer = batch_offer(&stack, &plain).await;
    let mut payer = chain.batch_payer(&offer, 0, B256::ZERO);
    let deposit = payer.deposit(chain, &offer, DEPOSIT).await;
    let answer = send(&stack, &plain, &offer, deposit).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let receipt = answer.receipt.as_ref().expect("a receipt");
    assert!(!receipt.transaction.is_empty(), "the deposit went on chain");
    total += assert_charged(&mut payer, &answer, offer.amount.0, PLAIN_USAGE);

    // A plain chat paid by voucher: its `usage`.
    let offer = batch_offer(&stack, &plain).await;
    let voucher = payer.voucher(chain, &offer).await;
    let answer = send(&stack, &plain, &offer, voucher).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], ANSWER.concat());
    assert!(
        answer.receipt.as_ref().unwrap().transaction.is_empty(),
        "a voucher sends nothing"
    );
    total += assert_charged(&mut payer, &answer, offer.amount.0, PLAIN_USAGE);

    // A streamed chat paid by voucher: the usage chunk's count; the stream arrived whole (the
    // usage chunk held back, as this client did not ask for it), then its receipt.
    let streamed = chat("stream the price of a token", true);
    let offer = batch_offer(&stack, &streamed).await;
    let voucher = payer.voucher(chain, &offer).await;
    let answer = send(&stack, &streamed, &offer, voucher).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        answer.content_type.starts_with("text/event-stream"),
        "{answer:?}"
    );
    assert_eq!(answer.body, format!("{}data: [DONE]\n\n", answer_events()));
    total += assert_charged(&mut payer, &answer, offer.amount.0, STREAMED_USAGE);

    // An upstream failure charges nothing: the channel's record is as it was, nothing held.
    let store = stack
        .gateway
        .channels()
        .expect("the gateway keeps channels");
    let failing = chat("fail", false);
    let offer = batch_offer(&stack, &failing).await;
    let voucher = payer.voucher(chain, &offer).await;
    let failed = send(&stack, &failing, &offer, voucher.clone()).await;
    assert_eq!(failed.status, 502, "{failed:?}");
    assert!(failed.receipt.is_none(), "{failed:?}");
    let record = store.get(&payer.id).await.unwrap().expect("the channel");
    assert_eq!((record.charged, record.pending), (payer.charged, None));

    // The same voucher (its ceiling the failed call's) pays the next call, quoted the same.
    let next = chat("fine", false);
    let next_offer = batch_offer(&stack, &next).await;
    assert_eq!(next_offer.amount, offer.amount);
    let answer = send(&stack, &next, &next_offer, voucher).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    total += assert_charged(&mut payer, &answer, offer.amount.0, PLAIN_USAGE);
    assert_eq!(total, payer.charged);
    assert_eq!(store.get(&payer.id).await.unwrap().unwrap().charged, total);

    // Nothing reached the payee yet; the operator's claim pays it exactly what was charged.
    assert_eq!(stack.pay_to_balance().await, payee_before);
    let claimed = stack.operator_claim().await;
    assert_eq!(
        stack.pay_to_balance().await,
        payee_before + U256::from(total),
        "{claimed}"
    );
    stack.gateway.shutdown().await;
}
