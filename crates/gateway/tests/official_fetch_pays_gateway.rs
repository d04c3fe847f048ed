//! Interop: the official `@x402/fetch` client (npm 2.27.0, pinned in `tools/`) pays
//! `POST /run` on our gateway for embeddings, for pdf-parse, for a chat answered by the local
//! LLM, and for OCR, image safety and natural speech, gets the real result and a receipt, and
//! the payee's balance moves on anvil.

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use alloy::primitives::U256;
use base64::Engine;
use common::{Stack, base64_of, neutral_png, one_page_pdf, testdata};
use serde_json::{Value, json};
use tokio::process::Command;

fn fetch_client() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools");
    assert!(
        dir.join("node_modules/@x402/fetch").exists(),
        "the official SDKs are not installed: run scripts/install-tools.sh"
    );
    dir.join("interop/fetch-client.mjs")
}

/// POSTs `body` to `/run` with the official client, paying as payer `payer`: what the client
/// prints (status, body and the decoded payment response).
async fn official_post(stack: &Stack, payer: usize, body: Value) -> Value {
    let output = Command::new("node")
        .arg(fetch_client())
        .env("URL", format!("{}/run", stack.url))
        .env("METHOD", "POST")
        .env("BODY", body.to_string())
        .env("PRIVATE_KEY", stack.payer(payer).to_bytes().to_string())
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("node runs");
    assert!(output.status.success(), "fetch-client failed");
    serde_json::from_slice(&output.stdout).expect("one JSON line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_fetch_client_pays_for_embeddings_and_documents() {
    let stack = Stack::start("").await;
    let before = stack.pay_to_balance().await;

    let result = official_post(
        &stack,
        5,
        json!({"service": "embed-l4", "input": {"texts": ["x402 pays per call", "agents pay their own way"]}}),
    )
    .await;
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["paymentResponse"]["success"], true, "{result}");
    let vectors = result["body"]["output"]["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), 2);
    assert_eq!(vectors[0].as_array().unwrap().len(), 384);
    let after_embeddings = stack.pay_to_balance().await;
    assert!(after_embeddings > before);

    let pdf = base64::engine::general_purpose::STANDARD.encode(testdata("hello.pdf"));
    let result = official_post(
        &stack,
        6,
        json!({"service": "pdf-parse", "input": {"file_base64": pdf, "filename": "invoice.pdf"}}),
    )
    .await;
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["paymentResponse"]["success"], true, "{result}");
    let text = result["body"]["output"]["text"].as_str().unwrap();
    assert!(text.contains("Total due: 12.50 USDC"), "{text}");
    assert_eq!(
        stack.pay_to_balance().await - after_embeddings,
        U256::from(2000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_fetch_client_pays_for_a_local_llm_answer() {
    let stack = Stack::start("").await;
    let before = stack.pay_to_balance().await;
    let result = official_post(
        &stack,
        7,
        json!({"service": "llm-4090", "input": {"prompt": "What is the capital of France?", "max_tokens": 32, "temperature": 0}}),
    )
    .await;
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["paymentResponse"]["success"], true, "{result}");
    let output = &result["body"]["output"];
    assert!(
        output["text"].as_str().unwrap().contains("Paris"),
        "{result}"
    );
    assert_eq!(output["model"], "SmolLM2-135M-Instruct", "{result}");
    assert!(
        output["usage"]["total_tokens"].as_u64().unwrap() > 0,
        "{result}"
    );
    assert!(stack.pay_to_balance().await > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_fetch_client_pays_for_ocr_image_safety_and_natural_speech() {
    let stack = Stack::start("").await;
    let health = stack.get_json("/health").await;
    for backend in ["ocr", "nsfw", "piper"] {
        assert_eq!(health["backends"][backend]["ok"], true, "{health}");
    }
    let catalog = stack.get_json("/catalog").await;
    for key in ["ocr-l4", "nsfw-detect", "tts-l4"] {
        let entry = catalog["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap();
        assert_eq!(entry["available"], true, "{entry}");
        assert_eq!(entry["backend"], "local", "{entry}");
    }

    // OCR of a one-page PDF: one page at $0.002.
    let before = stack.pay_to_balance().await;
    let pdf = one_page_pdf("Agents pay for OCR by the page");
    let result = official_post(
        &stack,
        4,
        json!({"service": "ocr", "input": {"file_base64": base64_of(&pdf)}}),
    )
    .await;
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["paymentResponse"]["success"], true, "{result}");
    let text = result["body"]["output"]["text"].as_str().unwrap();
    assert!(text.contains("pay for OCR by the page"), "{text}");
    let after_ocr = stack.pay_to_balance().await;
    assert_eq!(after_ocr - before, U256::from(2000));

    // Image safety: one image at $0.001.
    let result = official_post(
        &stack,
        4,
        json!({"service": "nsfw-detect", "input": {"image_url": format!("data:image/png;base64,{}", base64_of(&neutral_png()))}}),
    )
    .await;
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["paymentResponse"]["success"], true, "{result}");
    let output = &result["body"]["output"];
    assert_eq!(output["label"], "sfw", "{result}");
    assert!(output["nsfw_score"].as_f64().unwrap() < 0.2, "{result}");
    let after_nsfw = stack.pay_to_balance().await;
    assert_eq!(after_nsfw - after_ocr, U256::from(1000));

    // Natural speech: 38 characters at $0.005 per 1K, a GPU-Bridge voice mapped to Piper's.
    let text = "Piper speaks for the x402 gateway now.";
    assert_eq!(text.chars().count(), 38);
    let result = official_post(
        &stack,
        4,
        json!({"service": "tts-l4", "input": {"text": text, "voice": "af_alloy"}}),
    )
    .await;
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["paymentResponse"]["success"], true, "{result}");
    let output = &result["body"]["output"];
    assert_eq!(output["sample_rate"], 22050, "{output}");
    assert_eq!(output["voice"], "en_US-joe-medium", "{output}");
    assert!(
        output["output_notice"]
            .as_str()
            .unwrap()
            .contains("af_alloy")
    );
    let wav = base64::engine::general_purpose::STANDARD
        .decode(output["audio_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(&wav[0..4], b"RIFF");
    assert!(
        output["duration_seconds"].as_f64().unwrap() > 1.5,
        "{output}"
    );
    // 38 characters at $0.005 per 1K = $0.00019 = 190 micro-USDC.
    assert_eq!(stack.pay_to_balance().await - after_nsfw, U256::from(190));
}
