//! `x402 pay URL`: a request like curl, paying its challenge.

use std::io::Write;

use super::*;
use anyhow::{Context, bail};
use serde_json::Value;
use x402_proto::Price;

/// Options of `x402 pay`.
#[derive(Debug, clap::Args)]
pub(crate) struct PayArgs {
    /// The URL to request.
    url: String,
    /// HTTP method.
    #[arg(short = 'X', long = "request", default_value = "GET")]
    method: String,
    /// A header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// A request body (JSON bodies get `content-type: application/json`); `@file` reads a file.
    #[arg(short = 'd', long = "data", value_name = "DATA")]
    data: Option<String>,
    /// The most to pay for this request, in USD (e.g. 0.05).
    #[arg(long, value_name = "PRICE", default_value = "0.10")]
    max: Price,
    /// Label the payment with a service name in the ledger.
    #[arg(long)]
    service: Option<String>,
    /// A chain RPC URL to check `batch-settlement` channels against (default: the `x402 dev`
    /// chain when it runs); without one a server's claim that the channel moved on is not
    /// adopted.
    #[arg(long, value_name = "URL")]
    rpc: Option<String>,
}

pub(crate) async fn pay(home: &Home, args: PayArgs) -> anyhow::Result<()> {
    let rpc = paying_rpc(home, args.rpc.clone());
    let (client, address) = client(home, args.max, rpc.as_deref())?;
    let method: reqwest::Method = args
        .method
        .parse()
        .with_context(|| format!("bad method {:?}", args.method))?;
    let mut request = client.http().request(method, &args.url);
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("header {header:?} is not `Name: value`"))?;
        request = request.header(name.trim(), value.trim());
    }
    if let Some(data) = &args.data {
        let body = match data.strip_prefix('@') {
            Some(file) => std::fs::read(file).with_context(|| format!("reading {file}"))?,
            None => data.clone().into_bytes(),
        };
        if serde_json::from_slice::<Value>(&body).is_ok()
            && !args
                .headers
                .iter()
                .any(|h| h.to_lowercase().starts_with("content-type"))
        {
            request = request.header("content-type", "application/json");
        }
        request = request.body(body);
    }
    // A gateway call names its service in the body: label the ledger row with it.
    let service = args.service.clone().or_else(|| {
        let data = args.data.as_deref().filter(|d| !d.starts_with('@'))?;
        let body: Value = serde_json::from_str(data).ok()?;
        body["service"].as_str().map(str::to_owned)
    });
    let paid = client
        .send(request.build()?, service.as_deref())
        .await
        .map_err(|e| explain(&e, &address))?;
    if let Some(line) = paid.payment_line() {
        eprintln!("{line}");
    }
    let note = charge_note(&paid);
    let status = paid.response.status();
    let body = paid.response.bytes().await?;
    std::io::stdout().write_all(&body)?;
    if !body.ends_with(b"\n") {
        println!();
    }
    if !status.is_success() {
        bail!("the server answered {status} ({note})");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// run / catalog
