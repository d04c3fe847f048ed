//! Speech to text with the real Whisper tiny.en: a sentence spoken by espeak-ng comes back
//! with at least 80 % of its words, in English, with timed segments, paid per second of
//! audio.

mod common;

use alloy::primitives::U256;
use common::Stack;
use common::speech::{SENTENCE, b64, espeak_wav, word_recall};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_espeak_recording_is_transcribed_back_with_its_words_and_timestamps() {
    let stack = Stack::start("").await;
    let wav = espeak_wav(SENTENCE);
    let before = stack.pay_to_balance().await;

    let (response, amount) = stack
        .pay_run("whisper-l4", json!({"audio_base64": b64(&wav)}), 0)
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let output = &body["output"];
    let text = output["text"].as_str().unwrap();
    let recall = word_recall(SENTENCE, text);
    assert!(recall >= 0.8, "{recall:.2} of the words in {text:?}");
    assert_eq!(output["language"], "en");
    assert_eq!(output["model"], "whisper-tiny.en");
    assert_eq!(output["input_format"], "wav");

    let duration = output["duration_seconds"].as_f64().unwrap();
    assert!((2.0..8.0).contains(&duration), "{duration}");
    let segments = output["segments"].as_array().unwrap();
    assert!(!segments.is_empty(), "{output}");
    let mut last_end = 0.0;
    for segment in segments {
        let (start, end) = (
            segment["start"].as_f64().unwrap(),
            segment["end"].as_f64().unwrap(),
        );
        assert!(start >= last_end - 0.01 && start <= end, "{segment}");
        assert!(end <= duration + 0.05, "{segment} past {duration}");
        last_end = end;
    }
    let joined: Vec<&str> = segments
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    assert_eq!(joined.join(" "), text);

    // Priced per second of audio (rounded up) at $0.005 per minute, in micro-USDC rounded up.
    let seconds = duration.ceil() as u64;
    assert_eq!(amount, U256::from((seconds * 5000).div_ceil(60)));
    assert_eq!(stack.pay_to_balance().await - before, amount);
}
