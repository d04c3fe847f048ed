//! Jobs: recorded before the 202, run in the background, run again after a restart.

use super::*;
use crate::backend::ProgressFn;

/// Records a paid job and starts it; answers `202 {job_id}`.
pub(super) async fn start_job(state: &Arc<AppState>, prepared: Prepared, paid: &Paid) -> Response {
    let id = prepared
        .job_id
        .clone()
        .unwrap_or_else(|| format!("job_{}", uuid::Uuid::new_v4().simple()));
    let job = NewJob {
        id: id.clone(),
        service: prepared.service.to_owned(),
        input: prepared.job_input.clone().unwrap_or(Value::Null),
        payer: paid.payer().to_owned(),
        amount: paid.amount().to_string(),
        cost_usd: paid.amount_human(),
        asset: paid.asset().to_owned(),
        network: paid.network().as_str().to_owned(),
        transaction: paid.transaction().map(str::to_owned),
    };
    if let Err(error) = state.jobs.accept(&job).await {
        // Paid, but not recorded: run it now and answer with the result, rather than accept
        // a job that a restart would lose.
        tracing::error!(%error, job = %id, "could not record a paid job; running it in the request");
        return match task::run(prepared.task.clone(), &state.backends).await {
            Ok(output) => match output.gpu_bridge() {
                Ok(output) => completed(&prepared, output, paid, paid.amount_human()),
                Err(_) => charged_failure(
                    &BackendError::Failed("streaming answers cannot run as jobs".into()),
                    paid,
                ),
            },
            Err(error) => charged_failure(&error, paid),
        };
    }
    spawn_job(state.clone(), id.clone(), prepared);
    let body = JobAccepted {
        status_url: format!("/status/{id}"),
        job_id: id,
        status: JobStatus::Pending,
        estimated_cost_usd: job.cost_usd,
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// A failure after the payment was settled: says so, with the transaction.
pub(super) fn charged_failure(error: &BackendError, paid: &Paid) -> Response {
    tracing::error!(%error, payer = paid.payer(), "a settled request failed");
    refuse(
        StatusCode::INTERNAL_SERVER_ERROR,
        ApiError {
            charged: Some(true),
            refunded: Some(false),
            transaction: paid.transaction().map(str::to_owned),
            ..ApiError::new(format!("the service failed: {error}"))
        },
    )
}

/// Runs a recorded job in the background until it completes or fails for good.
pub(super) fn spawn_job(state: Arc<AppState>, id: String, prepared: Prepared) {
    tokio::spawn(async move { work(&state, &id, &prepared).await });
}

pub(super) async fn work(state: &AppState, id: &str, prepared: &Prepared) {
    let store = state.jobs.store();
    let max = state.jobs.max_attempts();
    let outcome = loop {
        let attempt = match store.start_attempt(id).await {
            Ok(attempt) => attempt,
            Err(error) => {
                // Left as it is; the next start finds it unfinished.
                tracing::error!(%error, job = id, "could not start a job attempt");
                return;
            }
        };
        if attempt > max {
            break JobOutcome::Failed(format!(
                "the job was attempted {max} times and the gateway stopped during the last attempt"
            ));
        }
        tracing::info!(job = id, service = prepared.service, attempt, "running job");
        match prepared.task.as_ref() {
            task::Task::Transcribe(job) => {
                state.jobs.set_progress(id, "transcribing", 1);
                job.report_progress(progress_of(state, id, "transcribed", "30-second windows"));
            }
            task::Task::Ocr(job) => {
                state.jobs.set_progress(id, "reading", 1);
                job.report_progress(progress_of(state, id, "read", "pages"));
            }
            _ => {}
        }
        let error = match task::run(prepared.task.clone(), &state.backends).await {
            Ok(output) => match output.gpu_bridge() {
                Ok(output) => break JobOutcome::Completed(output),
                Err(_) => BackendError::Failed("streaming answers cannot run as jobs".into()),
            },
            Err(error) => error,
        };
        if !error.is_retryable() || attempt >= max {
            break JobOutcome::Failed(error.to_string());
        }
        tracing::warn!(%error, job = id, attempt, "job attempt failed; trying again");
        if let Err(error) = store.retry_later(id, &error.to_string()).await {
            tracing::error!(%error, job = id, "could not record a failed attempt");
        }
        tokio::time::sleep(Duration::from_millis(500) * attempt).await;
    };
    state.jobs.clear_progress(id);
    if let Err(error) = store.finish(id, &outcome).await {
        tracing::error!(%error, job = id, "could not record a finished job; it runs again at the next start");
    }
}

/// Where a job's task reports its steps: `/status` shows "{done} {total} {steps}" ("read 3
/// of 12 pages") and the share done.
fn progress_of(
    state: &AppState,
    id: &str,
    done_verb: &'static str,
    steps: &'static str,
) -> ProgressFn {
    let (jobs, id) = (state.jobs.clone(), id.to_owned());
    Box::new(move |done, total| {
        let percent = (done * 100 / total.max(1)).clamp(1, 99) as u8;
        jobs.set_progress(
            &id,
            &format!("{done_verb} {done} of {total} {steps}"),
            percent,
        );
    })
}

/// Runs again the jobs left unfinished when the gateway last stopped. Returns how many.
pub(crate) async fn resume_jobs(state: &Arc<AppState>) -> Result<usize, JobStoreError> {
    let left = state.jobs.unfinished().await?;
    run_again(state, left).await
}

/// Takes up the jobs another replica sharing the job store died with. Returns how many.
pub(crate) async fn sweep_jobs(state: &Arc<AppState>) -> Result<usize, JobStoreError> {
    let orphaned = state.jobs.store().orphaned().await?;
    run_again(state, orphaned).await
}

/// Sweeps for orphaned jobs every `every`, while the gateway's state lives (the sweep stops
/// with the router).
pub(crate) fn sweep_every(state: &Arc<AppState>, every: Duration) {
    let state = Arc::downgrade(state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else { return };
            match sweep_jobs(&state).await {
                Ok(0) => {}
                Ok(taken) => tracing::info!(taken, "jobs a stopped replica left are running here"),
                Err(error) => {
                    tracing::warn!(%error, "sweeping for jobs a stopped replica left failed; retrying")
                }
            }
        }
    });
}

/// Runs `left` (jobs taken for this process) again, or fails those that cannot run here.
async fn run_again(state: &Arc<AppState>, left: Vec<JobRecord>) -> Result<usize, JobStoreError> {
    let count = left.len();
    for record in left {
        let id = record.job.id.clone();
        match prepare_again(state, &record) {
            Ok(prepared) => {
                tracing::info!(job = %id, service = %record.job.service, attempts = record.attempts, "resuming a job left unfinished");
                spawn_job(state.clone(), id, prepared);
            }
            Err(message) => {
                tracing::warn!(job = %id, %message, "a job left unfinished cannot run here any more");
                state
                    .jobs
                    .store()
                    .finish(&id, &JobOutcome::Failed(message))
                    .await?;
            }
        }
    }
    Ok(count)
}

/// The work of a recorded job, from its recorded input, checked as when it was accepted.
pub(super) fn prepare_again(state: &AppState, record: &JobRecord) -> Result<Prepared, String> {
    let service = &record.job.service;
    let offered = state
        .registry
        .get(service)
        .ok_or_else(|| format!("service {service} is no longer offered here"))?;
    if let Err(why) = &offered.available {
        return Err(format!(
            "service {service} is no longer available here: {why}"
        ));
    }
    task::prepare(
        offered,
        &record.job.input,
        &state.backends,
        &state.limits,
        true,
    )
    .map_err(|rejection| {
        format!(
            "the recorded input is no longer accepted: {}",
            rejection.body["error"].as_str().unwrap_or("refused")
        )
    })
}
