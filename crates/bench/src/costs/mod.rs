//! What one typical LLM chat call costs the payer, and what settling it costs on chain, paid
//! with `exact` (the quote: prompt estimate plus `max_tokens`), `upto` (the tokens used) — one
//! settlement per call each — and `batch-settlement` (the tokens used, by a cumulative voucher
//! per call on one channel: a deposit, a claim and a settle for all the calls). Everything is
//! settled on anvil, and the chain must have moved exactly what was charged.

mod batch;
mod chain;
mod per_call;
mod tally;

use alloy::primitives::U256;
use anyhow::{Context, ensure};
use clap::Args;
use x402_devnet::{Devnet, DevnetConfig};
use x402_evm::{ChainConfig, ExactEvmScheme};
use x402_proto::{Price, TokenAmount};

use chain::Balance;
use tally::GasPrice;

/// The call: its prompt, its token budget and its answer, at a per-1K-token rate; how many
/// calls go over one channel; the gas and ETH prices the USD figures assume.
#[derive(Debug, Args)]
pub(crate) struct CostsBench {
    /// Prompt tokens (as the gateway estimates them).
    #[arg(long, default_value_t = 20)]
    prompt_tokens: u64,
    /// The request's `max_tokens`.
    #[arg(long, default_value_t = 1000)]
    max_tokens: u64,
    /// Tokens the answer used.
    #[arg(long, default_value_t = 60)]
    answer_tokens: u64,
    /// USD per 1,000 tokens (the catalog's `llm-4090`).
    #[arg(long, default_value = "0.0008")]
    rate: Price,
    /// Calls paid over one `batch-settlement` channel; every per-run figure is per this many
    /// calls.
    #[arg(long, default_value_t = 1000)]
    calls: u64,
    /// The gas price the USD figures assume, in gwei.
    #[arg(long, default_value_t = 0.01)]
    gas_gwei: f64,
    /// The ETH price the USD figures assume, in USD.
    #[arg(long, default_value_t = 3000.0)]
    eth_usd: f64,
}

/// What one call costs, in the token's atomic units.
#[derive(Clone, Copy, Debug)]
struct CallPrice {
    /// What `exact` charges and what every scheme's offer asks at most: prompt + `max_tokens`.
    quoted: TokenAmount,
    /// What the call used (prompt + answer): what `upto` and `batch-settlement` charge.
    used: TokenAmount,
}

pub(crate) async fn run(args: CostsBench) -> anyhow::Result<()> {
    ensure!(args.calls > 0, "--calls must be at least 1");
    let price = CallPrice {
        quoted: args
            .rate
            .scaled_to_atomic(6, args.prompt_tokens + args.max_tokens, 1000)?,
        used: args
            .rate
            .scaled_to_atomic(6, args.prompt_tokens + args.answer_tokens, 1000)?,
    };
    eprintln!("starting anvil with Permit2, the x402 proxies and the batch-settlement escrow…");
    let devnet = Devnet::start(DevnetConfig::default())
        .await
        .context("starting anvil")?;
    let chain = ChainConfig::new(devnet.chain_id(), devnet.rpc_url().clone());
    let scheme = ExactEvmScheme::connect(chain, devnet.facilitator().signer.clone()).await?;

    // A first payment to the payee turns its balance from zero (a costlier write): every
    // figure below is a payee's steady state.
    per_call::warm_up(&devnet, &scheme).await?;
    let payee = Balance::watch(&devnet, devnet.pay_to().address).await?;

    let exact = per_call::exact(&devnet, &scheme, &price).await?;
    let upto = per_call::upto(&devnet, scheme, &price).await?;
    eprintln!(
        "paying {} calls over one batch-settlement channel…",
        args.calls
    );
    let (batch, verifies) = batch::run(&devnet, &price, args.calls).await?;
    ensure!(
        batch.charged_per_call == upto.charged_per_call,
        "batch-settlement charged {} a call, upto {}",
        batch.charged_per_call,
        upto.charged_per_call
    );

    let moved = payee.rise(&devnet).await?;
    let charged = exact.charged_per_call
        + upto.charged_per_call
        + batch.charged_per_call * U256::from(args.calls);
    ensure!(
        moved == charged,
        "the chain moved {moved} to the payee, {charged} was charged"
    );
    println!(
        "call: {} prompt tokens, max_tokens {}, {} tokens answered, ${} per 1K tokens",
        args.prompt_tokens,
        args.max_tokens,
        args.answer_tokens,
        args.rate.as_str()
    );
    let gas_price = GasPrice {
        gwei: args.gas_gwei,
        eth_usd: args.eth_usd,
    };
    tally::print(&[exact, upto, batch], args.calls, gas_price);
    println!("{verifies}");
    println!(
        "chain  moved {moved} atomic units to the payee (exact + upto + {} batch calls): consistent",
        args.calls
    );
    Ok(())
}
