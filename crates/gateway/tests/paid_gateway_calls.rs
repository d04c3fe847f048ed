//! The gateway end to end on a dev chain, paid with real signatures and settled on anvil:
//! every local backend through `POST /run`, the OpenAI embeddings route, long jobs, the
//! catalog and estimates, and bad input refused before payment.

mod common;

use alloy::primitives::U256;
use base64::Engine;
use common::{Stack, testdata};
use serde_json::{Value, json};
use x402_testkit::{Wire, receipt_of};

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
    assert!(
        body["output"]["text"]
            .as_str()
            .unwrap()
            .contains("Invoice 4021 from Example Compute"),
        "{body}"
    );
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
    assert!(
        body["output"]["output_notice"]
            .as_str()
            .unwrap()
            .contains("af_alloy")
    );
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
    assert!(
        body["output"]["method"]
            .as_str()
            .unwrap()
            .contains("bi-encoder")
    );
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
    assert!(
        view["output"]["text"]
            .as_str()
            .unwrap()
            .contains("Second page about settlement")
    );
    assert_eq!(view["transaction"], receipt.transaction);

    let missing = stack
        .http
        .get(format!("{}/status/job_nope", stack.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_any_payment() {
    let stack = Stack::start("").await;
    let url = format!("{}/run", stack.url);
    let refuse = |body: Value| {
        let request = stack.http.post(&url).json(&body);
        async move {
            let response = request.send().await.unwrap();
            assert!(
                !response.headers().contains_key("payment-required"),
                "{body}"
            );
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };

    let (status, body) = refuse(json!({"service": "teleport-l4", "input": {}})).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("unknown service"));
    assert!(
        body["available_services"]
            .as_array()
            .unwrap()
            .contains(&json!("embed-l4"))
    );

    let (status, body) = refuse(json!({"service": "embed-l4", "input": {"text": 42}})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("input.text"),
        "{body}"
    );

    let (status, body) =
        refuse(json!({"service": "pdf-parse", "input": {"file_base64": b64(b"just some words")}}))
            .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("PDF, DOCX or HTML"),
        "{body}"
    );

    let (status, body) =
        refuse(json!({"service": "flux-schnell", "input": {"prompt": "a cat"}})).await;
    assert_eq!(status, 503);
    assert!(
        body["error"].as_str().unwrap().contains("not available"),
        "{body}"
    );

    let (status, _) = refuse(json!({"service": "tts-fast"})).await;
    assert_eq!(status, 400);

    let response = stack
        .http
        .post(&url)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = stack
        .http
        .post(&url)
        .body(vec![b'x'; 11 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("larger than"),
        "{body}"
    );
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
    assert!(
        find("rerank")["models"][0]
            .as_str()
            .unwrap()
            .contains("bi-encoder")
    );
    let flux = find("flux-schnell");
    assert_eq!(flux["available"], false);
    assert!(
        flux["unavailable_reason"]
            .as_str()
            .unwrap()
            .contains("no backend")
    );
    let llm = find("llm-4090");
    assert_eq!(llm["available"], false);
    assert!(
        llm["unavailable_reason"]
            .as_str()
            .unwrap()
            .contains("upstream")
    );
    assert_eq!(catalog["active_endpoints"], 5, "{catalog}");

    let estimate: Value = stack
        .http
        .get(format!(
            "{}/catalog/estimate?service=embedding-l4&tokens=2500",
            stack.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(estimate["service"], "embed-l4");
    assert_eq!(estimate["estimated_cost_usd"], "0.00025");
    let estimate: Value = stack
        .http
        .get(format!(
            "{}/catalog/estimate?service=whisper-l4&seconds=90",
            stack.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(estimate["estimated_cost_usd"], "0.0075");
    assert_eq!(estimate["available"], false);
}
