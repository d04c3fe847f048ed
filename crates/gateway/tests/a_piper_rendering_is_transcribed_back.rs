//! The two local speech backends agree: a sentence bought as natural speech (`tts-l4`, the
//! Piper voice) and then bought as a transcription (`whisper-l4`, Whisper tiny.en) comes back
//! with at least 80 % of its words. Both calls are paid through the paywall on the local
//! chain, and each moves exactly what it was quoted.

mod common;

use common::Stack;
use common::speech::{SENTENCE, word_recall};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_bought_from_piper_is_transcribed_back_by_whisper() {
    let stack = Stack::start("").await;
    let before = stack.pay_to_balance().await;

    let (spoken, speech_price) = stack.pay_run("tts-l4", json!({"text": SENTENCE}), 0).await;
    assert_eq!(spoken.status(), 200);
    let spoken: Value = spoken.json().await.unwrap();
    let audio = spoken["output"]["audio_base64"]
        .as_str()
        .expect("tts-l4 answers with audio_base64")
        .to_owned();
    assert_eq!(spoken["output"]["content_type"], "audio/wav");

    let (heard, transcription_price) = stack
        .pay_run("whisper-l4", json!({"audio_base64": audio}), 1)
        .await;
    assert_eq!(heard.status(), 200);
    let heard: Value = heard.json().await.unwrap();
    let text = heard["output"]["text"].as_str().unwrap();
    let recall = word_recall(SENTENCE, text);
    assert!(recall >= 0.8, "{recall:.2} of the words in {text:?}");

    assert_eq!(
        stack.pay_to_balance().await - before,
        speech_price + transcription_price
    );
}
