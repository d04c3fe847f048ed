//! `x402-bench gateway`: paid requests per second through the paywall and the gateway, with
//! settlement on anvil, and the latency the paywall adds over the same route unpaid.
//!
//! Starts anvil (automine), our facilitator (in process), the gateway with the real MiniLM
//! model, and a one-line route served twice: unpaid, and behind the paywall. Payments are
//! signed before the clock starts (signing is the client's work). Then, at a fixed
//! concurrency: the unpaid route, the paywalled route's 402 challenge, the paywalled route
//! paid (verify → handler → settle), and `POST /run` embeddings paid. The payee's on-chain
//! balance must grow by exactly what was charged.

use std::sync::Arc;

use alloy::primitives::U256;
use anyhow::bail;
use axum::routing::get;
use serde_json::{Value, json};
use x402_devnet::{Devnet, DevnetConfig};
use x402_paywall::{PaymentOption, Paywall, PaywallConfig, RoutePrice};
use x402_proto::Facilitator;

use crate::load::{
    Call, Success, challenge, drive, finish, print_phases, scratch_dir, sign_exact, verdict,
};

/// Options of `x402-bench gateway`.
#[derive(Debug, clap::Args)]
pub(crate) struct GatewayBench {
    /// Requests per phase.
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Requests in flight at once.
    #[arg(long, short, default_value_t = 8)]
    concurrency: usize,
    /// Where scripts/install-models.sh put the models.
    #[arg(long, value_name = "DIR", default_value = "models")]
    models_dir: std::path::PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: GatewayBench) -> anyhow::Result<()> {
    if args.count == 0 || args.concurrency == 0 {
        bail!("--count and --concurrency must be at least 1");
    }
    eprintln!("starting anvil (automine), the facilitator and the gateway…");
    let devnet = Devnet::start(DevnetConfig::default()).await?;
    let dir = scratch_dir("gateway")?;
    let facilitator_config =
        x402_cli::stack::facilitator_config(&devnet, 0, &dir.join("facilitator.db"), None);
    let facilitator =
        x402_facilitator::start(&facilitator_config, devnet.facilitator().signer.clone()).await?;
    let in_process: Arc<dyn Facilitator> = Arc::new(facilitator.service().clone());

    let gateway_config =
        x402_cli::stack::gateway_config(&devnet, 0, &args.models_dir, &dir.join("gateway-jobs.db"));
    let gateway = x402_gateway::start(&gateway_config, Some(in_process.clone())).await?;

    // The same one-line handler, unpaid and paywalled.
    let token = devnet.token();
    let option = PaymentOption::exact_evm(
        devnet.network(),
        token.address.to_checksum(None),
        token.decimals,
        devnet.pay_to().address.to_checksum(None),
        &token.name,
        &token.version,
    );
    let paywall = Paywall::new(in_process, vec![option], PaywallConfig::default())?;
    let handler = || async { axum::Json(json!({"pong": true})) };
    let app = axum::Router::new().route("/free", get(handler)).route(
        "/paid",
        get(handler).layer(paywall.layer(RoutePrice::fixed("$0.001".parse()?))),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let plain = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let http = reqwest::Client::new();
    let paid_url = format!("{plain}/paid");
    let run_url = format!("{}/run", gateway.url());
    let run_body = json!({"service": "embed-l4", "input": {"text": "Agents pay for their own compute, per call."}});
    let paid_challenge = challenge(&http, &paid_url, None).await?;
    let run_challenge = challenge(&http, &run_url, Some(&run_body)).await?;
    eprintln!("signing {} payments…", 2 * args.count);
    let paid_payments = sign_exact(
        &devnet,
        &paid_challenge,
        &paid_challenge.accepts[0],
        args.count,
    )
    .await?;
    let run_payments = sign_exact(
        &devnet,
        &run_challenge,
        &run_challenge.accepts[0],
        args.count,
    )
    .await?;
    let payee = devnet.pay_to().address;
    let balance_before = devnet.balance_of(token.address, payee).await?;

    let calls = |url: &str, body: Option<&Value>, payments: Option<&[String]>| -> Vec<Call> {
        (0..args.count)
            .map(|i| Call {
                url: url.to_owned(),
                body: body.cloned(),
                payment: payments.map(|p| p[i].clone()),
            })
            .collect()
    };
    let phase = |name: &'static str, calls: Vec<Call>, expect: u16| {
        drive(name, calls, args.concurrency, Success::Status(expect), 0)
    };
    let free = phase(
        "unpaid route",
        calls(&format!("{plain}/free"), None, None),
        200,
    )
    .await?;
    let challenged = phase("402 challenge", calls(&paid_url, None, None), 402).await?;
    let paid = phase(
        "paid route",
        calls(&paid_url, None, Some(&paid_payments)),
        200,
    )
    .await?;
    let run = phase(
        "paid /run embed",
        calls(&run_url, Some(&run_body), Some(&run_payments)),
        200,
    )
    .await?;

    let moved = devnet.balance_of(token.address, payee).await? - balance_before;
    let expected = paid_challenge.accepts[0].amount.0 * U256::from(paid.ok)
        + run_challenge.accepts[0].amount.0 * U256::from(run.ok);
    let consistent = moved == expected;
    server.abort();
    gateway.shutdown().await;
    facilitator.shutdown().await;
    devnet.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    let overhead_p50 = paid.p50_ms - free.p50_ms;
    let report = json!({
        "chain": "automine",
        "count": args.count,
        "concurrency": args.concurrency,
        "unpaid_route": free,
        "challenge_402": challenged,
        "paid_route": paid,
        "gateway_run_embeddings_paid": run,
        "paywall_overhead_p50_ms": overhead_p50,
        "on_chain": {"moved": moved.to_string(), "expected": expected.to_string(), "consistent": consistent},
    });
    finish(args.json, &report, consistent, || {
        let phases = [
            ("unpaid route", &free),
            ("402 challenge", &challenged),
            ("paid route", &paid),
            ("paid /run embed", &run),
        ];
        print_phases(&phases, 16, 2);
        println!(
            "paywall overhead (paid − unpaid, p50): {overhead_p50:.2} ms (verify + settle on anvil)"
        );
        println!(
            "chain  moved {moved} atomic units (expected {expected}): {}",
            verdict(consistent)
        );
    })
}
