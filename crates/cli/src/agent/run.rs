//! `x402 run SERVICE INPUT` (waiting for jobs) and `x402 catalog`.

use std::time::{Duration, Instant};

use super::*;
use anyhow::{Context, bail};
use serde_json::Value;
use x402_client::PayingClient;
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
}

pub(crate) async fn run(home: &Home, args: RunArgs) -> anyhow::Result<()> {
    let input_text = match args.input.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?,
        None => args.input.clone(),
    };
    let input: Value = serde_json::from_str(&input_text).context("the input is not JSON")?;
    let (client, address) = client(home, args.max)?;
    let (output, line) = run_service(
        &client,
        &address,
        &args.gateway,
        &args.service,
        input,
        args.run_async,
    )
    .await?;
    if let Some(line) = line {
        eprintln!("{line}");
    }
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

/// Runs `service` on the gateway, paying for it; waits for jobs with progress on stderr.
/// Returns the output and a line describing the payment.
pub(crate) async fn run_service(
    client: &PayingClient,
    address: &str,
    gateway: &str,
    service: &str,
    input: Value,
    run_async: bool,
) -> anyhow::Result<(Value, Option<String>)> {
    let gateway = gateway.trim_end_matches('/');
    let mut request = client
        .http()
        .post(format!("{gateway}/run"))
        .json(&serde_json::json!({"service": service, "input": input}));
    if run_async {
        request = request.header("prefer", "respond-async");
    }
    let paid = client
        .send(request.build()?, Some(service))
        .await
        .map_err(|e| explain(&e, address))?;
    let line = describe_payment(&paid);
    let note = charge_note(&paid);
    let status = paid.response.status();
    let body: Value = paid
        .response
        .json()
        .await
        .context("the gateway answered non-JSON")?;
    if !status.is_success() {
        bail!(
            "{service} failed ({status}, {note}): {}",
            body["error"].as_str().unwrap_or(&body.to_string())
        );
    }
    if status.as_u16() != 202 {
        return Ok((body["output"].clone(), line));
    }
    let job = body["job_id"]
        .as_str()
        .context("202 without job_id")?
        .to_owned();
    let started = Instant::now();
    let mut wait = Duration::from_secs(1);
    loop {
        let view: Value = client
            .http()
            .get(format!("{gateway}/status/{job}"))
            .send()
            .await?
            .json()
            .await?;
        match view["status"].as_str() {
            Some("completed") => {
                eprintln!();
                return Ok((view["output"].clone(), line));
            }
            Some("failed") => {
                eprintln!();
                bail!("job {job} failed: {}", view["error"]);
            }
            _ => {
                eprint!(
                    "\r{job}: {} {:.0}s ",
                    view["progress"]["phase"].as_str().unwrap_or("running"),
                    started.elapsed().as_secs_f64()
                );
                if started.elapsed() > Duration::from_secs(600) {
                    bail!(
                        "job {job} still running after 10 minutes; check `GET {gateway}/status/{job}`"
                    );
                }
            }
        }
        tokio::time::sleep(wait).await;
        if started.elapsed() > Duration::from_secs(10) {
            wait = Duration::from_secs(3);
        }
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
    let catalog: Value = reqwest::get(&url)
        .await
        .with_context(|| format!("cannot reach {url}"))?
        .json()
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&catalog)?);
        return Ok(());
    }
    for service in catalog["services"].as_array().into_iter().flatten() {
        let status = if service["available"] == true {
            service["models"][0].as_str().unwrap_or("").to_owned()
        } else {
            format!(
                "unavailable: {}",
                service["unavailable_reason"].as_str().unwrap_or("")
            )
        };
        println!(
            "{:14} ${:>8} {:18} {}",
            service["key"].as_str().unwrap_or(""),
            service["pricing"]["price_usd"].as_str().unwrap_or(""),
            service["pricing"]["per"].as_str().unwrap_or(""),
            status
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// receipts / budget
