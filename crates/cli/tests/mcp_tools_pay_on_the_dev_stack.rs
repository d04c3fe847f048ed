//! MCP on the `x402 dev` stack, with rmcp's client as the host:
//! - `x402 mcp` over stdio: initialize, tools/list, `gpu_catalog`, `gpu_run` for embeddings
//!   paid on anvil from the agent's wallet, `gpu_balance`, and a budget refusal the model reads;
//! - the gateway's `/mcp` over streamable HTTP: `gpu_run` without payment answers the
//!   `PaymentRequired`; paid through the x402 MCP transport it runs and returns the receipt.

mod common;

use std::process::{Command, Stdio};

use common::DevStack;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::Peer;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use x402_client::{Ledger, PayingClient, Policy};
use x402_testkit::assert_text_at;

fn params(name: &'static str, arguments: Value) -> CallToolRequestParams {
    CallToolRequestParams::new(name).with_arguments(arguments.as_object().unwrap().clone())
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Calls the tool `name` with `arguments`: its result, error or not.
async fn call_tool(
    peer: &Peer<RoleClient>,
    name: &'static str,
    arguments: Value,
) -> CallToolResult {
    peer.call_tool(params(name, arguments))
        .await
        .expect("the tool call is answered")
}

/// Asserts that the text of `result` contains `needle`.
fn assert_says(result: &CallToolResult, needle: &str) {
    let text = text(result);
    assert!(text.contains(needle), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tools_are_paid_over_stdio_and_over_the_x402_transport() {
    let dev = DevStack::start();
    let (state_dir, home) = (dev.state_dir(), dev.agent_home());
    let gateway = dev.text("gateway_url");
    let pay_to = dev.text("pay_to");
    let key = dev.state["payer_private_keys"][5]
        .as_str()
        .unwrap()
        .to_owned();

    // --- stdio: x402 mcp, paid from the wallet.
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_x402"));
    command
        .args(["mcp", "--gateway", &gateway, "--dev-state"])
        .arg(&state_dir)
        .env("X402_HOME", &home)
        .env("X402_PRIVATE_KEY", &key)
        .stderr(Stdio::null());
    let client = ().serve(TokioChildProcess::new(command).unwrap()).await.expect("initialize");
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "gpu_balance",
            "gpu_catalog",
            "gpu_estimate",
            "gpu_run",
            "gpu_status"
        ]
    );

    let catalog = call_tool(&client, "gpu_catalog", json!({})).await;
    assert_ne!(catalog.is_error, Some(true));
    assert_says(&catalog, "embed-l4 — $0.0001 per 1K tokens — available");

    let before = dev.usdc_balance(&pay_to);
    let run = call_tool(
        &client,
        "gpu_run",
        json!({"service": "embed-l4", "input": {"text": "paid from an MCP host"}}),
    )
    .await;
    assert_ne!(run.is_error, Some(true), "{}", text(&run));
    let structured = run.structured_content.clone().unwrap();
    assert_eq!(structured["output"]["dimensions"], 384);
    assert!(
        structured["transaction"]
            .as_str()
            .unwrap()
            .starts_with("0x")
    );
    assert_eq!(structured["cost_usd"], "0.000001");
    assert_says(&run, "cost $0.000001, transaction 0x");
    assert_eq!(dev.usdc_balance(&pay_to) - before, 1);

    let balance = call_tool(&client, "gpu_balance", json!({})).await;
    assert_says(&balance, "USDC; spent $0.000001");

    // A budget refusal is a tool error the model can read.
    let out = Command::new(env!("CARGO_BIN_EXE_x402"))
        .args(["budget", "set", "--total", "0.000001"])
        .env("X402_HOME", &home)
        .output()
        .unwrap();
    assert!(out.status.success());
    let refused = call_tool(
        &client,
        "gpu_run",
        json!({"service": "embed-l4", "input": {"text": "one more"}}),
    )
    .await;
    assert_eq!(refused.is_error, Some(true));
    assert_says(
        &refused,
        "budget exceeded: the total limit is 1 micro-USD, 1 already spent or reserved, 1 asked",
    );
    client.cancel().await.unwrap();

    // --- streamable HTTP at the gateway's /mcp, paid with the x402 MCP transport.
    let transport = StreamableHttpClientTransport::from_uri(format!("{gateway}/mcp"));
    let http_client = ().serve(transport).await.expect("initialize over HTTP");
    assert_eq!(http_client.list_all_tools().await.unwrap().len(), 5);
    let call = params(
        "gpu_run",
        json!({"service": "pdf-parse", "input": {"html": "<html><body><p>Paid over MCP</p></body></html>"}}),
    );
    let unpaid = http_client.call_tool(call.clone()).await.unwrap();
    assert_eq!(unpaid.is_error, Some(true));
    let challenge = unpaid
        .structured_content
        .clone()
        .expect("PaymentRequired in structuredContent");
    assert_eq!(challenge["x402Version"], 2);
    assert_eq!(challenge["accepts"][0]["amount"], "2000");
    let as_text: Value = serde_json::from_str(&text(&unpaid)).unwrap();
    assert_eq!(as_text, challenge);

    let payer_key = dev.state["payer_private_keys"][6].as_str().unwrap();
    let signer: alloy::signers::local::PrivateKeySigner = payer_key.parse().unwrap();
    let ledger = Ledger::in_memory().unwrap();
    let payer = PayingClient::new(
        reqwest::Client::new(),
        signer,
        Policy::default(),
        ledger.clone(),
    );
    let before = dev.usdc_balance(&pay_to);
    let paid = x402_mcp::call_paid_tool(&http_client, call, &payer)
        .await
        .unwrap();
    assert_ne!(paid.result.is_error, Some(true), "{}", text(&paid.result));
    let receipt = paid.receipt.expect("_meta x402/payment-response");
    assert!(receipt.success);
    assert_text_at(
        &paid.result.structured_content.unwrap(),
        "/output/text",
        "Paid over MCP",
    );
    assert_eq!(dev.usdc_balance(&pay_to) - before, 2000);
    let record = &ledger.payments(0).unwrap()[0];
    assert_eq!(record.status, "paid");
    assert_eq!(
        record.transaction.as_deref(),
        Some(receipt.transaction.as_str())
    );

    // priority "cheap" runs as a job (settled before it starts); the tool waits for it.
    let job = params(
        "gpu_run",
        json!({"service": "pdf-parse", "priority": "cheap", "input": {"html": "<html><body><p>Queued job</p></body></html>"}}),
    );
    let paid = x402_mcp::call_paid_tool(&http_client, job, &payer)
        .await
        .unwrap();
    assert_ne!(paid.result.is_error, Some(true), "{}", text(&paid.result));
    assert!(paid.receipt.unwrap().success);
    assert_text_at(
        &paid.result.structured_content.unwrap(),
        "/output/text",
        "Queued job",
    );
    assert_eq!(dev.usdc_balance(&pay_to) - before, 4000);

    // Free tools work over HTTP too; the paying side's budget refuses before signing.
    let catalog = call_tool(&http_client, "gpu_catalog", json!({})).await;
    assert_says(&catalog, "pdf-parse");
    ledger
        .set_budget(&x402_client::Budget {
            total: Some(4000),
            ..Default::default()
        })
        .unwrap();
    let over = params(
        "gpu_run",
        json!({"service": "pdf-parse", "input": {"html": "<html><body>x</body></html>"}}),
    );
    match x402_mcp::call_paid_tool(&http_client, over, &payer).await {
        Err(x402_mcp::McpPayError::Pay(error)) => {
            assert!(
                error
                    .to_string()
                    .contains("budget exceeded: the total limit is 4000 micro-USD"),
                "{error}"
            );
        }
        other => panic!("expected a budget refusal, got {other:?}"),
    }
    assert_eq!(dev.usdc_balance(&pay_to) - before, 4000);
    http_client.cancel().await.unwrap();
}
