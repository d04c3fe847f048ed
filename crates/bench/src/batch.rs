//! `x402-bench batch`: paid calls per second through the gateway's paywall with
//! `batch-settlement` vouchers, against `exact` in the same run, and what each costs on chain.
//!
//! Starts anvil (automine), our facilitator (in process, the receiver authorizer of the
//! channels), and the gateway's app with `[batch_settlement]` (its SQLite channel store), with
//! one trivial route mounted behind the gateway's own paywall, which offers `exact` and
//! `batch-settlement` side by side. Every payment is signed before the clock starts (signing
//! is the client's work). Phases, at the same concurrency:
//!
//! 1. `exact`: one payment per call, each verified and settled on chain.
//! 2. channel deposits: each lane's first call opens its channel with an ERC-3009 deposit
//!    (one transaction per lane), paying for itself with the deposit's voucher.
//! 3. vouchers: each lane pays its calls one after the other with cumulative vouchers, which
//!    the server checks locally against its mirror of the channel and charges in its store.
//!
//! Then the gateway's claimer claims every voucher and settles to the payee, and the payee's
//! on-chain balance must have grown by exactly what all the phases charged. The transactions
//! and gas of each scheme are read from the blocks mined during its phases; the voucher
//! check alone (signature and ceiling, no store) is timed over the signed vouchers.

use std::sync::Arc;
use std::time::Instant;

use alloy::eips::BlockId;
use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use anyhow::{Context, bail, ensure};
use axum::routing::get;
use serde_json::{Value, json};
use x402_devnet::{Devnet, DevnetConfig};
use x402_evm::batch::{
    self, ChannelFunds, ChannelTerms, VoucherFields, VoucherPurpose, channel_config_for,
};
use x402_paywall::RoutePrice;
use x402_proto::{Facilitator, Price, Scheme, v2};

use crate::load::{
    Call, Success, challenge, drive, drive_lanes, finish, print_phases, scratch_dir, sign_exact,
    verdict,
};

/// Options of `x402-bench batch`.
#[derive(Debug, clap::Args)]
pub(crate) struct BatchBench {
    /// Voucher-paid calls in all (spread over the lanes).
    #[arg(long, default_value_t = 4000)]
    count: usize,
    /// `exact` calls (each one transaction).
    #[arg(long, default_value_t = 300)]
    exact_count: usize,
    /// Requests in flight at once; with vouchers, one channel per lane.
    #[arg(long, short, default_value_t = 8)]
    concurrency: usize,
    /// The route's price in USD.
    #[arg(long, default_value = "0.0001")]
    price: Price,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// One lane's channel: its payer, config and signed calls.
struct Lane {
    deposit: Call,
    vouchers: Vec<(Call, VoucherFields)>,
    config: batch::ChannelConfig,
}

/// The transactions mined and the gas they used.
#[derive(Debug, Default, serde::Serialize)]
struct OnChain {
    transactions: u64,
    gas: u64,
}

impl OnChain {
    /// What was mined in blocks `from..=to`.
    async fn mined(devnet: &Devnet, from: u64, to: u64) -> anyhow::Result<Self> {
        let mut cost = Self::default();
        for number in from..=to {
            let receipts = devnet
                .provider()
                .get_block_receipts(BlockId::number(number))
                .await?
                .with_context(|| format!("block {number} has no receipts"))?;
            for receipt in receipts {
                cost.transactions += 1;
                cost.gas += receipt.gas_used;
            }
        }
        Ok(cost)
    }

    /// Transactions and gas per 1,000 paid calls when `calls` cost this.
    fn per_thousand(&self, calls: usize) -> (f64, f64) {
        let scale = 1000.0 / calls.max(1) as f64;
        (self.transactions as f64 * scale, self.gas as f64 * scale)
    }
}

pub(crate) async fn run(args: BatchBench) -> anyhow::Result<()> {
    if args.count == 0 || args.exact_count == 0 || args.concurrency == 0 {
        bail!("--count, --exact-count and --concurrency must be at least 1");
    }
    let lanes = args.concurrency;
    let per_lane = args.count.div_ceil(lanes);
    eprintln!("starting anvil (automine), the facilitator and the gateway…");
    let devnet = Devnet::start(DevnetConfig::default()).await?;
    let dir = scratch_dir("batch")?;
    let mut facilitator_config =
        x402_cli::stack::facilitator_config(&devnet, 0, &dir.join("facilitator.db"), None);
    facilitator_config
        .batch_settlement
        .receiver_authorizer_key_file =
        Some(x402_cli::stack::write_dev_authorizer_key(&devnet, &dir)?);
    let facilitator =
        x402_facilitator::start(&facilitator_config, devnet.facilitator().signer.clone()).await?;
    let in_process: Arc<dyn Facilitator> = Arc::new(facilitator.service().clone());

    let mut gateway_config = x402_cli::stack::gateway_config(
        &devnet,
        0,
        &dir.join("no-models"),
        &dir.join("gateway-jobs.db"),
    );
    gateway_config.batch_settlement = Some(x402_gateway::BatchSettlementConfig {
        channels_db: dir.join("gateway-channels.db"),
        ..Default::default()
    });
    let app = x402_gateway::app(&gateway_config, in_process).await?;
    let handler = || async { axum::Json(json!({"pong": true})) };
    let router = app.router.clone().route(
        "/pong",
        get(handler).layer(app.paywall.layer(RoutePrice::fixed(args.price))),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/pong", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let http = reqwest::Client::new();
    let offered = challenge(&http, &url, None).await?;
    let offer_of = |scheme: Scheme| {
        offered
            .accepts
            .iter()
            .find(|offer| offer.scheme == scheme)
            .cloned()
            .with_context(|| format!("the route offers no {scheme}"))
    };
    let exact_offer = offer_of(Scheme::EXACT)?;
    let batch_offer = offer_of(Scheme::BATCH_SETTLEMENT)?;
    let price = u128::try_from(batch_offer.amount.0)?;
    let min_deposit = batch_offer
        .extra
        .as_ref()
        .and_then(|extra| extra["minDeposit"].as_str())
        .and_then(|amount| amount.parse::<u128>().ok())
        .unwrap_or(0);
    let deposit = (price * (per_lane as u128 + 1)).max(min_deposit);

    eprintln!(
        "signing {} exact payments, {lanes} deposits and {} vouchers…",
        args.exact_count,
        per_lane * lanes
    );
    let exact_payments = sign_exact(&devnet, &offered, &exact_offer, args.exact_count).await?;
    let mut signed = Vec::with_capacity(lanes);
    for lane in 0..lanes {
        signed.push(sign_lane(&devnet, &batch_offer, &url, lane, per_lane, deposit).await?);
    }
    let verify_micros = time_local_verify(&batch_offer, &signed[0], deposit)?;

    let payee = devnet.pay_to().address;
    let token = devnet.token().address;
    let balance_before = devnet.balance_of(token, payee).await?;
    let call = |payment: &String| Call {
        url: url.clone(),
        body: None,
        payment: Some(payment.clone()),
    };

    let exact_from = latest_block(&devnet).await? + 1;
    let exact = drive(
        "exact",
        exact_payments.iter().map(call).collect(),
        args.concurrency,
        Success::Status(200),
        0,
    )
    .await?;
    let exact_chain = OnChain::mined(&devnet, exact_from, latest_block(&devnet).await?).await?;

    let batch_from = latest_block(&devnet).await? + 1;
    let deposits = drive_lanes(
        "channel deposits",
        signed
            .iter()
            .map(|lane| vec![lane.deposit.clone()])
            .collect(),
        Success::Status(200),
    )
    .await?;
    let vouchers = drive_lanes(
        "vouchers",
        signed
            .iter()
            .map(|lane| lane.vouchers.iter().map(|(call, _)| call.clone()).collect())
            .collect(),
        Success::Status(200),
    )
    .await?;
    let claiming = app.batch.clone().context("the gateway keeps no channels")?;
    let claimed_at = Instant::now();
    let mut claims = Vec::new();
    for (network, run) in claiming.flush().await {
        let run = run.with_context(|| format!("claiming on {network}"))?;
        ensure!(run.failures.is_empty(), "claims failed: {:?}", run.failures);
        claims.extend(run.transactions().into_iter().map(str::to_owned));
    }
    let claim_seconds = claimed_at.elapsed().as_secs_f64();
    let batch_chain = OnChain::mined(&devnet, batch_from, latest_block(&devnet).await?).await?;

    let moved = devnet.balance_of(token, payee).await? - balance_before;
    let expected = exact_offer.amount.0 * U256::from(exact.ok)
        + U256::from(price) * U256::from(deposits.ok + vouchers.ok);
    let consistent = moved == expected;
    let channels_left = claiming.store.all().await?;
    let unclaimed: u128 = channels_left.iter().map(|record| record.unclaimed()).sum();
    server.abort();
    facilitator.shutdown().await;
    devnet.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    let paid_by_channel = deposits.ok + vouchers.ok;
    let speedup = vouchers.per_second / exact.per_second;
    let (exact_tx, exact_gas) = exact_chain.per_thousand(exact.ok);
    let (batch_tx, batch_gas) = batch_chain.per_thousand(paid_by_channel);
    let report = json!({
        "chain": "automine",
        "concurrency": args.concurrency,
        "price_atomic": price.to_string(),
        "exact": {"phase": exact, "on_chain": exact_chain, "per_1000_calls": {"transactions": exact_tx, "gas": exact_gas}},
        "batch_settlement": {
            "deposits": deposits,
            "vouchers": vouchers,
            "claim_and_settle": {"transactions": claims, "seconds": claim_seconds},
            "on_chain": batch_chain,
            "per_1000_calls": {"transactions": batch_tx, "gas": batch_gas},
            "local_voucher_verify_us": verify_micros,
            "unclaimed_after": unclaimed.to_string(),
        },
        "vouchers_per_second_over_exact": speedup,
        "on_chain_total": {"moved": moved.to_string(), "expected": expected.to_string(), "consistent": consistent},
    });
    let consistent = consistent && unclaimed == 0;
    finish(args.json, &report, consistent, || {
        print_phases(
            &[
                ("exact", &exact),
                ("channel deposits", &deposits),
                ("vouchers", &vouchers),
            ],
            17,
            2,
        );
        println!("vouchers / exact: {speedup:.1}× the paid calls per second");
        println!(
            "exact:            {} transactions, {} gas for {} calls ({exact_tx:.0} tx, {exact_gas:.0} gas per 1,000 calls)",
            exact_chain.transactions, exact_chain.gas, exact.ok
        );
        println!(
            "batch-settlement: {} transactions, {} gas for {paid_by_channel} calls ({batch_tx:.1} tx, {batch_gas:.0} gas per 1,000 calls; claimed in {} transactions, {claim_seconds:.2} s)",
            batch_chain.transactions,
            batch_chain.gas,
            claims.len()
        );
        println!("voucher check alone (signature + ceiling): {verify_micros:.1} µs");
        println!(
            "chain  moved {moved} atomic units (expected {expected}), {unclaimed} left unclaimed: {}",
            verdict(consistent)
        );
    })
}

/// The number of the chain's latest block.
async fn latest_block(devnet: &Devnet) -> anyhow::Result<u64> {
    Ok(devnet.provider().get_block_number().await?)
}

/// Lane `lane`'s channel for `offer` (a dev payer, its own salt): the deposit call funding it
/// with `deposit` and paying the first call, then `calls` voucher calls, each vouching for one
/// more price than the one before.
async fn sign_lane(
    devnet: &Devnet,
    offer: &v2::PaymentRequirements,
    url: &str,
    lane: usize,
    calls: usize,
    deposit: u128,
) -> anyhow::Result<Lane> {
    let payers = devnet.payers();
    let payer = &payers[lane % payers.len()].signer;
    let salt = B256::from(U256::from(lane));
    let config = channel_config_for(offer, payer.address(), payer.address(), salt)?;
    let domain = batch::domain_of(offer)?;
    let id = domain.channel_id(&config);
    let price = offer.amount.0;
    let paying = |payload: Value| -> anyhow::Result<Call> {
        let payment: x402_proto::PaymentPayload = serde_json::from_value(json!({
            "x402Version": 2, "accepted": offer, "payload": payload,
        }))?;
        Ok(Call {
            url: url.to_owned(),
            body: None,
            payment: Some(x402_proto::encode_header(&payment)),
        })
    };
    let first = batch::sign_voucher(payer, &domain, id, batch::next_ceiling(0, price)?).await?;
    let signed = batch::sign_erc3009_deposit(
        payer,
        offer,
        config,
        first.clone(),
        deposit,
        B256::random(),
        x402_evm::unix_now(),
    )
    .await?;
    let mut payload = serde_json::to_value(signed)?;
    payload["type"] = json!("deposit");
    let deposit_call = paying(payload)?;
    let mut charged = first.max_claimable_amount;
    let mut vouchers = Vec::with_capacity(calls);
    for _ in 0..calls {
        let voucher =
            batch::sign_voucher(payer, &domain, id, batch::next_ceiling(charged, price)?).await?;
        charged = voucher.max_claimable_amount;
        let payload = json!({"type": "voucher", "channelConfig": config, "voucher": voucher});
        vouchers.push((paying(payload)?, voucher));
    }
    Ok(Lane {
        deposit: deposit_call,
        vouchers,
        config,
    })
}

/// The server's voucher check alone, in µs per voucher: config, signature and ceiling against
/// the channel's funds, over `lane`'s vouchers.
fn time_local_verify(
    offer: &v2::PaymentRequirements,
    lane: &Lane,
    deposit: u128,
) -> anyhow::Result<f64> {
    let terms = ChannelTerms::from_requirements(offer)?;
    let funds = ChannelFunds {
        balance: deposit,
        total_claimed: 0,
    };
    let started = Instant::now();
    for (_, voucher) in &lane.vouchers {
        batch::verify_voucher_locally(
            &terms,
            &lane.config,
            voucher,
            funds,
            VoucherPurpose::Payment,
        )?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / lane.vouchers.len().max(1) as f64)
}
