//! `x402 receipts`: the ledger, totals, and reconciling payments whose answer was lost.

use std::path::PathBuf;

use super::*;
use anyhow::{Context, bail};
use serde_json::Value;
use x402_client::{Ledger, MicroUsd, Outcome, Reconciled, TotalsBy};

/// Options of `x402 receipts`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReceiptsArgs {
    /// Only payments newer than this: a duration (`30m`, `24h`, `7d`) or unix seconds.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Totals by day, service or payee instead of the list.
    #[arg(long, value_enum)]
    by: Option<By>,
    /// JSON output.
    #[arg(long)]
    json: bool,
    /// First ask the chain what became of payments recorded `unknown` (sent, answer lost) and
    /// of reservations left unfinished: a used authorization is `paid`, an expired unused one
    /// `released`.
    #[arg(long)]
    reconcile: bool,
    /// JSON-RPC endpoint for --reconcile; default: the `x402 dev` chain from --dev-state.
    #[arg(long, value_name = "URL", requires = "reconcile")]
    rpc: Option<String>,
    /// The `x402 dev` state directory to read the chain from.
    #[arg(long, value_name = "DIR", default_value = ".x402/dev")]
    dev_state: PathBuf,
}

/// `--by` choices.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum By {
    Day,
    Service,
    Payee,
}

fn since_seconds(since: Option<&str>) -> anyhow::Result<i64> {
    let Some(text) = since else { return Ok(0) };
    let now = x402_evm::unix_now() as i64;
    let (number, unit) = text.split_at(
        text.trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .len(),
    );
    let n: i64 = number
        .parse()
        .with_context(|| format!("--since {text:?}: write 30m, 24h, 7d or unix seconds"))?;
    Ok(match unit {
        "" => n,
        "s" => now - n,
        "m" => now - n * 60,
        "h" => now - n * 3600,
        "d" => now - n * 86_400,
        _ => bail!("--since {text:?}: the unit must be s, m, h or d"),
    })
}

/// Reconciles the ledger against the chain, one line per row on stderr.
async fn reconcile(ledger: &Ledger, rpc: &str) -> anyhow::Result<()> {
    let outcomes = ledger
        .reconcile(&reqwest::Client::new(), rpc)
        .await
        .with_context(|| format!("reconciling against {rpc}"))?;
    for Reconciled { id, outcome } in &outcomes {
        let line = match outcome {
            Outcome::Paid {
                transaction: Some(tx),
            } => format!("paid (the authorization was used, in {tx})"),
            Outcome::Paid { transaction: None } => {
                "paid (the authorization was used; its transaction was not found)".to_owned()
            }
            Outcome::Released => "released (the authorization expired unused)".to_owned(),
            Outcome::StillValid { valid_before } => format!(
                "still unknown: unused, and usable until {valid_before} (unix); counted until then"
            ),
            Outcome::Skipped { reason } => format!("left as it is: {reason}"),
        };
        eprintln!("row {id}: {line}");
    }
    if outcomes.is_empty() {
        eprintln!("nothing to reconcile");
    }
    Ok(())
}

pub(crate) async fn receipts(home: &Home, args: ReceiptsArgs) -> anyhow::Result<()> {
    let ledger = home.ledger()?;
    let since = since_seconds(args.since.as_deref())?;
    if args.reconcile {
        let dev = read_dev_state(&args.dev_state).ok();
        reconcile(&ledger, &chain_rpc(args.rpc, dev.as_ref())?).await?;
    }
    if let Some(by) = args.by {
        let key = match by {
            By::Day => TotalsBy::Day,
            By::Service => TotalsBy::Service,
            By::Payee => TotalsBy::Payee,
        };
        let totals = ledger.totals(since, key)?;
        if args.json {
            let rows: Vec<Value> = totals
                .iter()
                .map(|(k, m, n)| serde_json::json!({"key": k, "usd": usd(*m), "payments": n}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            for (key, micro, count) in totals {
                println!("{key:44} ${:>10}  {count} payments", usd(micro));
            }
        }
        return Ok(());
    }
    let payments = ledger.payments(since)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&payments)?);
        return Ok(());
    }
    for p in &payments {
        println!(
            "{} {:8} ${:>10} {:10} {} {}",
            p.created_at,
            p.status,
            usd(p.micro_usd),
            p.service.as_deref().unwrap_or("-"),
            p.transaction
                .as_deref()
                .filter(|t| !t.is_empty())
                .unwrap_or("-"),
            p.url
        );
    }
    let sum = |status: &str| -> (MicroUsd, usize) {
        payments
            .iter()
            .filter(|p| p.status == status)
            .fold((0, 0), |(total, n), p| (total + p.micro_usd, n + 1))
    };
    let (paid, _) = sum("paid");
    let (unknown, unknown_count) = sum("unknown");
    eprintln!("{} payments, ${} paid", payments.len(), usd(paid));
    if unknown_count > 0 {
        eprintln!(
            "{unknown_count} unknown (${}): sent, answer lost; counted against the budget until `x402 receipts --reconcile` finds them paid or expired",
            usd(unknown)
        );
    }
    Ok(())
}
