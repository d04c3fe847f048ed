//! What both benchmarks share: requests sent at a fixed concurrency, what counts as a success,
//! and the latency figures of a phase.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

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
    per_second: f64,
    /// The median latency.
    pub(crate) p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn summarize(mut latencies: Vec<Duration>, ok: usize, took: Duration) -> Phase {
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
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let calls = Arc::new(calls);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (http, calls, next) = (http.clone(), calls.clone(), next.clone());
        workers.spawn(async move {
            let (mut latencies, mut ok, mut failures) = (Vec::new(), 0, Vec::new());
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(call) = calls.get(i) else { break };
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
