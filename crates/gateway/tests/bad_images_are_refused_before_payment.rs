//! OCR, image safety and natural speech check their input before asking for payment: an
//! empty, corrupt or remote image, an unknown voice or nothing to say is a 400 that says what
//! to send, with no payment asked; a PDF's pages are counted into the 402's price.

mod common;

use alloy::primitives::U256;
use common::{Stack, base64_of, neutral_png, testdata};
use serde_json::{Value, json};

/// POSTs `request` to `/run`, which must answer without asking for payment: status and body.
async fn refused(stack: &Stack, request: Value) -> (u16, Value) {
    let response = stack.post_json("/run", &request).await;
    assert!(
        !response.headers().contains_key("payment-required"),
        "{request}"
    );
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The `exact` price the 402 for `request` asks, in atomic units.
async fn quoted(stack: &Stack, request: Value) -> U256 {
    let challenge = stack.post_json("/run", &request).await;
    assert_eq!(challenge.status(), 402, "{request}");
    let required: x402_proto::v2::PaymentRequired =
        x402_proto::decode_header(challenge.headers()["payment-required"].as_bytes()).unwrap();
    required
        .accepts
        .iter()
        .find(|o| o.scheme.as_str() == "exact")
        .expect("an exact offer")
        .amount
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_images_voices_and_texts_are_refused_before_payment() {
    let stack = Stack::start("").await;
    let mut corrupt = neutral_png();
    corrupt.truncate(corrupt.len() / 3);
    for (request, says) in [
        (
            json!({"service": "ocr-l4", "input": {"image_base64": ""}}),
            "is empty",
        ),
        (
            json!({"service": "ocr-l4", "input": {}}),
            "an image is required",
        ),
        (
            json!({"service": "ocr", "input": {"image_base64": base64_of(&corrupt)}}),
            "not a readable PNG",
        ),
        (
            json!({"service": "nsfw-detect", "input": {"image_base64": base64_of(&corrupt)}}),
            "not a readable PNG",
        ),
        (
            json!({"service": "nsfw-detect", "input": {"image_base64": base64_of(&testdata("hello.pdf"))}}),
            "not a PNG or JPEG",
        ),
        (
            json!({"service": "nsfw-detect", "input": {"image_url": "http://10.0.0.1/cat.png"}}),
            "must be a data: URL",
        ),
        (
            json!({"service": "tts-l4", "input": {"text": "Hello", "voice": "zf_xiaobei"}}),
            "not a voice here",
        ),
        (
            json!({"service": "tts-l4", "input": {"text": "  ...  "}}),
            "nothing to speak",
        ),
    ] {
        let (status, body) = refused(&stack, request.clone()).await;
        assert_eq!(status, 400, "{request}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{request}: {body}"
        );
    }

    // Good input is priced before any work: a two-page PDF costs two pages of OCR.
    let pdf = base64_of(&testdata("two-pages.pdf"));
    let two_pages = quoted(
        &stack,
        json!({"service": "ocr-l4", "input": {"file_base64": pdf}}),
    )
    .await;
    let image = base64_of(&neutral_png());
    let one_image = quoted(
        &stack,
        json!({"service": "ocr-l4", "input": {"image_base64": image}}),
    )
    .await;
    assert_eq!(one_image, U256::from(2000));
    assert_eq!(two_pages, one_image * U256::from(2));
}
