//! Long requests run as jobs: `POST /run` answers `{job_id}` at once and `GET /status/{id}`
//! reports progress, then the output. Jobs live in memory for `job_ttl_seconds`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Debug)]
enum State {
    Running,
    Completed(Value),
    Failed(String),
}

#[derive(Debug)]
struct Job {
    service: &'static str,
    cost_usd: String,
    payer: String,
    transaction: Option<String>,
    started: Instant,
    finished: Option<Instant>,
    state: State,
}

/// The job table.
#[derive(Debug)]
pub struct Jobs {
    jobs: Mutex<HashMap<String, Job>>,
    ttl: Duration,
}

impl Jobs {
    /// An empty table keeping finished jobs for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            jobs: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a started job and returns its id.
    pub fn start(
        &self,
        service: &'static str,
        cost_usd: String,
        payer: String,
        transaction: Option<String>,
    ) -> String {
        let id = format!("job_{}", uuid::Uuid::new_v4().simple());
        let mut jobs = self.lock();
        let ttl = self.ttl;
        jobs.retain(|_, job| job.finished.is_none_or(|at| at.elapsed() < ttl));
        jobs.insert(
            id.clone(),
            Job {
                service,
                cost_usd,
                payer,
                transaction,
                started: Instant::now(),
                finished: None,
                state: State::Running,
            },
        );
        id
    }

    /// Records a job's outcome.
    pub fn finish(&self, id: &str, outcome: Result<Value, String>) {
        if let Some(job) = self.lock().get_mut(id) {
            job.finished = Some(Instant::now());
            job.state = match outcome {
                Ok(output) => State::Completed(output),
                Err(error) => State::Failed(error),
            };
        }
    }

    /// `GET /status/{id}`; `None` for an unknown (or expired) id.
    pub fn view(&self, id: &str) -> Option<Value> {
        let jobs = self.lock();
        let job = jobs.get(id)?;
        let elapsed = job
            .finished
            .unwrap_or_else(Instant::now)
            .duration_since(job.started)
            .as_secs_f64();
        let mut view = json!({
            "id": id,
            "service": job.service,
            "cost_usd": job.cost_usd,
            "payer": job.payer,
            "transaction": job.transaction,
        });
        match &job.state {
            State::Running => {
                view["status"] = json!("running");
                view["progress"] = json!({
                    "phase": "running",
                    "percent_estimate": 50,
                    "elapsed_seconds": (elapsed * 10.0).round() / 10.0,
                });
            }
            State::Completed(output) => {
                view["status"] = json!("completed");
                view["output"] = output.clone();
                view["progress"] =
                    json!({"phase": "done", "percent_estimate": 100, "elapsed_seconds": elapsed});
            }
            State::Failed(error) => {
                view["status"] = json!("failed");
                view["error"] = json!(error);
                // Paid before it ran; there is no automatic refund.
                view["refunded"] = json!(false);
            }
        }
        Some(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_report_progress_then_output() {
        let jobs = Jobs::new(Duration::from_secs(60));
        let id = jobs.start(
            "pdf-parse",
            "0.002".into(),
            "0xabc".into(),
            Some("0x01".into()),
        );
        assert_eq!(jobs.view(&id).unwrap()["status"], "running");
        jobs.finish(&id, Ok(json!({"text": "hi"})));
        let view = jobs.view(&id).unwrap();
        assert_eq!(view["status"], "completed");
        assert_eq!(view["output"]["text"], "hi");
        assert_eq!(view["transaction"], "0x01");
        assert!(jobs.view("job_nope").is_none());
    }
}
