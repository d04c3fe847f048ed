//! The agent's commands: `x402 wallet`, `x402 pay`, `x402 run`, `x402 catalog`,
//! `x402 receipts`, `x402 budget`. State lives in `$X402_HOME` (default `~/.x402`): the key
//! file `wallet.key` (owner-only) and the ledger `ledger.db`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use x402_client::{
    Budget, Ledger, MicroUsd, Outcome, PaidResponse, PayError, PayingClient, Policy, Reconciled,
    TotalsBy,
};
use x402_proto::Price;

/// The environment variable holding the wallet key (takes precedence over the key file).
pub(crate) const KEY_ENV: &str = "X402_PRIVATE_KEY";

/// Where the agent keeps its key file and ledger.
#[derive(Debug, clap::Args)]
pub(crate) struct Home {
    /// The agent's state directory (key file, ledger).
    #[arg(long, env = "X402_HOME", value_name = "DIR", global = true)]
    home: Option<PathBuf>,
}

impl Home {
    fn dir(&self) -> anyhow::Result<PathBuf> {
        let dir = match &self.home {
            Some(dir) => dir.clone(),
            None => {
                PathBuf::from(std::env::var_os("HOME").context("HOME is not set; pass --home")?)
                    .join(".x402")
            }
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    fn key_file(&self) -> anyhow::Result<PathBuf> {
        Ok(self.dir()?.join("wallet.key"))
    }

    pub(crate) fn ledger(&self) -> anyhow::Result<Ledger> {
        let path = self.dir()?.join("ledger.db");
        Ledger::open(&path).with_context(|| format!("opening the ledger {}", path.display()))
    }

    /// The wallet: `X402_PRIVATE_KEY`, else the key file.
    pub(crate) fn signer(&self) -> anyhow::Result<PrivateKeySigner> {
        if let Ok(key) = std::env::var(KEY_ENV) {
            return parse_key(&key)
                .with_context(|| format!("{KEY_ENV} is not a 0x-prefixed 32-byte hex key"));
        }
        let file = self.key_file()?;
        let text = std::fs::read_to_string(&file).map_err(|_| {
            anyhow!(
                "no wallet: set {KEY_ENV}, or create one with `x402 wallet new` (it writes {})",
                file.display()
            )
        })?;
        parse_key(text.trim())
            .with_context(|| format!("{} does not hold a valid key", file.display()))
    }
}

fn parse_key(text: &str) -> anyhow::Result<PrivateKeySigner> {
    let bytes: B256 = text
        .trim()
        .parse()
        .map_err(|_| anyhow!("not 32 bytes of hex"))?;
    Ok(PrivateKeySigner::from_bytes(&bytes)?)
}

// ---------------------------------------------------------------------------------------
// wallet

/// `x402 wallet`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum WalletCommand {
    /// Create a key file (owner-only permissions) and print its address. Refuses to replace one.
    New,
    /// Print the wallet's address.
    Address,
    /// Print the wallet's USDC balance (and gas) on a chain.
    Balance {
        /// JSON-RPC endpoint; default: the `x402 dev` chain from --dev-state.
        #[arg(long, value_name = "URL")]
        rpc: Option<String>,
        /// Token address; default: the `x402 dev` token (Base USDC's address).
        #[arg(long, value_name = "ADDRESS")]
        asset: Option<String>,
        /// Token decimals.
        #[arg(long, default_value_t = 6)]
        decimals: u8,
        /// The `x402 dev` state directory to read the chain from.
        #[arg(long, value_name = "DIR", default_value = ".x402/dev")]
        dev_state: PathBuf,
    },
}

pub(crate) async fn wallet(home: &Home, command: WalletCommand) -> anyhow::Result<()> {
    match command {
        WalletCommand::New => {
            let file = home.key_file()?;
            if file.exists() {
                bail!(
                    "{} already exists; it holds your wallet — remove it yourself to start over",
                    file.display()
                );
            }
            let signer = PrivateKeySigner::from_bytes(&B256::random())?;
            write_owner_only(&file, format!("{}\n", signer.to_bytes()).as_bytes())?;
            eprintln!(
                "created {} (owner-only); fund this address with USDC:",
                file.display()
            );
            println!("{}", signer.address());
        }
        WalletCommand::Address => println!("{}", home.signer()?.address()),
        WalletCommand::Balance {
            rpc,
            asset,
            decimals,
            dev_state,
        } => {
            let dev = read_dev_state(&dev_state).ok();
            let rpc = chain_rpc(rpc, dev.as_ref())?;
            let asset = asset
                .or_else(|| {
                    dev.as_ref()
                        .and_then(|d| d["asset"].as_str().map(str::to_owned))
                })
                .unwrap_or_else(|| "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".to_owned());
            let address = home.signer()?.address();
            let http = reqwest::Client::new();
            let token =
                x402_client::token_balance(&http, &rpc, &asset, &address.to_string()).await?;
            let gas = rpc_call(
                &http,
                &rpc,
                "eth_getBalance",
                serde_json::json!([address.to_string(), "latest"]),
            )
            .await?;
            let gas = x402_proto::TokenAmount(parse_quantity(&gas)?);
            println!(
                "{address}: {} USDC ({} atomic), {} ETH for gas",
                token.to_human(decimals),
                token,
                gas.to_human(18)
            );
        }
    }
    Ok(())
}

/// The chain to read: `--rpc`, else the `x402 dev` chain described in `dev`.
fn chain_rpc(rpc: Option<String>, dev: Option<&Value>) -> anyhow::Result<String> {
    rpc.or_else(|| dev.and_then(|d| d["rpc_url"].as_str().map(str::to_owned)))
        .context("no chain: pass --rpc (or run `x402 dev`)")
}

fn parse_quantity(value: &Value) -> anyhow::Result<alloy::primitives::U256> {
    let text = value.as_str().context("RPC answered a non-string")?;
    let digits = text.trim_start_matches("0x");
    Ok(alloy::primitives::U256::from_str_radix(
        if digits.is_empty() { "0" } else { digits },
        16,
    )?)
}

async fn rpc_call(
    http: &reqwest::Client,
    url: &str,
    method: &str,
    params: Value,
) -> anyhow::Result<Value> {
    let answer: Value = http
        .post(url)
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .with_context(|| format!("cannot reach the chain at {url}"))?
        .json()
        .await?;
    if let Some(error) = answer.get("error") {
        bail!("{method} failed: {error}");
    }
    Ok(answer["result"].clone())
}

fn write_owner_only(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)?;
    Ok(())
}

pub(crate) fn read_dev_state(dir: &Path) -> anyhow::Result<Value> {
    let file = dir.join("dev.json");
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("no {} (is `x402 dev` running?)", file.display()))?;
    Ok(serde_json::from_str(&text)?)
}

// ---------------------------------------------------------------------------------------
// pay

/// Options of `x402 pay`.
#[derive(Debug, clap::Args)]
pub(crate) struct PayArgs {
    /// The URL to request.
    url: String,
    /// HTTP method.
    #[arg(short = 'X', long = "request", default_value = "GET")]
    method: String,
    /// A header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// A request body (JSON bodies get `content-type: application/json`); `@file` reads a file.
    #[arg(short = 'd', long = "data", value_name = "DATA")]
    data: Option<String>,
    /// The most to pay for this request, in USD (e.g. 0.05).
    #[arg(long, value_name = "PRICE", default_value = "0.10")]
    max: Price,
    /// Label the payment with a service name in the ledger.
    #[arg(long)]
    service: Option<String>,
}

/// Explains a payment failure with what to do about it.
pub(crate) fn explain(error: &PayError, address: &str) -> anyhow::Error {
    let hint = match error {
        PayError::Refused { reason, .. } if reason.contains("insufficient") => {
            format!(
                "\n  hint: the wallet {address} lacks the USDC; fund it (see `x402 wallet balance`)"
            )
        }
        PayError::Budget(_) => {
            "\n  hint: `x402 budget show` lists the limits; `x402 budget set` changes them"
                .to_owned()
        }
        PayError::Policy(x402_client::PolicyError::AboveMax { .. }) => {
            "\n  hint: pass a higher --max if the price is worth it".to_owned()
        }
        PayError::Policy(_) => {
            "\n  hint: the server wants an asset or network this client does not pay".to_owned()
        }
        PayError::Http(_) => {
            "\n  hint: is the server (or its facilitator) running and reachable?".to_owned()
        }
        PayError::AnswerLost { .. } => "\n  hint: `x402 receipts --reconcile` asks the chain whether it settled (a paid or an expired authorization settles it)".to_owned(),
        _ => String::new(),
    };
    anyhow!("{error}{hint}")
}

pub(crate) fn client(home: &Home, max: Price) -> anyhow::Result<(PayingClient, String)> {
    let signer = home.signer()?;
    let address = signer.address().to_checksum(None);
    let policy = Policy {
        max_per_payment: max,
        ..Policy::default()
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    Ok((
        PayingClient::new(http, signer, policy, home.ledger()?),
        address,
    ))
}

pub(crate) fn describe_payment(paid: &PaidResponse) -> Option<String> {
    let receipt = paid.receipt.as_ref()?;
    let (amount, _) = paid.paid?;
    Some(format!(
        "paid {} USDC to settle in {} on {} (payer {})",
        amount.to_human(6),
        if receipt.transaction.is_empty() {
            "(no transaction)"
        } else {
            &receipt.transaction
        },
        receipt.network,
        receipt.payer.as_deref().unwrap_or("?"),
    ))
}

/// What a failed answer means for the payment sent with it.
fn charge_note(paid: &PaidResponse) -> String {
    match paid.unknown {
        Some(id) => format!(
            "the payment may have settled: ledger row {id} is unknown until `x402 receipts --reconcile`"
        ),
        None => "not charged".to_owned(),
    }
}

pub(crate) async fn pay(home: &Home, args: PayArgs) -> anyhow::Result<()> {
    let (client, address) = client(home, args.max)?;
    let method: reqwest::Method = args
        .method
        .parse()
        .with_context(|| format!("bad method {:?}", args.method))?;
    let mut request = client.http().request(method, &args.url);
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("header {header:?} is not `Name: value`"))?;
        request = request.header(name.trim(), value.trim());
    }
    if let Some(data) = &args.data {
        let body = match data.strip_prefix('@') {
            Some(file) => std::fs::read(file).with_context(|| format!("reading {file}"))?,
            None => data.clone().into_bytes(),
        };
        if serde_json::from_slice::<Value>(&body).is_ok()
            && !args
                .headers
                .iter()
                .any(|h| h.to_lowercase().starts_with("content-type"))
        {
            request = request.header("content-type", "application/json");
        }
        request = request.body(body);
    }
    // A gateway call names its service in the body: label the ledger row with it.
    let service = args.service.clone().or_else(|| {
        let data = args.data.as_deref().filter(|d| !d.starts_with('@'))?;
        let body: Value = serde_json::from_str(data).ok()?;
        body["service"].as_str().map(str::to_owned)
    });
    let paid = client
        .send(request.build()?, service.as_deref())
        .await
        .map_err(|e| explain(&e, &address))?;
    if let Some(line) = describe_payment(&paid) {
        eprintln!("{line}");
    }
    let note = charge_note(&paid);
    let status = paid.response.status();
    let body = paid.response.bytes().await?;
    std::io::stdout().write_all(&body)?;
    if !body.ends_with(b"\n") {
        println!();
    }
    if !status.is_success() {
        bail!("the server answered {status} ({note})");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// run / catalog

/// Options of `x402 run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The service key (e.g. embed-l4, pdf-parse, tts-fast, llm-4090).
    service: String,
    /// The service input as JSON (e.g. '{"text": "hello"}'); `@file` reads a file.
    input: String,
    /// The gateway.
    #[arg(long, env = "X402_GATEWAY", default_value = "http://127.0.0.1:8080")]
    gateway: String,
    /// The most to pay, in USD.
    #[arg(long, value_name = "PRICE", default_value = "0.10")]
    max: Price,
    /// Ask for a job (answered at once with a job id, then polled).
    #[arg(long = "async")]
    run_async: bool,
}

pub(crate) async fn run(home: &Home, args: RunArgs) -> anyhow::Result<()> {
    let input_text = match args.input.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?,
        None => args.input.clone(),
    };
    let input: Value = serde_json::from_str(&input_text).context("the input is not JSON")?;
    let (client, address) = client(home, args.max)?;
    let (output, line) = run_service(
        &client,
        &address,
        &args.gateway,
        &args.service,
        input,
        args.run_async,
    )
    .await?;
    if let Some(line) = line {
        eprintln!("{line}");
    }
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

/// Runs `service` on the gateway, paying for it; waits for jobs with progress on stderr.
/// Returns the output and a line describing the payment.
pub(crate) async fn run_service(
    client: &PayingClient,
    address: &str,
    gateway: &str,
    service: &str,
    input: Value,
    run_async: bool,
) -> anyhow::Result<(Value, Option<String>)> {
    let gateway = gateway.trim_end_matches('/');
    let mut request = client
        .http()
        .post(format!("{gateway}/run"))
        .json(&serde_json::json!({"service": service, "input": input}));
    if run_async {
        request = request.header("prefer", "respond-async");
    }
    let paid = client
        .send(request.build()?, Some(service))
        .await
        .map_err(|e| explain(&e, address))?;
    let line = describe_payment(&paid);
    let note = charge_note(&paid);
    let status = paid.response.status();
    let body: Value = paid
        .response
        .json()
        .await
        .context("the gateway answered non-JSON")?;
    if !status.is_success() {
        bail!(
            "{service} failed ({status}, {note}): {}",
            body["error"].as_str().unwrap_or(&body.to_string())
        );
    }
    if status.as_u16() != 202 {
        return Ok((body["output"].clone(), line));
    }
    let job = body["job_id"]
        .as_str()
        .context("202 without job_id")?
        .to_owned();
    let started = Instant::now();
    let mut wait = Duration::from_secs(1);
    loop {
        let view: Value = client
            .http()
            .get(format!("{gateway}/status/{job}"))
            .send()
            .await?
            .json()
            .await?;
        match view["status"].as_str() {
            Some("completed") => {
                eprintln!();
                return Ok((view["output"].clone(), line));
            }
            Some("failed") => {
                eprintln!();
                bail!("job {job} failed: {}", view["error"]);
            }
            _ => {
                eprint!(
                    "\r{job}: {} {:.0}s ",
                    view["progress"]["phase"].as_str().unwrap_or("running"),
                    started.elapsed().as_secs_f64()
                );
                if started.elapsed() > Duration::from_secs(600) {
                    bail!(
                        "job {job} still running after 10 minutes; check `GET {gateway}/status/{job}`"
                    );
                }
            }
        }
        tokio::time::sleep(wait).await;
        if started.elapsed() > Duration::from_secs(10) {
            wait = Duration::from_secs(3);
        }
    }
}

/// Options of `x402 catalog`.
#[derive(Debug, clap::Args)]
pub(crate) struct CatalogArgs {
    /// The gateway.
    #[arg(long, env = "X402_GATEWAY", default_value = "http://127.0.0.1:8080")]
    gateway: String,
    /// Print the gateway's JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn catalog(args: CatalogArgs) -> anyhow::Result<()> {
    let url = format!("{}/catalog", args.gateway.trim_end_matches('/'));
    let catalog: Value = reqwest::get(&url)
        .await
        .with_context(|| format!("cannot reach {url}"))?
        .json()
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&catalog)?);
        return Ok(());
    }
    for service in catalog["services"].as_array().into_iter().flatten() {
        let status = if service["available"] == true {
            service["models"][0].as_str().unwrap_or("").to_owned()
        } else {
            format!(
                "unavailable: {}",
                service["unavailable_reason"].as_str().unwrap_or("")
            )
        };
        println!(
            "{:14} ${:>8} {:18} {}",
            service["key"].as_str().unwrap_or(""),
            service["pricing"]["price_usd"].as_str().unwrap_or(""),
            service["pricing"]["per"].as_str().unwrap_or(""),
            status
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// receipts / budget

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

fn usd(micro: MicroUsd) -> String {
    x402_proto::TokenAmount::from_atomic(u128::from(micro)).to_human(6)
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
            for (key, micro, count) in totals {
                println!("{key:44} ${:>10}  {count} payments", usd(micro));
            }
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

/// `x402 budget`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum BudgetCommand {
    /// Print the limits and what was spent against them.
    Show,
    /// Set limits in USD (`--per-day 5`); `none` removes one.
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
    } = command
    {
        for (field, value) in [
            (&mut budget.per_payment, per_payment),
            (&mut budget.per_hour, per_hour),
            (&mut budget.per_day, per_day),
            (&mut budget.total, total),
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
    Ok(())
}
