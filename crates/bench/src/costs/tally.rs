//! The arithmetic and the table of the cost bench: what each scheme charged a call, and the
//! transactions and gas it takes over a run of calls, in gas and in USD at an assumed gas price.

use alloy::primitives::U256;
use x402_proto::TokenAmount;

/// How often a scheme sends a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Every {
    /// Once per paid call.
    Call,
    /// Once for the whole run of calls (a deposit, a claim, an approval).
    Run,
    /// Measured but left out of the totals: what a payer may do when it leaves (a refund).
    Aside,
}

/// One kind of transaction a scheme sends, and the gas it took when measured.
#[derive(Clone, Debug)]
pub(super) struct Transaction {
    /// What it does.
    pub(super) what: &'static str,
    /// The gas it used.
    pub(super) gas: u64,
    /// How often it is sent.
    pub(super) every: Every,
}

impl Transaction {
    /// How many times it is sent over `calls` calls.
    fn count(&self, calls: u64) -> u64 {
        match self.every {
            Every::Call => calls,
            Every::Run => 1,
            Every::Aside => 0,
        }
    }
}

/// One way of paying: what a call was charged and the transactions that settle the calls.
#[derive(Clone, Debug)]
pub(super) struct Paid {
    /// The scheme, as the table names it.
    pub(super) scheme: &'static str,
    /// What one call was charged, in atomic units.
    pub(super) charged_per_call: U256,
    /// The transactions it sends.
    pub(super) transactions: Vec<Transaction>,
}

impl Paid {
    /// The transactions and the gas it takes to settle `calls` calls.
    fn over(&self, calls: u64) -> (u64, u64) {
        self.transactions.iter().fold((0, 0), |(txs, gas), tx| {
            let count = tx.count(calls);
            (txs + count, gas + tx.gas * count)
        })
    }
}

/// The prices that turn gas into USD.
#[derive(Clone, Copy, Debug)]
pub(super) struct GasPrice {
    /// Gas price, in gwei.
    pub(super) gwei: f64,
    /// ETH price, in USD.
    pub(super) eth_usd: f64,
}

impl GasPrice {
    /// What `gas` costs, in USD (an estimate for the table, never an amount that is paid).
    fn usd(self, gas: f64) -> f64 {
        gas * self.gwei * 1e-9 * self.eth_usd
    }
}

/// `usd` with three significant digits, as small as it is (`$0.00220`, `$0.00000750`).
fn dollars(usd: f64) -> String {
    if usd <= 0.0 || !usd.is_finite() {
        return format!("${usd}");
    }
    let decimals = (2 - usd.log10().floor() as i64).max(2) as usize;
    format!("${usd:.decimals$}")
}

/// `n` with its thousands grouped (`1,234,567`).
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Prints each scheme's charge, its transactions, and what settling `calls` calls takes, per
/// run and per call, in gas and in USD at `price`.
pub(super) fn print(schemes: &[Paid], calls: u64, price: GasPrice) {
    println!(
        "gas priced at {} gwei and ${} per ETH; {} calls per run",
        price.gwei,
        price.eth_usd,
        grouped(calls)
    );
    for paid in schemes {
        let (txs, gas) = paid.over(calls);
        let per_call = gas as f64 / calls as f64;
        println!(
            "{:<18} charged ${} a call; {} transactions, {} gas per {} calls: {} gas ({}) a call",
            paid.scheme,
            TokenAmount(paid.charged_per_call).to_human(6),
            grouped(txs),
            grouped(gas),
            grouped(calls),
            grouped(per_call.round() as u64),
            dollars(price.usd(per_call)),
        );
        for tx in &paid.transactions {
            let every = match tx.every {
                Every::Call => "every call",
                Every::Run => "once a run",
                Every::Aside => "optional, not in the totals",
            };
            println!(
                "    {:<44} {:>9} gas ({}), {every}",
                tx.what,
                grouped(tx.gas),
                dollars(price.usd(tx.gas as f64)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(gas: u64, every: Every) -> Transaction {
        Transaction {
            what: "tx",
            gas,
            every,
        }
    }

    #[test]
    fn per_call_transactions_scale_with_the_calls_and_run_ones_do_not() {
        let paid = Paid {
            scheme: "s",
            charged_per_call: U256::from(64),
            transactions: vec![tx(87_000, Every::Call), tx(46_000, Every::Run)],
        };
        assert_eq!(paid.over(1), (2, 133_000));
        assert_eq!(paid.over(1_000), (1_001, 87_046_000));
        let batch = Paid {
            transactions: vec![
                tx(100, Every::Run),
                tx(60, Every::Run),
                tx(40, Every::Run),
                tx(30, Every::Aside),
            ],
            ..paid
        };
        assert_eq!(batch.over(1_000), (3, 200));
    }

    #[test]
    fn gas_costs_gas_times_gas_price_times_eth_price() {
        let price = GasPrice {
            gwei: 0.01,
            eth_usd: 3_000.0,
        };
        // 100,000 gas × 10⁻¹¹ ETH × $3,000 = $0.003.
        assert!((price.usd(100_000.0) - 0.003).abs() < 1e-12);
        assert_eq!(price.usd(0.0), 0.0);
    }

    #[test]
    fn dollars_keep_three_significant_digits() {
        for (usd, written) in [
            (0.0021998, "$0.00220"),
            (0.0000075, "$0.00000750"),
            (12.5, "$12.50"),
            (0.25, "$0.250"),
            (0.0, "$0"),
        ] {
            assert_eq!(dollars(usd), written);
        }
    }

    #[test]
    fn thousands_are_grouped() {
        let written: Vec<String> = [0, 999, 1_000, 73_327_000]
            .into_iter()
            .map(grouped)
            .collect();
        assert_eq!(written, ["0", "999", "1,000", "73,327,000"]);
    }
}
