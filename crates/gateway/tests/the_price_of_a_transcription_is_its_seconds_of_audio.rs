//! A transcription is quoted before any work from the audio's measured length: the 402 asks
//! for the seconds of audio (rounded up) at the per-minute price, whatever the encoding, and
//! `/catalog` reports the speech-to-text services with their model.

mod common;

use alloy::primitives::U256;
use common::Stack;
use common::speech::{adpcm_of, b64, silence_wav};
use serde_json::{Value, json};

async fn quoted(stack: &Stack, input: Value) -> U256 {
    let response = stack
        .post_json("/run", &json!({"service": "whisper-l4", "input": &input}))
        .await;
    if response.status() != 402 {
        let body = response.text().await.unwrap();
        panic!("no quote for {input}: {body}");
    }
    x402_testkit::challenge_of(response.headers()).accepts[0]
        .amount
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_402_asks_for_the_seconds_of_audio_sent() {
    let stack = Stack::start("").await;
    // $0.005 per minute: 5000 micro-USDC per 60 s, rounded up.
    let three = quoted(&stack, json!({"audio_base64": b64(&silence_wav(3))})).await;
    assert_eq!(three, U256::from(250));
    let thirty = quoted(&stack, json!({"audio_base64": b64(&silence_wav(30))})).await;
    assert_eq!(thirty, U256::from(2500));
    // The same 30 s compressed (IMA ADPCM) in a data: URL costs the same, up to the padding
    // of its last 2041-frame block (< 0.13 s) when a file declares no frame count.
    let url = format!("data:audio/wav;base64,{}", b64(&adpcm_of(&silence_wav(30))));
    let compressed = quoted(&stack, json!({"audio_url": url})).await;
    assert!(
        compressed >= thirty && compressed <= U256::from(2584),
        "{compressed}"
    );

    let catalog = stack.get_json("/catalog").await;
    let whisper = catalog["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "whisper-l4")
        .unwrap()
        .clone();
    assert_eq!(whisper["available"], true, "{whisper}");
    assert_eq!(whisper["backend"], "local");
    // tiny.en, and base for other languages (scripts/test.sh installs both).
    assert_eq!(
        whisper["models"],
        json!(["whisper-tiny.en", "whisper-base"])
    );
    let health = stack.get_json("/health").await;
    assert_eq!(health["backends"]["stt"]["model"], "whisper-tiny.en");
    assert_eq!(health["backends"]["stt"]["ok"], true, "{health}");
}
