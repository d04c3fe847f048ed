//! `x402-bench facilitator-dashboard`: how fast the facilitator's dashboard API answers from a
//! settlement log of 100,000 settlements (SQLite).
//!
//! Fills a SQLite log through the store's own writes (a claim with its transaction, then the
//! outcome: 97% confirmed, 2% failed for a reason, 1% left pending), from 1,000 payers to 20
//! payees, then spreads their recording times over the last 60 days as a log that has run that
//! long holds them (the settled sums per day are then summed again from the rows, as the log's
//! migration does). Starts anvil and the facilitator on that log with an operator token, checks
//! that the overview's all-time total is exactly the sum of what was confirmed, then asks each
//! API route `--requests` times, one at a time (an operator's page), and reports p50 and p99.

use std::time::{Duration, Instant};

use alloy::primitives::{Address, Bytes, U256, keccak256};
use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use x402_devnet::{Devnet, DevnetConfig};
use x402_facilitator::{
    Durability, NewSettlement, SettlementKey, SettlementState, SettlementStore, SqliteStore,
    TxRecord,
};
use x402_proto::{Network, ReasonCode, SettleResponse};

use crate::load::scratch_dir;

/// Options of `x402-bench facilitator-dashboard`.
#[derive(Debug, clap::Args)]
pub(crate) struct DashboardBench {
    /// Settlements in the log.
    #[arg(long, default_value_t = 100_000)]
    settlements: u32,
    /// Requests per API route, one at a time.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// The operator token of the run.
const TOKEN: &str = "bench-operator-token";
/// Days the log's records are spread over.
const DAYS: u64 = 60;

/// The `n`th of `count` distinct addresses.
fn address(kind: &str, n: u32) -> Address {
    Address::from_slice(&keccak256(format!("{kind}:{n}"))[12..])
}

/// Fills the log at `path` with `count` settlements of `token` on `chain_id`; what the
/// confirmed ones moved in all.
async fn fill(
    path: &std::path::Path,
    count: u32,
    chain_id: u64,
    token: Address,
) -> anyhow::Result<U256> {
    let store = SqliteStore::open_with(path, Durability::Normal)?;
    let signer = address("signer", 0);
    let mut confirmed = U256::ZERO;
    let started = Instant::now();
    for i in 0..count {
        let nonce = keccak256(i.to_be_bytes());
        let amount = U256::from(1_000 + u64::from(i % 997) * 100);
        let new = NewSettlement {
            key: SettlementKey {
                chain_id,
                asset: token,
                payer: address("payer", i % 1_000),
                nonce,
            },
            fingerprint: keccak256(nonce),
            token,
            pay_to: address("payee", i % 20),
            amount,
            valid_before: 4_000_000_000,
            wire_network: Network::eip155(chain_id),
            request: json!({"x402Version": 2, "bench": i}).to_string(),
        };
        let tx_hash = keccak256(nonce.as_slice());
        let tx = TxRecord {
            tx_hash,
            raw: Bytes::from_static(&[0x02]),
            signer,
            signer_nonce: u64::from(i),
        };
        store.claim_with_transaction(&new, &tx, None).await?;
        let (state, answer) = match i % 100 {
            // 1% left pending: sent, no outcome.
            99 => continue,
            97 | 98 => (
                SettlementState::Failed,
                SettleResponse::failure(
                    new.wire_network.clone(),
                    ReasonCode::INSUFFICIENT_FUNDS,
                    "the payer's balance is short",
                    None,
                    Some(tx_hash.to_string()),
                ),
            ),
            _ => {
                confirmed += amount;
                (
                    SettlementState::Confirmed,
                    SettleResponse::success(new.wire_network.clone(), None, tx_hash.to_string()),
                )
            }
        };
        store.finish(&new.key, state, &answer, None).await?;
        if i > 0 && i % 20_000 == 0 {
            eprintln!("  {i} settlements recorded ({:.0?})", started.elapsed());
        }
    }
    drop(store);
    // Recorded just now, one after the other; a log that ran for 60 days holds them spread
    // over that time, oldest first.
    let connection = rusqlite::Connection::open(path)?;
    let now = i64::try_from(x402_evm::unix_now())?;
    let spacing = i64::try_from(DAYS * 86_400 / u64::from(count.max(1)))?.max(1);
    connection.execute(
        "UPDATE settlements SET created_at = ?1 - (?2 - rowid) * ?3,
                                updated_at = ?1 - (?2 - rowid) * ?3 + 2",
        rusqlite::params![now, i64::from(count), spacing],
    )?;
    // The settled sums were kept by day of recording: the log's migration to schema version
    // 4 sums them again from the rows at the next open.
    connection.execute_batch("PRAGMA user_version = 3;")?;
    drop(connection);
    SqliteStore::open(path)?;
    Ok(confirmed)
}

/// Latencies of `requests` GETs of `url`, one at a time, after a few to warm up; each must
/// answer 200.
async fn measure(http: &reqwest::Client, url: &str, requests: usize) -> anyhow::Result<Value> {
    let get = || http.get(url).bearer_auth(TOKEN).send();
    for _ in 0..5 {
        get().await?.bytes().await?;
    }
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        let sent = Instant::now();
        let response = get().await?;
        let status = response.status();
        let body = response.bytes().await?;
        latencies.push(sent.elapsed());
        ensure!(
            status == 200,
            "{url}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    latencies.sort();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        latencies
            .get(i)
            .map_or(0.0, |d: &Duration| d.as_secs_f64() * 1000.0)
    };
    Ok(json!({ "requests": requests, "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0) }))
}

pub(crate) async fn run(args: DashboardBench) -> anyhow::Result<()> {
    let devnet = Devnet::start(DevnetConfig::default())
        .await
        .context("starting anvil")?;
    let dir = scratch_dir("facilitator-dashboard")?;
    let path = dir.join("facilitator.db");
    let token = devnet.token().address;
    eprintln!(
        "recording {} settlements in {}…",
        args.settlements,
        path.display()
    );
    let started = Instant::now();
    let confirmed = fill(&path, args.settlements, devnet.chain_id(), token).await?;
    let filled_in = started.elapsed();
    let mut config = x402_cli::stack::facilitator_config(&devnet, 0, &path, None);
    config.operator_token = Some(x402_proto::Secret::new(TOKEN));
    let facilitator = x402_facilitator::start(&config, devnet.facilitator().signer.clone())
        .await
        .context("starting the facilitator")?;
    let base = format!(
        "{}/api",
        facilitator.dashboard_url().context("a dashboard")?
    );
    let http = reqwest::Client::new();

    // The figures are the log's: the all-time total is every confirmed amount, exactly.
    let overview: Value = http
        .get(format!("{base}/overview"))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let asset = token.to_checksum(None);
    let shown = overview["assets"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["asset"] == asset))
        .map(|a| a["all_time"]["amount"].clone());
    let consistent = shown == Some(Value::from(confirmed.to_string()));

    let payer = address("payer", 7).to_checksum(None);
    let tx = keccak256(keccak256(54_321u32.to_be_bytes()).as_slice());
    let routes: Vec<(&str, String)> = vec![
        ("overview", "overview".into()),
        ("settlements (page 1)", "settlements".into()),
        ("settlements (page 2000)", "settlements?page=2000".into()),
        (
            "settlements?state=failed",
            "settlements?state=failed".into(),
        ),
        ("settlements?q=<payer>", format!("settlements?q={payer}")),
        ("settlements?q=<tx hash>", format!("settlements?q={tx}")),
        ("settlements?q=<prefix>", "settlements?q=0xab12".into()),
        ("health", "health".into()),
    ];
    let mut figures = Vec::new();
    for (name, path) in &routes {
        eprintln!("{name}: {} requests…", args.requests);
        let figure = measure(&http, &format!("{base}/{path}"), args.requests).await?;
        figures.push((name.to_string(), figure));
    }
    facilitator.shutdown().await;
    devnet.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    let report = json!({
        "settlements": args.settlements,
        "confirmed_total": confirmed.to_string(),
        "overview_total": shown,
        "consistent": consistent,
        "filled_in_seconds": filled_in.as_secs_f64(),
        "routes": figures.iter().map(|(name, f)| json!({"route": name, "latency": f})).collect::<Vec<_>>(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} settlements in the log (recorded in {:.0?}); overview's all-time total {} ({})",
            args.settlements,
            filled_in,
            confirmed,
            crate::load::verdict(consistent)
        );
        for (name, f) in &figures {
            println!(
                "{name:28} p50 {:7.2} ms  p99 {:7.2} ms  max {:7.2} ms",
                f["p50_ms"].as_f64().unwrap_or_default(),
                f["p99_ms"].as_f64().unwrap_or_default(),
                f["max_ms"].as_f64().unwrap_or_default()
            );
        }
    }
    if !consistent {
        bail!("the overview's total is not the sum of the confirmed settlements");
    }
    Ok(())
}
