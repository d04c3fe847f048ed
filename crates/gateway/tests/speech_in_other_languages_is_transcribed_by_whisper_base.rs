//! With Whisper base installed (`scripts/install-models.sh --whisper-base`), a request asking
//! for the language to be detected (`auto`), or for another language than English, goes to it
//! (loaded on its first transcription): an English sentence spoken by espeak-ng comes back
//! with at least 80 % of its words, in timed segments, the output saying the language base
//! detected (`en`) and the model; a German sentence asked as German comes back in German
//! (espeak-ng's German is hard for base: only some of its words come back), and detected as
//! German. The catalog lists both Whisper models for the speech-to-text services, and
//! `/health` both models' states. Paid per second of audio.

mod common;

use alloy::primitives::U256;
use common::Stack;
use common::chat::catalog_entry;
use common::speech::{SENTENCE, b64, espeak_wav, espeak_wav_in, word_recall};
use serde_json::{Value, json};

const GERMAN: &str = "Guten Morgen. Das Wetter ist heute schön. Wir bezahlen die Rechnung morgen.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_is_transcribed_by_whisper_base_with_its_language_detected_or_asked() {
    let stack = Stack::start("").await;
    for service in ["whisper-l4", "whisper-a100"] {
        let entry = catalog_entry(&stack, service).await;
        assert_eq!(
            entry["models"],
            json!(["whisper-tiny.en", "whisper-base"]),
            "{entry}"
        );
    }
    let health = stack.get_json("/health").await;
    let base = &health["backends"]["stt_multilingual"];
    assert_eq!(base["ok"], true, "{health}");
    assert_eq!(base["model"], "whisper-base", "{health}");
    assert_eq!(base["loads_on_first_use"], true, "{health}");

    let wav = espeak_wav(SENTENCE);
    let before = stack.pay_to_balance().await;
    let (response, amount) = stack
        .pay_run(
            "whisper-l4",
            json!({"audio_base64": b64(&wav), "language": "auto"}),
            0,
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let output = &body["output"];
    let text = output["text"].as_str().unwrap();
    let recall = word_recall(SENTENCE, text);
    assert!(recall >= 0.8, "{recall:.2} of the words in {text:?}");
    assert_eq!(output["language"], "en", "{output}");
    assert_eq!(output["model"], "whisper-base", "{output}");
    let duration = output["duration_seconds"].as_f64().unwrap();
    let segments = output["segments"].as_array().unwrap();
    assert!(!segments.is_empty(), "{output}");
    for segment in segments {
        let (start, end) = (
            segment["start"].as_f64().unwrap(),
            segment["end"].as_f64().unwrap(),
        );
        assert!(start <= end && end <= duration + 0.05, "{segment}");
    }
    // Priced per second of audio (rounded up) at $0.005 per minute, in micro-USDC rounded up.
    let seconds = duration.ceil() as u64;
    assert_eq!(amount, U256::from((seconds * 5000).div_ceil(60)));
    assert_eq!(stack.pay_to_balance().await - before, amount);

    // German, asked as German: German words come back (base heard "und die guten Morgen, das
    // Metasthoi Tashun, die Bitsaeln die Ehrenmogen." from espeak-ng's voice).
    let wav = espeak_wav_in("de", GERMAN);
    let (response, _) = stack
        .pay_run(
            "whisper-a100",
            json!({"audio_base64": b64(&wav), "language": "de"}),
            1,
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let output = &body["output"];
    let text = output["text"].as_str().unwrap();
    assert!(
        word_recall("guten Morgen das die", text) >= 0.75,
        "{text:?}"
    );
    assert_eq!(output["language"], "de", "{output}");
    assert_eq!(output["model"], "whisper-base", "{output}");

    // The language detected when asked to.
    let (response, _) = stack
        .pay_run(
            "whisper-a100",
            json!({"audio_base64": b64(&wav), "language": "auto"}),
            2,
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["output"]["language"], "de", "{body}");
    assert_eq!(body["output"]["model"], "whisper-base", "{body}");

    let health = stack.get_json("/health").await;
    let base = &health["backends"]["stt_multilingual"];
    assert!(base["load_ms"].as_u64().is_some(), "{health}");
}
