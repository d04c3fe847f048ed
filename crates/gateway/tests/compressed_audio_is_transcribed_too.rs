//! Speech to text reads compressed audio: the espeak-ng sentence as FLAC, sent as a `data:`
//! URL in `audio_url` (GPU-Bridge's input), is transcribed like the WAV.

mod common;

use common::Stack;
use common::speech::{SENTENCE, b64, espeak_wav, flac_of, word_recall};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flac_recording_in_a_data_url_is_transcribed() {
    let stack = Stack::start("").await;
    let wav = espeak_wav(SENTENCE);
    let flac = flac_of(&wav);
    assert!(&flac[..4] == b"fLaC");
    assert!(
        flac.len() < wav.len() * 3 / 4,
        "{} vs {}",
        flac.len(),
        wav.len()
    );

    let url = format!("data:audio/flac;base64,{}", b64(&flac));
    let request = json!({"service": "whisper-a100", "input": {"audio_url": &url}});
    let quote = stack.post_json("/run", &request).await;
    assert_eq!(quote.status(), 402, "{}", quote.text().await.unwrap());
    let (response, _) = stack
        .pay_run(
            "whisper-a100",
            json!({"audio_url": url, "language": "en"}),
            1,
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["service"], "whisper-a100");
    let output = &body["output"];
    assert_eq!(output["input_format"], "flac");
    let text = output["text"].as_str().unwrap();
    let recall = word_recall(SENTENCE, text);
    assert!(recall >= 0.8, "{recall:.2} of the words in {text:?}");
}
