//! `x402-bench facilitator`: load on a facilitator settling on a real (local) chain.
//!
//! Starts anvil (automine, or `--block-time`), our facilitator on loopback HTTP, pre-signs
//! payments from the dev payers, then drives `/verify` and `/settle` at a fixed concurrency
//! and checks on chain that the total moved equals the total settled.

use alloy::primitives::U256;
use anyhow::{Context, bail};
use x402_devnet::{Devnet, DevnetConfig};
use x402_facilitator::{FacilitatorConfig, Limits, NetworkConfig};
use x402_proto::{PaymentRequest, Scheme, TokenAmount, v2};

use crate::load::{Call, Success, drive, finish, print_phases, scratch_dir, verdict};

/// Options of `x402-bench facilitator`.
#[derive(Debug, clap::Args)]
pub(crate) struct FacilitatorBench {
    /// Payments to verify and then settle.
    #[arg(long, default_value_t = 300)]
    count: usize,
    /// Requests in flight at once.
    #[arg(long, short, default_value_t = 8)]
    concurrency: usize,
    /// Seconds between blocks (Base: 2); by default every transaction is mined at once.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=60))]
    block_time: Option<u64>,
    /// Atomic units per payment (6 decimals: 1000 = $0.001).
    #[arg(long, default_value_t = 1000)]
    amount: u128,
    /// Settlement log durability: full (default, as the facilitator's default) or normal.
    #[arg(long, value_enum, default_value = "full")]
    database_sync: Sync,
    /// Sleep a random 0..N ms before each request, so requests land at random points of the
    /// block interval as real traffic does (a closed loop would otherwise send right after
    /// each block and always wait a whole block). Default: the block time, or 0 on automine.
    #[arg(long, value_name = "MS")]
    jitter_ms: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// The `--database-sync` choices.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Sync {
    Full,
    Normal,
}

impl From<Sync> for x402_facilitator::Durability {
    fn from(sync: Sync) -> Self {
        match sync {
            Sync::Full => Self::Full,
            Sync::Normal => Self::Normal,
        }
    }
}

pub(crate) async fn run(args: FacilitatorBench) -> anyhow::Result<()> {
    if args.count == 0 || args.concurrency == 0 {
        bail!("--count and --concurrency must be at least 1");
    }
    eprintln!(
        "starting anvil ({}) and the facilitator…",
        args.block_time
            .map_or("automine".to_owned(), |s| format!("{s} s blocks"))
    );
    let devnet = Devnet::start(DevnetConfig {
        block_time: args.block_time,
        ..DevnetConfig::default()
    })
    .await
    .context("starting anvil")?;
    let dir = scratch_dir("facilitator")?;
    let config = FacilitatorConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        database: dir.join("facilitator.db").into(),
        database_sync: args.database_sync.into(),
        postgres: Default::default(),
        signer: Default::default(),
        auth: Default::default(),
        limits: Limits {
            settle_wait_ms: 60_000,
            ..Limits::default()
        },
        batch_settlement: Default::default(),
        networks: vec![NetworkConfig {
            chain_id: devnet.chain_id(),
            rpc_url: devnet.rpc_url().clone(),
            block_time_ms: args.block_time.map(|s| s * 1000),
            assets: None,
            eip6492_allowed_factories: Vec::new(),
            fee_bump: Default::default(),
            min_signer_balance_wei: None,
            upto: true,
            batch_settlement: true,
        }],
    };
    let running = x402_facilitator::start(&config, devnet.facilitator().signer.clone()).await?;

    let token = devnet.token();
    let requirements = v2::PaymentRequirements {
        scheme: Scheme::EXACT,
        network: devnet.network(),
        amount: TokenAmount::from_atomic(args.amount),
        asset: token.address.to_checksum(None),
        pay_to: devnet.pay_to().address.to_checksum(None),
        max_timeout_seconds: 600,
        extra: Some(serde_json::json!({"name": token.name, "version": token.version})),
    };
    eprintln!("pre-signing {} payments…", args.count);
    let now = x402_evm::unix_now();
    let mut bodies = Vec::with_capacity(args.count);
    for i in 0..args.count {
        let payer = &devnet.payers()[i % devnet.payers().len()].signer;
        let payload = x402_evm::sign_payment(payer, &requirements, None, now).await?;
        let request = PaymentRequest::V2 {
            payload,
            requirements: requirements.clone(),
        };
        bodies.push(serde_json::to_value(&request)?);
    }
    // The same payments, verified in one phase and settled in the next.
    let calls = |path: &str| -> Vec<Call> {
        bodies
            .iter()
            .map(|body| Call {
                url: format!("{}/{path}", running.url()),
                body: Some(body.clone()),
                payment: None,
            })
            .collect()
    };
    let jitter_ms = args
        .jitter_ms
        .unwrap_or_else(|| args.block_time.map_or(0, |s| s * 1000));
    let before = devnet
        .balance_of(token.address, devnet.pay_to().address)
        .await?;
    let nonce_before = devnet
        .transaction_count(devnet.facilitator().address)
        .await?;

    // Each phase posts to the route of its name and counts the answers with `ok_field` true.
    let phase = |name: &'static str, ok_field, jitter_ms| {
        let success = Success::TrueField(ok_field);
        drive(name, calls(name), args.concurrency, success, jitter_ms)
    };
    let verify = phase("verify", "isValid", 0).await?;
    let settle = phase("settle", "success", jitter_ms).await?;

    let moved = devnet
        .balance_of(token.address, devnet.pay_to().address)
        .await?
        - before;
    let sent = devnet
        .transaction_count(devnet.facilitator().address)
        .await?
        - nonce_before;
    let expected = U256::from(args.amount) * U256::from(settle.ok);
    let consistent = moved == expected && sent == settle.ok as u64;
    running.shutdown().await;
    devnet.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    let report = serde_json::json!({
        "chain": args.block_time.map_or("automine".to_owned(), |s| format!("block-time {s}s")),
        "count": args.count,
        "concurrency": args.concurrency,
        "jitter_ms": jitter_ms,
        "database_sync": format!("{:?}", args.database_sync).to_lowercase(),
        "verify": verify,
        "settle": settle,
        "on_chain": {
            "moved": moved.to_string(),
            "expected": expected.to_string(),
            "transactions": sent,
            "consistent": consistent,
        },
    });
    finish(args.json, &report, consistent, || {
        print_phases(&[("verify", &verify), ("settle", &settle)], 6, 1);
        println!(
            "chain  moved {moved} atomic units in {sent} transactions (expected {expected}): {}",
            verdict(consistent)
        );
    })
}
