//! The operator dashboard's API, mounted by [`x402_dashboard::routes`] under `/dashboard/api`
//! behind the operator token, and the page's script (`assets/dashboard-view.js`).
//!
//! Every figure is read from the stores that keep the money right: the payment journal
//! (what each payment settled or charged, summed exactly), the `batch-settlement` channel store
//! (what is charged and not yet claimed), the job store. Amounts go out as decimal strings of
//! atomic units with their asset's decimals and symbol; nothing is rounded or estimated here.
//!
//! - `GET overview[?tz_offset=MINUTES]`: revenue today, in 7 days and in all, per asset and
//!   network; paid calls per minute over the last hour; revenue per day over 30 days; the top
//!   services and payers. Days start at midnight `tz_offset` minutes east of UTC (the
//!   browser's zone, a multiple of 15 minutes as every zone is; UTC by default).
//! - `GET payments?q=&state=&page=&per_page=`: payments newest first, searched by payer,
//!   service, transaction or payment id (or their start), or row id; with the total.
//! - `GET payments/{id}`: one payment with its request fingerprint, receipt and job.
//! - `GET settlement`: pending settlements, failures by reason code, the facilitator's
//!   signers, and with `batch-settlement` the channels' unclaimed money per payer and in all,
//!   and the last claim.
//! - `GET jobs`: jobs running or queued, and failed ones (charged, refunded or not).
//! - `POST claim` with `{"confirm": true}`: claims and settles every channel now, as
//!   `POST /operator/claim` does.
//! - `GET events`: server-sent events, one per payment this gateway records, and keep-alives.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use x402_paywall::{PaymentEntry, PaymentState};
use x402_proto::{Facilitator, U256};

use crate::channels::BatchClaiming;
use crate::jobs::{JobRecord, JobState, JobStore, now_ms};
use crate::payments::{Journal, PageQuery, PaymentRecord, PaymentStore, PaymentStoreError};

/// The view's script, served as `/dashboard/assets/view.js`.
pub(crate) const VIEW: x402_dashboard::View = x402_dashboard::View {
    title: "Gateway",
    script: include_str!("../../assets/dashboard-view.js"),
};

const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;
/// How many payments a page may hold.
const MAX_PER_PAGE: u32 = 200;
/// How many services and payers the overview ranks.
const TOP: u32 = 8;
/// How many pending payments and listed jobs the settlement and jobs views show.
const LISTED: u32 = 50;

/// An asset the gateway accepts, as the dashboard names it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct AssetName {
    pub(crate) asset: String,
    pub(crate) network: String,
    pub(crate) decimals: u8,
    pub(crate) symbol: String,
}

/// What the dashboard's API reads.
#[derive(Clone)]
pub(crate) struct Dashboard {
    pub(crate) journal: Journal,
    pub(crate) jobs: Arc<dyn JobStore>,
    pub(crate) batch: Option<BatchClaiming>,
    pub(crate) facilitator: Arc<dyn Facilitator>,
    /// The facilitator's URL, when it is remote (its own dashboard shows its signer's gas).
    pub(crate) facilitator_url: Option<String>,
    pub(crate) assets: Vec<AssetName>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("journal", &self.journal)
            .field("assets", &self.assets)
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// The payment store, once every payment answered before now is in it.
    async fn store(&self) -> &dyn PaymentStore {
        self.journal.caught_up().await;
        &**self.journal.store()
    }

    /// The symbol of `asset` on `network`: the configured one, else a short address.
    fn symbol(&self, asset: &str, network: &str) -> String {
        self.assets
            .iter()
            .find(|a| a.asset.eq_ignore_ascii_case(asset) && a.network == network)
            .map_or_else(
                || format!("{}…", &asset[..asset.len().min(8)]),
                |a| a.symbol.clone(),
            )
    }
}

/// The API's routes, relative to `/dashboard/api`.
pub(crate) fn api(dashboard: Dashboard) -> Router {
    Router::new()
        .route("/overview", get(overview))
        .route("/payments", get(payments))
        .route("/payments/{id}", get(payment))
        .route("/settlement", get(settlement))
        .route("/jobs", get(jobs))
        .route("/claim", post(claim))
        .route("/events", get(events))
        .with_state(Arc::new(dashboard))
}

/// A refusal of bad input: 400 and what to fix.
fn bad(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": message.into()})),
    )
        .into_response()
}

/// A store that could not be read: 503, the detail in the logs.
fn unavailable(error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "the dashboard could not read a store");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": "a store could not be read right now; try again (the gateway's log says why)"})),
    )
        .into_response()
}

/// Refuses query keys other than `allowed`, saying which are taken.
fn only(query: &HashMap<String, String>, allowed: &[&str]) -> Result<(), String> {
    match query.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(format!(
            "unknown query parameter {key:?}; this endpoint takes {}",
            if allowed.is_empty() {
                "none".to_owned()
            } else {
                allowed.join(", ")
            }
        )),
        None => Ok(()),
    }
}

/// The integer query parameter `key` within `range`, or `default`.
fn number(
    query: &HashMap<String, String>,
    key: &str,
    range: std::ops::RangeInclusive<i64>,
    default: i64,
) -> Result<i64, String> {
    let Some(text) = query.get(key) else {
        return Ok(default);
    };
    match text.trim().parse::<i64>() {
        Ok(value) if range.contains(&value) => Ok(value),
        _ => Err(format!(
            "{key} must be a whole number from {} to {} (got {text:?})",
            range.start(),
            range.end()
        )),
    }
}

/// An amount with its asset, as every figure goes out.
#[derive(Serialize)]
struct Named<T: Serialize> {
    #[serde(flatten)]
    item: T,
    symbol: String,
}

fn named<T: Serialize>(dashboard: &Dashboard, item: T, asset: &str, network: &str) -> Named<T> {
    Named {
        symbol: dashboard.symbol(asset, network),
        item,
    }
}

async fn overview(
    State(dashboard): State<Arc<Dashboard>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = only(&query, &["tz_offset"]) {
        return bad(refused);
    }
    let offset_minutes = match number(&query, "tz_offset", -840..=840, 0) {
        Ok(minutes) if minutes % 15 == 0 => minutes,
        Ok(minutes) => {
            return bad(format!(
                "tz_offset must be a multiple of 15 minutes, as time zones are (got {minutes})"
            ));
        }
        Err(refused) => return bad(refused),
    };
    match overview_of(&dashboard, now_ms(), offset_minutes * MINUTE).await {
        Ok(body) => Json(body).into_response(),
        Err(error) => unavailable(&error),
    }
}

/// The overview at `now`, days starting `offset` ms east of UTC.
async fn overview_of(
    dashboard: &Dashboard,
    now: i64,
    offset: i64,
) -> Result<Value, PaymentStoreError> {
    let store = dashboard.store().await;
    let day_start = (now + offset).div_euclid(DAY) * DAY - offset;
    let week_start = day_start - 6 * DAY;
    let hour_start = (now.div_euclid(MINUTE) - 59) * MINUTE;
    let (today, week, all_time, minutes, days, services, payers) = tokio::try_join!(
        store.earned_since(day_start),
        store.earned_since(week_start),
        store.earned_since(0),
        store.calls_per_minute(hour_start),
        store.daily(day_start - 29 * DAY, offset),
        store.top(false, TOP),
        store.top(true, TOP),
    )?;
    let mut counts = vec![0u64; 60];
    for (minute, calls) in minutes {
        if let Some(slot) = usize::try_from(minute - hour_start / MINUTE)
            .ok()
            .and_then(|i| counts.get_mut(i))
        {
            *slot = calls;
        }
    }
    let with_symbols = |items: Vec<crate::payments::Earned>| -> Vec<Value> {
        items
            .into_iter()
            .map(|e| {
                let (asset, network) = (e.asset.clone(), e.network.clone());
                json!(named(dashboard, e, &asset, &network))
            })
            .collect()
    };
    let ranked = |items: Vec<crate::payments::Ranked>| -> Vec<Value> {
        items
            .into_iter()
            .map(|r| {
                let (asset, network) = (r.asset.clone(), r.network.clone());
                json!(named(dashboard, r, &asset, &network))
            })
            .collect()
    };
    Ok(json!({
        "now_ms": now,
        "day_start_ms": day_start,
        "week_start_ms": week_start,
        "assets": dashboard.assets,
        "revenue": {
            "today": with_symbols(today),
            "week": with_symbols(week),
            "all_time": with_symbols(all_time),
        },
        "calls_per_minute": {"start_ms": hour_start, "counts": counts},
        "revenue_by_day": days.into_iter().map(|d| {
            let (asset, network) = (d.asset.clone(), d.network.clone());
            json!(named(dashboard, d, &asset, &network))
        }).collect::<Vec<_>>(),
        "top_services": ranked(services),
        "top_payers": ranked(payers),
    }))
}

/// A payment as a table row.
fn row(dashboard: &Dashboard, record: &PaymentRecord) -> Value {
    let e: &PaymentEntry = &record.entry;
    json!({
        "id": record.id,
        "payment": e.payment,
        "at_ms": e.at_ms,
        "service": e.service,
        "resource": e.resource,
        "payer": e.payer,
        "amount": e.amount.0.to_string(),
        "asset": e.asset,
        "network": e.network,
        "decimals": e.decimals,
        "symbol": dashboard.symbol(&e.asset, e.network.as_str()),
        "scheme": e.scheme,
        "state": e.state.as_str(),
        "tx": e.transaction,
        "reason": e.reason,
        "job": e.job,
    })
}

async fn payments(
    State(dashboard): State<Arc<Dashboard>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = only(&query, &["q", "state", "page", "per_page"]) {
        return bad(refused);
    }
    let (page, per_page) = match (
        number(&query, "page", 1..=1_000_000, 1),
        number(&query, "per_page", 1..=i64::from(MAX_PER_PAGE), 25),
    ) {
        (Ok(page), Ok(per_page)) => (page, per_page),
        (Err(refused), _) | (_, Err(refused)) => return bad(refused),
    };
    let search = query
        .get("q")
        .map(|q| q.trim().to_owned())
        .filter(|q| !q.is_empty());
    if search.as_ref().is_some_and(|q| q.len() > 200) {
        return bad(
            "q is longer than 200 characters; search by a payer, service, transaction or payment id",
        );
    }
    let state = match query.get("state").map(String::as_str) {
        None | Some("") => None,
        Some(name) => match PaymentState::parse(name) {
            Some(state) => Some(state),
            None => {
                return bad(format!(
                    "state must be one of settled, charged, pending, failed (got {name:?})"
                ));
            }
        },
    };
    let limit = u32::try_from(per_page).unwrap_or(MAX_PER_PAGE);
    let request = PageQuery {
        search,
        state,
        offset: u64::try_from((page - 1) * per_page).unwrap_or(0),
        limit,
    };
    match dashboard.store().await.page(&request).await {
        Ok(found) => Json(json!({
            "page": page,
            "per_page": per_page,
            "total": found.total,
            "pages": found.total.div_ceil(u64::from(limit)).max(1),
            "payments": found.records.iter().map(|r| row(&dashboard, r)).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(error) => unavailable(&error),
    }
}

async fn payment(State(dashboard): State<Arc<Dashboard>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.trim().parse::<i64>() else {
        return bad(format!(
            "{id:?} is not a payment id: use the `id` of a row of `payments`"
        ));
    };
    let record = match dashboard.store().await.get(id).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"error": format!("no payment {id}")})),
            )
                .into_response();
        }
        Err(error) => return unavailable(&error),
    };
    let mut body = row(&dashboard, &record);
    body["fingerprint"] = json!(record.entry.fingerprint);
    body["receipt"] = serde_json::to_value(&record.entry.receipt).unwrap_or(Value::Null);
    if let Some(job) = &record.entry.job {
        body["job_record"] = match dashboard.jobs.get(job).await {
            Ok(Some(found)) => job_row(&found),
            Ok(None) => json!(null),
            Err(error) => return unavailable(&error),
        };
    }
    Json(body).into_response()
}

/// A job as the dashboard lists it: every job was paid before it ran (charged), and this
/// gateway sends no refunds unless the record says so.
fn job_row(record: &JobRecord) -> Value {
    let job = &record.job;
    json!({
        "id": job.id,
        "service": job.service,
        "state": record.state.as_str(),
        "attempts": record.attempts,
        "payer": job.payer,
        "amount": job.amount,
        "asset": job.asset,
        "network": job.network,
        "cost_usd": job.cost_usd,
        "tx": job.transaction,
        "error": record.error,
        "charged": true,
        "refunded": record.refunded,
        "refund_amount_usd": record.refund_amount_usd,
        "created_at_ms": record.created_at_ms,
        "finished_at_ms": record.finished_at_ms,
    })
}

async fn jobs(
    State(dashboard): State<Arc<Dashboard>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = only(&query, &[]) {
        return bad(refused);
    }
    let running = dashboard
        .jobs
        .listed(&[JobState::Queued, JobState::Running], LISTED);
    let failed = dashboard.jobs.listed(&[JobState::Failed], LISTED);
    match tokio::try_join!(running, failed) {
        Ok((running, failed)) => Json(json!({
            "running": running.iter().map(job_row).collect::<Vec<_>>(),
            "failed": failed.iter().map(job_row).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(error) => unavailable(&error),
    }
}

async fn settlement(
    State(dashboard): State<Arc<Dashboard>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = only(&query, &[]) {
        return bad(refused);
    }
    let store = dashboard.store().await;
    let pending_query = PageQuery {
        state: Some(PaymentState::Pending),
        limit: LISTED,
        ..PageQuery::default()
    };
    let pending = store.page(&pending_query);
    let (pending, failures) = match tokio::try_join!(pending, store.failures()) {
        Ok(found) => found,
        Err(error) => return unavailable(&error),
    };
    // The signer's gas is the facilitator's to know: the gateway names its signers and
    // leaves the balance to the facilitator's own dashboard.
    let signers =
        match tokio::time::timeout(Duration::from_secs(3), dashboard.facilitator.supported()).await
        {
            Ok(Ok(supported)) => json!(supported.signers),
            Ok(Err(error)) => json!({"error": error.to_string()}),
            Err(_) => json!({"error": "the facilitator did not answer /supported within 3 s"}),
        };
    let signer = json!({
        "gas_balance": null,
        "signers": signers,
        "note": "The gateway does not hold the signer's key or a chain connection, so it cannot read the signer's gas; the facilitator's own dashboard shows it.",
        "facilitator_dashboard": dashboard.facilitator_url.as_ref().map(|url| format!("{}/dashboard", url.trim_end_matches('/'))),
    });
    let batch = match &dashboard.batch {
        Some(batch) => match exposure(&dashboard, batch).await {
            Ok(found) => found,
            Err(error) => return unavailable(&error),
        },
        None => Value::Null,
    };
    Json(json!({
        "pending": {
            "total": pending.total,
            "payments": pending.records.iter().map(|r| row(&dashboard, r)).collect::<Vec<_>>(),
        },
        "failures": failures,
        "signer": signer,
        "batch": batch,
    }))
    .into_response()
}

/// What the `batch-settlement` channels hold unclaimed: per payer, per asset in all, and the
/// claimers' last claims.
async fn exposure(
    dashboard: &Dashboard,
    batch: &BatchClaiming,
) -> Result<Value, x402_evm::batch::ChannelStoreError> {
    let records = batch.store.all().await?;
    // (payer, asset, network) → (unclaimed, channels)
    let mut payers: BTreeMap<(String, String, String), (u128, usize)> = BTreeMap::new();
    let mut totals: BTreeMap<(String, String), (u128, usize)> = BTreeMap::new();
    for record in &records {
        let unclaimed = record.unclaimed();
        let asset = format!("{:#x}", record.config.token);
        let network = record.network.to_string();
        let payer = payers
            .entry((
                format!("{:#x}", record.config.payer),
                asset.clone(),
                network.clone(),
            ))
            .or_default();
        payer.0 = payer.0.saturating_add(unclaimed);
        payer.1 += 1;
        let total = totals.entry((asset, network)).or_default();
        total.0 = total.0.saturating_add(unclaimed);
        total.1 += 1;
    }
    let decimals = |asset: &str, network: &str| {
        dashboard
            .assets
            .iter()
            .find(|a| a.asset.eq_ignore_ascii_case(asset) && a.network == network)
            .map_or(0, |a| a.decimals)
    };
    let mut per_payer: Vec<Value> = payers
        .into_iter()
        .map(|((payer, asset, network), (unclaimed, channels))| {
            json!({
                "payer": payer,
                "unclaimed": unclaimed.to_string(),
                "channels": channels,
                "decimals": decimals(&asset, &network),
                "symbol": dashboard.symbol(&asset, &network),
                "asset": asset,
                "network": network,
            })
        })
        .collect();
    per_payer.sort_by_key(|p| {
        std::cmp::Reverse(p["unclaimed"].as_str().and_then(|u| u.parse::<u128>().ok()))
    });
    let total: Vec<Value> = totals
        .into_iter()
        .map(|((asset, network), (unclaimed, channels))| {
            json!({
                "unclaimed": unclaimed.to_string(),
                "channels": channels,
                "decimals": decimals(&asset, &network),
                "symbol": dashboard.symbol(&asset, &network),
                "asset": asset,
                "network": network,
            })
        })
        .collect();
    let claimers: Vec<Value> = batch
        .claimers
        .iter()
        .map(|claimer| {
            let stats = claimer.stats();
            json!({
                "network": claimer.network(),
                "claims_sent": stats.claims_sent,
                "settles_sent": stats.settles_sent,
                "last_claim_ms": stats.last_claim_at.map(|s| s.saturating_mul(1000)),
            })
        })
        .collect();
    Ok(json!({
        "channels": records.len(),
        "total": total,
        "payers": per_payer,
        "claimers": claimers,
    }))
}

async fn claim(State(dashboard): State<Arc<Dashboard>>, body: axum::body::Bytes) -> Response {
    let confirmed = serde_json::from_slice::<Value>(&body)
        .ok()
        .is_some_and(|body| body["confirm"] == json!(true));
    if !confirmed {
        return bad(
            "claiming sends transactions: send {\"confirm\": true} as the JSON body to claim and settle every channel now",
        );
    }
    let Some(batch) = &dashboard.batch else {
        return (
            StatusCode::CONFLICT,
            Json(json!({"error": "batch settlement is not configured here ([batch_settlement] in the gateway's config): there is nothing to claim"})),
        )
            .into_response();
    };
    let (status, mut body) = super::operator::flush(batch).await;
    let claimed: U256 = batch_claimed(&body);
    body["claimed"] = json!(claimed.to_string());
    (status, Json(body)).into_response()
}

/// What the claims of an answer of [`super::operator::flush`] claimed, in atomic units.
fn batch_claimed(body: &Value) -> U256 {
    body["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|run| run["run"]["claims"].as_array().into_iter().flatten())
        .filter_map(|claim| claim["amount"].as_str()?.parse::<U256>().ok())
        .fold(U256::ZERO, |sum, amount| sum.saturating_add(amount))
}

async fn events(State(dashboard): State<Arc<Dashboard>>) -> Response {
    let receiver = dashboard.journal.subscribe();
    let closing = dashboard.journal.closing();
    // Unnamed events (`message`), each saying its type: what `EventSource.onmessage` hears.
    let hello = futures_util::stream::once(async {
        Ok::<_, Infallible>(Event::default().data(r#"{"type":"hello"}"#))
    });
    let payments = futures_util::stream::unfold(
        (receiver, closing),
        |(mut receiver, mut closing)| async move {
            let next = tokio::select! {
                next = receiver.recv() => next,
                _ = closing.wait_for(|closed| *closed) => return None,
            };
            let event = match next {
                Ok(event) => {
                    let mut data = serde_json::to_value(&event).unwrap_or_else(|_| json!({}));
                    data["type"] = json!("payment");
                    Event::default().data(data.to_string())
                }
                // Some were missed: a refresh catches up.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    Event::default().data(r#"{"type":"payment"}"#)
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok::<_, Infallible>(event), (receiver, closing)))
        },
    );
    Sse::new(futures_util::StreamExt::chain(hello, payments))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_amounts_are_summed_from_the_claims_sent() {
        let body = json!({"runs": [
            {"network": "eip155:8453", "run": {"claims": [{"amount": "1500"}, {"amount": "25"}], "settles": []}},
            {"network": "eip155:1", "error": "store"},
        ]});
        assert_eq!(batch_claimed(&body), U256::from(1525u64));
    }
}
