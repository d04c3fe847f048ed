//! `x402-bench dashboard`: how fast the gateway's operator dashboard answers with 100,000
//! payments in its journal (SQLite).
//!
//! Seeds the payment journal (`SqlitePaymentStore`, the file the gateway opens) with payments
//! spread over the last 30 days (200 payers, 8 services; 90% settled, 7% charged to channels,
//! 2% failed, 1% pending), starts the gateway's app on it with an operator token, and times
//! the dashboard's API over HTTP on loopback, one request at a time: `overview`, the first page
//! of `payments`, a search by payer, a search by transaction, a deep page, and `settlement`.
//! The overview's all-time totals must equal the seeded sums exactly (the command fails
//! otherwise). No chain is needed: nothing is paid, the facilitator is a stand-in that
//! answers `/supported` with nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use x402_gateway::GatewayConfig;
use x402_gateway::payments::SqlitePaymentStore;
use x402_paywall::{PaymentEntry, PaymentState};
use x402_proto::{
    BoxFuture, Facilitator, FacilitatorError, IdempotencyKey, Network, PaymentRequest, Scheme,
    SettleResponse, SupportedResponse, TokenAmount, U256, VerifyResponse,
};

use crate::load::{Phase, finish, print_phases, scratch_dir, summarize, verdict};

/// Options of `x402-bench dashboard`.
#[derive(Debug, clap::Args)]
pub(crate) struct DashboardBench {
    /// Payments seeded in the journal.
    #[arg(long, default_value_t = 100_000)]
    payments: usize,
    /// Timed requests per endpoint.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

const USDC: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
const TOKEN: &str = "bench-operator-token";
const SERVICES: [&str; 8] = [
    "embed-l4",
    "llm-4090",
    "llm-a100",
    "pdf-parse",
    "tts-l4",
    "rerank-l4",
    "code-4090",
    "whisper-l4",
];
const DAY_MS: i64 = 86_400_000;

/// A facilitator that serves nothing: the dashboard never asks it to verify or settle.
#[derive(Debug)]
struct Offline;

impl Facilitator for Offline {
    fn verify<'a>(
        &'a self,
        _: &'a PaymentRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async { Err(FacilitatorError::Unavailable("offline".into())) })
    }

    fn settle<'a>(
        &'a self,
        _: &'a PaymentRequest,
        _: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(async { Err(FacilitatorError::Unavailable("offline".into())) })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async { Ok(SupportedResponse::default()) })
    }
}

/// A small deterministic generator (SplitMix64), so that every run seeds the same journal.
struct Seq(u64);

impl Seq {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn payer(n: u64) -> String {
    format!(
        "0x{:040x}",
        n.wrapping_mul(0x0001_0000_0000_001f) % (1u64 << 60) + 1
    )
}

/// The seeded payments and what they earned (settled, charged), exactly.
fn seed(count: usize, now_ms: i64) -> (Vec<PaymentEntry>, U256, U256) {
    let network = Network::new("eip155:8453");
    let mut seq = Seq(402);
    let (mut settled, mut charged) = (U256::ZERO, U256::ZERO);
    let entries = (0..count)
        .map(|i| {
            let roll = seq.next() % 100;
            let state = match roll {
                0..90 => PaymentState::Settled,
                90..97 => PaymentState::Charged,
                97..99 => PaymentState::Failed,
                _ => PaymentState::Pending,
            };
            let amount = U256::from(1_000 + seq.next() % 49_000);
            match state {
                PaymentState::Settled => settled += amount,
                PaymentState::Charged => charged += amount,
                _ => {}
            }
            let payer = payer(seq.next() % 200);
            let tx = matches!(state, PaymentState::Settled | PaymentState::Pending).then(|| {
                format!(
                    "0x{:016x}{:016x}{:016x}{:016x}",
                    seq.next(),
                    seq.next(),
                    seq.next(),
                    i
                )
            });
            let at_ms = now_ms - i64::try_from(seq.next() % (30 * DAY_MS as u64)).unwrap_or(0);
            let receipt = match state {
                PaymentState::Failed => SettleResponse::failure(
                    network.clone(),
                    x402_proto::ReasonCode::new("insufficient_funds"),
                    "the payer's balance is too low",
                    Some(payer.clone()),
                    None,
                ),
                _ => SettleResponse::success(
                    network.clone(),
                    Some(payer.clone()),
                    tx.clone().unwrap_or_default(),
                ),
            };
            PaymentEntry {
                at_ms,
                payment: format!("eip155:8453:bench:{i}"),
                service: SERVICES[(seq.next() % 8) as usize].to_owned(),
                resource: "POST /run".to_owned(),
                payer,
                amount: TokenAmount(amount),
                asset: USDC.to_owned(),
                network: network.clone(),
                decimals: 6,
                scheme: if state == PaymentState::Charged {
                    Scheme::BATCH_SETTLEMENT
                } else {
                    Scheme::EXACT
                },
                state,
                transaction: tx,
                reason: match state {
                    PaymentState::Failed => Some("insufficient_funds".to_owned()),
                    PaymentState::Pending => Some("settlement_pending".to_owned()),
                    _ => None,
                },
                fingerprint: format!("{:064x}", i),
                receipt,
                job: None,
            }
        })
        .collect();
    (entries, settled, charged)
}

/// Times `requests` GETs of `url` one after the other, after a few untimed ones; the last
/// answer with the phase.
async fn time(
    http: &reqwest::Client,
    url: &str,
    requests: usize,
) -> anyhow::Result<(Phase, Value)> {
    let get = || async {
        let answer = http.get(url).bearer_auth(TOKEN).send().await?;
        let status = answer.status();
        let body: Value = answer.json().await?;
        ensure!(status == 200, "{url}: {status} {body}");
        Ok::<_, anyhow::Error>(body)
    };
    for _ in 0..5 {
        get().await?;
    }
    let mut latencies = Vec::with_capacity(requests);
    let mut last = Value::Null;
    let started = Instant::now();
    for _ in 0..requests {
        let at = Instant::now();
        last = get().await?;
        latencies.push(at.elapsed());
    }
    Ok((summarize(latencies, requests, started.elapsed()), last))
}

pub(crate) async fn run(args: DashboardBench) -> anyhow::Result<()> {
    if args.payments == 0 || args.requests == 0 {
        bail!("--payments and --requests must be at least 1");
    }
    let dir = scratch_dir("dashboard")?;
    let config = GatewayConfig::parse(&format!(
        r#"
listen = "127.0.0.1:0"
models_dir = "{dir}/no-models"
jobs_db = "{dir}/gateway-jobs.db"
operator_token = "{TOKEN}"
[payment]
pay_to = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
[[payment.accepts]]
network = "eip155:8453"
asset = "{USDC}"
[batch_settlement]
channels_db = "{dir}/gateway-channels.db"
"#,
        dir = dir.display()
    ))?;

    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    eprintln!("seeding {} payments…", args.payments);
    let seeding = Instant::now();
    let (entries, settled, charged) = seed(args.payments, now_ms);
    let searched_payer = entries[0].payer.to_lowercase();
    let searched_tx = entries
        .iter()
        .find_map(|e| e.transaction.clone())
        .context("no seeded transaction")?;
    {
        let store = SqlitePaymentStore::open(&config.payments_db())?;
        let mut entries = entries;
        while !entries.is_empty() {
            let rest = entries.split_off(entries.len().min(10_000));
            store.record_all(entries).await?;
            entries = rest;
        }
    }
    let seeded_in = seeding.elapsed();
    let file_bytes = std::fs::metadata(config.payments_db())?.len();

    eprintln!("starting the gateway on the journal…");
    let app = x402_gateway::app(&config, Arc::new(Offline)).await?;
    let gateway = x402_gateway::serve(&config, app).await?;
    let api = format!("{}/dashboard/api", gateway.url());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;

    let deep = (args.payments / 2 / 25).max(1);
    let endpoints = [
        ("overview", format!("{api}/overview?tz_offset=0")),
        (
            "payments, first page",
            format!("{api}/payments?page=1&per_page=25"),
        ),
        (
            "payments, search by payer",
            format!("{api}/payments?q={searched_payer}"),
        ),
        (
            "payments, search by tx",
            format!("{api}/payments?q={searched_tx}"),
        ),
        (
            "payments, page in the middle",
            format!("{api}/payments?page={deep}&per_page=25"),
        ),
        ("settlement", format!("{api}/settlement")),
    ];
    let mut phases = Vec::new();
    let mut answers = Vec::new();
    for (name, url) in &endpoints {
        eprintln!("timing {name}…");
        let (phase, answer) = time(&http, url, args.requests).await?;
        phases.push((*name, phase));
        answers.push(answer);
    }
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);

    // The overview's totals are the seeded sums, exactly; the pages found what they should.
    let all = &answers[0]["revenue"]["all_time"][0];
    let shown = |key: &str| all[key].as_str().and_then(|v| v.parse::<U256>().ok());
    let consistent = shown("settled") == Some(settled)
        && shown("charged") == Some(charged)
        && answers[1]["total"] == json!(args.payments)
        && answers[3]["total"] == json!(1);
    let report = json!({
        "payments": args.payments,
        "requests_per_endpoint": args.requests,
        "seeded_in_seconds": seeded_in.as_secs_f64(),
        "journal_bytes": file_bytes,
        "payer_search_matches": answers[2]["total"],
        "phases": phases.iter().map(|(name, phase)| json!({"endpoint": name, "latency": phase})).collect::<Vec<_>>(),
        "totals": verdict(consistent),
    });
    finish(args.json, &report, consistent, || {
        println!(
            "{} payments seeded in {:.1} s ({:.1} MB journal); {} requests per endpoint, one at a time",
            args.payments,
            seeded_in.as_secs_f64(),
            file_bytes as f64 / 1e6,
            args.requests
        );
        let named: Vec<(&str, &Phase)> = phases.iter().map(|(n, p)| (*n, p)).collect();
        print_phases(&named, 30, 2);
        println!(
            "search by payer matched {}; overview totals {}",
            answers[2]["total"],
            verdict(consistent)
        );
    })
}
