//! A typed client of the inference gateway's API ([`x402_gateway_api`]), paying through a
//! [`PayingClient`]: `x402 run`, `x402 demo` and the MCP tools' wallet mode call the gateway
//! through it.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;
use x402_gateway_api::{
    ApiError, Catalog, Estimate, EstimateQuery, JobAccepted, JobPolling, JobStatus, JobView,
    RunCompleted, RunRequest,
};
use x402_proto::{AssetAmount, SettleResponse};

use crate::client::{PaidResponse, PayError, PayingClient};

/// Why a gateway call gave no result. Each says what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The payment could not be made (policy, budget, signing, refusal, lost answer).
    #[error(transparent)]
    Pay(Box<PayError>),
    /// The gateway could not be reached or its answer read.
    #[error("cannot reach the gateway: {0}")]
    Http(#[from] reqwest::Error),
    /// The gateway refused or failed the call.
    #[error("the gateway answered {status}: {}{}", error.error, charge_note(error, *unknown))]
    Api {
        /// The HTTP status.
        status: u16,
        /// What the gateway said.
        error: ApiError,
        /// The ledger row of a payment sent with a call that failed without a receipt: it
        /// may have settled, and stays counted until reconciled.
        unknown: Option<i64>,
    },
    /// The gateway answered something that is not its API.
    #[error("the gateway answered something unexpected: {0}")]
    BadAnswer(String),
    /// A paid job failed for good.
    #[error("job {} failed: {}", .0.id, .0.error.as_deref().unwrap_or("no reason given"))]
    JobFailed(Box<JobView>),
    /// A job still runs after the polling gave up; it goes on, and its status still answers.
    #[error("job {job_id} still running after {waited:?}; ask `GET {status_url}` later")]
    StillRunning {
        /// The job.
        job_id: String,
        /// Where to ask.
        status_url: String,
        /// How long it was waited for.
        waited: Duration,
    },
}

impl From<PayError> for GatewayError {
    fn from(error: PayError) -> Self {
        Self::Pay(Box::new(error))
    }
}

fn charge_note(error: &ApiError, unknown: Option<i64>) -> String {
    match (unknown, error.charged) {
        (Some(id), _) => {
            format!(" (the payment may have settled: ledger row {id} is unknown until reconciled)")
        }
        (None, Some(true)) => format!(
            " (charged{})",
            error
                .transaction
                .as_deref()
                .map(|t| format!(", transaction {t}"))
                .unwrap_or_default()
        ),
        (None, _) => " (not charged)".to_owned(),
    }
}

/// What `POST /run` answered.
#[derive(Clone, Debug, PartialEq)]
pub enum RunAnswer {
    /// The service ran within the request.
    Completed(RunCompleted),
    /// A paid job was accepted; poll it.
    Accepted(JobAccepted),
}

/// A paid `POST /run`: the answer and what it cost.
#[derive(Clone, Debug)]
pub struct GatewayRun {
    /// The answer.
    pub answer: RunAnswer,
    /// The settlement receipt.
    pub receipt: Option<SettleResponse>,
    /// What was paid, and the ledger row.
    pub paid: Option<(AssetAmount, i64)>,
}

impl GatewayRun {
    /// A line for people: what was paid, in which transaction, on which network, by whom.
    pub fn payment_line(&self) -> Option<String> {
        crate::client::payment_line(self.receipt.as_ref(), self.paid)
    }
}

/// The gateway's API, paid by a [`PayingClient`].
#[derive(Clone, Debug)]
pub struct GatewayClient {
    client: PayingClient,
    base: String,
    polling: JobPolling,
}

impl GatewayClient {
    /// The gateway at `base` (`http://127.0.0.1:8080`), paid by `client`.
    pub fn new(client: PayingClient, base: &str) -> Self {
        Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            polling: JobPolling::default(),
        }
    }

    /// Polls jobs on `polling`'s schedule instead of the default.
    pub fn with_polling(mut self, polling: JobPolling) -> Self {
        self.polling = polling;
        self
    }

    /// The paying client.
    pub fn paying_client(&self) -> &PayingClient {
        &self.client
    }

    /// The gateway's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Pays for and runs `request`. `as_job` asks for a job (`Prefer: respond-async`);
    /// `priority` is sent as `X-Priority` (GPU-Bridge's `fast` or `cheap`).
    pub async fn run(
        &self,
        request: &RunRequest,
        as_job: bool,
        priority: Option<&str>,
    ) -> Result<GatewayRun, GatewayError> {
        let mut builder = self
            .client
            .http()
            .post(format!("{}/run", self.base))
            .json(request);
        if as_job {
            builder = builder.header("prefer", "respond-async");
        }
        if let Some(priority) = priority {
            builder = builder.header("x-priority", priority);
        }
        let paid = self
            .client
            .send(builder.build()?, Some(&request.service))
            .await?;
        let PaidResponse {
            response,
            receipt,
            paid,
            unknown,
        } = paid;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let answer = match status {
            200 => RunAnswer::Completed(parse(&bytes)?),
            202 => RunAnswer::Accepted(parse(&bytes)?),
            _ => {
                return Err(GatewayError::Api {
                    status,
                    error: api_error(status, &bytes),
                    unknown,
                });
            }
        };
        Ok(GatewayRun {
            answer,
            receipt,
            paid,
        })
    }

    /// Runs `request` and, when it becomes a job, waits for its output, calling
    /// `on_progress` with each status seen and the time waited.
    pub async fn run_to_completion<F, Fut>(
        &self,
        request: &RunRequest,
        as_job: bool,
        on_progress: F,
    ) -> Result<(Value, GatewayRun), GatewayError>
    where
        F: FnMut(&JobView, Duration) -> Fut,
        Fut: Future<Output = ()>,
    {
        let run = self.run(request, as_job, None).await?;
        let output = match &run.answer {
            RunAnswer::Completed(done) => done.output.clone(),
            RunAnswer::Accepted(job) => self.wait_for(&job.job_id, on_progress).await?,
        };
        Ok((output, run))
    }

    /// Waits for job `job_id` to finish and returns its output.
    pub async fn wait_for<F, Fut>(
        &self,
        job_id: &str,
        on_progress: F,
    ) -> Result<Value, GatewayError>
    where
        F: FnMut(&JobView, Duration) -> Fut,
        Fut: Future<Output = ()>,
    {
        poll_job(&self.polling, job_id, || self.status(job_id), on_progress).await
    }

    /// `GET /status/{job_id}`.
    pub async fn status(&self, job_id: &str) -> Result<JobView, GatewayError> {
        let mut url = self.url("")?;
        url.path_segments_mut()
            .map_err(|()| GatewayError::BadAnswer(format!("{} is not a base URL", self.base)))?
            .pop_if_empty()
            .extend(["status", job_id]);
        self.get(url).await
    }

    /// `GET /catalog`.
    pub async fn catalog(&self) -> Result<Catalog, GatewayError> {
        self.get(format!("{}/catalog", self.base)).await
    }

    /// `GET /catalog/estimate`.
    pub async fn estimate(&self, query: &EstimateQuery) -> Result<Estimate, GatewayError> {
        let mut url = self.url("/catalog/estimate")?;
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("service", &query.service);
            for (name, value) in [
                ("tokens", query.tokens),
                ("characters", query.characters),
                ("seconds", query.seconds),
            ] {
                if let Some(value) = value {
                    pairs.append_pair(name, &value.to_string());
                }
            }
            if let Some(text) = &query.text {
                pairs.append_pair("text", text);
            }
        }
        self.get(url).await
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, GatewayError> {
        reqwest::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| GatewayError::BadAnswer(format!("bad gateway URL {}: {e}", self.base)))
    }

    async fn get<T: DeserializeOwned>(
        &self,
        url: impl reqwest::IntoUrl,
    ) -> Result<T, GatewayError> {
        read(self.client.http().get(url).send().await?).await
    }
}

/// Polls a job with `fetch` on `polling`'s schedule until it finishes, calling
/// `on_progress` with each unfinished status and the time waited: the one loop behind
/// [`GatewayClient::wait_for`] and callers that reach the gateway another way (in process).
pub async fn poll_job<Fetch, FetchFut, F, Fut>(
    polling: &JobPolling,
    job_id: &str,
    mut fetch: Fetch,
    mut on_progress: F,
) -> Result<Value, GatewayError>
where
    Fetch: FnMut() -> FetchFut,
    FetchFut: Future<Output = Result<JobView, GatewayError>>,
    F: FnMut(&JobView, Duration) -> Fut,
    Fut: Future<Output = ()>,
{
    let started = Instant::now();
    loop {
        let view = fetch().await?;
        match view.status {
            JobStatus::Completed => return Ok(view.output.unwrap_or(Value::Null)),
            JobStatus::Failed => return Err(GatewayError::JobFailed(Box::new(view))),
            JobStatus::Pending | JobStatus::Running => {}
        }
        let waited = started.elapsed();
        on_progress(&view, waited).await;
        let Some(pause) = polling.next_wait(waited) else {
            return Err(GatewayError::StillRunning {
                job_id: job_id.to_owned(),
                status_url: format!("/status/{job_id}"),
                waited,
            });
        };
        tokio::time::sleep(pause).await;
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, GatewayError> {
    serde_json::from_slice(bytes).map_err(|e| {
        GatewayError::BadAnswer(format!(
            "{e}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        ))
    })
}

fn api_error(status: u16, bytes: &[u8]) -> ApiError {
    serde_json::from_slice(bytes).unwrap_or_else(|_| {
        ApiError::new(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        ))
    })
}

async fn read<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, GatewayError> {
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    if !(200..300).contains(&status) {
        return Err(GatewayError::Api {
            status,
            error: api_error(status, &bytes),
            unknown: None,
        });
    }
    parse(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use x402_gateway_api::Progress;

    fn view(status: JobStatus) -> JobView {
        JobView {
            id: "job_1".into(),
            service: "pdf-parse".into(),
            cost_usd: "0.005".into(),
            payer: "0xabc".into(),
            transaction: Some("0xdef".into()),
            charged: true,
            attempts: 1,
            status,
            progress: Progress {
                phase: "running".into(),
                percent_estimate: 50,
                elapsed_seconds: 0.0,
            },
            output: (status == JobStatus::Completed).then(|| serde_json::json!({"text": "hi"})),
            error: (status == JobStatus::Failed).then(|| "boom".to_owned()),
            refunded: None,
            refund_amount_usd: None,
            note: None,
            last_error: None,
        }
    }

    fn fast() -> JobPolling {
        JobPolling {
            early: Duration::from_millis(1),
            early_for: Duration::from_millis(5),
            late: Duration::from_millis(2),
            give_up_after: Duration::from_millis(200),
        }
    }

    #[tokio::test]
    async fn a_job_is_polled_with_progress_until_its_output() {
        let asked = AtomicUsize::new(0);
        let progress = AtomicUsize::new(0);
        let output = poll_job(
            &fast(),
            "job_1",
            || {
                let n = asked.fetch_add(1, Ordering::SeqCst);
                async move {
                    Ok(view(if n < 3 {
                        JobStatus::Running
                    } else {
                        JobStatus::Completed
                    }))
                }
            },
            |seen, _| {
                assert_eq!(seen.status, JobStatus::Running);
                progress.fetch_add(1, Ordering::SeqCst);
                std::future::ready(())
            },
        )
        .await
        .unwrap();
        assert_eq!(output["text"], "hi");
        assert_eq!(asked.load(Ordering::SeqCst), 4);
        assert_eq!(progress.load(Ordering::SeqCst), 3);
    }

    /// What polling `job_1` ends with when it always answers `status`.
    async fn poll_error(status: JobStatus) -> GatewayError {
        poll_job(
            &fast(),
            "job_1",
            || async move { Ok(view(status)) },
            |_, _| std::future::ready(()),
        )
        .await
        .unwrap_err()
    }

    #[tokio::test]
    async fn a_failed_job_says_why_and_a_slow_one_says_where_to_look() {
        let failed = poll_error(JobStatus::Failed).await;
        assert_eq!(failed.to_string(), "job job_1 failed: boom");
        let slow = poll_error(JobStatus::Running).await;
        assert!(
            matches!(&slow, GatewayError::StillRunning { status_url, .. } if status_url == "/status/job_1"),
            "{slow}"
        );
    }

    #[test]
    fn refusals_say_whether_the_payer_was_charged() {
        let refused = GatewayError::Api {
            status: 400,
            error: ApiError {
                charged: Some(false),
                ..ApiError::new("bad input")
            },
            unknown: None,
        };
        assert_eq!(
            refused.to_string(),
            "the gateway answered 400: bad input (not charged)"
        );
        let lost = GatewayError::Api {
            status: 502,
            error: ApiError::new("upstream"),
            unknown: Some(7),
        };
        assert!(lost.to_string().contains("ledger row 7 is unknown"));
    }
}
