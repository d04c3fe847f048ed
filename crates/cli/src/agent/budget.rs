//! `x402 budget show|set`: spending limits.

use super::*;
use anyhow::anyhow;
use x402_client::{Budget, Ledger, MicroUsd};
use x402_proto::Price;

/// `x402 budget`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum BudgetCommand {
    /// Print the limits and what was spent against them.
    Show,
    /// Set limits in USD (`--per-day 5`, `--deposit-cap 2`); `none` removes one.
    Set {
        /// Most per payment.
        #[arg(long, value_name = "USD")]
        per_payment: Option<String>,
        /// Most per rolling hour.
        #[arg(long, value_name = "USD")]
        per_hour: Option<String>,
        /// Most per rolling day.
        #[arg(long, value_name = "USD")]
        per_day: Option<String>,
        /// Most in total.
        #[arg(long, value_name = "USD")]
        total: Option<String>,
        /// Most held in batch-settlement channels' escrow at once (deposited, not yet charged
        /// or refunded; $5 unless set). A deposit that would cross it is refused before
        /// anything is signed.
        #[arg(long, value_name = "USD")]
        deposit_cap: Option<String>,
    },
}

fn limit(text: &str) -> anyhow::Result<Option<MicroUsd>> {
    if text == "none" {
        return Ok(None);
    }
    let price: Price = text.parse()?;
    let atomic = price
        .to_atomic(6)
        .map_err(|e| anyhow!("{e} (limits are kept to the micro-dollar)"))?;
    Ok(Some(
        u64::try_from(atomic.0).map_err(|_| anyhow!("{text} is too large"))?,
    ))
}

pub(crate) fn budget(home: &Home, command: BudgetCommand) -> anyhow::Result<()> {
    let ledger = home.ledger()?;
    let mut budget = ledger.budget()?;
    if let BudgetCommand::Set {
        per_payment,
        per_hour,
        per_day,
        total,
        deposit_cap,
    } = command
    {
        for (field, value) in [
            (&mut budget.per_payment, per_payment),
            (&mut budget.per_hour, per_hour),
            (&mut budget.per_day, per_day),
            (&mut budget.total, total),
            (&mut budget.deposit_cap, deposit_cap),
        ] {
            if let Some(text) = value {
                *field = limit(&text)?;
            }
        }
        ledger.set_budget(&budget)?;
    }
    show_budget(&ledger, &budget)
}

fn show_budget(ledger: &Ledger, budget: &Budget) -> anyhow::Result<()> {
    let now = x402_evm::unix_now() as i64;
    let spent = |since: i64| -> anyhow::Result<_> {
        Ok((ledger.spent(since)?, ledger.outstanding(since)?))
    };
    let rows = [
        ("per payment", budget.per_payment, None),
        ("per hour", budget.per_hour, Some(spent(now - 3600)?)),
        ("per day", budget.per_day, Some(spent(now - 86_400)?)),
        ("total", budget.total, Some(spent(0)?)),
    ];
    for (name, limit, spent) in rows {
        let limit = limit.map_or("no limit".to_owned(), |l| format!("${}", usd(l)));
        match spent {
            Some((spent, 0)) => println!("{name:12} {limit:>14}   spent ${}", usd(spent)),
            // Payments in flight or whose answer was lost count too (see `x402 receipts`).
            Some((spent, outstanding)) => println!(
                "{name:12} {limit:>14}   spent ${} + ${} in flight or unknown",
                usd(spent),
                usd(outstanding)
            ),
            None => println!("{name:12} {limit:>14}"),
        }
    }
    let cap = budget
        .deposit_cap
        .map_or("no limit".to_owned(), |l| format!("${}", usd(l)));
    println!(
        "{:12} {cap:>14}   locked ${} in channels (see `x402 channels`)",
        "deposit cap",
        usd(ledger.locked()?)
    );
    Ok(())
}
