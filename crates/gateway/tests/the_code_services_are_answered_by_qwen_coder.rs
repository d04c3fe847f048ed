//! With Qwen2.5-Coder-0.5B-Instruct installed (`scripts/install-models.sh --qwen-coder`), the
//! code services without an upstream are answered by it, loaded on their first request; the
//! other LLM services by SmolLM2, unless their configuration names Qwen (`local_model`). The
//! catalog and `/health` say which model serves each. Qwen says Paris is the capital of
//! France, streamed as whole, each answer charged its reported tokens by `upto`, and writes
//! Python when asked. Real anvil chain, our facilitator, the real models.

mod common;

use common::Stack;
use common::chat::{ask_whole_and_streamed, catalog_entry};
use serde_json::{Value, json};

const QWEN: &str = "Qwen2.5-Coder-0.5B-Instruct";
const SMOLLM2: &str = "SmolLM2-135M-Instruct";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qwen_coder_answers_the_code_service_and_the_services_configured_to_use_it() {
    let stack = Stack::start(
        "upto = true\n\
         [services.code-4090]\nprice = \"0.001\"\n\
         [services.llm-l4]\nlocal_model = \"qwen2.5-coder-0.5b-instruct\"\n\
         [services.llm-a100]\nlocal_model = \"smollm2-135m-instruct\"\n",
    )
    .await;
    let chain = &stack.base.chain;
    chain
        .devnet
        .approve_permit2(&chain.devnet.payers()[0].signer)
        .await
        .unwrap();

    // Which model answers what, before Qwen is loaded: it loads on first use.
    for (service, model) in [
        ("code-4090", QWEN),
        ("llm-l4", QWEN),
        ("llm-4090", SMOLLM2),
        ("llm-a100", SMOLLM2),
        ("llm-stream", SMOLLM2),
    ] {
        let entry = catalog_entry(&stack, service).await;
        assert_eq!(entry["backend"], "local", "{entry}");
        assert_eq!(entry["available"], true, "{entry}");
        assert_eq!(entry["models"], json!([model]), "{entry}");
    }
    let health = stack.get_json("/health").await;
    let qwen = &health["backends"]["llm_qwen_coder"];
    assert_eq!(qwen["ok"], true, "{health}");
    assert_eq!(qwen["model"], QWEN, "{health}");
    assert_eq!(qwen["loads_on_first_use"], true, "{health}");
    assert_eq!(health["served_by"]["code-4090"], json!([QWEN]), "{health}");
    assert_eq!(
        health["served_by"]["llm-4090"],
        json!([SMOLLM2]),
        "{health}"
    );

    let (answer, model) =
        ask_whole_and_streamed(&stack, "code-4090", "What is the capital of France?", 48).await;
    assert!(answer.contains("Paris"), "{answer}");
    assert_eq!(model, QWEN);

    let health = stack.get_json("/health").await;
    let qwen = &health["backends"]["llm_qwen_coder"];
    assert_eq!(qwen["loading"], false, "{health}");
    assert!(qwen["load_ms"].as_u64().is_some(), "{health}");

    // The service configured to use Qwen, through /run: it writes Python.
    let ask = json!({"service": "llm-l4", "input": {
        "prompt": "Write a Python function that returns the square of a number.",
        "max_tokens": 60, "temperature": 0,
    }});
    let (response, _) = stack
        .pay_post("/run", &ask, 1, x402_testkit::Wire::V2)
        .await;
    assert_eq!(response.status(), 200);
    let run: Value = response.json().await.unwrap();
    let text = run["output"]["text"].as_str().unwrap();
    assert!(text.contains("def "), "{run}");
    assert_eq!(run["output"]["model"], QWEN, "{run}");
}
