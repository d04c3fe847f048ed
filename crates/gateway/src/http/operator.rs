//! What operators see and do: `GET /metrics` (Prometheus text: the `batch-settlement` money
//! charged and not yet claimed, channels, claims sent) and `POST /operator/claim` (claim and
//! settle everything now; behind the operator token). The dashboard (`dashboard.rs`) claims
//! through the same [`flush`].

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use x402_gateway_api::ApiError;
use x402_proto::Secret;

use crate::channels::BatchClaiming;

/// `/metrics`: open to whoever reaches the gateway (scrapers).
pub(crate) fn metrics_routes(batch: Option<BatchClaiming>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(batch))
}

/// `/operator/claim`, behind `token`.
pub(crate) fn operator_routes(batch: Option<BatchClaiming>, token: Secret) -> Router {
    let token = Arc::new(token);
    Router::new()
        .route("/operator/claim", post(claim))
        .route_layer(middleware::from_fn(move |request: Request, next: Next| {
            let token = Arc::clone(&token);
            async move { require_token(&token, request, next).await }
        }))
        .with_state(Arc::new(batch))
}

async fn require_token(expected: &Secret, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), expected.expose().as_bytes()) {
        let error = ApiError::new("send the operator token as `Authorization: Bearer <token>`");
        return (StatusCode::UNAUTHORIZED, Json(error)).into_response();
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Claims and settles every channel now; answers the transactions sent per network, and
/// what failed. 503 when a channel store could not be read.
async fn claim(State(batch): State<Arc<Option<BatchClaiming>>>) -> Response {
    let Some(batch) = batch.as_ref() else {
        return Json(json!({"transactions": [], "runs": []})).into_response();
    };
    let (status, body) = flush(batch).await;
    (status, Json(body)).into_response()
}

/// Claims and settles every channel of `batch` now: the status and body of the answer (the
/// transactions sent, each network's run or why it could not start).
pub(crate) async fn flush(batch: &BatchClaiming) -> (StatusCode, serde_json::Value) {
    let mut transactions = Vec::new();
    let mut runs = Vec::new();
    let mut status = StatusCode::OK;
    for (network, run) in batch.flush().await {
        match run {
            Ok(run) => {
                transactions.extend(run.transactions().into_iter().map(str::to_owned));
                runs.push(json!({"network": network, "run": run}));
            }
            Err(error) => {
                tracing::error!(%error, %network, "an operator's claim could not read the channels");
                status = StatusCode::SERVICE_UNAVAILABLE;
                runs.push(json!({"network": network, "error": error.to_string()}));
            }
        }
    }
    (status, json!({"transactions": transactions, "runs": runs}))
}

/// Prometheus text exposition of the batch-settlement exposure and claims.
async fn metrics(State(batch): State<Arc<Option<BatchClaiming>>>) -> Response {
    let mut text = String::new();
    if let Some(batch) = batch.as_ref() {
        render(batch, &mut text).await;
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// One metric family's header.
fn family(text: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(text, "# HELP {name} {help}");
    let _ = writeln!(text, "# TYPE {name} {kind}");
}

async fn render(batch: &BatchClaiming, text: &mut String) {
    let mut unclaimed = String::new();
    let mut channels = String::new();
    let mut largest = String::new();
    let mut failed = String::new();
    for claimer in &batch.claimers {
        let network = claimer.network();
        match claimer.exposure().await {
            Ok(mut exposure) => {
                for (_, asset) in batch.assets.iter().filter(|(n, _)| n == network) {
                    exposure.assets.entry(*asset).or_default();
                }
                for (asset, seen) in &exposure.assets {
                    let labels = format!("network=\"{network}\",asset=\"{asset:#x}\"");
                    let _ = writeln!(
                        unclaimed,
                        "x402_batch_unclaimed_atomic{{{labels}}} {}",
                        seen.unclaimed
                    );
                    let _ = writeln!(
                        channels,
                        "x402_batch_channels{{{labels}}} {}",
                        seen.channels
                    );
                    let _ = writeln!(
                        largest,
                        "x402_batch_channel_unclaimed_max_atomic{{{labels}}} {}",
                        seen.largest
                    );
                }
            }
            Err(error) => {
                tracing::warn!(%error, "metrics: the channel store could not be read");
                let _ = writeln!(failed, "x402_batch_store_errors{{network=\"{network}\"}} 1");
            }
        }
    }
    family(
        text,
        "x402_batch_unclaimed_atomic",
        "gauge",
        "Charged on batch-settlement channels and not yet claimed on chain, in the asset's atomic units (lost if the payers withdraw before it is claimed)",
    );
    text.push_str(&unclaimed);
    family(
        text,
        "x402_batch_channels",
        "gauge",
        "batch-settlement channels kept",
    );
    text.push_str(&channels);
    family(
        text,
        "x402_batch_channel_unclaimed_max_atomic",
        "gauge",
        "The most charged and not yet claimed on one channel, in atomic units",
    );
    text.push_str(&largest);
    if !failed.is_empty() {
        family(
            text,
            "x402_batch_store_errors",
            "gauge",
            "1 when the channel store could not be read for this scrape",
        );
        text.push_str(&failed);
    }
    family(
        text,
        "x402_batch_claims_sent_total",
        "counter",
        "Claim transactions sent since start",
    );
    for claimer in &batch.claimers {
        let _ = writeln!(
            text,
            "x402_batch_claims_sent_total{{network=\"{}\"}} {}",
            claimer.network(),
            claimer.stats().claims_sent
        );
    }
    family(
        text,
        "x402_batch_settles_sent_total",
        "counter",
        "Settle transactions sent since start",
    );
    for claimer in &batch.claimers {
        let _ = writeln!(
            text,
            "x402_batch_settles_sent_total{{network=\"{}\"}} {}",
            claimer.network(),
            claimer.stats().settles_sent
        );
    }
    family(
        text,
        "x402_batch_last_claim_timestamp_seconds",
        "gauge",
        "When the last claim transaction was sent (Unix seconds; 0 for never)",
    );
    for claimer in &batch.claimers {
        let at = claimer.stats().last_claim_at.unwrap_or_default();
        let _ = writeln!(
            text,
            "x402_batch_last_claim_timestamp_seconds{{network=\"{}\"}} {at}",
            claimer.network()
        );
    }
}
