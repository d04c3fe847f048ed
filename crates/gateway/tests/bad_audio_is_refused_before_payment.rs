//! Audio that cannot be transcribed (not audio, in no format read here, empty, longer than the
//! gateway's limit, no audio field at all, or in a language Whisper does not know) is a 400 that says what to fix, before any
//! payment: a request carrying a real payment is refused and nothing is charged.

mod common;

use common::Stack;
use common::speech::{b64, refused_though_paid, silence_wav};
use serde_json::{Value, json};
use x402_testkit::assert_text_at;

fn run(input: Value) -> Value {
    json!({"service": "whisper-l4", "input": input})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_audio_is_a_400_and_no_payment_is_taken() {
    let stack = Stack::start("[limits]\nmax_audio_seconds = 5\n").await;
    let good = run(json!({"audio_base64": b64(&silence_wav(2))}));
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0";
    for (input, says) in [
        (
            json!({"audio_base64": b64(b"just some words, not sound")}),
            "not in a format read here",
        ),
        (
            json!({"audio_base64": b64(png)}),
            "WAV (PCM or ADPCM), FLAC, Ogg Vorbis or MP3",
        ),
        (json!({"audio_base64": ""}), "empty"),
        (json!({"audio_url": "data:audio/wav;base64,"}), "empty"),
        (
            json!({"audio_base64": "%%% not base64"}),
            "not valid base64",
        ),
        (json!({"audio_base64": b64(&silence_wav(6))}), "at most 5 s"),
        (json!({"audio": "hello.wav"}), "input.audio_url"),
        (
            json!({"audio_base64": b64(&silence_wav(1)), "language": "klingon"}),
            "not a language Whisper knows",
        ),
    ] {
        // Unpaid: refused without a payment challenge.
        let response = stack.post_json("/run", &run(input.clone())).await;
        assert!(
            !response.headers().contains_key("payment-required"),
            "{input}"
        );
        assert_eq!(response.status(), 400, "{input}");
        let body: Value = response.json().await.unwrap();
        assert_text_at(&body, "/error", says);
        // Paid: refused the same, and the payment is not taken.
        let body = refused_though_paid(&stack, &good, &run(input)).await;
        assert_text_at(&body, "/error", says);
    }
}
