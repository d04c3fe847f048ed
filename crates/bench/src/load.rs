//! What both benchmarks share: requests sent at a fixed concurrency, what counts as a success,
//! and the latency figures of a phase.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use x402_proto::v2;

/// One request of a phase: a GET, or a POST of `body`, with a payment header or not.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) url: String,
    pub(crate) body: Option<Value>,
    pub(crate) payment: Option<String>,
}

/// What a successful answer looks like.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Success {
    /// This HTTP status.
    Status(u16),
    /// A JSON body whose field of this name is `true` (`isValid`, `success`).
    TrueField(&'static str),
}

impl Success {
    /// Ok, or what went wrong.
    fn judge(self, status: u16, body: &[u8]) -> Result<(), String> {
        match self {
            Self::Status(expected) if status == expected => Ok(()),
            Self::Status(_) => Err(format!("status {status}")),
            Self::TrueField(field) => match serde_json::from_slice::<Value>(body) {
                Ok(answer) if answer[field] == true => Ok(()),
                Ok(answer) => Err(answer.to_string()),
                Err(error) => Err(format!("status {status}: {error}")),
            },
        }
    }
}

/// Latencies and throughput of one phase. The benchmarks read the successes and the median;
/// the rest goes to the report.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Phase {
    requests: usize,
    /// Answers that looked like a success.
    pub(crate) ok: usize,
    seconds: f64,
    pub(crate) per_second: f64,
    /// The median latency.
    pub(crate) p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// The figures of a phase whose requests took `latencies`, `ok` of them successes, in `took`.
pub(crate) fn summarize(mut latencies: Vec<Duration>, ok: usize, took: Duration) -> Phase {
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Phase {
        requests: latencies.len(),
        ok,
        seconds: took.as_secs_f64(),
        per_second: latencies.len() as f64 / took.as_secs_f64(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    }
}

/// Sends `calls` with `concurrency` requests in flight, each worker sleeping a random
/// 0..`jitter_ms` ms before each request (none at 0), and counts the answers that look like
/// `success`. `name` is the phase's name in the progress line.
pub(crate) async fn drive(
    name: &str,
    calls: Vec<Call>,
    concurrency: usize,
    success: Success,
    jitter_ms: u64,
) -> anyhow::Result<Phase> {
    eprintln!(
        "{name}: {} requests at concurrency {concurrency}…",
        calls.len()
    );
    let calls = Arc::new(calls);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let queues = (0..concurrency).map(|_| {
        let (calls, next) = (calls.clone(), next.clone());
        move || {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            calls.get(i).cloned()
        }
    });
    run_workers(queues, success, jitter_ms).await
}

/// Sends each lane's calls in order, one request in flight per lane and all lanes at once
/// (calls that must follow each other, such as the cumulative vouchers of one channel).
pub(crate) async fn drive_lanes(
    name: &str,
    lanes: Vec<Vec<Call>>,
    success: Success,
) -> anyhow::Result<Phase> {
    let count: usize = lanes.iter().map(Vec::len).sum();
    eprintln!(
        "{name}: {count} requests in {} lanes, one in flight per lane…",
        lanes.len()
    );
    let queues = lanes.into_iter().map(|lane| {
        let mut lane = lane.into_iter();
        move || lane.next()
    });
    run_workers(queues, success, 0).await
}

/// One worker per queue, each sending its queue's calls one after the other until it runs
/// dry; the phase's figures over all of them.
async fn run_workers<Q>(
    queues: impl ExactSizeIterator<Item = Q>,
    success: Success,
    jitter_ms: u64,
) -> anyhow::Result<Phase>
where
    Q: FnMut() -> Option<Call> + Send + 'static,
{
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(queues.len())
        .build()?;
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for mut queue in queues {
        let http = http.clone();
        workers.spawn(async move {
            let (mut latencies, mut ok, mut failures) = (Vec::new(), 0, Vec::new());
            while let Some(call) = queue() {
                if jitter_ms > 0 {
                    let random = u64::from_le_bytes(alloy::primitives::B64::random().0);
                    tokio::time::sleep(Duration::from_millis(random % jitter_ms)).await;
                }
                let mut request = match &call.body {
                    Some(body) => http.post(&call.url).json(body),
                    None => http.get(&call.url),
                };
                if let Some(payment) = &call.payment {
                    request = request.header("PAYMENT-SIGNATURE", payment);
                }
                let sent = Instant::now();
                let answer = async {
                    let response = request.send().await?;
                    let status = response.status().as_u16();
                    Ok::<_, reqwest::Error>((status, response.bytes().await?))
                }
                .await;
                latencies.push(sent.elapsed());
                let judged = answer
                    .map_err(|error| error.to_string())
                    .and_then(|(status, body)| success.judge(status, &body));
                match judged {
                    Ok(()) => ok += 1,
                    Err(failure) => failures.push(failure),
                }
            }
            (latencies, ok, failures)
        });
    }
    let (mut latencies, mut ok) = (Vec::new(), 0);
    for (mut l, o, failures) in workers.join_all().await {
        latencies.append(&mut l);
        ok += o;
        if let Some(first) = failures.first() {
            eprintln!("  {} failed, e.g. {first}", failures.len());
        }
    }
    Ok(summarize(latencies, ok, started.elapsed()))
}

/// The v2 challenge a request to `url` gets (a POST of `body`, or a GET).
pub(crate) async fn challenge(
    http: &reqwest::Client,
    url: &str,
    body: Option<&Value>,
) -> anyhow::Result<v2::PaymentRequired> {
    let request = match body {
        Some(body) => http.post(url).json(body),
        None => http.get(url),
    };
    let response = request.send().await?;
    if response.status() != 402 {
        anyhow::bail!("{url} answered {} instead of 402", response.status());
    }
    let header = response
        .headers()
        .get("payment-required")
        .ok_or_else(|| anyhow::anyhow!("402 without PAYMENT-REQUIRED"))?;
    Ok(x402_proto::decode_header(header.as_bytes())?)
}

/// `count` `exact` payments of `offer` (from `challenge`), signed round-robin by the dev
/// payers.
pub(crate) async fn sign_exact(
    devnet: &x402_devnet::Devnet,
    challenge: &v2::PaymentRequired,
    offer: &v2::PaymentRequirements,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let payers = devnet.payers();
    let now = x402_evm::unix_now();
    let mut payments = Vec::with_capacity(count);
    for i in 0..count {
        let payment = x402_evm::sign_payment(
            &payers[i % payers.len()].signer,
            offer,
            Some(challenge.resource.clone()),
            now,
        )
        .await?;
        payments.push(x402_proto::encode_header(&payment));
    }
    Ok(payments)
}

/// Prints one line per phase, names padded to `width`, milliseconds with `decimals`.
pub(crate) fn print_phases(phases: &[(&str, &Phase)], width: usize, decimals: usize) {
    for (name, phase) in phases {
        println!(
            "{name:width$} {}/{} ok  {:8.1}/s  p50 {:7.decimals$} ms  p99 {:7.decimals$} ms  max {:7.decimals$} ms",
            phase.ok, phase.requests, phase.per_second, phase.p50_ms, phase.p99_ms, phase.max_ms
        );
    }
}

/// A scratch directory for one run of the `name` benchmark (removed by the caller).
pub(crate) fn scratch_dir(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("x402-bench-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// How the chain's total compares with what was charged, for a person.
pub(crate) fn verdict(consistent: bool) -> &'static str {
    if consistent { "consistent" } else { "MISMATCH" }
}

/// Ends a run: `report` as JSON when `json`, else the lines `text` prints; then an error
/// unless the chain moved exactly what was charged (`consistent`).
pub(crate) fn finish(
    json: bool,
    report: &Value,
    consistent: bool,
    text: impl FnOnce(),
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        text();
    }
    if !consistent {
        anyhow::bail!("on-chain total does not match the total charged");
    }
    Ok(())
}
