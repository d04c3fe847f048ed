//! The attack on one payment: one signed authorization, re-encoded many ways (hex case, extra
//! fields, key order, whitespace), sent to a paid route whose handler runs for over a second.
//! Exactly one response is served and one transfer happens, whether the copies arrive at once
//! or one after another while the first runs, and whether the facilitator is in process or
//! remote. A client that lost its answer gets the same answer again, charged once; the same
//! payment for another request is refused.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{PRICE_ATOMIC, Shop, THINK};
use tokio::io::AsyncWriteExt;
use x402_paywall::HttpFacilitator;
use x402_proto::Facilitator;
use x402_testkit::{Wire, challenge_of, payment_for, receipt_of, reencodings};

const COPIES: usize = 8;

/// A signed payment header for `/think` with `body`.
async fn think_payment(shop: &Shop, body: &str) -> (&'static str, String) {
    let first = shop
        .http
        .post(format!("{}/think", shop.url))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    payment_for(first, shop.payer(), Wire::V2).await
}

async fn think(shop: &Shop, url: &str, name: &str, value: &str, body: &str) -> reqwest::Response {
    shop.http
        .post(format!("{url}/think"))
        .header(name, value)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// Sends every copy at once; returns (status, 402 error or body) per copy.
async fn send_all_at_once(
    shop: &Shop,
    name: &'static str,
    copies: Vec<String>,
) -> Vec<(u16, String)> {
    let mut tasks = tokio::task::JoinSet::new();
    for copy in copies {
        let http = shop.http.clone();
        let url = format!("{}/think", shop.url);
        tasks.spawn(async move {
            let response = http
                .post(url)
                .header(name, copy)
                .body("q")
                .send()
                .await
                .unwrap();
            describe(response).await
        });
    }
    tasks.join_all().await
}

async fn describe(response: reqwest::Response) -> (u16, String) {
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

fn assert_one_served(answers: &[(u16, String)]) {
    let served = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(served, 1, "exactly one response is served: {answers:?}");
    for (status, text) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(*status, 402, "{text}");
        assert!(
            text.contains("payment_in_use"),
            "the 402 names the reason: {text}"
        );
    }
}

async fn attack_at_once(shop: Shop) {
    let txs_before = shop.base.chain.facilitator_tx_count().await;
    let (name, value) = think_payment(&shop, "q").await;
    let answers = send_all_at_once(&shop, name, reencodings(&value, COPIES)).await;
    assert_one_served(&answers);
    shop.assert_paid(PRICE_ATOMIC).await;
    assert_eq!(
        shop.base.chain.facilitator_tx_count().await,
        txs_before + 1,
        "one transaction"
    );
    assert_eq!(shop.think_runs(&shop.url).await, 1, "the handler ran once");
}

fn remote_shop_facilitator(running: &x402_facilitator::RunningFacilitator) -> Arc<dyn Facilitator> {
    Arc::new(HttpFacilitator::new(&running.url(), Duration::from_secs(30)).unwrap())
}

/// Two tests of `scenario`: `$in_process` with the facilitator in the shop's process, and
/// `$remote` through it over HTTP.
macro_rules! in_process_and_remote {
    ($scenario:ident: $in_process:ident, $remote:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $in_process() {
            $scenario(Shop::start().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $remote() {
            $scenario(Shop::start_with(remote_shop_facilitator).await).await;
        }
    };
}

in_process_and_remote!(attack_at_once:
    re_encoded_copies_sent_at_once_buy_one_response,
    re_encoded_copies_sent_at_once_buy_one_response_through_a_remote_facilitator);

in_process_and_remote!(copies_one_after_another:
    copies_sent_one_after_another_while_the_first_runs_are_refused,
    copies_sent_one_after_another_are_refused_through_a_remote_facilitator);

async fn copies_one_after_another(shop: Shop) {
    let (name, value) = think_payment(&shop, "q").await;
    let mut copies = reencodings(&value, COPIES).into_iter();
    let first = copies.next().unwrap();
    let started = Instant::now();
    let url = shop.url.clone();
    let http = shop.http.clone();
    let first = tokio::spawn(async move {
        let response = http
            .post(format!("{url}/think"))
            .header(name, first)
            .body("q");
        describe(response.send().await.unwrap()).await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    for copy in copies {
        let answer = describe(think(&shop, &shop.url, name, &copy, "q").await).await;
        assert!(
            started.elapsed() < THINK,
            "the first handler is still running"
        );
        assert_eq!(answer.0, 402, "{answer:?}");
        assert!(answer.1.contains("payment_in_use"), "{answer:?}");
    }
    let first = first.await.unwrap();
    assert_eq!(first.0, 200, "{first:?}");
    shop.assert_paid(PRICE_ATOMIC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_served_again_charged_once() {
    let shop = Shop::start().await;
    let (name, value) = think_payment(&shop, "what is 2+2").await;

    // The client sends the paid request and goes away without reading the answer.
    let address = shop.url.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let body = "what is 2+2";
    let request = format!(
        "POST /think HTTP/1.1\r\nhost: {address}\r\n{name}: {value}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    socket.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(socket);

    // The handler ran and the payment settled anyway.
    let deadline = Instant::now() + Duration::from_secs(20);
    while shop.pay_to_balance().await == shop.paid_at_start {
        assert!(
            Instant::now() < deadline,
            "the paid request was not completed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The identical retry gets the answer that was lost: the first run's, with its receipt.
    let (retry, receipt) = loop {
        let response = think(&shop, &shop.url, name, &value, body).await;
        if response.status() == 402 {
            // Still being kept: wait for the first request to finish.
            assert!(Instant::now() < deadline, "the retry was never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(response.status(), 200);
        let receipt = receipt_of(response.headers()).unwrap();
        break (response.json::<serde_json::Value>().await.unwrap(), receipt);
    };
    assert_eq!(retry["run"], 1, "the lost answer, not a new run: {retry}");
    assert_eq!(retry["answer"], "thought about what is 2+2");
    assert!(receipt.success);
    let again = think(&shop, &shop.url, name, &value, body).await;
    assert_eq!(
        receipt_of(again.headers()).unwrap(),
        receipt,
        "the same receipt"
    );
    assert_eq!(
        again.json::<serde_json::Value>().await.unwrap(),
        retry,
        "the same body"
    );
    assert_eq!(shop.think_runs(&shop.url).await, 1);

    // The same payment for a different request is refused, naming the conflict.
    let other = describe(think(&shop, &shop.url, name, &value, "what is 3+3").await).await;
    assert_eq!(other.0, 402, "{other:?}");
    assert!(other.1.contains("payment_already_used"), "{other:?}");
    // Charged once.
    shop.assert_paid(PRICE_ATOMIC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_facilitator_vouches_for_the_request_that_paid() {
    let shop = Shop::start().await;
    let (name, value) = think_payment(&shop, "q").await;
    let paid = think(&shop, &shop.url, name, &value, "q").await;
    assert_eq!(paid.status(), 200);
    let receipt = receipt_of(paid.headers()).unwrap();

    // A new process has no memory of the answer: the facilitator's log knows which request
    // the payment bought (by the paywall's idempotency key), and only that one.
    let restarted = shop.serve_again().await;
    let again = think(&shop, &restarted, name, &value, "q").await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        receipt_of(again.headers()).unwrap().transaction,
        receipt.transaction
    );
    let other = describe(think(&shop, &restarted, name, &value, "other").await).await;
    assert_eq!(other.0, 402, "{other:?}");
    shop.assert_paid(PRICE_ATOMIC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_identifier_answers_a_re_signed_retry_and_409s_another_request() {
    let shop = Shop::start().await;
    let with_id = |header: &str, id: &str| {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let mut json: serde_json::Value =
            serde_json::from_slice(&engine.decode(header).unwrap()).unwrap();
        json["extensions"] =
            serde_json::json!({"payment-identifier": {"info": {"required": false, "id": id}}});
        engine.encode(json.to_string())
    };
    let id = "pay_0123456789abcdef0123";
    let (name, first) = think_payment(&shop, "q").await;
    let paid = think(&shop, &shop.url, name, &with_id(&first, id), "q").await;
    assert_eq!(paid.status(), 200);
    let body = paid.text().await.unwrap();

    // A retry signed anew (another nonce) with the same id is the same purchase.
    let (_, second) = think_payment(&shop, "q").await;
    let retry = think(&shop, &shop.url, name, &with_id(&second, id), "q").await;
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.text().await.unwrap(), body);
    // The same id for another request is a conflict.
    let (_, third) = think_payment(&shop, "other").await;
    let conflict = think(&shop, &shop.url, name, &with_id(&third, id), "other").await;
    assert_eq!(conflict.status(), 409);
    assert!(conflict.text().await.unwrap().contains("different request"));
    // A malformed id is a 400 saying what to fix.
    let bad = think(&shop, &shop.url, name, &with_id(&third, "short"), "other").await;
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("16 to 128"));
    // One purchase.
    shop.assert_paid(PRICE_ATOMIC).await;
}
