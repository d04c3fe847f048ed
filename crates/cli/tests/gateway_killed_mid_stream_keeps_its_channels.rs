//! The `x402 gateway` process paid through a `batch-settlement` channel, killed with SIGKILL
//! while a voucher-paid chat answer is still streaming, then restarted on the same files: the
//! channel is as the paid calls left it (the killed stream charged nothing; its metered charge
//! was to be made when the stream ended), an old voucher is refused with the kept count, and
//! the payer's next voucher (the kept count plus the price) is charged; the payment journal
//! holds every charge exactly once.
//!
//! The killed request's reservation of the channel is not in the file (reservations live in
//! the process that admitted the request), so the channel is not left busy: the restarted
//! gateway charges the next voucher at once, and the operator's claim pays the payee exactly
//! what was charged, which is what the escrow records as claimed.
//!
//! Real anvil chain, our facilitator (holding the receiver-authorizer key) and the real binary;
//! the LLM is a small OpenAI-compatible upstream inside the test (the only mock), whose
//! streamed answer sends a few chunks and then stays open.

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use x402_evm::batch::{BATCH_SETTLEMENT_ADDRESS, ChannelId, ChannelRecord, ChannelStore};
use x402_gateway::channels::SqliteChannelStore;
use x402_proto::v2;
use x402_testkit::{BatchPayer, Chain, Stack, challenge_of, fetch_json, receipt_of};

mod common;

const OPERATOR_TOKEN: &str = "operator-secret-h2";
const DEPOSIT: u128 = 1_000_000;
/// Voucher-paid plain calls after the deposit's.
const VOUCHER_CALLS: usize = 3;
/// Chunks the upstream streams before it holds the answer open.
const HELD_CHUNKS: usize = 3;
const CONTENT: &str = "tok ";

alloy::sol! {
    function channels(bytes32 channelId) external view returns (uint128 balance, uint128 totalClaimed);
}

/// What the upstream was asked.
#[derive(Default)]
struct Seen {
    plain: AtomicUsize,
    streams: AtomicUsize,
}

/// An upstream answering plain chats at once (each using five more tokens than the one
/// before, so every call is charged its own amount), and streamed ones with `HELD_CHUNKS`
/// chunks, then nothing, never ending.
async fn start_upstream() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |Json(request): Json<Value>| {
            let counts = counts.clone();
            async move {
                if request["stream"] != true {
                    let n = counts.plain.fetch_add(1, Ordering::SeqCst);
                    let total = 20 + 5 * n;
                    return Json(json!({
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "model": request["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": total - 2, "completion_tokens": 2, "total_tokens": total},
                    }))
                    .into_response();
                }
                counts.streams.fetch_add(1, Ordering::SeqCst);
                let events = futures_util::stream::unfold(0usize, |sent| async move {
                    if sent == HELD_CHUNKS {
                        std::future::pending::<()>().await;
                    }
                    let chunk = json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": CONTENT}}]});
                    let event = axum::body::Bytes::from(format!("data: {chunk}\n\n"));
                    Some((Ok::<_, std::io::Error>(event), sent + 1))
                });
                (
                    [("content-type", "text/event-stream")],
                    axum::body::Body::from_stream(events),
                )
                    .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

struct Gateway {
    child: Child,
    url: String,
}

fn spawn_gateway(config: &Path) -> Gateway {
    let (child, url) = common::spawn_listening("gateway", config, &[]);
    Gateway { child, url }
}

/// A chat with the one message `content`; streamed when `stream`.
fn chat(content: &str, stream: bool) -> Value {
    json!({"model": "llm-4090", "messages": [{"role": "user", "content": content}], "max_tokens": 100, "stream": stream})
}

/// The `batch-settlement` offer of the gateway at `url` for `body` (the 402 of an unpaid call).
async fn offer_for(http: &reqwest::Client, url: &str, body: &Value) -> v2::PaymentRequirements {
    let unpaid = http
        .post(format!("{url}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(unpaid.status(), 402);
    challenge_of(unpaid.headers())
        .accepts
        .into_iter()
        .find(|offer| offer.scheme.as_str() == "batch-settlement")
        .expect("a batch-settlement offer")
}

/// `body` paid with the `PAYMENT-SIGNATURE` value `payment`: the answer, its body unread.
async fn send_paid(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    payment: &str,
) -> reqwest::Response {
    http.post(format!("{url}/v1/chat/completions"))
        .header("payment-signature", payment)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// A paid plain call's `chargedAmount` and `chargedCumulativeAmount`, once it is known to have
/// succeeded.
async fn charges_of(answer: reqwest::Response) -> (u128, u128) {
    let status = answer.status();
    let receipt = receipt_of(answer.headers());
    let text = answer.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let receipt = receipt.expect("a receipt");
    assert!(receipt.success, "{receipt:?}");
    let extra = receipt.extra.expect("the receipt's extra");
    let amount = |value: &Value| value.as_str().unwrap().parse::<u128>().unwrap();
    (
        amount(&extra["chargedAmount"]),
        amount(&extra["channelState"]["chargedCumulativeAmount"]),
    )
}

/// The reason and the `channelState` of the 402 refusing a payment.
async fn refusal_of(answer: reqwest::Response) -> (String, Value) {
    assert_eq!(answer.status(), 402);
    let challenge = challenge_of(answer.headers());
    let reason = challenge.error.clone().unwrap_or_default();
    let state = challenge
        .accepts
        .iter()
        .find_map(|offer| offer.extra.as_ref()?.get("channelState").cloned())
        .unwrap_or(Value::Null);
    (reason, state)
}

/// The channel's record in the gateway's channel file (another connection to it).
async fn record_in(channels_db: &Path, id: &ChannelId) -> ChannelRecord {
    SqliteChannelStore::open(channels_db)
        .unwrap()
        .get(id)
        .await
        .unwrap()
        .expect("the channel is in the file")
}

/// The escrow's `(balance, totalClaimed)` of channel `id`.
async fn escrow_channel(chain: &Chain, id: &ChannelId) -> (u128, u128) {
    let call = channelsCall {
        channelId: *id.as_b256(),
    };
    let request = TransactionRequest::default()
        .to(BATCH_SETTLEMENT_ADDRESS)
        .input(call.abi_encode().into());
    let out = chain.devnet.provider().call(request).await.unwrap();
    let read = channelsCall::abi_decode_returns(&out).unwrap();
    (read.balance, read.totalClaimed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_stream_keeps_its_channel_and_claims_every_charge() {
    let authorizer = PrivateKeySigner::random();
    let stack = Stack::with_receiver_authorizer(Chain::start().await, &authorizer).await;
    let chain = &stack.chain;
    let (upstream, seen) = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let channels_db = dir.path().join("gateway-channels.db");
    let token = chain.devnet.token();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nmodels_dir = {models:?}\njobs_db = {jobs:?}\noperator_token = \"{OPERATOR_TOKEN}\"\n\
             [facilitator]\nurl = \"{facilitator}\"\n\
             [payment]\npay_to = \"{pay_to}\"\n\
             [[payment.accepts]]\nnetwork = \"{network}\"\nasset = \"{asset}\"\ndecimals = {decimals}\nname = {name:?}\nversion = {version:?}\n\
             [batch_settlement]\nchannels_db = {channels:?}\nclaim_interval_seconds = 3600\nchain_check_interval_seconds = 300\n\
             [services.llm-4090]\nprice = \"0.001\"\n\
             [services.llm-4090.upstream]\nbase_url = \"{upstream}\"\nmodel = \"tiny-test-model\"\n",
            // No local models: the LLM needs none, and the gateway starts faster.
            models = dir.path().join("no-models").display().to_string(),
            jobs = dir.path().join("gateway-jobs.db").display().to_string(),
            channels = channels_db.display().to_string(),
            facilitator = stack.url(),
            pay_to = chain.devnet.pay_to().address.to_checksum(None),
            network = chain.devnet.network(),
            asset = token.address.to_checksum(None),
            decimals = token.decimals,
            name = token.name,
            version = token.version,
        ),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let payee = chain.devnet.pay_to().address;
    let payee_before = chain.balance(payee).await;

    // A channel opened by the first call's deposit, then plain calls paid by vouchers.
    let mut first = spawn_gateway(&config);
    let plain = chat("one more call", false);
    let offer = offer_for(&http, &first.url, &plain).await;
    let mut payer = chain.batch_payer(&offer, 0, alloy::primitives::B256::ZERO);
    let deposit = payer.deposit(chain, &offer, DEPOSIT).await;
    let answer = send_paid(
        &http,
        &first.url,
        &plain,
        &BatchPayer::header(&offer, deposit),
    )
    .await;
    let (charge, cumulative) = charges_of(answer).await;
    let mut charges = vec![charge];
    assert_eq!(cumulative, charge);
    payer.charged = cumulative;
    let mut paid_vouchers = Vec::new();
    for _ in 0..VOUCHER_CALLS {
        let voucher = BatchPayer::header(&offer, payer.voucher(chain, &offer).await);
        let answer = send_paid(&http, &first.url, &plain, &voucher).await;
        let (charge, cumulative) = charges_of(answer).await;
        assert_eq!(cumulative, payer.charged + charge);
        charges.push(charge);
        payer.charged = cumulative;
        paid_vouchers.push(voucher);
    }
    // Each call is charged what it used (more each time), within its price.
    let price = u128::try_from(offer.amount.0).unwrap();
    assert!(
        charges.windows(2).all(|pair| pair[0] < pair[1]),
        "{charges:?}"
    );
    assert!(charges.iter().all(|&charge| 0 < charge && charge <= price));
    assert_eq!(seen.plain.load(Ordering::SeqCst), 1 + VOUCHER_CALLS);

    // A streamed call paid by the next voucher; the gateway is killed while it streams.
    let streamed = chat("stream until the gateway dies", true);
    let stream_offer = offer_for(&http, &first.url, &streamed).await;
    let stream_voucher = payer.voucher(chain, &stream_offer).await;
    let mut answer = send_paid(
        &http,
        &first.url,
        &streamed,
        &BatchPayer::header(&stream_offer, stream_voucher),
    )
    .await;
    assert_eq!(answer.status(), 200);
    let mut events = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while events
        .matches(&format!("\"content\":\"{CONTENT}\""))
        .count()
        < HELD_CHUNKS
    {
        assert!(
            Instant::now() < deadline,
            "the chunks did not arrive: {events}"
        );
        let bytes = answer.chunk().await.unwrap().expect("the stream goes on");
        events.push_str(&String::from_utf8_lossy(&bytes));
    }
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    // The stream ends with the process: no more of the answer, and no receipt.
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(bytes)) = answer.chunk().await {
            events.push_str(&String::from_utf8_lossy(&bytes));
        }
    });
    rest.await.expect("the stream ends with the process");
    assert_eq!(
        events
            .matches(&format!("\"content\":\"{CONTENT}\""))
            .count(),
        HELD_CHUNKS
    );
    assert!(!events.contains(x402_paywall::RECEIPT_EVENT), "{events}");
    assert_eq!(seen.streams.load(Ordering::SeqCst), 1);

    // The file holds the channel as the paid calls left it, the stream not charged, and no
    // reservation.
    let kept = record_in(&channels_db, &payer.id).await;
    assert_eq!(kept.charged, payer.charged);
    assert_eq!(kept.charged, charges.iter().sum::<u128>());
    assert_eq!(
        kept.voucher.as_ref().map(|v| v.max_claimable),
        Some(payer.charged - charges.last().unwrap() + price),
        "the voucher held is the last one charged"
    );
    assert_eq!(kept.pending, None);

    // Restarted on the same config and files.
    let mut second = spawn_gateway(&config);
    assert_eq!(offer_for(&http, &second.url, &plain).await, offer);

    // Old vouchers are refused with the kept count: one that paid before the kill (the
    // restarted gateway no longer holds its answer) and one signed below the count.
    let below = BatchPayer::header(&offer, payer.voucher_at(chain, payer.charged).await);
    for old in [paid_vouchers[0].clone(), below] {
        let (reason, state) = refusal_of(send_paid(&http, &second.url, &plain, &old).await).await;
        assert_eq!(
            reason,
            "invalid_batch_settlement_evm_cumulative_amount_mismatch"
        );
        assert_eq!(
            state["chargedCumulativeAmount"],
            payer.charged.to_string(),
            "{state}"
        );
    }

    // The next voucher (the kept count plus the price) is charged at once: the killed
    // request left the channel free.
    let next = BatchPayer::header(&offer, payer.voucher(chain, &offer).await);
    let (charge, cumulative) = charges_of(send_paid(&http, &second.url, &plain, &next).await).await;
    assert_eq!(cumulative, payer.charged + charge);
    assert!(0 < charge && charge <= price);
    charges.push(charge);
    payer.charged = cumulative;

    // The operator claims on the restarted gateway: the payee gets every charge, exactly.
    let total: u128 = charges.iter().sum();
    assert_eq!(total, payer.charged);
    // Every charge is in the payment journal exactly once across the kill (a voucher's entry
    // is committed with its charge in the channel file): the operator's dashboard shows what
    // the channel holds.
    let overview = fetch_json(
        http.get(format!("{}/dashboard/api/overview", second.url))
            .bearer_auth(OPERATOR_TOKEN),
    )
    .await;
    let all_time = &overview["revenue"]["all_time"];
    assert_eq!(all_time[0]["charged"], total.to_string(), "{overview}");
    assert_eq!(all_time[0]["calls"], charges.len(), "{overview}");
    let sent_before = chain.facilitator_tx_count().await;
    let claimed = http
        .post(format!("{}/operator/claim", second.url))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(claimed.status(), 200);
    let claimed: Value = claimed.json().await.unwrap();
    assert_eq!(
        claimed["transactions"].as_array().map(Vec::len),
        Some(2),
        "a claim and a settle: {claimed}"
    );
    assert_eq!(chain.facilitator_tx_count().await, sent_before + 2);
    assert_eq!(chain.balance(payee).await, payee_before + U256::from(total));
    assert_eq!(
        escrow_channel(chain, &payer.id).await,
        (DEPOSIT, total),
        "the escrow's channel: the deposit, and every charge claimed"
    );
    common::stop_cleanly(&mut second.child);
}
