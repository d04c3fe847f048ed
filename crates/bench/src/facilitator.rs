//! `x402-bench facilitator`: load on a facilitator settling on a real (local) chain.
//!
//! Starts anvil (automine, or `--block-time`), our facilitator on loopback HTTP (or
//! `--instances` of them sharing one Postgres log with `--postgres`, signing with `--signers`
//! keys between them), pre-signs payments from the dev payers, then drives `/verify` and
//! `/settle` at a fixed concurrency, spread round-robin over the instances, and checks on chain
//! that the total moved equals the total settled, in as many transactions.

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
    /// Keep the settlement log on Postgres: the URL of a server and a database to connect to
    /// (e.g. postgres://postgres@127.0.0.1:5432/test); the bench creates a fresh database
    /// there and drops it at the end. Default: a SQLite file.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Facilitator instances sharing the log (more than one needs --postgres).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    instances: u32,
    /// Signer keys the instances share out round-robin (1: all sign with one key).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4))]
    signers: u32,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// A database created on a Postgres server for one run, dropped after it.
struct BenchDatabase {
    server: String,
    name: String,
    url: String,
}

impl BenchDatabase {
    async fn create(server: &str) -> anyhow::Result<Self> {
        let name = format!("x402_bench_{}", std::process::id());
        let (base, _) = server
            .rsplit_once('/')
            .context("--postgres must name a database to connect to")?;
        let database = Self {
            url: format!("{base}/{name}"),
            server: server.to_owned(),
            name,
        };
        // One statement per call: CREATE DATABASE cannot run inside a transaction block.
        database
            .run(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                database.name
            ))
            .await?;
        database
            .run(&format!("CREATE DATABASE {}", database.name))
            .await?;
        Ok(database)
    }

    async fn run(&self, sql: &str) -> anyhow::Result<()> {
        let (client, connection) = tokio_postgres::connect(&self.server, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {}", self.server))?;
        let driver = tokio::spawn(connection);
        client.batch_execute(sql).await?;
        drop(client);
        let _ = driver.await;
        Ok(())
    }

    async fn drop_it(self) -> anyhow::Result<()> {
        self.run(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await
    }
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
    if args.instances > 1 && args.postgres.is_none() {
        bail!("--instances above 1 share a log on Postgres: give --postgres URL");
    }
    let dir = scratch_dir("facilitator")?;
    let database = match &args.postgres {
        Some(server) => Some(BenchDatabase::create(server).await?),
        None => None,
    };
    let config = FacilitatorConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        database: match &database {
            Some(database) => {
                x402_facilitator::Database::parse(&database.url).map_err(anyhow::Error::msg)?
            }
            None => dir.join("facilitator.db").into(),
        },
        database_sync: args.database_sync.into(),
        postgres: Default::default(),
        signer: Default::default(),
        auth: Default::default(),
        limits: Limits {
            settle_wait_ms: 60_000,
            ..Limits::default()
        },
        batch_settlement: Default::default(),
        operator_token: None,
        operator_token_env: None,
        dashboard_listen: None,
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
        solana_networks: Vec::new(),
    };
    // Signer keys: the dev facilitator's, then the last dev payers' (they hold ETH); the
    // payments come from the payers left.
    let extra_signers = args.signers as usize - 1;
    let all_payers = devnet.payers();
    if all_payers.len() <= extra_signers {
        bail!(
            "the devnet has too few accounts for --signers {}",
            args.signers
        );
    }
    let (payers, signer_accounts) = all_payers.split_at(all_payers.len() - extra_signers);
    let signers: Vec<_> = std::iter::once(devnet.facilitator())
        .chain(signer_accounts)
        .collect();
    let mut instances = Vec::new();
    for i in 0..args.instances as usize {
        let signer = signers[i % signers.len()].signer.clone();
        instances.push(x402_facilitator::start(&config, signer).await?);
    }

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
        let payer = &payers[i % payers.len()].signer;
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
            .enumerate()
            .map(|(i, body)| Call {
                url: format!("{}/{path}", instances[i % instances.len()].url()),
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
    let sent_by_signers = || async {
        let mut sent = 0;
        for signer in &signers {
            sent += devnet.transaction_count(signer.address).await?;
        }
        Ok::<u64, anyhow::Error>(sent)
    };
    let nonce_before = sent_by_signers().await?;

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
    let sent = sent_by_signers().await? - nonce_before;
    let expected = U256::from(args.amount) * U256::from(settle.ok);
    let consistent = moved == expected && sent == settle.ok as u64;
    for running in instances {
        running.shutdown().await;
    }
    devnet.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(database) = database {
        database.drop_it().await?;
    }

    let report = serde_json::json!({
        "chain": args.block_time.map_or("automine".to_owned(), |s| format!("block-time {s}s")),
        "count": args.count,
        "concurrency": args.concurrency,
        "jitter_ms": jitter_ms,
        "database_sync": format!("{:?}", args.database_sync).to_lowercase(),
        "log": if args.postgres.is_some() { "postgres" } else { "sqlite" },
        "instances": args.instances,
        "signers": args.signers,
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
