//! `x402 receipts`: the ledger, totals (with bars), the HTML spending report, and reconciling
//! payments whose answer was lost.

use std::path::PathBuf;

use super::*;
use anyhow::{Context, bail};
use serde_json::Value;
use x402_client::{Ledger, MicroUsd, Outcome, Reconciled, TotalsBy};

use super::report::{Report, day_text, parse_day};

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
    /// Write the spending report, a self-contained HTML page (charts of spend per day by
    /// service and payee, the budget, every payment with its transaction), to FILE (`-`:
    /// standard output).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["by", "json"])]
    html: Option<PathBuf>,
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
            let largest = totals.iter().map(|(_, m, _)| *m).max().unwrap_or(0);
            for (key, micro, count) in &totals {
                println!(
                    "{key:44} ${:>10}  {}  {count} payments",
                    usd(*micro),
                    bar(*micro, largest, BAR_WIDTH)
                );
            }
            if matches!(by, By::Day)
                && let Some(line) = day_sparkline(&totals)
            {
                println!("{line}");
            }
        }
        return Ok(());
    }
    if let Some(file) = args.html {
        let report = Report::read(&ledger, since, args.since.clone())?;
        let page = report.html();
        if file.as_os_str() == "-" {
            print!("{page}");
        } else {
            std::fs::write(&file, page).with_context(|| format!("writing {}", file.display()))?;
            let (unknown, _) = report.sum("unknown");
            eprintln!(
                "wrote {}: {} payments, ${} paid, ${} unknown",
                file.display(),
                report.payments.len(),
                usd(report.paid),
                usd(unknown)
            );
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

/// How many cells the `--by` bars take at most.
const BAR_WIDTH: usize = 24;

/// A bar of `value` out of `largest` in `width` cells, drawn in eighths of a cell with Unicode
/// blocks and padded with spaces to `width`; anything above zero shows at least an eighth.
fn bar(value: MicroUsd, largest: MicroUsd, width: usize) -> String {
    const EIGHTHS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let eighths = if largest == 0 {
        0
    } else {
        let exact = u128::from(value.min(largest)) * (width as u128) * 8;
        let rounded = (exact + u128::from(largest) / 2) / u128::from(largest);
        (rounded as usize).max(usize::from(value > 0))
    };
    let mut bar = "█".repeat(eighths / 8);
    if eighths % 8 > 0 {
        bar.push(EIGHTHS[eighths % 8]);
    }
    let drawn = bar.chars().count();
    bar.extend(std::iter::repeat_n(' ', width.saturating_sub(drawn)));
    bar
}

/// One character per value, its height in eighths of the largest (`▁` … `█`); zero is a
/// space.
fn sparkline(values: &[MicroUsd]) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let largest = values.iter().copied().max().unwrap_or(0);
    values
        .iter()
        .map(|&value| {
            if value == 0 || largest == 0 {
                return ' ';
            }
            // 1..=8 eighths, rounded up so that the smallest payment still shows.
            let level = (u128::from(value) * 8).div_ceil(u128::from(largest));
            LEVELS[(level as usize).clamp(1, 8) - 1]
        })
        .collect()
}

/// How many days the `--by day` sparkline shows at most (the latest).
const SPARK_DAYS: i64 = 90;

/// The `--by day` trend: every day from the first with payments to the last (at most the
/// last [`SPARK_DAYS`]), days without payments blank.
fn day_sparkline(totals: &[(String, MicroUsd, u64)]) -> Option<String> {
    let days: Vec<(i64, MicroUsd)> = totals
        .iter()
        .filter_map(|(day, micro, _)| Some((parse_day(day)?, *micro)))
        .collect();
    let last = days.iter().map(|(d, _)| *d).max()?;
    let first = days
        .iter()
        .map(|(d, _)| *d)
        .min()?
        .max(last - SPARK_DAYS + 1);
    let mut values = vec![0; (last - first + 1) as usize];
    for (day, micro) in days {
        if day >= first {
            values[(day - first) as usize] += micro;
        }
    }
    Some(format!(
        "{:44}  {}  {} … {}",
        "per day",
        sparkline(&values),
        day_text(first),
        day_text(last)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_scaled_to_the_largest_total_in_eighths() {
        assert_eq!(bar(100, 100, 4), "████");
        assert_eq!(bar(50, 100, 4), "██  ");
        // 4 cells = 32 eighths; 10% of that is 3.2 → 3 eighths.
        assert_eq!(bar(10, 100, 4), "▍   ");
        assert_eq!(bar(55, 100, 4), "██▎ ");
        // The smallest payment still shows; nothing shows nothing.
        assert_eq!(bar(1, 1_000_000, 4), "▏   ");
        assert_eq!(bar(0, 100, 4), "    ");
        assert_eq!(bar(0, 0, 3), "   ");
        for value in [0, 1, 7, 33, 99, 100] {
            assert_eq!(bar(value, 100, BAR_WIDTH).chars().count(), BAR_WIDTH);
        }
    }

    #[test]
    fn the_day_sparkline_fills_days_without_payments() {
        assert_eq!(sparkline(&[0, 1, 4, 8, 0]), " ▁▄█ ");
        assert_eq!(sparkline(&[1, 1_000_000]), "▁█");
        assert_eq!(sparkline(&[]), "");
        let totals = vec![
            ("2024-02-28".to_owned(), 8, 1),
            ("2024-03-01".to_owned(), 2, 1),
            ("2024-03-02".to_owned(), 4, 2),
        ];
        let line = day_sparkline(&totals).unwrap();
        // 2024 is a leap year: 28, 29 (nothing), 1, 2.
        assert!(
            line.ends_with("  █ ▂▄  2024-02-28 … 2024-03-02"),
            "{line:?}"
        );
        assert_eq!(day_sparkline(&[]), None);
        // Only the latest days.
        let long = vec![
            ("2020-01-01".to_owned(), 1, 1),
            ("2024-03-02".to_owned(), 1, 1),
        ];
        let line = day_sparkline(&long).unwrap();
        assert!(line.contains("2023-12-04 … 2024-03-02"), "{line}");
    }
}
