//! The gateway's HTTP API: GPU-Bridge's `/run`, `/status/{id}`, `/catalog`,
//! `/catalog/estimate`, and OpenAI's `/v1/embeddings`, `/v1/chat/completions`, `/v1/models`.
//! Paid routes sit behind the paywall, priced from the request body before any work.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::StreamExt;
use serde_json::{Value, json};
use x402_gateway_api::{ApiError, Catalog, Estimate, JobAccepted, JobStatus, RunCompleted};
use x402_paywall::{Paid, Paywall, Rejection, RoutePrice};

use crate::backend::BackendError;
use crate::backend::chat::ChatAnswer;
use crate::backend::embed::MODEL_NAME;
use crate::catalog::{BackendKind, Unit};
use crate::config::GatewayLimits;
use crate::jobs::{self, JobOutcome, JobRecord, JobStoreError, Jobs, NewJob};
use crate::services::{Backends, Registry};
use crate::task::{self, Output, Prepared, Task};

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// Services, prices, availability.
    pub registry: Registry,
    /// Local backends.
    pub backends: Backends,
    /// Input limits.
    pub limits: GatewayLimits,
    /// Long jobs.
    pub jobs: Jobs,
    /// Decimals of the preferred asset, for USD figures.
    pub decimals: u8,
}

/// The router: free discovery routes and paid service routes.
pub(crate) fn router(state: Arc<AppState>, paywall: &Paywall) -> Router {
    let run_price = {
        let state = state.clone();
        RoutePrice::computed(move |parts, body| quote_run(&state, &parts.headers, body))
            .description("A GPU-Bridge-compatible AI service call")
    };
    let embeddings_price = {
        let state = state.clone();
        RoutePrice::computed(move |_, body| quote_openai_embeddings(&state, body))
            .description("OpenAI-compatible embeddings (all-MiniLM-L6-v2)")
    };
    let chat_price = {
        let state = state.clone();
        RoutePrice::computed(move |_, body| quote_openai_chat(&state, body))
            .description("OpenAI-compatible chat completions")
    };
    Router::new()
        .route("/run", post(run).layer(paywall.layer(run_price)))
        .route(
            "/v1/embeddings",
            post(openai_embeddings).layer(paywall.layer(embeddings_price)),
        )
        .route(
            "/v1/chat/completions",
            post(openai_chat).layer(paywall.layer(chat_price)),
        )
        .route("/catalog", get(catalog))
        .route("/catalog/estimate", get(estimate))
        .route("/status/{job_id}", get(status))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .with_state(state)
}

// ---------------------------------------------------------------------------------------
// Errors: every failure after payment was verified maps to a status here, in one place. A
// status >= 400 means the paywall does not settle: the client is not charged.

fn backend_error(error: &BackendError) -> Response {
    let (status, message) = match error {
        BackendError::BadInput(m) => (StatusCode::BAD_REQUEST, m.clone()),
        BackendError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m.clone()),
        BackendError::Upstream(m) => (StatusCode::BAD_GATEWAY, m.clone()),
        BackendError::Failed(m) => {
            tracing::error!(error = %m, "backend failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the service failed on this input; you were not charged".to_owned(),
            )
        }
    };
    let body = ApiError {
        charged: Some(false),
        ..ApiError::new(message)
    };
    (status, Json(body)).into_response()
}

/// An API error answer.
fn refuse(status: StatusCode, error: ApiError) -> Response {
    (status, Json(error)).into_response()
}

fn not_found(what: String) -> Response {
    refuse(StatusCode::NOT_FOUND, ApiError::new(what))
}

// ---------------------------------------------------------------------------------------
// Quotes: parse and check the input, measure it, price it. Runs before payment.

fn parse_json(body: &[u8]) -> Result<Value, Rejection> {
    if body.is_empty() {
        return Err(Rejection::bad_request(
            "the request body is empty; send JSON",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| Rejection::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn quote_run(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<x402_paywall::Quote, Rejection> {
    let request = parse_json(body)?;
    let Some(key) = request.get("service").and_then(Value::as_str) else {
        return Err(Rejection::bad_request("\"service\" (a string) is required, e.g. {\"service\": \"embed-l4\", \"input\": {\"text\": \"…\"}}")
            .with("available_services", state.registry.available_keys()));
    };
    let Some(offered) = state.registry.get(key) else {
        return Err(Rejection::bad_request(format!("unknown service {key:?}"))
            .with("hint", "GET /catalog lists every service")
            .with("available_services", state.registry.available_keys()));
    };
    if let Err(why) = &offered.available {
        return Err(Rejection::bad_request(format!(
            "service {} is not available here: {why}",
            offered.def.key
        ))
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
        .with("available_services", state.registry.available_keys()));
    }
    let input = request.get("input").cloned().unwrap_or(Value::Null);
    if input.is_null() {
        return Err(Rejection::bad_request("\"input\" (an object) is required"));
    }
    let wants_job = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("respond-async"));
    let prepared = task::prepare(offered, &input, &state.backends, &state.limits, wants_job)?;
    Ok(prepared.quote(offered))
}

fn quote_openai_embeddings(
    state: &AppState,
    body: &[u8],
) -> Result<x402_paywall::Quote, Rejection> {
    let request = parse_json(body)?;
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(MODEL_NAME);
    let known = [
        MODEL_NAME,
        "embed-l4",
        "embedding-l4",
        "embed-code",
        "text-embedding-minilm",
    ];
    if !known
        .iter()
        .any(|k| k.eq_ignore_ascii_case(model) || model.ends_with(MODEL_NAME))
    {
        return Err(
            Rejection::bad_request(format!("unknown embedding model {model:?}"))
                .with("models", known.to_vec()),
        );
    }
    if request
        .get("encoding_format")
        .and_then(Value::as_str)
        .is_some_and(|f| f != "float")
    {
        return Err(Rejection::bad_request(
            "only encoding_format \"float\" is supported",
        ));
    }
    let input = request.get("input").ok_or_else(|| {
        Rejection::bad_request("input (a string or an array of strings) is required")
    })?;
    let offered = state
        .registry
        .get("embed-l4")
        .expect("embed-l4 is in the catalog");
    if let Err(why) = &offered.available {
        return Err(
            Rejection::bad_request(format!("embeddings are not available here: {why}"))
                .with_status(StatusCode::SERVICE_UNAVAILABLE),
        );
    }
    let prepared = task::prepare(
        offered,
        &json!({"texts": input}),
        &state.backends,
        &state.limits,
        false,
    )?;
    Ok(prepared.quote(offered))
}

fn quote_openai_chat(state: &AppState, body: &[u8]) -> Result<x402_paywall::Quote, Rejection> {
    let request = parse_json(body)?;
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let chat_services = || {
        state
            .registry
            .all()
            .filter(|o| o.def.backend == BackendKind::Chat && o.available.is_ok())
            .flat_map(|o| {
                [
                    Some(o.def.key.to_owned()),
                    o.upstream.as_ref().map(|u| u.model().to_owned()),
                ]
            })
            .flatten()
            .collect::<Vec<_>>()
    };
    let offered = state
        .registry
        .all()
        .filter(|o| o.def.backend == BackendKind::Chat && o.available.is_ok())
        .find(|o| o.def.key == model || o.upstream.as_ref().is_some_and(|u| u.model() == model))
        .ok_or_else(|| {
            Rejection::bad_request(format!("model {model:?} is not served here"))
                .with("models", chat_services())
        })?;
    let prepared = task::prepare(offered, &request, &state.backends, &state.limits, false)?;
    Ok(prepared.quote(offered))
}

// ---------------------------------------------------------------------------------------
// Paid handlers.

async fn run(
    State(state): State<Arc<AppState>>,
    Extension(prepared): Extension<Prepared>,
    Extension(paid): Extension<Paid>,
) -> Response {
    if prepared.as_job {
        return start_job(&state, prepared, &paid).await;
    }
    match task::run(prepared.task.clone(), &state.backends).await {
        Ok(Output::Json(output)) => completed(&prepared, output, &paid),
        Ok(Output::Stream(answer)) => event_stream(answer),
        Err(error) => backend_error(&error),
    }
}

fn completed(prepared: &Prepared, output: Value, paid: &Paid) -> Response {
    Json(RunCompleted {
        id: format!("run_{}", uuid::Uuid::new_v4().simple()),
        status: JobStatus::Completed,
        service: prepared.service.to_owned(),
        output: run_output(prepared, output),
        cost_usd: paid.amount_human(),
        payer: paid.payer().to_owned(),
    })
    .into_response()
}

// ---------------------------------------------------------------------------------------
// Jobs: recorded before the 202, run in the background, run again after a restart.

/// Records a paid job and starts it; answers `202 {job_id}`.
async fn start_job(state: &Arc<AppState>, prepared: Prepared, paid: &Paid) -> Response {
    let id = format!("job_{}", uuid::Uuid::new_v4().simple());
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
            Ok(Output::Json(output)) => completed(&prepared, output, paid),
            Ok(Output::Stream(_)) => charged_failure(
                &BackendError::Failed("streaming answers cannot run as jobs".into()),
                paid,
            ),
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
fn charged_failure(error: &BackendError, paid: &Paid) -> Response {
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
fn spawn_job(state: Arc<AppState>, id: String, prepared: Prepared) {
    tokio::spawn(async move { work(&state, &id, &prepared).await });
}

async fn work(state: &AppState, id: &str, prepared: &Prepared) {
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
        let error = match task::run(prepared.task.clone(), &state.backends).await {
            Ok(Output::Json(output)) => break JobOutcome::Completed(run_output(prepared, output)),
            Ok(Output::Stream(_)) => {
                BackendError::Failed("streaming answers cannot run as jobs".into())
            }
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
    if let Err(error) = store.finish(id, &outcome).await {
        tracing::error!(%error, job = id, "could not record a finished job; it runs again at the next start");
    }
}

/// Runs again the jobs left unfinished when the gateway last stopped. Returns how many.
pub(crate) async fn resume_jobs(state: &Arc<AppState>) -> Result<usize, JobStoreError> {
    let left = state.jobs.unfinished().await?;
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
fn prepare_again(state: &AppState, record: &JobRecord) -> Result<Prepared, String> {
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

/// `/run` answers LLM calls as `{text, model, usage, finish_reason}` (GPU-Bridge's shape);
/// other services' outputs are already in shape.
fn run_output(prepared: &Prepared, output: Value) -> Value {
    if matches!(&*prepared.task, Task::Chat { .. }) {
        let choice = &output["choices"][0];
        json!({
            "text": choice["message"]["content"],
            "finish_reason": choice["finish_reason"],
            "model": output["model"],
            "usage": output["usage"],
        })
    } else {
        output
    }
}

fn event_stream(answer: ChatAnswer) -> Response {
    let ChatAnswer::Stream(stream) = answer else {
        return backend_error(&BackendError::Failed("expected a stream".into()));
    };
    let body = Body::from_stream(stream.map(|chunk| chunk.map_err(std::io::Error::other)));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn openai_embeddings(
    State(state): State<Arc<AppState>>,
    Extension(prepared): Extension<Prepared>,
) -> Response {
    match task::run(prepared.task.clone(), &state.backends).await {
        Ok(Output::Json(output)) => {
            let vectors = output["embeddings"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![output["embedding"].clone()]);
            let data: Vec<Value> = vectors
                .into_iter()
                .enumerate()
                .map(|(index, embedding)| json!({"object": "embedding", "index": index, "embedding": embedding}))
                .collect();
            Json(json!({
                "object": "list",
                "data": data,
                "model": MODEL_NAME,
                "usage": {"prompt_tokens": prepared.units, "total_tokens": prepared.units},
            }))
            .into_response()
        }
        Ok(Output::Stream(_)) => backend_error(&BackendError::Failed("unexpected stream".into())),
        Err(error) => backend_error(&error),
    }
}

async fn openai_chat(
    State(state): State<Arc<AppState>>,
    Extension(prepared): Extension<Prepared>,
) -> Response {
    match task::run(prepared.task.clone(), &state.backends).await {
        Ok(Output::Json(output)) => Json(output).into_response(),
        Ok(Output::Stream(answer)) => event_stream(answer),
        Err(error) => backend_error(&error),
    }
}

// ---------------------------------------------------------------------------------------
// Free routes.

async fn catalog(State(state): State<Arc<AppState>>) -> Json<Catalog> {
    let mut catalog = state.registry.catalog(state.decimals);
    catalog.jobs = Some(jobs::policy(state.jobs.max_attempts()));
    Json(catalog)
}

async fn estimate(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(key) = query.get("service") else {
        return refuse(
            StatusCode::BAD_REQUEST,
            ApiError::new("?service= is required"),
        );
    };
    let Some(offered) = state.registry.get(key) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            ApiError {
                available_services: Some(
                    state
                        .registry
                        .available_keys()
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                ),
                ..ApiError::new(format!("unknown service {key:?}"))
            },
        );
    };
    let unit = offered.def.unit;
    let number = |name: &str| -> Result<Option<u64>, String> {
        match query.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(|n| Some(n.ceil() as u64))
                .ok_or_else(|| format!("{name} must be a non-negative number")),
        }
    };
    let refuse = |message: String| refuse(StatusCode::BAD_REQUEST, ApiError::new(message));
    let text = query.get("text");
    let units = match unit {
        Unit::Tokens1k => match number("tokens") {
            Err(message) => return refuse(message),
            Ok(Some(n)) => n,
            Ok(None) => match (text, offered.def.backend, &state.backends.embeddings) {
                (Some(t), BackendKind::Embeddings, Ok(model)) => {
                    model.count_tokens(std::slice::from_ref(t)).unwrap_or(0) as u64
                }
                (Some(t), _, _) => {
                    (t.chars().count() as u64).div_ceil(4)
                        + task::DEFAULT_MAX_TOKENS
                            * u64::from(offered.def.backend == BackendKind::Chat)
                }
                _ => 1000,
            },
        },
        Unit::Chars1k => match number("characters") {
            Err(message) => return refuse(message),
            Ok(n) => n.or(text.map(|t| t.chars().count() as u64)).unwrap_or(1000),
        },
        Unit::Minute | Unit::Second => match number("seconds") {
            Err(message) => return refuse(message),
            Ok(n) => n.unwrap_or(60),
        },
        _ => 1,
    }
    .max(1);
    let amount = offered
        .price
        .scaled_to_atomic(state.decimals, units, unit.per());
    let cost = amount
        .map(|a| a.to_human(state.decimals))
        .unwrap_or_default();
    let price_per_second = matches!(unit, Unit::Minute | Unit::Second).then(|| {
        offered
            .price
            .scaled_to_atomic(state.decimals, 1, unit.per())
            .map(|a| a.to_human(state.decimals))
            .unwrap_or_default()
    });
    Json(Estimate {
        service: offered.def.key.to_owned(),
        estimated_cost_usd: cost,
        unit,
        units,
        price_usd: offered.price.as_str().to_owned(),
        per: unit.label().to_owned(),
        available: offered.available.is_ok(),
        note: format!(
            "{units} {} at ${} {}; POST /run quotes the exact price of a request in its 402",
            unit.measure(),
            offered.price,
            unit.label()
        ),
        price_per_second,
    })
    .into_response()
}

async fn status(State(state): State<Arc<AppState>>, Path(job_id): Path<String>) -> Response {
    match state.jobs.view(&job_id).await {
        Ok(Some(view)) => Json(view).into_response(),
        Ok(None) => not_found(format!(
            "no job {job_id:?} (unknown, or finished more than {} s ago)",
            state.limits.job_ttl_seconds
        )),
        Err(error) => {
            tracing::error!(%error, job = %job_id, "cannot read the job store");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                ApiError::new("job status is unavailable right now; try again"),
            )
        }
    }
}

async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    let mut data = Vec::new();
    if state.backends.embeddings.is_ok() {
        data.push(json!({"id": MODEL_NAME, "object": "model", "owned_by": "local"}));
    }
    for offered in state
        .registry
        .all()
        .filter(|o| o.def.backend == BackendKind::Chat && o.available.is_ok())
    {
        data.push(json!({"id": offered.def.key, "object": "model", "owned_by": "upstream"}));
    }
    Json(json!({"object": "list", "data": data}))
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    let status = |r: Result<(), &String>| match r {
        Ok(()) => json!({"ok": true}),
        Err(why) => json!({"ok": false, "error": why}),
    };
    Json(json!({
        "status": "ok",
        "available_services": state.registry.available_keys().len(),
        "backends": {
            "embeddings": status(state.backends.embeddings.as_ref().map(|_| ())),
            "speech": status(state.backends.speech.as_ref().map(|_| ())),
        },
    }))
}
