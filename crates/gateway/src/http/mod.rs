//! The gateway's HTTP API: GPU-Bridge's `/run`, `/status/{id}`, `/catalog`,
//! `/catalog/estimate`, and OpenAI's `/v1/embeddings`, `/v1/chat/completions`, `/v1/models`.
//! Paid routes sit behind the paywall, priced from the request body before any work.
//!
//! This module holds the router, the error answers and the GPU-Bridge and free handlers;
//! [`quote`] prices requests before payment, [`job_runner`] runs paid jobs in the background
//! and after a restart, [`openai`] answers the OpenAI routes; [`operator`] and [`dashboard`]
//! are what operators see and do.

mod dashboard;
mod job_runner;
mod openai;
mod operator;
mod quote;

pub(crate) use dashboard::{AssetName, Dashboard, VIEW as DASHBOARD_VIEW, api as dashboard_api};
pub(crate) use job_runner::{resume_jobs, sweep_every};
pub(crate) use operator::{metrics_routes, operator_routes};

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
use x402_gateway_api::{ApiError, Catalog, JobAccepted, JobStatus, RunCompleted};
use x402_paywall::{Paid, Paywall, Rejection, RoutePrice};

use crate::backend::BackendError;
use crate::backend::chat::ChatAnswer;
use crate::backend::embed::MODEL_NAME;
use crate::backend::local_llm::{LoadState, LocalLlm};
use crate::catalog::BackendKind;
use crate::config::GatewayLimits;
use crate::jobs::{self, JobOutcome, JobRecord, JobStoreError, Jobs, NewJob};
use crate::pricing;
use crate::services::{Backends, Registry};
use crate::task::{self, Output, Prepared};

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
    /// The ways to pay, as the catalog lists them.
    pub payment_methods: Vec<x402_gateway_api::PaymentMethod>,
    /// The Postgres database the replicas share, when the config names one (`/health`
    /// reports it).
    pub database: Option<crate::postgres::Database>,
}

/// How long `/health` waits for the database.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// The router: free discovery routes and paid service routes.
pub(crate) fn router(state: Arc<AppState>, paywall: &Paywall) -> Router {
    let run_price = {
        let state = state.clone();
        RoutePrice::computed(move |parts, body| quote::quote_run(&state, &parts.headers, body))
            .description("A GPU-Bridge-compatible AI service call")
    };
    let embeddings_price = {
        let state = state.clone();
        RoutePrice::computed(move |_, body| quote::quote_openai_embeddings(&state, body))
            .description("OpenAI-compatible embeddings (all-MiniLM-L6-v2)")
    };
    let chat_price = {
        let state = state.clone();
        RoutePrice::computed(move |_, body| quote::quote_openai_chat(&state, body))
            .description("OpenAI-compatible chat completions")
    };
    Router::new()
        .route("/run", post(run).layer(paywall.layer(run_price)))
        .route(
            "/v1/embeddings",
            post(openai::openai_embeddings).layer(paywall.layer(embeddings_price)),
        )
        .route(
            "/v1/chat/completions",
            post(openai::openai_chat).layer(paywall.layer(chat_price)),
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

pub(super) fn backend_error(error: &BackendError) -> Response {
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
pub(super) fn refuse(status: StatusCode, error: ApiError) -> Response {
    (status, Json(error)).into_response()
}

pub(super) fn not_found(what: String) -> Response {
    refuse(StatusCode::NOT_FOUND, ApiError::new(what))
}

// ---------------------------------------------------------------------------------------
// Paid handlers.

pub(super) async fn run(
    State(state): State<Arc<AppState>>,
    Extension(prepared): Extension<Prepared>,
    Extension(paid): Extension<Paid>,
) -> Response {
    if prepared.as_job {
        return job_runner::start_job(&state, prepared, &paid).await;
    }
    match task::run(prepared.task.clone(), &state.backends).await {
        Ok(output) => {
            let usage = metered_usage(&state, &prepared, &output);
            // Under a metered scheme the charge is the usage; otherwise what was paid.
            let charged = match usage {
                Some(used) if paid.metered() => paid.human(x402_proto::TokenAmount(used)),
                _ => paid.amount_human(),
            };
            let mut response = match output.gpu_bridge() {
                Ok(output) => completed(&prepared, output, &paid, charged),
                Err(stream) => openai::event_stream(&state, &prepared, stream),
            };
            report_usage(&mut response, usage);
            response
        }
        Err(error) => backend_error(&error),
    }
}

/// What a chat completion used, in atomic units of the price: its tokens at the service's
/// rate. `None` for other outputs (their quote is already their real units).
pub(super) fn metered_usage(
    state: &AppState,
    prepared: &Prepared,
    output: &Output,
) -> Option<x402_proto::U256> {
    let (Output::Chat(completion), task::Task::Chat(job)) = (output, prepared.task.as_ref()) else {
        return None;
    };
    let offered = state.registry.get(prepared.service)?;
    let tokens = pricing::chat_tokens_used(completion, job.prompt_tokens()).max(1);
    pricing::cost_atomic(offered, tokens, state.decimals)
}

/// Tells the paywall what the call used: an `upto` payment settles that; `exact` its price.
pub(super) fn report_usage(response: &mut Response, usage: Option<x402_proto::U256>) {
    if let Some(used) = usage {
        response
            .extensions_mut()
            .insert(x402_proto::Usage::Atomic(used));
    }
}

pub(super) fn completed(
    prepared: &Prepared,
    output: Value,
    paid: &Paid,
    cost_usd: String,
) -> Response {
    Json(RunCompleted {
        id: format!("run_{}", uuid::Uuid::new_v4().simple()),
        status: JobStatus::Completed,
        service: prepared.service.to_owned(),
        output,
        cost_usd,
        payer: paid.payer().to_owned(),
    })
    .into_response()
}

// ---------------------------------------------------------------------------------------
// Free routes.

async fn catalog(State(state): State<Arc<AppState>>) -> Json<Catalog> {
    let mut catalog = state.registry.catalog(state.decimals, &state.backends);
    catalog.jobs = Some(jobs::policy(state.jobs.max_attempts()));
    catalog.payment_methods.clone_from(&state.payment_methods);
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
    // Measuring `text` runs the tokenizer: CPU work, kept off the async workers.
    let estimate = crate::backend::input::off_the_async_workers(|| {
        pricing::estimate(offered, &query, &state.backends, state.decimals)
    });
    match estimate {
        Ok(estimate) => Json(estimate).into_response(),
        Err(message) => refuse(StatusCode::BAD_REQUEST, ApiError::new(message)),
    }
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
                StatusCode::SERVICE_UNAVAILABLE,
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
        let owned_by = offered.chat.as_ref().map_or("upstream", |c| c.kind());
        data.push(json!({"id": offered.def.key, "object": "model", "owned_by": owned_by}));
    }
    Json(json!({"object": "list", "data": data}))
}

/// The local LLM in `/health`: `ok`, and `loading` while it is read (requests then wait).
fn local_llm_health(chat: &Result<LocalLlm, String>) -> Value {
    model_health(chat.as_ref().map(|llm| (llm.name(), llm.state())))
}

/// A model loaded in the background, in `/health`: `ok`, and `loading` while it is read.
fn model_health(model: Result<(&str, LoadState), &String>) -> Value {
    match model {
        Ok((model, LoadState::Ready { load_ms })) => {
            json!({"ok": true, "model": model, "loading": false, "load_ms": load_ms})
        }
        Ok((model, LoadState::Loading)) => json!({"ok": true, "model": model, "loading": true}),
        Ok((model, LoadState::OnFirstUse)) => {
            json!({"ok": true, "model": model, "loading": false, "loads_on_first_use": true})
        }
        Ok((model, LoadState::Failed(why))) => json!({"ok": false, "model": model, "error": why}),
        Err(why) => json!({"ok": false, "error": why}),
    }
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let status = |r: Result<(), &String>| match r {
        Ok(()) => json!({"ok": true}),
        Err(why) => json!({"ok": false, "error": why}),
    };
    // Which model answers each local chat and speech-to-text service.
    let served_by: serde_json::Map<String, Value> = state
        .registry
        .all()
        .filter(|o| o.available.is_ok())
        .filter(|o| matches!(o.def.backend, BackendKind::Chat | BackendKind::Transcribe))
        .map(|o| (o.def.key.to_owned(), json!(o.models())))
        .collect();
    let mut body = json!({
        "status": "ok",
        "available_services": state.registry.available_keys().len(),
        "served_by": served_by,
        "backends": {
            "embeddings": status(state.backends.embeddings.as_ref().map(|_| ())),
            "speech": status(state.backends.speech.as_ref().map(|_| ())),
            "llm": local_llm_health(&state.backends.chat),
            "llm_qwen_coder": local_llm_health(&state.backends.qwen_coder),
            "stt": model_health(
                state
                    .backends
                    .transcribe
                    .as_ref()
                    .map(|stt| (stt.english().name(), stt.english().state())),
            ),
            "stt_multilingual": model_health(
                state
                    .backends
                    .transcribe
                    .as_ref()
                    .and_then(|stt| stt.multilingual())
                    .map(|stt| (stt.name(), stt.state())),
            ),
            "ocr": status(state.backends.ocr.as_ref().map(|_| ())),
            "nsfw": model_health(
                state.backends.nsfw.as_ref().map(|m| (m.name(), m.state())),
            ),
            "piper": model_health(
                state.backends.piper.as_ref().map(|(v, _)| (v.name(), v.state())),
            ),
        },
    });
    // Without its database a replica can serve nothing paid (nor report jobs): unhealthy, so
    // that a load balancer sends requests elsewhere.
    let Some(database) = &state.database else {
        return Json(body).into_response();
    };
    let started = std::time::Instant::now();
    let error = match tokio::time::timeout(HEALTH_TIMEOUT, database.check()).await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some(format!("no answer within {HEALTH_TIMEOUT:?}")),
    };
    let reachable = error.is_none();
    body["database"] = json!({
        "backend": "postgres",
        "reachable": reachable,
    });
    match error {
        None => {
            let latency = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            body["database"]["latency_ms"] = json!(latency);
            Json(body).into_response()
        }
        Some(error) => {
            body["status"] = json!("unhealthy");
            body["database"]["error"] = json!(error);
            body["reasons"] = json!([format!(
                "database: the gateway's database (postgres) is unreachable; paid routes and /status answer 503: {error}"
            )]);
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}
