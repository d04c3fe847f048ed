//! `x402 demo`: an autonomous agent doing a small research task on the `x402 dev` stack,
//! paying for each call itself within the budget it is given.

use std::path::PathBuf;

use anyhow::Context;
use base64::Engine;
use serde_json::{Value, json};
use x402_client::{Budget, GatewayClient, Ledger, LedgerError, PayError, PayingClient, Policy};
use x402_proto::Price;

use crate::agent::{read_dev_state, run_service};

/// Options of `x402 demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// The `x402 dev` state directory (gateway URL and a funded payer key).
    #[arg(long, value_name = "DIR", default_value = ".x402/dev")]
    state_dir: PathBuf,
    /// The agent's whole budget for the task, in USD.
    #[arg(long, value_name = "USD", default_value = "0.01")]
    budget: Price,
    /// Which dev payer account to spend from.
    #[arg(long, default_value_t = 7)]
    payer: usize,
}

const QUESTION: &str = "How can an AI agent pay for an API call without an account?";

const DOCUMENTS: [&str; 6] = [
    "x402 lets an HTTP server answer 402 Payment Required; the client signs a USDC authorization and retries.",
    "Bananas are an excellent source of potassium and vitamin B6.",
    "A facilitator verifies the signed payment and settles it on chain, so the client needs no gas.",
    "The Eiffel Tower was completed in 1889 for the World's Fair.",
    "API keys and credit cards require a human to sign up before any call can be made.",
    "Sourdough bread rises thanks to wild yeast and lactic acid bacteria.",
];

const INVOICE_PDF: &[u8] = include_bytes!("../assets/demo-invoice.pdf");

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let state = read_dev_state(&args.state_dir)?;
    let gateway = state.gateway_url.clone();
    let keys = &state.payer_private_keys;
    let key = keys
        .get(args.payer)
        .or_else(|| keys.last())
        .context("dev.json has no payer keys")?;
    let bytes: alloy::primitives::B256 = key.parse().context("bad payer key")?;
    let signer = alloy::signers::local::PrivateKeySigner::from_bytes(&bytes)?;
    let address = signer.address().to_checksum(None);
    let limit = args.budget.to_atomic(6).context("--budget")?;
    let ledger = Ledger::in_memory()?;
    ledger.set_budget(&Budget {
        total: Some(u64::try_from(limit.0).context("--budget too large")?),
        ..Budget::default()
    })?;
    let client = PayingClient::new(
        reqwest::Client::new(),
        signer,
        Policy::default(),
        ledger.clone(),
    );

    println!("agent {address} researching: {QUESTION:?}");
    println!("budget ${} at {gateway}", args.budget);
    let catalog = GatewayClient::new(client.clone(), &gateway)
        .catalog()
        .await
        .with_context(|| format!("reading the catalog of {gateway}"))?;
    let available = |key: &str| catalog.service(key).is_some_and(|s| s.available);

    let call = async |what: String, service: &str, input: Value| -> anyhow::Result<Option<Value>> {
        match run_service(&client, &address, &gateway, service, input, false).await {
            Ok((output, run)) => {
                let cost = run.paid.map(|(amount, _)| amount.to_string());
                let transaction = run.receipt.map(|r| r.transaction).unwrap_or_default();
                println!(
                    "  {what:42} ${:>9}  tx {transaction}",
                    cost.unwrap_or_default()
                );
                Ok(Some(output))
            }
            Err(error) if is_budget(&error) => {
                println!("  {what:42} skipped: the next call would exceed the budget");
                Ok(None)
            }
            Err(error) => Err(error),
        }
    };

    // 1. Embed the documents and the question (one call), to show the vectors cost per token.
    let mut texts: Vec<&str> = DOCUMENTS.to_vec();
    texts.push(QUESTION);
    call(
        "embed 6 documents and the question".into(),
        "embed-l4",
        json!({"texts": texts}),
    )
    .await?;
    // 2. Rank the documents against the question.
    let ranked = call(
        "rank the documents against the question".into(),
        "rerank",
        json!({"query": QUESTION, "documents": DOCUMENTS, "top_n": 3}),
    )
    .await?;
    // 3. Read a PDF the agent was given.
    let pdf = base64::engine::general_purpose::STANDARD.encode(INVOICE_PDF);
    let parsed = call(
        "parse the attached invoice PDF".into(),
        "pdf-parse",
        json!({"file_base64": pdf, "filename": "invoice.pdf"}),
    )
    .await?;
    // 4. Summarize through an LLM, when the gateway has one.
    let top: Vec<String> = ranked
        .as_ref()
        .and_then(|r| r["results"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["text"].as_str().map(str::to_owned))
        .collect();
    if available("llm-4090") {
        let prompt = format!(
            "Answer in two sentences: {QUESTION}\nSources:\n- {}",
            top.join("\n- ")
        );
        if let Some(answer) = call(
            "summarize with llm-4090".into(),
            "llm-4090",
            json!({"prompt": prompt, "max_tokens": 120}),
        )
        .await?
        {
            println!("\nanswer: {}", answer["text"].as_str().unwrap_or(""));
        }
    } else {
        println!(
            "  (no LLM available: skipping the summary; run scripts/install-models.sh for the local model, or see `x402 dev --llm-base-url`)"
        );
    }

    println!("\nmost relevant:");
    for (i, text) in top.iter().enumerate() {
        println!("  {}. {text}", i + 1);
    }
    if let Some(parsed) = parsed {
        println!(
            "invoice says: {}",
            parsed["text"].as_str().unwrap_or("").replace('\n', " / ")
        );
    }
    let paid: Vec<_> = ledger
        .payments(0)?
        .into_iter()
        .filter(|p| p.status == "paid")
        .collect();
    let total_usd = x402_client::format_micro_usd(paid.iter().map(|p| p.micro_usd).sum());
    println!(
        "\n{} paid calls, total ${total_usd} of a ${} budget",
        paid.len(),
        args.budget
    );
    Ok(())
}

fn is_budget(error: &anyhow::Error) -> bool {
    error.to_string().starts_with("budget exceeded")
        || matches!(
            error.downcast_ref::<PayError>(),
            Some(PayError::Budget(LedgerError::BudgetExceeded { .. }))
        )
}
