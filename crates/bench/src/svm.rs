//! `x402-bench svm`: our facilitator against the official TypeScript one, `exact` on the local
//! Solana chain, in the same run.
//!
//! Starts the local Solana chain (LiteSVM behind our JSON-RPC front, `tools/solana`, posing as
//! devnet: a transaction is final as soon as it is sent) with `--payers` funded payers, then
//! two facilitators on it, each paying fees from a fee payer of its own:
//!
//! - ours, in process on loopback HTTP, `exact` on the chain from `[[solana_networks]]`, its
//!   settlement log a SQLite file in a scratch folder (`--database-sync`, `full` by default as
//!   the facilitator's), fees paid by the chain's funded fee payer;
//! - the official one, `node tools/interop/official-facilitator.mjs` (`@x402/core`'s
//!   `x402Facilitator` with `@x402/svm`'s `exact` scheme over HTTP), fees paid by a new key
//!   funded by airdrop.
//!
//! Every payment is signed before the clock starts (signing is the client's work), `--count`
//! for each facilitator naming its fee payer, all on the chain's one blockhash (it stays valid
//! until expired, which nothing here does), each a distinct transaction (a random memo).
//! Phases, at the same concurrency: ours `/verify`, the official `/verify`, ours `/settle`, the
//! official `/settle`. Around each settle phase the payee's USDC balance must grow by exactly
//! `amount × successes` and the chain must land exactly `successes` transactions (nothing
//! settled twice, nothing failed on chain); the command fails otherwise.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use x402_devnet::{SolanaChain, SolanaChainConfig, SolanaChainState};
use x402_facilitator::{FacilitatorConfig, Limits};
use x402_svm::{
    DEFAULT_COMPUTE_UNIT_LIMIT, DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS, ExactSvmPayload, Hash,
    Keypair, PaymentTransaction, Pubkey, Signer as _, SolanaRpc,
};

use crate::facilitator::Sync;
use crate::load::{Call, Phase, Success, drive, finish, print_phases, scratch_dir, verdict};

/// The official facilitator's script, under the workspace's `tools/`.
const OFFICIAL_SCRIPT: &str = "tools/interop/official-facilitator.mjs";
/// Lamports airdropped to the official facilitator's fee payer (10 SOL; a settlement costs
/// it about 10,000).
const OFFICIAL_FEE_PAYER_LAMPORTS: u64 = 10_000_000_000;

/// Options of `x402-bench svm`.
#[derive(Debug, clap::Args)]
pub(crate) struct SvmBench {
    /// Payments to verify and then settle, for each facilitator.
    #[arg(long, default_value_t = 300,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    count: usize,
    /// Requests in flight at once.
    #[arg(long, short, default_value_t = 8,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    concurrency: usize,
    /// Funded payers the payments are spread over, round-robin.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    payers: u32,
    /// Atomic USDC units per payment (6 decimals: 1000 = $0.001).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    amount: u64,
    /// Our settlement log's durability: full (default, as the facilitator's default) or normal.
    #[arg(long, value_enum, default_value = "full")]
    database_sync: Sync,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// USDC each of `payers` payers must start with to make its share of `payments` payments of
/// `amount` (round-robin), or `None` when that does not fit a u64.
fn payer_funds(amount: u64, payments: usize, payers: u32) -> Option<u64> {
    let share = payments.div_ceil(payers.max(1) as usize);
    amount.checked_mul(u64::try_from(share).ok()?)
}

/// What the chain did during one facilitator's settle phase, against what it answered.
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
struct OnChain {
    /// Growth of the payee's USDC balance, atomic units.
    moved: u64,
    /// `amount × successes`.
    expected: u128,
    /// Transactions the chain landed.
    transactions: u64,
    /// Exactly `expected` moved in exactly one transaction per success.
    consistent: bool,
}

impl OnChain {
    /// The verdict on `moved` units and `transactions` landed for `settled` successes of
    /// `amount` each.
    fn judge(amount: u64, settled: usize, moved: u64, transactions: u64) -> Self {
        let expected = u128::from(amount) * settled as u128;
        Self {
            moved,
            expected,
            transactions,
            consistent: u128::from(moved) == expected && transactions == settled as u64,
        }
    }
}

/// One facilitator's figures.
#[derive(Debug, serde::Serialize)]
struct Contender {
    url: String,
    fee_payer: String,
    verify: Phase,
    settle: Phase,
    on_chain: OnChain,
}

/// The chain's payee balance and landed-transaction count, read together.
#[derive(Debug, Clone, Copy)]
struct Mark {
    balance: u64,
    transactions: u64,
}

impl Mark {
    async fn read(rpc: &SolanaRpc, pay_to_account: &Pubkey) -> anyhow::Result<Self> {
        let balance = rpc.token_balance(pay_to_account).await?;
        let transactions = rpc
            .call("getTransactionCount", json!([]))
            .await?
            .as_u64()
            .context("getTransactionCount answered no number")?;
        Ok(Self {
            balance,
            transactions,
        })
    }
}

/// The official facilitator's process, killed when dropped.
struct OfficialFacilitator {
    child: tokio::process::Child,
    url: String,
}

impl OfficialFacilitator {
    /// Starts `official-facilitator.mjs` on `state`'s chain, fees paid by `fee_payer`, its
    /// diagnostics (a line per request) written to `log`.
    async fn start(
        state: &SolanaChainState,
        fee_payer: &Keypair,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let script = official_script()?;
        let node = std::env::var_os("X402_NODE").unwrap_or_else(|| "node".into());
        let mut child = tokio::process::Command::new(node)
            .arg(&script)
            .env("RPC_URL", &state.rpc_url)
            .env("NETWORK", &state.network)
            .env("FACILITATOR_PRIVATE_KEY", fee_payer.to_base58_string())
            .env("PORT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("node {}", script.display()))?;
        let stdout = child
            .stdout
            .take()
            .context("the official facilitator's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        let port = match line {
            Ok(Ok(Some(line))) => line.strip_prefix("LISTENING ").map(str::to_owned),
            _ => None,
        };
        let Some(port) = port else {
            let _ = child.kill().await;
            let said = std::fs::read_to_string(log).unwrap_or_default();
            bail!(
                "the official facilitator did not start (no LISTENING line within 60 s); it said:\n{}",
                said.trim()
            );
        };
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `tools/interop/official-facilitator.mjs` in the working directory or a parent of it or of
/// this crate, with the official SDKs installed beside it.
fn official_script() -> anyhow::Result<PathBuf> {
    let starts = [
        std::env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    for start in starts.iter().flatten() {
        for dir in start.ancestors() {
            let script = dir.join(OFFICIAL_SCRIPT);
            if script.is_file() && dir.join("tools/node_modules/@x402/svm").is_dir() {
                return Ok(script);
            }
        }
    }
    bail!(
        "the official facilitator needs {OFFICIAL_SCRIPT} and the official SDKs installed in tools/ (scripts/install-tools.sh)"
    )
}

/// `count` `/verify` and `/settle` bodies of payments of `amount` to `state`'s payee, each a
/// distinct transaction on `blockhash` from `payers` (round-robin), fees to be paid by
/// `fee_payer`.
fn sign_payments(
    state: &SolanaChainState,
    payers: &[Keypair],
    fee_payer: &Pubkey,
    blockhash: &Hash,
    amount: u64,
    count: usize,
) -> anyhow::Result<Vec<Value>> {
    let address = |text: &str| -> anyhow::Result<Pubkey> {
        text.parse()
            .map_err(|_| anyhow::anyhow!("the chain announced {text:?}, not an address"))
    };
    let requirements = json!({
        "scheme": "exact",
        "network": state.network,
        "amount": amount.to_string(),
        "asset": state.mint,
        "payTo": state.pay_to,
        "maxTimeoutSeconds": 60,
        "extra": {"feePayer": fee_payer.to_string()},
    });
    let mut signatures = HashSet::with_capacity(count);
    let mut bodies = Vec::with_capacity(count);
    for i in 0..count {
        let parts = PaymentTransaction {
            fee_payer: *fee_payer,
            mint: address(&state.mint)?,
            token_program: address(&state.token_program)?,
            decimals: state.decimals,
            pay_to: address(&state.pay_to)?,
            amount,
            recent_blockhash: blockhash.clone(),
            memo: x402_svm::random_memo(),
            compute_unit_limit: DEFAULT_COMPUTE_UNIT_LIMIT,
            compute_unit_price: DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS,
        };
        let transaction = x402_svm::build_payment(&payers[i % payers.len()], &parts)
            .map_err(|why| anyhow::anyhow!("signing a payment: {why}"))?;
        let payload = ExactSvmPayload::of(&transaction);
        ensure!(
            signatures.insert(payload.transaction.clone()),
            "two payments signed alike"
        );
        bodies.push(json!({
            "x402Version": 2,
            "paymentPayload": {"x402Version": 2, "accepted": requirements, "payload": payload},
            "paymentRequirements": requirements,
        }));
    }
    Ok(bodies)
}

/// The phase's calls: `bodies` posted to `url`'s route `path`.
fn calls(url: &str, path: &str, bodies: &[Value]) -> Vec<Call> {
    bodies
        .iter()
        .map(|body| Call {
            url: format!("{url}/{path}"),
            body: Some(body.clone()),
            payment: None,
        })
        .collect()
}

pub(crate) async fn run(args: SvmBench) -> anyhow::Result<()> {
    // Both facilitators' payments go to one payee, whose balance is a u64.
    let payments = 2 * args.count;
    if u64::try_from(payments)
        .ok()
        .and_then(|n| args.amount.checked_mul(n))
        .is_none()
    {
        bail!("--amount × 2 × --count does not fit the payee's balance (a u64): lower --amount");
    }
    let funds = payer_funds(args.amount, payments, args.payers)
        .context("--amount × the payments per payer does not fit a u64: lower --amount")?;
    eprintln!("starting the local Solana chain ({} payers)…", args.payers);
    let chain = SolanaChain::start(&SolanaChainConfig {
        payers: args.payers,
        payer_funds: funds,
        seed: None,
    })
    .await
    .context("starting the local Solana chain (tools/solana; npm install in tools/)")?;
    let state = chain.state().clone();
    let rpc = SolanaRpc::new(&state.rpc_url, Duration::from_secs(10));
    let dir = scratch_dir("svm")?;

    // Ours: the chain's funded fee payer, as `x402 dev` configures it.
    eprintln!("starting our facilitator and the official one…");
    let key_file = x402_cli::stack::write_solana_fee_payer_key(&chain, &dir)?;
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
        operator_token: None,
        operator_token_env: None,
        dashboard_listen: None,
        networks: Vec::new(),
        solana_networks: vec![x402_cli::stack::solana_network_config(&chain, key_file)],
    };
    // An EVM signer nobody uses: no EVM chain is served.
    let unused = alloy::signers::local::PrivateKeySigner::random();
    let ours = x402_facilitator::start(&config, unused).await?;
    let our_fee_payer = x402_svm::parse_keypair(&state.fee_payer_key)
        .map_err(|why| anyhow::anyhow!("the chain's fee payer key: {why}"))?
        .pubkey();

    // The official one: a fee payer of its own, funded by airdrop.
    let official_key = Keypair::new();
    rpc.call(
        "requestAirdrop",
        json!([
            official_key.pubkey().to_string(),
            OFFICIAL_FEE_PAYER_LAMPORTS
        ]),
    )
    .await
    .context("funding the official facilitator's fee payer")?;
    let official =
        OfficialFacilitator::start(&state, &official_key, &dir.join("official-facilitator.log"))
            .await?;

    eprintln!("pre-signing {} payments for each…", args.count);
    let payers = state
        .payer_keys
        .iter()
        .map(|key| x402_svm::parse_keypair(key).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let blockhash = rpc.latest_blockhash().await?.blockhash;
    let our_bodies = sign_payments(
        &state,
        &payers,
        &our_fee_payer,
        &blockhash,
        args.amount,
        args.count,
    )?;
    let official_bodies = sign_payments(
        &state,
        &payers,
        &official_key.pubkey(),
        &blockhash,
        args.amount,
        args.count,
    )?;
    let pay_to_account: Pubkey = state
        .pay_to_token_account
        .parse()
        .map_err(|_| anyhow::anyhow!("the chain's payee account is not an address"))?;

    let verify = |name, url: &str, bodies: &[Value]| {
        drive(
            name,
            calls(url, "verify", bodies),
            args.concurrency,
            Success::TrueField("isValid"),
            0,
        )
    };
    let our_verify = verify("ours: verify", &ours.url(), &our_bodies).await?;
    let official_verify = verify("official: verify", &official.url, &official_bodies).await?;

    // Each settle phase between two reads of the chain, so its growth is that phase's alone.
    let settle = |name, url: String, bodies: Vec<Value>| {
        let (rpc, pay_to_account) = (&rpc, &pay_to_account);
        async move {
            let before = Mark::read(rpc, pay_to_account).await?;
            let phase = drive(
                name,
                calls(&url, "settle", &bodies),
                args.concurrency,
                Success::TrueField("success"),
                0,
            )
            .await?;
            let after = Mark::read(rpc, pay_to_account).await?;
            let on_chain = OnChain::judge(
                args.amount,
                phase.ok,
                after.balance.saturating_sub(before.balance),
                after.transactions.saturating_sub(before.transactions),
            );
            Ok::<_, anyhow::Error>((phase, on_chain))
        }
    };
    let (our_settle, our_chain) = settle("ours: settle", ours.url(), our_bodies).await?;
    let (official_settle, official_chain) =
        settle("official: settle", official.url.clone(), official_bodies).await?;

    let ours = {
        let url = ours.url();
        ours.shutdown().await;
        Contender {
            url,
            fee_payer: our_fee_payer.to_string(),
            verify: our_verify,
            settle: our_settle,
            on_chain: our_chain,
        }
    };
    let official = {
        let url = official.url.clone();
        official.stop().await;
        Contender {
            url,
            fee_payer: official_key.pubkey().to_string(),
            verify: official_verify,
            settle: official_settle,
            on_chain: official_chain,
        }
    };
    chain.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    let consistent = ours.on_chain.consistent && official.on_chain.consistent;
    let report = json!({
        "chain": "local Solana (LiteSVM)",
        "count": args.count,
        "concurrency": args.concurrency,
        "payers": args.payers,
        "amount": args.amount,
        "database_sync": format!("{:?}", args.database_sync).to_lowercase(),
        "ours": ours,
        "official": official,
    });
    finish(args.json, &report, consistent, || {
        print_phases(
            &[
                ("ours verify", &ours.verify),
                ("official verify", &official.verify),
                ("ours settle", &ours.settle),
                ("official settle", &official.settle),
            ],
            15,
            1,
        );
        for (name, contender) in [("ours", &ours), ("official", &official)] {
            let on_chain = &contender.on_chain;
            println!(
                "chain {name:8} moved {} atomic units in {} transactions (expected {}): {}",
                on_chain.moved,
                on_chain.transactions,
                on_chain.expected,
                verdict(on_chain.consistent)
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The options as `x402-bench svm` parses them.
    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        args: SvmBench,
    }

    fn parse(line: &[&str]) -> Result<SvmBench, String> {
        Command::try_parse_from(std::iter::once("svm").chain(line.iter().copied()))
            .map(|command| command.args)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn defaults_are_300_payments_at_concurrency_8_with_full_durability() {
        let args = parse(&[]).unwrap();
        assert_eq!((args.count, args.concurrency, args.payers), (300, 8, 16));
        assert_eq!(args.amount, 1000);
        assert!(matches!(args.database_sync, Sync::Full));
        assert!(!args.json);
        let args = parse(&[
            "--count",
            "50",
            "-c",
            "2",
            "--database-sync",
            "normal",
            "--json",
        ])
        .unwrap();
        assert_eq!((args.count, args.concurrency), (50, 2));
        assert!(matches!(args.database_sync, Sync::Normal) && args.json);
    }

    #[test]
    fn out_of_range_options_are_refused_naming_the_option() {
        for (line, option) in [
            (&["--count", "0"][..], "--count"),
            (&["--concurrency", "0"], "--concurrency"),
            (&["--concurrency", "5000"], "--concurrency"),
            (&["--payers", "0"], "--payers"),
            (&["--payers", "1001"], "--payers"),
            (&["--amount", "0"], "--amount"),
            (&["--amount=-5"], "--amount"),
            (&["--database-sync", "off"], "--database-sync"),
        ] {
            let error = parse(line).expect_err(&format!("{line:?} is refused"));
            assert!(error.contains(option), "{line:?}: {error}");
        }
    }

    #[test]
    fn payers_are_funded_for_their_round_robin_share() {
        assert_eq!(payer_funds(1000, 600, 16), Some(38_000));
        assert_eq!(payer_funds(1000, 600, 600), Some(1000));
        assert_eq!(payer_funds(7, 1, 1000), Some(7));
        assert_eq!(payer_funds(u64::MAX, 2, 1), None);
    }

    #[test]
    fn the_chain_is_consistent_only_with_exactly_one_transfer_per_success() {
        assert!(OnChain::judge(1000, 300, 300_000, 300).consistent);
        assert!(OnChain::judge(1000, 0, 0, 0).consistent);
        // A payment settled twice: one transfer too many.
        assert!(!OnChain::judge(1000, 300, 301_000, 301).consistent);
        // A settlement answered as a success that never landed.
        assert!(!OnChain::judge(1000, 300, 299_000, 299).consistent);
        // A transaction that landed and failed: the fee charged, nothing moved.
        assert!(!OnChain::judge(1000, 300, 300_000, 301).consistent);
        let big = OnChain::judge(u64::MAX, 2, u64::MAX, 2);
        assert_eq!(big.expected, 2 * u128::from(u64::MAX));
        assert!(!big.consistent);
    }
}
