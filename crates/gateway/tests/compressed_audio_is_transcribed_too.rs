//! Speech to text reads compressed audio: the espeak-ng sentence as IMA ADPCM (4:1), sent as a `data:`
//! URL in `audio_url` (GPU-Bridge's input), is transcribed like the WAV.

mod common;

use common::Stack;
use common::speech::{SENTENCE, adpcm_of, b64, espeak_wav, word_recall};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adpcm_recording_in_a_data_url_is_transcribed() {
    let stack = Stack::start("").await;
    let wav = espeak_wav(SENTENCE);
    let adpcm = adpcm_of(&wav);
    assert!(
        adpcm.len() < wav.len() * 3 / 10,
        "{} vs {}",
        adpcm.len(),
        wav.len()
    );

    let url = format!("data:audio/wav;base64,{}", b64(&adpcm));
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
    assert_eq!(output["input_format"], "adpcm");
    let text = output["text"].as_str().unwrap();
    let recall = word_recall(SENTENCE, text);
    assert!(recall >= 0.8, "{recall:.2} of the words in {text:?}");
}
