//! A streamed chat answer (`stream: true`) paid by `upto` is charged for what was sent: the
//! prompt's estimated tokens plus the completion tokens passed on, at the service's rate, never
//! more than the signed maximum. Read to its end, the event stream's last event (after
//! `data: [DONE]`) carries the receipt; cut off by the client midway, the payment is settled
//! for what went out before the cut, once, and buys nothing else. An `exact` payment of a
//! stream still settles its price before the stream is sent. A payment signed with a deadline
//! shorter than the offer's timeout is cut off in time to settle before it, or refused before
//! the upstream is asked when it leaves too little time. A payer that revokes its Permit2
//! approval mid-stream gets that answer unpaid, and no more streams: only what settles before
//! it leaves (`exact`). Real anvil chain and our facilitator;
//! a small OpenAI-compatible upstream inside the test stands in for the LLM.

mod common;

use std::time::Duration;

use alloy::primitives::U256;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use common::Stack;
use serde_json::{Value, json};
use x402_paywall::RECEIPT_EVENT;
use x402_proto::{SettleResponse, decode_header};
use x402_testkit::{Wire, receipt_of};

/// The tokens of a full answer: each chunk's content is one token (4 characters).
const FULL_ANSWER: u64 = 200;
/// Chunks sent at once before the upstream slows down (when asked to be slow).
const FAST_CHUNKS: u64 = 5;
const CONTENT: &str = "tok ";

/// An upstream streaming `FULL_ANSWER` one-token chunks then `data: [DONE]`: at once, or, when
/// the last message is "slow", `FAST_CHUNKS` at once and the rest 50 ms apart, or when it is
/// "hang", `FAST_CHUNKS` and then nothing, never ending.
async fn start_upstream() -> String {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|Json(request): Json<Value>| async move {
            assert_eq!(request["stream"], true, "this upstream only streams");
            let slow = request["messages"][0]["content"] == "slow";
            let hang = request["messages"][0]["content"] == "hang";
            let events = futures_util::stream::unfold(0u64, move |sent| async move {
                if sent > FULL_ANSWER {
                    return None;
                }
                if hang && sent >= FAST_CHUNKS {
                    futures_util::future::pending::<()>().await;
                }
                if slow && sent >= FAST_CHUNKS {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let event = if sent == FULL_ANSWER {
                    "data: [DONE]\n\n".to_owned()
                } else {
                    let chunk = json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": CONTENT}}]});
                    format!("data: {chunk}\n\n")
                };
                Some((Ok::<_, std::io::Error>(Bytes::from(event)), sent + 1))
            });
            (
                [("content-type", "text/event-stream")],
                axum::body::Body::from_stream(events),
            )
                .into_response()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The stack offering `upto` and the streaming upstream.
async fn stack() -> Stack {
    Stack::upto_llm(&start_upstream().await).await
}

/// A streamed chat request whose one message is `content`, and its prompt's estimated tokens.
fn chat(content: &str) -> (Value, u64) {
    let messages = json!([{"role": "user", "content": content}]);
    let prompt_tokens = messages.to_string().len().div_ceil(4) as u64;
    let request = json!({"model": "tiny-test-model", "messages": messages, "max_tokens": 1000, "stream": true});
    (request, prompt_tokens)
}

/// The answer's chunks (content events) in `events`.
fn chunks_in(events: &str) -> u64 {
    events
        .matches(&format!("\"content\":\"{CONTENT}\""))
        .count() as u64
}

/// The events of `response` read until its first `FAST_CHUNKS` chunks are in.
async fn read_fast_chunks(response: &mut reqwest::Response) -> String {
    let mut events = String::new();
    while chunks_in(&events) < FAST_CHUNKS {
        let bytes = response.chunk().await.unwrap().expect("the stream goes on");
        events.push_str(&String::from_utf8_lossy(&bytes));
    }
    events
}

/// The payer's and the payee's balances and the facilitator's sent transactions.
async fn balances(stack: &Stack) -> (U256, U256, u64) {
    let chain = &stack.base.chain;
    (
        chain.balance(chain.devnet.payers()[0].address).await,
        stack.pay_to_balance().await,
        chain.facilitator_tx_count().await,
    )
}

/// A chat asking `content`, paid by `upto` (signed, not yet sent) on a fresh stack.
struct UptoChat {
    stack: Stack,
    /// The payer's and payee's balances and the facilitator's transactions before.
    before: (U256, U256, u64),
    request: Value,
    prompt_tokens: u64,
    payment: String,
    maximum: U256,
}

impl UptoChat {
    async fn sign(content: &str) -> Self {
        let stack = stack().await;
        let before = balances(&stack).await;
        let (request, prompt_tokens) = chat(content);
        let (payment, maximum) = stack
            .upto_payment("/v1/chat/completions", &request, 0)
            .await;
        assert_eq!(maximum, U256::from(prompt_tokens + 1000));
        Self {
            stack,
            before,
            request,
            prompt_tokens,
            payment,
            maximum,
        }
    }

    /// Sends `request` with the payment: the answer, its body not yet read.
    async fn send(&self, request: &Value) -> reqwest::Response {
        self.stack
            .post_paid("/v1/chat/completions", request, &self.payment)
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_streamed_answer_is_charged_its_tokens_and_ends_with_its_receipt() {
    let paying = UptoChat::sign("count to two hundred").await;
    let (payer_before, payee_before, sent_before) = paying.before;
    let (stack, request) = (&paying.stack, &paying.request);

    let response = paying.send(request).await;
    assert_eq!(response.status(), 200);
    assert!(
        receipt_of(response.headers()).is_none(),
        "the receipt comes at the end of the stream"
    );
    let events = response.text().await.unwrap();
    assert_eq!(chunks_in(&events), FULL_ANSWER);
    let marker = format!("data: [DONE]\n\nevent: {RECEIPT_EVENT}\ndata: ");
    let (_, receipt) = events
        .split_once(&marker)
        .unwrap_or_else(|| panic!("no receipt event after [DONE]: {events}"));
    let receipt: SettleResponse =
        decode_header(receipt.strip_suffix("\n\n").unwrap().as_bytes()).unwrap();
    assert!(receipt.success, "{receipt:?}");

    let cost = U256::from(paying.prompt_tokens + FULL_ANSWER);
    assert_eq!(receipt.amount.map(|a| a.0), Some(cost), "{receipt:?}");
    assert!(cost < paying.maximum);
    assert_eq!(
        balances(stack).await,
        (payer_before - cost, payee_before + cost, sent_before + 1),
        "exactly the cost moved, in one settlement"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_off_by_the_client_is_charged_for_what_was_sent_once() {
    let paying = UptoChat::sign("slow").await;
    let (payer_before, payee_before, sent_before) = paying.before;
    let (stack, request, prompt_tokens) = (&paying.stack, &paying.request, paying.prompt_tokens);

    // The client reads the first chunks, then goes away.
    let mut response = paying.send(request).await;
    assert_eq!(response.status(), 200);
    let read = chunks_in(&read_fast_chunks(&mut response).await);
    drop(response);

    // The gateway notices at its next write, and settles what it sent by then.
    let mut payee_after = payee_before;
    for _ in 0..200 {
        payee_after = stack.pay_to_balance().await;
        if payee_after > payee_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let charged = payee_after - payee_before;
    assert!(
        charged >= U256::from(prompt_tokens + read),
        "charged {charged} for {prompt_tokens} prompt tokens and {read} read"
    );
    assert!(
        charged < U256::from(prompt_tokens + FULL_ANSWER),
        "charged {charged}: the whole answer"
    );
    assert!(charged <= paying.maximum);
    let after = (
        payer_before - charged,
        payee_before + charged,
        sent_before + 1,
    );
    assert_eq!(balances(stack).await, after, "one settlement of that");

    // The payment bought that stream and nothing else: the same request is not streamed
    // again, another request is refused, and nothing more moves.
    let again = paying.send(request).await;
    assert_eq!(again.status(), 409);
    assert_eq!(
        receipt_of(again.headers())
            .and_then(|r| r.amount)
            .map(|a| a.0),
        Some(charged)
    );
    let (other, _) = chat("something else");
    assert_eq!(paying.send(&other).await.status(), 402);
    assert_eq!(balances(stack).await, after, "nothing more moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_paid_by_exact_settles_its_price_before_it_is_sent() {
    let stack = stack().await;
    let before = stack.pay_to_balance().await;
    let (request, _) = chat("the exact way");
    let (response, price) = stack
        .pay_post("/v1/chat/completions", &request, 1, Wire::V2)
        .await;
    assert_eq!(response.status(), 200);
    let receipt = receipt_of(response.headers()).expect("the receipt header");
    assert!(receipt.success);
    let events = response.text().await.unwrap();
    assert_eq!(chunks_in(&events), FULL_ANSWER);
    assert!(events.ends_with("data: [DONE]\n\n"), "{events}");
    assert!(!events.contains(RECEIPT_EVENT));
    assert_eq!(stack.pay_to_balance().await, before + price);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_run_is_metered_too() {
    let stack = stack().await;
    let payee_before = stack.pay_to_balance().await;
    let (asked, _) = chat("over run");
    let run = json!({"service": "llm-4090", "input": {"messages": asked["messages"], "max_tokens": 1000, "stream": true}});
    let (payment, maximum) = stack.upto_payment("/run", &run, 0).await;
    let response = stack.post_paid("/run", &run, &payment).await;
    assert_eq!(response.status(), 200);
    let events = response.text().await.unwrap();
    let receipt = events
        .rsplit_once(&format!("event: {RECEIPT_EVENT}\ndata: "))
        .map(|(_, data)| data.trim_end())
        .expect("a receipt event");
    let receipt: SettleResponse = decode_header(receipt.as_bytes()).unwrap();
    let charged = receipt.amount.expect("an amount").0;
    assert!(charged < maximum, "{charged} of {maximum}");
    assert!(charged > U256::from(FULL_ANSWER));
    assert_eq!(stack.pay_to_balance().await, payee_before + charged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_deadline_is_cut_off_in_time_to_settle_or_refused_up_front() {
    let stack = stack().await;
    let (payer_before, payee_before, sent_before) = balances(&stack).await;
    let (request, prompt_tokens) = chat("hang");
    // The offer allows 300 s; the payer signs a Permit2 deadline 30 s away. Less the
    // facilitator's 6 s and the 10-second margin, 14 s to stream: refused, nothing asked of the
    // upstream or the chain.
    let offer_timeout = 300;
    // Signed for `request` as long before now as makes its deadline `deadline_in` s away, and
    // sent: the answer, and the signed maximum.
    let send_expiring_in = |deadline_in: u64| {
        let (stack, request) = (&stack, &request);
        async move {
            let signed_at = x402_evm::unix_now() + deadline_in - offer_timeout;
            let path = "/v1/chat/completions";
            let (payment, maximum) = stack
                .upto_payment_signed_at(path, request, 0, signed_at)
                .await;
            (stack.post_paid(path, request, &payment).await, maximum)
        }
    };
    let (refused, _) = send_expiring_in(30).await;
    assert_eq!(refused.status(), 402);
    let error = x402_testkit::challenge_of(refused.headers())
        .error
        .unwrap_or_default();
    assert!(error.contains("needs at least 20 s"), "{error}");

    // 40 s away: about 24 s to stream. The upstream sends a few chunks and hangs; the gateway
    // cuts the stream off before the deadline and settles what went out.
    let (response, maximum) = send_expiring_in(40).await;
    assert_eq!(response.status(), 200);
    let events = tokio::time::timeout(Duration::from_secs(120), response.text())
        .await
        .expect("the stream is cut off")
        .unwrap();
    assert_eq!(chunks_in(&events), FAST_CHUNKS);
    let (_, receipt) = events
        .rsplit_once(&format!("event: {RECEIPT_EVENT}\ndata: "))
        .expect("a receipt event");
    let receipt: SettleResponse = decode_header(receipt.trim_end().as_bytes()).unwrap();
    assert!(receipt.success, "{receipt:?}");
    let cost = U256::from(prompt_tokens + FAST_CHUNKS);
    assert_eq!(receipt.amount.map(|a| a.0), Some(cost));
    assert!(cost < maximum);
    assert_eq!(
        balances(&stack).await,
        (payer_before - cost, payee_before + cost, sent_before + 1),
        "the cut-off stream was paid, in one settlement"
    );
}

/// Payer 0 takes back its Permit2 approval (a transaction it signs), as a payer draining its
/// allowance mid-stream would.
async fn revoke_permit2(stack: &Stack) {
    use alloy::network::{EthereumWallet, TransactionBuilder as _};
    use alloy::providers::{Provider as _, ProviderBuilder};
    use alloy::sol_types::SolCall as _;
    alloy::sol! {
        function approve(address spender, uint256 value) external returns (bool);
    }
    let devnet = &stack.base.chain.devnet;
    let wallet = EthereumWallet::from(stack.payer(0).clone());
    let provider = ProviderBuilder::new()
        .wallet(wallet)
        .connect_http(devnet.rpc_url().clone());
    let revoke = approveCall {
        spender: x402_devnet::PERMIT2_ADDRESS,
        value: U256::ZERO,
    };
    let tx = alloy::rpc::types::TransactionRequest::default()
        .with_to(devnet.token().address)
        .with_input(revoke.abi_encode());
    let sent = provider.send_transaction(tx).await.unwrap();
    assert!(sent.get_receipt().await.unwrap().status(), "the revocation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payer_who_revokes_permit2_mid_stream_gets_no_more_streams_but_may_still_pay_exact() {
    let paying = UptoChat::sign("slow").await;
    let (stack, request) = (&paying.stack, &paying.request);
    let payee_before = stack.pay_to_balance().await;

    // The stream starts; the payer takes its allowance back while it runs.
    let mut response = paying.send(request).await;
    assert_eq!(response.status(), 200);
    let mut events = read_fast_chunks(&mut response).await;
    revoke_permit2(stack).await;
    events.push_str(&response.text().await.unwrap());
    assert_eq!(chunks_in(&events), FULL_ANSWER, "the answer went out whole");
    let (_, receipt) = events
        .rsplit_once(&format!("event: {RECEIPT_EVENT}\ndata: "))
        .expect("a receipt event");
    let receipt: SettleResponse = decode_header(receipt.trim_end().as_bytes()).unwrap();
    assert!(!receipt.success, "{receipt:?}");
    assert_eq!(stack.pay_to_balance().await, payee_before, "it went unpaid");

    // It approves Permit2 again, so that its payments verify, to repeat the trick: its next
    // stream is refused before the upstream is asked, naming the unpaid settlement.
    let devnet = &stack.base.chain.devnet;
    devnet.approve_permit2(stack.payer(0)).await.unwrap();
    let (next, _) = chat("another answer");
    let path = "/v1/chat/completions";
    let (payment, _) = stack.upto_payment(path, &next, 0).await;
    let refused = stack.post_paid(path, &next, &payment).await;
    assert_eq!(refused.status(), 402);
    let error = x402_testkit::challenge_of(refused.headers())
        .error
        .unwrap_or_default();
    assert!(error.contains("left a streamed answer unpaid"), "{error}");
    let reason = receipt.error_reason.expect("a reason").to_string();
    assert!(error.contains(&reason), "{error} should name {reason}");

    // `exact` settles before the stream leaves: that it may still buy.
    let (bought, price) = stack.pay_post(path, &next, 0, Wire::V2).await;
    assert_eq!(bought.status(), 200);
    assert!(receipt_of(bought.headers()).expect("a receipt").success);
    assert_eq!(chunks_in(&bought.text().await.unwrap()), FULL_ANSWER);
    assert_eq!(stack.pay_to_balance().await, payee_before + price);
}
