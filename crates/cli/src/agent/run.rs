//! `x402 run SERVICE INPUT` (waiting for jobs) and `x402 catalog`.

use super::*;
use anyhow::Context;
use serde_json::Value;
use x402_client::{GatewayClient, GatewayError, GatewayRun, PayingClient};
use x402_gateway_api::{Catalog, RunRequest};
use x402_proto::Price;

/// Options of `x402 run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The service key (e.g. embed-l4, pdf-parse, tts-fast, llm-4090).
    service: String,
    /// The service input as JSON (e.g. '{"text": "hello"}'); `@file` reads a file.
    input: String,
    /// The gateway.
    #[arg(long, env = "X402_GATEWAY", default_value = "http://127.0.0.1:8080")]
    gateway: String,
    /// The most to pay, in USD.
    #[arg(long, value_name = "PRICE", default_value = "0.10")]
    max: Price,
    /// Ask for a job (answered at once with a job id, then polled).
    #[arg(long = "async")]
    run_async: bool,
    /// A chain RPC URL to check `batch-settlement` channels against (default: the `x402 dev`
    /// chain when it runs); without one a server's claim that the channel moved on is not
    /// adopted.
    #[arg(long, value_name = "URL")]
    rpc: Option<String>,
}

pub(crate) async fn run(home: &Home, args: RunArgs) -> anyhow::Result<()> {
    let input_text = match args.input.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?,
        None => args.input.clone(),
    };
    let input: Value = serde_json::from_str(&input_text).context("the input is not JSON")?;
    let rpc = paying_rpc(home, args.rpc.clone());
    let (client, address) = client(home, args.max, rpc.as_deref())?;
    let (output, run) = run_service(
        &client,
        &address,
        &args.gateway,
        &args.service,
        input,
        args.run_async,
    )
    .await?;
    if let Some(line) = run.payment_line() {
        eprintln!("{line}");
    }
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

/// Runs `service` on the gateway, paying for it; waits for jobs with progress on stderr.
/// Returns the output and what was paid.
pub(crate) async fn run_service(
    client: &PayingClient,
    address: &str,
    gateway: &str,
    service: &str,
    input: Value,
    run_async: bool,
) -> anyhow::Result<(Value, GatewayRun)> {
    let gateway = GatewayClient::new(client.clone(), gateway);
    let request = RunRequest {
        service: service.to_owned(),
        input,
    };
    let mut waited_for_job = false;
    let result = gateway
        .run_to_completion(&request, run_async, |view, waited| {
            waited_for_job = true;
            eprint!(
                "\r{}: {} {:.0}s ",
                view.id,
                view.progress.phase,
                waited.as_secs_f64()
            );
            std::future::ready(())
        })
        .await;
    if waited_for_job {
        eprintln!();
    }
    match result {
        Ok(done) => Ok(done),
        Err(GatewayError::Pay(error)) => Err(explain(&error, address)),
        Err(error) => Err(anyhow::anyhow!("{service}: {error}")),
    }
}

/// Options of `x402 catalog`.
#[derive(Debug, clap::Args)]
pub(crate) struct CatalogArgs {
    /// The gateway.
    #[arg(long, env = "X402_GATEWAY", default_value = "http://127.0.0.1:8080")]
    gateway: String,
    /// Print the gateway's JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn catalog(args: CatalogArgs) -> anyhow::Result<()> {
    let url = format!("{}/catalog", args.gateway.trim_end_matches('/'));
    let response = reqwest::get(&url)
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if args.json {
        let catalog: Value = response.json().await?;
        println!("{}", serde_json::to_string_pretty(&catalog)?);
        return Ok(());
    }
    let catalog: Catalog = response
        .json()
        .await
        .with_context(|| format!("{url} is not a gateway catalog"))?;
    for service in &catalog.services {
        let status = if service.available {
            service.models.first().cloned().unwrap_or_default()
        } else {
            format!(
                "unavailable: {}",
                service.unavailable_reason.as_deref().unwrap_or("")
            )
        };
        println!(
            "{:14} ${:>8} {:18} {}",
            service.key, service.pricing.price_usd, service.pricing.per, status
        );
    }
    Ok(())
}
