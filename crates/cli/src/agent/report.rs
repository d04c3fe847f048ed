//! `x402 receipts --html FILE`: the agent's spending report, one self-contained HTML page.
//!
//! Every figure on the page is read from the ledger with the queries the other `x402 receipts`
//! outputs use: the payments of `--json` ([`Ledger::payments`]), the paid total of the terminal
//! list ([`Ledger::spent`]), the groups of `--by day|service|payee --json` ([`Ledger::totals`]),
//! their split by day for the charts ([`Ledger::daily_totals`]) and the limits of
//! `x402 budget show`. Nothing is estimated; the page only arranges them. Each total also sits
//! in `data-*` attributes (`data-testid`, `data-micro-usd`, `data-usd`) for programs to read.
//!
//! The page fetches nothing (inline CSS, inline SVG charts, no script; its Content Security
//! Policy forbids any load), and every string from the ledger is escaped: a payee, service or
//! URL is whatever a server said, so it is text and never markup.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use x402_client::{DailyTotal, Ledger, MicroUsd, PaymentRecord, TotalsBy};

use super::budget::{Against, BudgetLine, budget_lines};
use super::usd;

/// A `--by` row: the group, micro-USD paid, how many payments.
type Total = (String, MicroUsd, u64);

/// Everything the page shows, as the ledger answered.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// When the report was made (unix seconds).
    pub(crate) generated_at: i64,
    /// The `--since` bound (unix seconds; 0 is every payment) and how it was written.
    pub(crate) since: (i64, Option<String>),
    /// The payments, newest first (`x402 receipts --json`).
    pub(crate) payments: Vec<PaymentRecord>,
    /// Micro-USD paid.
    pub(crate) paid: MicroUsd,
    /// `--by day`.
    pub(crate) by_day: Vec<Total>,
    /// `--by service`.
    pub(crate) by_service: Vec<Total>,
    /// `--by payee`.
    pub(crate) by_payee: Vec<Total>,
    /// `--by service`, split by day.
    pub(crate) daily_by_service: Vec<DailyTotal>,
    /// `--by payee`, split by day.
    pub(crate) daily_by_payee: Vec<DailyTotal>,
    /// The budget's limits and what counts against each now.
    pub(crate) budget: Vec<BudgetLine>,
}

impl Report {
    /// Reads the report of payments since `since` (unix seconds; `since_text` is how the
    /// user wrote it) from `ledger`.
    pub(crate) fn read(
        ledger: &Ledger,
        since: i64,
        since_text: Option<String>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            generated_at: x402_evm::unix_now() as i64,
            since: (since, since_text),
            payments: ledger.payments(since)?,
            paid: ledger.spent(since)?,
            by_day: ledger.totals(since, TotalsBy::Day)?,
            by_service: ledger.totals(since, TotalsBy::Service)?,
            by_payee: ledger.totals(since, TotalsBy::Payee)?,
            daily_by_service: ledger.daily_totals(since, TotalsBy::Service)?,
            daily_by_payee: ledger.daily_totals(since, TotalsBy::Payee)?,
            budget: budget_lines(ledger)?,
        })
    }

    /// Micro-USD and count of the payments with `status`, as the terminal list sums them.
    pub(crate) fn sum(&self, status: &str) -> (MicroUsd, usize) {
        self.payments
            .iter()
            .filter(|p| p.status == status)
            .fold((0, 0), |(total, n), p| (total + p.micro_usd, n + 1))
    }

    /// The page.
    pub(crate) fn html(&self) -> String {
        let mut page = String::with_capacity(16 * 1024 + self.payments.len() * 1024);
        // Writing to a String cannot fail.
        let _ = self.write_page(&mut page);
        page
    }

    fn write_page(&self, out: &mut String) -> fmt::Result {
        let (since, since_text) = (&self.since.0, &self.since.1);
        let scope = match since_text {
            Some(text) if *since > 0 => format!(
                "payments since {} (--since {})",
                timestamp(*since),
                Esc(text)
            ),
            _ => "every payment in the ledger".to_owned(),
        };
        write!(
            out,
            r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="generator" content="x402 receipts --html">
<title>x402 spending report</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>Spending report</h1>
<p>The agent's ledger: {scope}. Made {made}.</p>
</header>
<main>
"#,
            made = timestamp(self.generated_at),
        )?;
        self.write_totals(out)?;
        self.write_budget(out)?;
        if self.payments.is_empty() {
            writeln!(
                out,
                r#"<section aria-labelledby="payments-heading">
<h2 id="payments-heading">Payments</h2>
<p data-testid="no-payments">No payments recorded ({scope}).</p>
</section>"#
            )?;
        } else {
            self.write_over_time(out)?;
            write_totals_table(
                out,
                "service",
                "Service",
                "Paid per service (the URL where the service is not known)",
                &self.by_service,
            )?;
            write_totals_table(out, "payee", "Payee", "Paid per payee", &self.by_payee)?;
            self.write_payments(out)?;
        }
        write!(
            out,
            r#"</main>
<footer>
<p>Totals count <strong>paid</strong> payments; <code>x402 receipts --json</code> and <code>x402 receipts --by day|service|payee --json</code> print the same figures. <strong>Unknown</strong> payments were sent but their answer was lost: they may have settled, and count against the budget until <code>x402 receipts --reconcile</code> asks the chain.</p>
</footer>
</body>
</html>
"#
        )
    }

    fn write_totals(&self, out: &mut String) -> fmt::Result {
        let (unknown, unknown_count) = self.sum("unknown");
        let paid_count: u64 = self.by_day.iter().map(|(_, _, n)| n).sum();
        writeln!(
            out,
            r#"<section aria-labelledby="totals-heading">
<h2 id="totals-heading">Totals</h2>
<dl class="totals">
<div><dt>Paid</dt><dd data-testid="total-paid" data-micro-usd="{paid}" data-usd="{paid_usd}" data-payments="{paid_count}">${paid_usd}<small>{paid_count} {paid_word}</small></dd></div>
<div><dt>Unknown</dt><dd data-testid="total-unknown" data-micro-usd="{unknown}" data-usd="{unknown_usd}" data-payments="{unknown_count}">${unknown_usd}<small>{unknown_count} sent, answer lost</small></dd></div>
<div><dt>Listed</dt><dd data-testid="payment-count" data-count="{listed}">{listed}<small>{listed_word} of any status</small></dd></div>
</dl>
</section>"#,
            paid = self.paid,
            paid_usd = usd(self.paid),
            paid_word = plural(paid_count, "payment"),
            unknown_usd = usd(unknown),
            listed = self.payments.len(),
            listed_word = plural(self.payments.len() as u64, "payment"),
        )
    }

    fn write_budget(&self, out: &mut String) -> fmt::Result {
        writeln!(
            out,
            r#"<section aria-labelledby="budget-heading">
<h2 id="budget-heading">Budget</h2>
<div class="scroll">
<table class="budget cards" role="table">
<caption>Limits (<code>x402 budget show</code>) and what counts against each now; the windows end now, whatever <code>--since</code> says</caption>
<thead role="rowgroup"><tr role="row"><th scope="col" role="columnheader">Limit</th><th scope="col" role="columnheader" class="num">Set to</th><th scope="col" role="columnheader">Used</th><th scope="col" role="columnheader">Counted now</th></tr></thead>
<tbody role="rowgroup">"#
        )?;
        for line in &self.budget {
            let used = line.against.used();
            write!(
                out,
                r#"<tr role="row" data-testid="budget-limit" data-name="{name}""#,
                name = line.name
            )?;
            if let Some(limit) = line.limit {
                write!(out, r#" data-limit-micro-usd="{limit}""#)?;
            }
            if let Some(used) = used {
                write!(out, r#" data-used-micro-usd="{used}""#)?;
            }
            let limit_text = line
                .limit
                .map_or("no limit".to_owned(), |l| format!("${}", usd(l)));
            let counted = match line.against {
                Against::EachPayment => "each payment on its own".to_owned(),
                Against::Window {
                    spent,
                    outstanding: 0,
                } => format!("${} paid", usd(spent)),
                Against::Window { spent, outstanding } => format!(
                    "${} paid + ${} in flight or unknown",
                    usd(spent),
                    usd(outstanding)
                ),
                Against::Escrow { locked } => format!("${} locked in channels", usd(locked)),
            };
            let share = match (line.limit, used) {
                (Some(limit), Some(used)) => {
                    let percent = percent(used, limit);
                    format!(
                        r#"<span class="use"><meter min="0" max="{limit}" low="{low}" high="{high}" optimum="0" value="{used}" aria-label="{name}: {percent}% used">{percent}%</meter> {percent}%</span>"#,
                        low = limit / 2,
                        high = limit / 10 * 8,
                        name = line.name,
                    )
                }
                _ => "—".to_owned(),
            };
            writeln!(
                out,
                r#"><th scope="row" role="rowheader">{name}</th><td role="cell" data-label="Set to" class="num">{limit_text}</td><td role="cell" data-label="Used" class="nowrap">{share}</td><td role="cell" data-label="Counted now">{counted}</td></tr>"#,
                name = line.name
            )?;
        }
        writeln!(out, "</tbody>\n</table>\n</div>\n</section>")
    }

    fn write_over_time(&self, out: &mut String) -> fmt::Result {
        let days = day_axis(&self.by_day);
        writeln!(
            out,
            r#"<section aria-labelledby="time-heading">
<h2 id="time-heading">Spend over time</h2>"#
        )?;
        write_chart(
            out,
            "service",
            "Paid per day, by service",
            &days,
            &self.by_day,
            &self.by_service,
            &self.daily_by_service,
        )?;
        write_chart(
            out,
            "payee",
            "Paid per day, by payee",
            &days,
            &self.by_day,
            &self.by_payee,
            &self.daily_by_payee,
        )?;
        writeln!(
            out,
            r#"<div class="scroll">
<table class="days">
<caption>Paid per day (UTC)</caption>
<thead><tr><th scope="col">Day</th><th scope="col" class="num">Paid (USD)</th><th scope="col" class="num">Payments</th><th scope="col"><span class="sr">Share of the largest day</span></th></tr></thead>
<tbody>"#
        )?;
        let largest = self.by_day.iter().map(|(_, m, _)| *m).max().unwrap_or(0);
        for (day, micro, count) in &self.by_day {
            writeln!(
                out,
                r#"<tr data-testid="day-total" data-key="{day}" data-micro-usd="{micro}" data-usd="{usd}" data-payments="{count}"><th scope="row" class="nowrap"><time datetime="{day}">{day}</time></th><td class="num">${usd}</td><td class="num">{count}</td><td class="barcell">{bar}</td></tr>"#,
                day = Esc(day),
                usd = usd(*micro),
                bar = html_bar(*micro, largest),
            )?;
        }
        writeln!(out, "</tbody>\n</table>\n</div>\n</section>")
    }

    fn write_payments(&self, out: &mut String) -> fmt::Result {
        writeln!(
            out,
            r#"<section aria-labelledby="payments-heading">
<h2 id="payments-heading">Payments</h2>
<div class="scroll">
<table class="payments cards" role="table">
<caption>Every payment, newest first, with its settlement transaction</caption>
<thead role="rowgroup"><tr role="row"><th scope="col" role="columnheader">Time (UTC)</th><th scope="col" role="columnheader">Status</th><th scope="col" role="columnheader" class="num">Amount (USD)</th><th scope="col" role="columnheader">Service</th><th scope="col" role="columnheader">Payee</th><th scope="col" role="columnheader">URL</th><th scope="col" role="columnheader">Network</th><th scope="col" role="columnheader">Transaction</th></tr></thead>
<tbody role="rowgroup">"#
        )?;
        for p in &self.payments {
            let transaction = p.transaction.as_deref().unwrap_or("");
            let status_class = status_class(&p.status);
            writeln!(
                out,
                r#"<tr role="row" data-testid="payment" data-id="{id}" data-status="{status}" data-micro-usd="{micro}" data-usd="{usd}" data-transaction="{tx}"><td role="cell" data-label="Time" class="nowrap"><time datetime="{iso}">{time}</time></td><td role="cell" data-label="Status"><span class="status {status_class}">{status}</span></td><td role="cell" data-label="Amount" class="num">${usd}</td><td role="cell" data-label="Service" class="wrap">{service}</td><td role="cell" data-label="Payee" class="mono">{payee}</td><td role="cell" data-label="URL" class="mono">{url}</td><td role="cell" data-label="Network">{network}</td><td role="cell" data-label="Transaction" class="mono">{tx_text}</td></tr>"#,
                id = p.id,
                status = Esc(&p.status),
                micro = p.micro_usd,
                usd = usd(p.micro_usd),
                tx = Esc(transaction),
                iso = iso_timestamp(p.created_at),
                time = timestamp(p.created_at),
                service = Esc(p.service.as_deref().unwrap_or("—")),
                payee = Esc(&p.pay_to),
                url = Esc(&p.url),
                network = Esc(&p.network),
                tx_text = if transaction.is_empty() {
                    "—".to_owned()
                } else {
                    Esc(transaction).to_string()
                },
            )?;
        }
        writeln!(out, "</tbody>\n</table>\n</div>\n</section>")
    }
}

/// "1 payment", "2 payments".
fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

/// `used` as a whole percentage of `limit` (rounded down; a zero limit is full once used).
fn percent(used: MicroUsd, limit: MicroUsd) -> u128 {
    if limit == 0 {
        return if used == 0 { 0 } else { 100 };
    }
    u128::from(used) * 100 / u128::from(limit)
}

/// A CSS class for a ledger status (a fixed name, never the status itself).
fn status_class(status: &str) -> &'static str {
    match status {
        "paid" => "paid",
        "unknown" => "unknown",
        "failed" => "failed",
        "reserved" => "reserved",
        _ => "other",
    }
}

/// A horizontal bar for `value` out of `largest`, hidden from screen readers (the figure
/// beside it says it).
fn html_bar(value: MicroUsd, largest: MicroUsd) -> String {
    let width = if largest == 0 {
        0.0
    } else {
        value as f64 * 100.0 / largest as f64
    };
    format!(r#"<span class="bar" style="width:{width:.1}%" aria-hidden="true"></span>"#)
}

/// A table of `--by service` or `--by payee` totals.
fn write_totals_table(
    out: &mut String,
    kind: &str,
    column: &str,
    caption: &str,
    totals: &[Total],
) -> fmt::Result {
    let largest = totals.iter().map(|(_, m, _)| *m).max().unwrap_or(0);
    writeln!(
        out,
        r#"<section aria-labelledby="{kind}-heading">
<h2 id="{kind}-heading">By {kind}</h2>
<div class="scroll">
<table class="by">
<caption>{caption}</caption>
<thead><tr><th scope="col">{column}</th><th scope="col" class="num">Paid (USD)</th><th scope="col" class="num">Payments</th><th scope="col"><span class="sr">Share of the largest</span></th></tr></thead>
<tbody>"#
    )?;
    for (key, micro, count) in totals {
        writeln!(
            out,
            r#"<tr data-testid="{kind}-total" data-key="{key}" data-micro-usd="{micro}" data-usd="{usd}" data-payments="{count}"><th scope="row" class="mono">{key}</th><td class="num">${usd}</td><td class="num">{count}</td><td class="barcell">{bar}</td></tr>"#,
            key = Esc(key),
            usd = usd(*micro),
            bar = html_bar(*micro, largest),
        )?;
    }
    writeln!(out, "</tbody>\n</table>\n</div>\n</section>")
}

/// Colours of the chart's series (Okabe–Ito, distinguishable with colour-blindness); the
/// last is for the groups beyond them, drawn together as "other".
const PALETTE: [&str; 8] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#8a8a8a",
];

/// The days a chart spans: each day from the first with payments (or a week before the last,
/// if that is earlier) to the last (days without payments get no bar), or only the days with
/// payments when they span more than a year.
fn day_axis(by_day: &[Total]) -> Vec<String> {
    let listed = || by_day.iter().map(|(day, _, _)| day.clone()).collect();
    let (Some((first, ..)), Some((last, ..))) = (by_day.first(), by_day.last()) else {
        return Vec::new();
    };
    match (parse_day(first), parse_day(last)) {
        (Some(first), Some(last)) if last >= first && last - first <= 366 => {
            (first.min(last - 6)..=last).map(day_text).collect()
        }
        _ => listed(),
    }
}

/// One stacked bar chart of paid per day, a series per group (`--by service` or `payee`),
/// with its legend and, as its text alternative, a description and the table of its figures.
fn write_chart(
    out: &mut String,
    kind: &str,
    title: &str,
    days: &[String],
    by_day: &[Total],
    by_key: &[Total],
    daily: &[DailyTotal],
) -> fmt::Result {
    // The largest groups get a colour each, the rest share the last as "other".
    let mut order: Vec<&Total> = by_key.iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let named = if order.len() <= PALETTE.len() {
        order.len()
    } else {
        PALETTE.len() - 1
    };
    let series_of: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, (key, ..))| (key.as_str(), i.min(named)))
        .collect();
    let mut legend: Vec<(String, MicroUsd)> = order[..named]
        .iter()
        .map(|(key, micro, _)| (key.clone(), *micro))
        .collect();
    if named < order.len() {
        let rest = &order[named..];
        legend.push((
            format!("{} others", rest.len()),
            rest.iter().map(|(_, m, _)| m).sum(),
        ));
    }
    // Per day, per series: micro-USD and payments.
    let day_index: HashMap<&str, usize> = days
        .iter()
        .enumerate()
        .map(|(i, d)| (d.as_str(), i))
        .collect();
    let mut stacks = vec![vec![(0 as MicroUsd, 0u64); legend.len()]; days.len()];
    for t in daily {
        if let (Some(&d), Some(&s)) = (day_index.get(t.day.as_str()), series_of.get(t.key.as_str()))
        {
            stacks[d][s].0 += t.micro_usd;
            stacks[d][s].1 += t.payments;
        }
    }
    let largest = by_day.iter().map(|(_, m, _)| *m).max().unwrap_or(0).max(1);

    const WIDTH: f64 = 640.0;
    const HEIGHT: f64 = 260.0;
    const LEFT: f64 = 8.0;
    const RIGHT: f64 = 8.0;
    const TOP: f64 = 30.0;
    const BOTTOM: f64 = 34.0;
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let slot = plot_width / days.len().max(1) as f64;
    let bar_width = (slot * 0.7).max(1.0);
    let base = TOP + plot_height;

    let (first, last) = (
        days.first().map_or("", String::as_str),
        days.last().map_or("", String::as_str),
    );
    let busiest = by_day
        .iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)));
    let mut description = format!(
        "Stacked bars, one per day from {first} to {last}, one colour per {kind}. ",
        first = Esc(first),
        last = Esc(last),
    );
    if let Some((day, micro, _)) = busiest {
        let _ = write!(
            description,
            "The largest day is {} with ${}. ",
            Esc(day),
            usd(*micro)
        );
    }
    description.push_str("The table below the chart lists its figures.");

    writeln!(
        out,
        r#"<figure class="chart" data-testid="chart-{kind}">
<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-{kind}-title chart-{kind}-desc" preserveAspectRatio="xMidYMid meet">
<title id="chart-{kind}-title">{title}</title>
<desc id="chart-{kind}-desc">{description}</desc>
<line class="axis" x1="{LEFT}" y1="{base}" x2="{right}" y2="{base}"/>
<line class="grid" x1="{LEFT}" y1="{TOP}" x2="{right}" y2="{TOP}"/>
<text x="{LEFT}" y="{label_y}" class="label">${top}</text>"#,
        right = WIDTH - RIGHT,
        label_y = TOP - 8.0,
        top = usd(largest),
    )?;
    for (d, day) in days.iter().enumerate() {
        let x = LEFT + slot * d as f64 + (slot - bar_width) / 2.0;
        let mut y = base;
        for (s, &(micro, count)) in stacks[d].iter().enumerate() {
            if micro == 0 {
                continue;
            }
            let height = micro as f64 / largest as f64 * plot_height;
            y -= height;
            writeln!(
                out,
                r#"<rect x="{x:.2}" y="{y:.2}" width="{bar_width:.2}" height="{height:.2}" fill="{fill}"><title>{day}, {key}: ${usd} ({count} {word})</title></rect>"#,
                fill = PALETTE[s.min(PALETTE.len() - 1)],
                day = Esc(day),
                key = Esc(&legend[s].0),
                usd = usd(micro),
                word = plural(count, "payment"),
            )?;
        }
    }
    // Day labels: each day when there are few, else the first and the last.
    let labels: Vec<(usize, &str)> = if days.len() <= 8 {
        days.iter().map(String::as_str).enumerate().collect()
    } else {
        vec![(0, first), (days.len() - 1, last)]
    };
    for (d, day) in labels {
        let (x, anchor, text) = if days.len() <= 8 {
            (
                LEFT + slot * (d as f64 + 0.5),
                "middle",
                day.get(5..).unwrap_or(day),
            )
        } else if d == 0 {
            (LEFT, "start", day)
        } else {
            (WIDTH - RIGHT, "end", day)
        };
        writeln!(
            out,
            r#"<text x="{x:.2}" y="{y}" text-anchor="{anchor}" class="label">{text}</text>"#,
            y = base + 24.0,
            text = Esc(text),
        )?;
    }
    writeln!(out, "</svg>")?;
    writeln!(
        out,
        r#"<figcaption>{title} (UTC). Bar height: paid that day; the top line is ${top}.</figcaption>
<ul class="legend" aria-label="{title}: legend">"#,
        top = usd(largest)
    )?;
    for (s, (key, micro)) in legend.iter().enumerate() {
        writeln!(
            out,
            r#"<li><span class="swatch" style="background:{fill}" aria-hidden="true"></span><span class="mono">{key}</span> ${usd}</li>"#,
            fill = PALETTE[s.min(PALETTE.len() - 1)],
            key = Esc(key),
            usd = usd(*micro),
        )?;
    }
    writeln!(
        out,
        r#"</ul>
<details>
<summary>The chart's figures</summary>
<div class="scroll">
<table>
<caption>{title}</caption>
<thead><tr><th scope="col">Day</th><th scope="col">{column}</th><th scope="col" class="num">Paid (USD)</th><th scope="col" class="num">Payments</th></tr></thead>
<tbody>"#,
        column = if kind == "service" {
            "Service"
        } else {
            "Payee"
        },
    )?;
    for t in daily {
        writeln!(
            out,
            r#"<tr data-testid="daily-{kind}" data-day="{day}" data-key="{key}" data-micro-usd="{micro}"><th scope="row" class="nowrap">{day}</th><td class="mono">{key}</td><td class="num">${usd}</td><td class="num">{count}</td></tr>"#,
            day = Esc(&t.day),
            key = Esc(&t.key),
            micro = t.micro_usd,
            usd = usd(t.micro_usd),
            count = t.payments,
        )?;
    }
    writeln!(out, "</tbody>\n</table>\n</div>\n</details>\n</figure>")
}

/// `text` escaped for HTML text and double- or single-quoted attribute values.
pub(crate) struct Esc<'a>(pub(crate) &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// Days since 1970-01-01 as a (year, month, day) of the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` for days since 1970-01-01, as SQLite's `date(…, 'unixepoch')` writes it.
pub(crate) fn day_text(days: i64) -> String {
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` day, if it is one.
pub(crate) fn parse_day(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let mut next = || parts.next()?.parse::<i64>().ok();
    let (year, month, day) = (next()?, next()?, next()?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    (civil_from_days(days) == (year, month, day)).then_some(days)
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC).
fn timestamp(secs: i64) -> String {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    format!(
        "{} {:02}:{:02}:{:02}",
        day_text(days),
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Unix seconds as an RFC 3339 time for `<time datetime>`.
fn iso_timestamp(secs: i64) -> String {
    format!("{}Z", timestamp(secs).replacen(' ', "T", 1))
}

/// The page's style sheet: light and dark, and on narrow screens the payments become cards.
const STYLE: &str = r#"
:root{color-scheme:light dark;--fg:#1f2328;--muted:#59636e;--bg:#fff;--card:#f6f8fa;--line:#d1d9e0;--accent:#0969da;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--bg:#0d1117;--card:#151b23;--line:#3d444d;--accent:#4493f8;--ok:#3fb950;--warn:#d29922;--bad:#f85149}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0 auto;max-width:78rem;padding:1rem;font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg)}
h1{font-size:1.75rem;margin:.5rem 0}
h2{font-size:1.25rem;margin:2rem 0 .75rem;padding-bottom:.25rem;border-bottom:1px solid var(--line)}
header p,footer p,figcaption{color:var(--muted)}
footer{margin-top:2rem;font-size:.9rem}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.875em;overflow-wrap:anywhere;word-break:break-all}
.totals{display:grid;grid-template-columns:repeat(auto-fit,minmax(11rem,1fr));gap:.75rem;margin:0}
.totals div{background:var(--card);border:1px solid var(--line);border-radius:.5rem;padding:.75rem 1rem}
.totals dt{color:var(--muted);font-size:.875rem}
.totals dd{margin:0;font-size:1.5rem;font-weight:600;font-variant-numeric:tabular-nums}
.totals small{display:block;font-size:.8rem;font-weight:400;color:var(--muted)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}
caption{text-align:left;color:var(--muted);padding:.25rem 0 .5rem}
th,td{text-align:left;vertical-align:top;padding:.4rem .5rem;border-bottom:1px solid var(--line)}
.nowrap{white-space:nowrap}
.wrap{overflow-wrap:anywhere}
thead th{font-size:.875rem;color:var(--muted);font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.barcell{width:30%;min-width:4rem}
.bar{display:inline-block;height:.8em;min-width:1px;background:var(--accent);border-radius:2px}
meter{width:6rem;vertical-align:middle}
.use{font-variant-numeric:tabular-nums}
.status{display:inline-block;white-space:nowrap;padding:0 .45rem;border-radius:1rem;font-size:.8rem;border:1px solid currentColor}
.status.paid{color:var(--ok)}.status.unknown,.status.reserved{color:var(--warn)}.status.failed{color:var(--bad)}.status.other{color:var(--muted)}
.chart{margin:0 0 1.5rem}
.chart svg{display:block;width:100%;height:auto;max-height:22rem}
.chart .axis{stroke:var(--muted);stroke-width:1}
.chart .grid{stroke:var(--line);stroke-dasharray:4 4}
.chart .label{fill:var(--muted);font-family:system-ui,sans-serif;font-size:14px}
.legend{list-style:none;padding:0;margin:.5rem 0;display:flex;flex-wrap:wrap;gap:.25rem 1.25rem}
.legend li{display:flex;align-items:center;gap:.4rem;min-width:0}
.swatch{flex:none;width:.9rem;height:.9rem;border-radius:2px}
details{margin:.25rem 0}
summary{cursor:pointer;color:var(--accent)}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
@media (max-width:48rem){
 body{padding:.75rem}
 th,td{padding:.35rem .3rem}
 .barcell{width:3rem;min-width:3rem}
 .chart .label{font-size:24px}
 .cards caption{display:block}
 .cards .status{justify-self:start}
 .cards,.cards tbody,.cards tr,.cards td,.cards tbody th{display:block;width:100%}
 .cards thead{display:block;position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);clip-path:inset(50%)}
 .cards tr{border:1px solid var(--line);border-radius:.5rem;padding:.5rem .75rem;margin-bottom:.75rem;background:var(--card)}
 .cards tbody th{border:0;padding:0 0 .25rem}
 .cards td{display:grid;grid-template-columns:6.5rem minmax(0,1fr);gap:.5rem;border:0;padding:.15rem 0;text-align:left;white-space:normal;overflow-wrap:anywhere}
 .cards td::before{content:attr(data-label);color:var(--muted);font-size:.85rem;font-family:system-ui,sans-serif}
}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use x402_client::PaymentIntent;

    /// Records a payment of `micro_usd` to `pay_to` for `service` in `ledger`, left `status`
    /// (`paid` in `transaction`, `unknown`, `failed`); its row id.
    fn record(
        ledger: &Ledger,
        status: &str,
        micro_usd: MicroUsd,
        service: &str,
        pay_to: &str,
        transaction: &str,
    ) -> i64 {
        let mut reservation = ledger
            .reserve(&PaymentIntent {
                url: format!("http://gateway/run?{service}"),
                service: Some(service.into()),
                amount: micro_usd.to_string(),
                micro_usd,
                asset: "0xasset".into(),
                network: "eip155:31337".into(),
                payer: "0xpayer".into(),
                pay_to: pay_to.into(),
            })
            .unwrap();
        let id = reservation.id();
        match status {
            "paid" => reservation.commit(transaction).unwrap(),
            "unknown" => reservation.mark_unknown("sent, no answer").unwrap(),
            "failed" => reservation.fail("refused", None).unwrap(),
            _ => unreachable!(),
        }
        id
    }

    #[test]
    fn strings_from_the_ledger_are_text_never_markup() {
        let hostile = r#"<script>alert(1)</script><img src=x onerror="alert('x')">&amp;"#;
        let ledger = Ledger::in_memory().unwrap();
        ledger
            .reserve(&PaymentIntent {
                url: format!("javascript:{hostile}"),
                service: Some(hostile.into()),
                amount: "1500".into(),
                micro_usd: 1_500,
                network: hostile.into(),
                pay_to: hostile.into(),
                ..PaymentIntent::default()
            })
            .unwrap()
            .commit(hostile)
            .unwrap();
        record(&ledger, "paid", 10, "embed", "0xpayee", "0x01");
        let page = Report::read(&ledger, 1, Some(hostile.into()))
            .unwrap()
            .html();
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("onerror=\""), "{page}");
        let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;amp;";
        // In the rows, the charts' titles, legends and figures, and the data attributes.
        assert!(page.matches(escaped).count() >= 16, "{page}");
        assert!(page.contains(&format!(r#"data-transaction="{escaped}""#)));
        assert!(page.contains(&format!(r#"data-key="{escaped}""#)));
        assert_eq!(
            Esc(r#"a&b<c>d"e'f"#).to_string(),
            "a&amp;b&lt;c&gt;d&quot;e&#39;f"
        );
        assert_eq!(Esc("plain ünïcode").to_string(), "plain ünïcode");
    }

    #[test]
    fn an_empty_ledger_says_there_are_no_payments() {
        let ledger = Ledger::in_memory().unwrap();
        let page = Report::read(&ledger, 0, None).unwrap().html();
        assert!(page.contains(r#"data-testid="no-payments""#), "{page}");
        assert!(page.contains("No payments recorded (every payment in the ledger)."));
        assert!(page.contains(r#"data-testid="total-paid" data-micro-usd="0" data-usd="0""#));
        assert!(page.contains(r#"data-testid="payment-count" data-count="0""#));
        assert!(!page.contains("<svg"), "no chart without payments");
        assert!(!page.contains(r#"data-testid="payment""#));
        // The budget is shown all the same, with its default deposit cap.
        assert!(
            page.contains(
                r#"data-name="deposit cap" data-limit-micro-usd="5000000" data-used-micro-usd="0""#
            ),
            "{page}"
        );
        assert!(
            page.contains(r#"<tr role="row" data-testid="budget-limit" data-name="total" data-used-micro-usd="0"><th scope="row" role="rowheader">total</th><td role="cell" data-label="Set to" class="num">no limit</td>"#),
            "{page}"
        );
        // Self-contained: nothing to fetch.
        for fetch in ["src=", "href=", "url(", "@import", "<link", "<script"] {
            assert!(!page.contains(fetch), "{fetch}");
        }
    }

    #[test]
    fn amounts_are_exact_dollars_and_totals_are_the_ledgers() {
        let ledger = Ledger::in_memory().unwrap();
        ledger
            .set_budget(&x402_client::Budget {
                total: Some(2_000_000),
                per_payment: Some(1_500_000),
                ..x402_client::Budget::default()
            })
            .unwrap();
        let first = record(&ledger, "paid", 1, "embed-l4", "0xA", "0xaa");
        record(&ledger, "paid", 2_000, "pdf-parse", "0xA", "0xbb");
        record(&ledger, "paid", 1_234_567, "pdf-parse", "0xB", "0xcc");
        record(&ledger, "unknown", 10_000, "pdf-parse", "0xB", "");
        let failed = record(&ledger, "failed", 7, "embed-l4", "0xB", "");
        let report = Report::read(&ledger, 0, None).unwrap();
        let page = report.html();
        assert!(
            page.contains(r#"data-testid="total-paid" data-micro-usd="1236568" data-usd="1.236568" data-payments="3">$1.236568"#),
            "{page}"
        );
        assert!(
            page.contains(r#"data-testid="total-unknown" data-micro-usd="10000" data-usd="0.01" data-payments="1">$0.01"#),
            "{page}"
        );
        assert!(page.contains(r#"data-testid="payment-count" data-count="5""#));
        assert!(
            page.contains(r#"data-testid="service-total" data-key="pdf-parse" data-micro-usd="1236567" data-usd="1.236567" data-payments="2""#),
            "{page}"
        );
        assert!(page.contains(
            r#"data-testid="payee-total" data-key="0xA" data-micro-usd="2001" data-usd="0.002001" data-payments="2""#
        ));
        assert!(page.contains(&format!(
            r#"data-id="{first}" data-status="paid" data-micro-usd="1" data-usd="0.000001" data-transaction="0xaa""#
        )));
        assert!(page.contains(r#"class="num">$0.000001</td>"#));
        assert!(page.contains(&format!(
            r#"data-id="{failed}" data-status="failed" data-micro-usd="7" data-usd="0.000007" data-transaction="""#
        )));
        let at = report.payments[0].created_at;
        assert!(page.contains(&format!(
            r#"<time datetime="{}">{}</time>"#,
            iso_timestamp(at),
            timestamp(at)
        )));
        // The budget: what was paid and what is unknown count against the total.
        assert!(
            page.contains(r#"data-name="total" data-limit-micro-usd="2000000" data-used-micro-usd="1246568"><th scope="row" role="rowheader">total</th><td role="cell" data-label="Set to" class="num">$2</td><td role="cell" data-label="Used" class="nowrap"><span class="use"><meter min="0" max="2000000" low="1000000" high="1600000" optimum="0" value="1246568" aria-label="total: 62% used">62%</meter> 62%</span></td><td role="cell" data-label="Counted now">$1.236568 paid + $0.01 in flight or unknown</td>"#),
            "{page}"
        );
        assert!(page.contains(r#"data-name="per payment" data-limit-micro-usd="1500000">"#));
        // One bar per series and day: every paid payment fell today.
        assert_eq!(page.matches("<rect ").count(), 2 + 2, "{page}");
        assert_eq!(page.matches(r#"data-testid="payment""#).count(), 5);
    }

    #[test]
    fn charts_span_every_day_and_group_the_smallest_series() {
        let ledger = Ledger::in_memory().unwrap();
        let mut report = Report::read(&ledger, 0, None).unwrap();
        // Ten services, one payment each, every third day from 2024-03-01.
        let days: Vec<String> = (0..10).map(|i| day_text(19_783 + i * 3)).collect();
        report.by_day = (0..10)
            .map(|i| (days[i].clone(), 1_000 + i as u64, 1))
            .collect();
        report.by_service = (0..10)
            .map(|i| (format!("s{i}"), 1_000 + i as u64, 1))
            .collect();
        report.by_payee = vec![("0xA".into(), 10_045, 10)];
        report.daily_by_service = (0..10)
            .map(|i| DailyTotal {
                day: days[i].clone(),
                key: format!("s{i}"),
                micro_usd: 1_000 + i as u64,
                payments: 1,
            })
            .collect();
        report.daily_by_payee = report
            .daily_by_service
            .iter()
            .map(|t| DailyTotal {
                key: "0xA".into(),
                ..t.clone()
            })
            .collect();
        report.payments = vec![PaymentRecord {
            id: 1,
            created_at: 0,
            intent: PaymentIntent::default(),
            transaction: None,
            status: "paid".into(),
            detail: None,
            nonce: None,
            valid_before: None,
        }];
        let axis = day_axis(&report.by_day);
        assert_eq!(axis.len(), 28);
        assert_eq!(
            (axis[0].as_str(), axis[27].as_str()),
            ("2024-03-01", "2024-03-28")
        );
        let page = report.html();
        // Seven services by name, the three smallest together.
        assert!(page.contains("3 others</span> $0.003003"), "{page}");
        assert!(page.contains(">s9</span> $0.001009"), "{page}");
        assert!(!page.contains(">s2</span>"), "{page}");
        assert_eq!(page.matches("<rect ").count(), 10 + 10);
        assert!(page.contains("The largest day is 2024-03-28 with $0.001009."));
        // Many days: only the first and last are labelled.
        assert!(page.contains(r#"text-anchor="start" class="label">2024-03-01</text>"#));
        assert!(page.contains(r#"text-anchor="end" class="label">2024-03-28</text>"#));
    }

    #[test]
    fn days_are_the_calendars() {
        for (days, text) in [
            (0, "1970-01-01"),
            (19_783, "2024-03-01"),
            (11_016, "2000-02-29"),
            (-1, "1969-12-31"),
            (2_932_896, "9999-12-31"),
        ] {
            assert_eq!(day_text(days), text);
            assert_eq!(parse_day(text), Some(days));
        }
        assert_eq!(parse_day("2023-02-29"), None);
        assert_eq!(parse_day("2024-13-01"), None);
        assert_eq!(parse_day("not a day"), None);
        assert_eq!(timestamp(1_709_337_599), "2024-03-01 23:59:59");
        assert_eq!(iso_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(5, 0), 100);
        assert_eq!(percent(0, 0), 0);
    }
}
