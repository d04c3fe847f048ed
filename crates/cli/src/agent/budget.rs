//! `x402 budget show|set`: spending limits.

use super::*;
use anyhow::anyhow;
use x402_client::{Ledger, MicroUsd};
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
    show_budget(&ledger)
}

/// What counts against a limit now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Against {
    /// Each payment alone (`per payment`).
    EachPayment,
    /// Payments in a rolling window: paid, and reserved or unknown (in flight, or sent with
    /// the answer lost), which count until settled.
    Window {
        /// Paid within the window.
        spent: MicroUsd,
        /// Reserved or unknown within the window.
        outstanding: MicroUsd,
    },
    /// What is locked in `batch-settlement` channels' escrow (`deposit cap`).
    Escrow {
        /// Deposited and not yet charged or refunded.
        locked: MicroUsd,
    },
}

impl Against {
    /// What counts against the limit, all told.
    pub(crate) fn used(self) -> Option<MicroUsd> {
        match self {
            Self::EachPayment => None,
            Self::Window { spent, outstanding } => Some(spent + outstanding),
            Self::Escrow { locked } => Some(locked),
        }
    }
}

/// One limit of the budget and what counts against it now, as `x402 budget show` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BudgetLine {
    /// `per payment`, `per hour`, `per day`, `total` or `deposit cap`.
    pub(crate) name: &'static str,
    /// The limit; `None` is no limit.
    pub(crate) limit: Option<MicroUsd>,
    /// What counts against it.
    pub(crate) against: Against,
}

/// The budget's limits and what counts against each now (rolling windows end now).
pub(crate) fn budget_lines(ledger: &Ledger) -> anyhow::Result<Vec<BudgetLine>> {
    let budget = ledger.budget()?;
    let now = x402_evm::unix_now() as i64;
    let window = |since: i64| -> anyhow::Result<Against> {
        Ok(Against::Window {
            spent: ledger.spent(since)?,
            outstanding: ledger.outstanding(since)?,
        })
    };
    let line = |name, limit, against| BudgetLine {
        name,
        limit,
        against,
    };
    Ok(vec![
        line("per payment", budget.per_payment, Against::EachPayment),
        line("per hour", budget.per_hour, window(now - 3600)?),
        line("per day", budget.per_day, window(now - 86_400)?),
        line("total", budget.total, window(0)?),
        line(
            "deposit cap",
            budget.deposit_cap,
            Against::Escrow {
                locked: ledger.locked()?,
            },
        ),
    ])
}

fn show_budget(ledger: &Ledger) -> anyhow::Result<()> {
    for BudgetLine {
        name,
        limit,
        against,
    } in budget_lines(ledger)?
    {
        let limit = limit.map_or("no limit".to_owned(), |l| format!("${}", usd(l)));
        match against {
            Against::Window {
                spent,
                outstanding: 0,
            } => println!("{name:12} {limit:>14}   spent ${}", usd(spent)),
            // Payments in flight or whose answer was lost count too (see `x402 receipts`).
            Against::Window { spent, outstanding } => println!(
                "{name:12} {limit:>14}   spent ${} + ${} in flight or unknown",
                usd(spent),
                usd(outstanding)
            ),
            Against::EachPayment => println!("{name:12} {limit:>14}"),
            Against::Escrow { locked } => println!(
                "{name:12} {limit:>14}   locked ${} in channels (see `x402 channels`)",
                usd(locked)
            ),
        }
    }
    Ok(())
}
