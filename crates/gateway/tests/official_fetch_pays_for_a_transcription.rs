//! Interop: the official `@x402/fetch` client (npm 2.27.0, pinned in `tools/`) pays
//! `POST /run` for `whisper-l4` on our gateway once, gets the transcript and a receipt, and
//! the payee's balance moves by the quoted price.

mod common;

use alloy::primitives::U256;
use common::Stack;
use common::speech::{adpcm_of, b64, espeak_wav, word_recall};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_fetch_client_pays_for_a_transcription() {
    let stack = Stack::start("").await;
    let before = stack.pay_to_balance().await;
    // Short and compressed (IMA ADPCM): the client takes the body in an environment variable
    // (< 128 KiB).
    let sentence = "This is an offline text to speech test.";
    let audio = adpcm_of(&espeak_wav(sentence));
    let body = json!({"service": "whisper-l4", "input": {"audio_base64": b64(&audio)}});
    let quote = stack.post_json("/run", &body).await;
    assert_eq!(quote.status(), 402);
    let amount = x402_testkit::challenge_of(quote.headers()).accepts[0]
        .amount
        .0;

    let result = x402_testkit::official_fetch(vec![
        ("URL", format!("{}/run", stack.url)),
        ("METHOD", "POST".to_owned()),
        ("BODY", body.to_string()),
        ("PRIVATE_KEY", stack.payer(7).to_bytes().to_string()),
    ])
    .await;
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["paymentResponse"]["success"], true, "{result}");
    let text = result["body"]["output"]["text"].as_str().unwrap();
    assert!(word_recall(sentence, text) >= 0.8, "{text}");
    assert!(amount > U256::ZERO);
    assert_eq!(stack.pay_to_balance().await - before, amount);
}
