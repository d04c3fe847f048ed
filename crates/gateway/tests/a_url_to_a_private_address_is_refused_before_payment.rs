//! Inputs by URL: an `http` URL is fetched only from hosts the operator lists, and never from
//! a loopback, private or link-local address unless that address is listed. A refused URL is
//! a 400 before payment (a paid request is refused and nothing is charged) and no request is
//! made to it; a listed address is fetched and its audio transcribed.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Stack;
use common::speech::{
    SENTENCE, assert_audio_url_refused, b64, espeak_wav, silence_wav, word_recall,
};
use serde_json::{Value, json};

/// A server on 127.0.0.1 serving `wav` at any path: its port and how many requests it got.
async fn audio_server(wav: Vec<u8>) -> (u16, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let (wav, counted) = (wav.clone(), counted.clone());
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            ([("content-type", "audio/wav")], wav)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, hits)
}

fn run(input: Value) -> Value {
    json!({"service": "whisper-l4", "input": input})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_to_private_addresses_or_unlisted_hosts_are_400_before_payment() {
    // localhost is listed by name, but it resolves to loopback addresses, which are not.
    let stack = Stack::start("[inputs]\nallowed_hosts = [\"localhost\"]\n").await;
    let (port, hits) = audio_server(espeak_wav("hello")).await;
    let good = run(json!({"audio_base64": b64(&silence_wav(2))}));
    for (url, says) in [
        (
            format!("http://localhost:{port}/speech.wav"),
            "loopback address",
        ),
        (
            format!("http://127.0.0.1:{port}/speech.wav"),
            "not one this gateway fetches from",
        ),
        (
            "http://10.0.0.1/speech.wav".to_owned(),
            "not one this gateway fetches from",
        ),
        (
            "http://169.254.169.254/latest/meta-data".to_owned(),
            "not one this gateway fetches from",
        ),
        (
            "https://localhost/speech.wav".to_owned(),
            "loopback address",
        ),
        ("ftp://localhost/speech.wav".to_owned(), "ftp: scheme"),
    ] {
        assert_audio_url_refused(&stack, &good, &url, says).await;
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no refused URL was requested"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_address_is_fetched_and_transcribed() {
    let stack = Stack::start("[inputs]\nallowed_hosts = [\"127.0.0.1\"]\n").await;
    let (port, hits) = audio_server(espeak_wav(SENTENCE)).await;
    let url = format!("http://127.0.0.1:{port}/speech.wav");
    let (response, _) = stack
        .pay_run("whisper-l4", json!({"audio_url": url}), 2)
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let text = body["output"]["text"].as_str().unwrap();
    assert!(word_recall(SENTENCE, text) >= 0.8, "{body}");
    // Fetched for each request, each quoted before payment: the unpaid one (402), the
    // paying client's first try (402), and its paid retry.
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}
