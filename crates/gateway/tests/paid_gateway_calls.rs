//! The gateway end to end on a dev chain, paid with real signatures and settled on anvil:
//! every local backend through `POST /run`, the OpenAI embeddings route, long jobs, the
//! catalog and estimates, and bad input refused before payment.

mod common;

use alloy::primitives::U256;
use base64::Engine;
use common::{Stack, testdata};
use serde_json::{Value, json};
use x402_testkit::{Wire, assert_text_at, receipt_of};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_services_are_paid_per_call_and_charged_what_was_quoted() {
    let stack = Stack::start("").await;
    let start = stack.pay_to_balance().await;
    let mut charged = U256::ZERO;

    // Embeddings (v2 client), priced per token.
    let (response, amount) = stack
        .pay_run("embedding-l4", json!({"text": "The cat sits outside"}), 0)
        .await;
    assert_eq!(response.status(), 200);
    let receipt = receipt_of(response.headers()).expect("receipt");
    assert!(receipt.success);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "completed");
    assert_eq!(body["service"], "embed-l4");
    assert_eq!(body["output"]["dimensions"], 384);
    assert_eq!(body["output"]["embedding"].as_array().unwrap().len(), 384);
    // 7 tokens (with [CLS]/[SEP]) at $0.0001 per 1K rounds up to 1 micro-USDC.
    assert_eq!(amount, U256::from(1));
    charged += amount;

    // Documents (v1 client, X-PAYMENT), per document.
    let (response, amount) = stack
        .pay_post(
            "/run",
            &json!({"service": "pdf-parse", "input": {"file_base64": b64(&testdata("hello.pdf"))}}),
            1,
            Wire::V1,
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-payment-response"));
    let body: Value = response.json().await.unwrap();
    assert_text_at(&body, "/output/text", "Invoice 4021 from Example Compute");
    assert_eq!(body["output"]["pages"], 1);
    assert_eq!(amount, U256::from(2000));
    charged += amount;

    // Speech, per 1K characters.
    let text = "Hello from the inference gateway.";
    let (response, amount) = stack
        .pay_run("tts-fast", json!({"text": text, "voice": "af_alloy"}), 2)
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let wav = base64::engine::general_purpose::STANDARD
        .decode(body["output"]["audio_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(&wav[..4], b"RIFF");
    assert_text_at(&body, "/output/output_notice", "af_alloy");
    // 33 characters at $0.002 per 1K = $0.000066 = 66 micro-USDC.
    assert_eq!(amount, U256::from(66));
    charged += amount;

    // Rerank, per query: the related document comes first.
    let (response, amount) = stack.pay_run("rerank", json!({
                "query": "How do I pay for an API call with USDC?",
                "documents": ["Bananas are rich in potassium.", "x402 lets clients pay per request with a signed USDC authorization.", "The weather is sunny."]
            }), 3).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let results = body["output"]["results"].as_array().unwrap();
    assert_eq!(results[0]["index"], 1, "{body}");
    assert!(results[0]["score"].as_f64().unwrap() > results[1]["score"].as_f64().unwrap());
    assert_text_at(&body, "/output/method", "bi-encoder");
    assert_eq!(amount, U256::from(1000));
    charged += amount;

    // OpenAI-compatible embeddings.
    let (response, amount) = stack
        .pay_post(
            "/v1/embeddings",
            &json!({"model": "all-MiniLM-L6-v2", "input": ["one", "two"]}),
            4,
            Wire::V2,
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"][1]["index"], 1);
    assert_eq!(body["usage"]["prompt_tokens"], 6);
    charged += amount;

    assert_eq!(stack.pay_to_balance().await - start, charged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_requests_run_as_jobs_settled_before_they_start() {
    let stack = Stack::start("").await;
    let request =
        json!({"service": "pdf-parse", "input": {"file_base64": b64(&testdata("two-pages.pdf"))}});
    let (job_id, receipt) = stack.pay_job(&request).await;
    let view = stack.job_outcome(&job_id).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["output"]["pages"], 2);
    assert_text_at(&view, "/output/text", "Second page about settlement");
    assert_eq!(view["transaction"], receipt.transaction);

    assert_eq!(stack.get("/status/job_nope").await.status(), 404);
}

/// POSTs `request` to `/run`, which must refuse it before asking for any payment: the status
/// and the answer.
async fn refused(stack: &Stack, request: Value) -> (u16, Value) {
    let response = stack.post_json("/run", &request).await;
    assert!(
        !response.headers().contains_key("payment-required"),
        "{request}"
    );
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_any_payment() {
    let stack = Stack::start("").await;

    let (status, body) = refused(&stack, json!({"service": "teleport-l4", "input": {}})).await;
    assert_eq!(status, 400);
    assert_text_at(&body, "/error", "unknown service");
    assert!(
        body["available_services"]
            .as_array()
            .unwrap()
            .contains(&json!("embed-l4"))
    );

    for (request, expected, error) in [
        (
            json!({"service": "embed-l4", "input": {"text": 42}}),
            400,
            "input.text",
        ),
        (
            json!({"service": "pdf-parse", "input": {"file_base64": b64(b"just some words")}}),
            400,
            "PDF, DOCX or HTML",
        ),
        (
            json!({"service": "flux-schnell", "input": {"prompt": "a cat"}}),
            503,
            "not available",
        ),
        (json!({"service": "tts-fast"}), 400, "\"input\""),
    ] {
        let (status, body) = refused(&stack, request).await;
        assert_eq!(status, expected, "{body}");
        assert_text_at(&body, "/error", error);
    }

    assert_eq!(stack.post_raw("/run", "{not json").await.status(), 400);
    let response = stack.post_raw("/run", vec![b'x'; 11 * 1024 * 1024]).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_text_at(&body, "/error", "larger than");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_lists_prices_models_and_availability() {
    let stack = Stack::start("").await;
    let catalog: Value = stack.get_json("/catalog").await;
    let services = catalog["services"].as_array().unwrap();
    let find = |key: &str| {
        services
            .iter()
            .find(|s| s["key"] == key)
            .unwrap_or_else(|| panic!("{key} listed"))
    };
    let embed = find("embed-l4");
    assert_eq!(embed["available"], true);
    assert_eq!(embed["aliases"], json!(["embedding-l4"]));
    assert_eq!(embed["models"], json!(["all-MiniLM-L6-v2"]));
    assert_eq!(embed["pricing"]["per"], "per 1K tokens");
    assert_text_at(find("rerank"), "/models/0", "bi-encoder");
    assert_text_at(find("flux-schnell"), "/unavailable_reason", "no backend");
    assert_eq!(find("flux-schnell")["available"], false);
    // Without an upstream, the LLM services are the local model's.
    let llm = find("llm-4090");
    assert_eq!(llm["available"], true);
    assert_eq!(llm["backend"], "local");
    assert_eq!(llm["models"], json!(["SmolLM2-135M-Instruct"]));
    assert_eq!(catalog["active_endpoints"], 15, "{catalog}");

    let estimate = stack
        .get_json("/catalog/estimate?service=embedding-l4&tokens=2500")
        .await;
    assert_eq!(estimate["service"], "embed-l4");
    assert_eq!(estimate["estimated_cost_usd"], "0.00025");
    let estimate = stack
        .get_json("/catalog/estimate?service=whisper-l4&seconds=90")
        .await;
    assert_eq!(estimate["estimated_cost_usd"], "0.0075");
    assert_eq!(estimate["available"], true);
}
