//! The inference gateway's HTTP API as types, shared by the gateway that serves it and the
//! clients that call it (`x402 run`, `x402 demo`, the MCP tools), so a renamed field breaks
//! the build rather than a caller. Serde only: no HTTP, no models.
//!
//! The routes: `POST /run` ([`RunRequest`] → [`RunCompleted`] or `202` [`JobAccepted`]),
//! `GET /status/{job_id}` ([`JobView`]), `GET /catalog` ([`Catalog`]),
//! `GET /catalog/estimate` ([`EstimateQuery`] → [`Estimate`]); every refusal is an
//! [`ApiError`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a service is billed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Per request.
    Call,
    /// Per 1000 tokens of input (and, for LLMs, of the maximum output).
    Tokens1k,
    /// Per 1000 characters of input.
    Chars1k,
    /// Per document.
    Document,
    /// Per query (rerank).
    Query,
    /// Per minute of audio.
    Minute,
    /// Per second of output.
    Second,
    /// Per image.
    Image,
    /// Per page (an image is one page; a PDF is as many as it has).
    Page,
}

impl Unit {
    /// How many measured units one priced unit covers (`Tokens1k` → 1000).
    pub fn per(self) -> u64 {
        match self {
            Self::Tokens1k | Self::Chars1k => 1000,
            Self::Minute => 60,
            _ => 1,
        }
    }

    /// The measured quantity, for people ("tokens" for `Tokens1k`).
    pub fn measure(self) -> &'static str {
        match self {
            Self::Call => "calls",
            Self::Tokens1k => "tokens",
            Self::Chars1k => "characters",
            Self::Document => "documents",
            Self::Query => "queries",
            Self::Minute | Self::Second => "seconds",
            Self::Image => "images",
            Self::Page => "pages",
        }
    }

    /// How the price reads ("per 1K tokens").
    pub fn label(self) -> &'static str {
        match self {
            Self::Call => "per call",
            Self::Tokens1k => "per 1K tokens",
            Self::Chars1k => "per 1K characters",
            Self::Document => "per document",
            Self::Query => "per query",
            Self::Minute => "per minute",
            Self::Second => "per second",
            Self::Image => "per image",
            Self::Page => "per page",
        }
    }
}

/// The body of `POST /run`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    /// The service key (`embed-l4`, `pdf-parse`, …) or an alias.
    pub service: String,
    /// The service's input.
    pub input: Value,
}

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Accepted, not started.
    Pending,
    /// Running (or waiting to run again after a failed attempt).
    Running,
    /// Done: the output is there.
    Completed,
    /// Failed for good.
    Failed,
}

impl JobStatus {
    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// `200` to `POST /run`: the service ran within the request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunCompleted {
    /// The run's id.
    pub id: String,
    /// Always [`JobStatus::Completed`].
    pub status: JobStatus,
    /// The service key.
    pub service: String,
    /// What the service produced.
    pub output: Value,
    /// What was charged, in USD.
    pub cost_usd: String,
    /// Who paid.
    pub payer: String,
}

/// `202` to `POST /run`: a paid job, recorded and started; poll its `status_url`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobAccepted {
    /// The job's id.
    pub job_id: String,
    /// Always [`JobStatus::Pending`].
    pub status: JobStatus,
    /// What was charged, in USD.
    pub estimated_cost_usd: String,
    /// Where to poll (`/status/{job_id}`), relative to the gateway.
    pub status_url: String,
}

/// How far a job has come.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// `queued`, `running`, `retrying`, `done` or `failed`.
    pub phase: String,
    /// A rough percentage.
    pub percent_estimate: u8,
    /// Seconds since the job was accepted (until it finished).
    pub elapsed_seconds: f64,
}

/// `GET /status/{job_id}`: a job in GPU-Bridge's shape, with its payment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// The job's id.
    pub id: String,
    /// The service key.
    pub service: String,
    /// What was charged, in USD.
    pub cost_usd: String,
    /// Who paid.
    pub payer: String,
    /// The settlement transaction, when the payment settled.
    pub transaction: Option<String>,
    /// Whether the payer was charged.
    pub charged: bool,
    /// How many times the job was started.
    pub attempts: u32,
    /// Where it is.
    pub status: JobStatus,
    /// How far it has come.
    pub progress: Progress,
    /// The output, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why it failed, once failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the payment was refunded, once failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded: Option<bool>,
    /// How much was refunded, in USD, once failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_amount_usd: Option<String>,
    /// What a failure means for the payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Why the last attempt failed, while it is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// How a service is priced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pricing {
    /// What it is billed by.
    pub unit: Unit,
    /// How the price reads (`per 1K tokens`).
    pub per: String,
    /// The price per unit, in USD.
    pub price_usd: String,
}

/// One service of `GET /catalog`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// The GPU-Bridge key.
    pub key: String,
    /// Other keys that mean the same service.
    pub aliases: Vec<String>,
    /// The service's name.
    pub name: String,
    /// Its category (`text`, `audio`, …).
    pub category: String,
    /// Its price.
    pub pricing: Pricing,
    /// The cost of one priced unit, in USD, as charged (rounded up to the asset's units).
    pub default_cost_usd: String,
    /// The models behind it.
    pub models: Vec<String>,
    /// `local`, `upstream` or `none`.
    pub backend: String,
    /// Whether it can run now.
    pub available: bool,
    /// Why not, when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_reason: Option<String>,
    /// Whether its local model is still loading (requests wait for it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub loading: bool,
}

/// How paid jobs are handled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobPolicy {
    /// Whether jobs survive a restart.
    pub durable: bool,
    /// When the payment settles.
    pub settlement: String,
    /// What a restart does to running jobs.
    pub restarts: String,
    /// How many attempts a job gets.
    pub max_attempts: u32,
    /// What happens when every attempt fails.
    pub on_failure: String,
    /// Whether failed jobs are refunded.
    pub refunds: bool,
}

/// `GET /catalog`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// How many services can run now.
    pub active_endpoints: usize,
    /// What prices are in.
    pub currency: String,
    /// Every service, available or not.
    pub services: Vec<CatalogEntry>,
    /// How paid jobs are handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<JobPolicy>,
    /// The ways to pay every paid route, in the order offered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payment_methods: Vec<PaymentMethod>,
}

/// One way to pay the gateway's paid routes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethod {
    /// The x402 scheme (`exact`, `upto`, `batch-settlement`).
    pub scheme: String,
    /// The CAIP-2 network.
    pub network: String,
    /// The token paid in.
    pub asset: String,
    /// What a call is charged: `price` (the quoted price) or `usage` (what the call used, at
    /// most the quoted price).
    pub charges: String,
    /// How it settles: `per call` (one transaction each), or `channel` (a deposit once, then
    /// signed vouchers claimed in batches).
    pub settles: String,
}

impl Catalog {
    /// The service with `key` (not an alias).
    pub fn service(&self, key: &str) -> Option<&CatalogEntry> {
        self.services.iter().find(|s| s.key == key)
    }
}

/// The query of `GET /catalog/estimate`: a service and what its price depends on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EstimateQuery {
    /// The service key.
    pub service: String,
    /// Tokens, for services priced by tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<f64>,
    /// Characters, for services priced by characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub characters: Option<f64>,
    /// Seconds, for services priced by time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// A sample input to measure instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `GET /catalog/estimate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The service key.
    pub service: String,
    /// What the units would cost, in USD.
    pub estimated_cost_usd: String,
    /// What it is billed by.
    pub unit: Unit,
    /// How many measured units were priced.
    pub units: u64,
    /// The price per unit, in USD.
    pub price_usd: String,
    /// How the price reads.
    pub per: String,
    /// Whether it can run now.
    pub available: bool,
    /// How the estimate was made.
    pub note: String,
    /// For services priced by time: the price of one second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per_second: Option<String>,
}

/// Every refusal or failure of the gateway's API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong and what to do.
    pub error: String,
    /// Whether the payer was charged for the failed request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charged: Option<bool>,
    /// Whether a charge was refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded: Option<bool>,
    /// The settlement transaction of a charged failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    /// The services that can be asked for, when an unknown one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_services: Option<Vec<String>>,
}

impl ApiError {
    /// A refusal saying `error`.
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            charged: None,
            refunded: None,
            transaction: None,
            available_services: None,
        }
    }
}

/// How often a job's status is asked: every second for the first ten, then every three, and
/// given up after ten minutes (the job goes on; its status URL still answers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobPolling {
    /// The pause while the job is young.
    pub early: Duration,
    /// How long the job counts as young.
    pub early_for: Duration,
    /// The pause after that.
    pub late: Duration,
    /// When to stop asking.
    pub give_up_after: Duration,
}

impl Default for JobPolling {
    fn default() -> Self {
        Self {
            early: Duration::from_secs(1),
            early_for: Duration::from_secs(10),
            late: Duration::from_secs(3),
            give_up_after: Duration::from_secs(600),
        }
    }
}

impl JobPolling {
    /// The pause before the next question, `elapsed` after the first, or `None` when it is
    /// time to give up.
    pub fn next_wait(&self, elapsed: Duration) -> Option<Duration> {
        if elapsed >= self.give_up_after {
            None
        } else if elapsed < self.early_for {
            Some(self.early)
        } else {
            Some(self.late)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_failed_job_reads_with_its_payment_and_a_running_one_without_output() {
        let failed: JobView = serde_json::from_value(json!({
            "id": "job_1", "service": "pdf-parse", "cost_usd": "0.005", "payer": "0xabc",
            "transaction": "0xdef", "charged": true, "attempts": 3, "status": "failed",
            "progress": {"phase": "failed", "percent_estimate": 100, "elapsed_seconds": 1.5},
            "error": "boom", "refunded": false, "refund_amount_usd": "0", "note": "kept",
        }))
        .unwrap();
        assert_eq!(failed.status, JobStatus::Failed);
        assert!(failed.status.is_final());
        assert_eq!(failed.transaction.as_deref(), Some("0xdef"));
        let running = serde_json::to_value(JobView {
            status: JobStatus::Running,
            output: None,
            error: None,
            refunded: None,
            refund_amount_usd: None,
            note: None,
            ..failed
        })
        .unwrap();
        assert_eq!(running["status"], "running");
        assert!(running.get("output").is_none());
        assert!(running["transaction"].is_string());
    }

    #[test]
    fn units_serialize_as_the_gateway_names_them() {
        assert_eq!(json!(Unit::Tokens1k), json!("tokens1k"));
        assert_eq!(json!(Unit::Chars1k), json!("chars1k"));
        assert_eq!(Unit::Minute.per(), 60);
    }

    #[test]
    fn polling_slows_after_ten_seconds_and_gives_up_after_ten_minutes() {
        let polling = JobPolling::default();
        assert_eq!(
            polling.next_wait(Duration::from_secs(2)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            polling.next_wait(Duration::from_secs(30)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(polling.next_wait(Duration::from_secs(601)), None);
    }

    #[test]
    fn an_estimate_query_leaves_out_what_was_not_given() {
        let query = EstimateQuery {
            service: "tts-fast".into(),
            characters: Some(1200.0),
            ..EstimateQuery::default()
        };
        assert_eq!(
            serde_json::to_value(&query).unwrap(),
            json!({"service": "tts-fast", "characters": 1200.0})
        );
    }
}
