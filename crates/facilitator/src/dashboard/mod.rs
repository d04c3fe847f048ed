//! The facilitator's operators' dashboard: the shell of `x402-dashboard` with this service's
//! view and its JSON API under `/dashboard/api/`, read from the settlement log (nothing
//! estimated, nothing kept on the side):
//!
//! - `overview`: settled per network and token today (UTC), over the last 7 days (today and
//!   the 6 before) and in all, settles per minute over the last hour, a daily series over 30
//!   days, top payers and payees;
//! - `settlements?q=&page=&per_page=&state=`: a page of the log, newest first, searched by
//!   payer, payee or transaction hash, and `settlements/{key}`: one with its request, answer
//!   and transactions;
//! - `health`: what is pending and since when, failures by reason code, batch sends without an
//!   answer, and each signer's gas balance read from its chain now;
//! - `events`: server-sent events, one per write to the log.

mod params;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use x402_dashboard::View;
use x402_proto::{Network, Secret};

use crate::service::FacilitatorService;
use crate::store::{
    Backlog, Party, PartyTally, SettlementFilter, SettlementKey, SettlementState,
    SettlementSummary, StoreError, Tally,
};

/// The view's script, served as `/dashboard/assets/view.js`.
const VIEW: View = View {
    title: "Facilitator",
    script: include_str!("../../assets/dashboard-view.js"),
};

const DAY: u64 = 24 * 60 * 60;
/// Days in the overview's series.
const SERIES_DAYS: u64 = 30;
/// Entries in each top list.
const TOP: u32 = 10;
/// Pending settlements the health section lists (oldest first).
const PENDING_LISTED: u32 = 20;
/// How long a signer's balance may take to read.
const BALANCE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a log shared with other instances asks the page to read it again (their writes
/// are not heard here).
const SHARED_LOG_TICK: Duration = Duration::from_secs(15);

/// What the API's handlers share.
#[derive(Clone, Debug)]
struct Api {
    service: FacilitatorService,
    /// Turns `true` when the facilitator stops: event streams end, so the server can.
    closing: watch::Receiver<bool>,
}

/// The dashboard's routes (page, sign-in, assets and API) for `service`, behind `token`.
pub(crate) fn routes(
    token: Secret,
    service: FacilitatorService,
    closing: watch::Receiver<bool>,
) -> Router {
    let api = Router::new()
        .route("/overview", get(overview))
        .route("/settlements", get(settlements))
        .route("/settlements/{key}", get(settlement))
        .route("/health", get(health))
        .route("/events", get(events))
        .with_state(Api { service, closing });
    x402_dashboard::routes(token, VIEW, api)
}

/// A refusal or fault, as JSON `{"error": …}`.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        tracing::warn!(%error, "the dashboard could not read the settlement log");
        Self(
            StatusCode::SERVICE_UNAVAILABLE,
            "the settlement log cannot be read right now; the facilitator's log says why".into(),
        )
    }
}

fn bad_request(message: String) -> Failure {
    Failure(StatusCode::BAD_REQUEST, message)
}

/// The query's pairs, or a 400 saying what is malformed.
fn pairs(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Vec<(String, String)>, Failure> {
    query
        .map(|Query(pairs)| pairs)
        .map_err(|e| bad_request(format!("the query string cannot be read: {e}")))
}

fn now() -> u64 {
    x402_evm::unix_now()
}

/// The name and decimals of `token` on `chain_id`, when the facilitator accepts it.
fn token_info(service: &FacilitatorService, chain_id: u64, token: Address) -> (Value, Value) {
    service
        .chains()
        .find(|c| c.scheme().chain_id() == chain_id)
        .and_then(|c| c.assets().iter().find(|a| a.address == token))
        .map_or((Value::Null, Value::Null), |a| {
            (json!(a.name), json!(a.decimals))
        })
}

/// Two tallies of one token together.
fn add(a: Tally, b: Tally) -> Result<Tally, Failure> {
    let amount = a.amount.checked_add(b.amount).ok_or_else(|| {
        Failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "a settled total exceeds uint256".into(),
        )
    })?;
    Ok(Tally {
        settlements: a.settlements + b.settlements,
        amount,
    })
}

fn tally(tally: Tally) -> Value {
    json!({ "settlements": tally.settlements, "amount": tally.amount.to_string() })
}

/// A token's identity as every list shows it.
fn token_json(service: &FacilitatorService, chain_id: u64, token: Address) -> Value {
    let (name, decimals) = token_info(service, chain_id, token);
    json!({
        "network": Network::eip155(chain_id),
        "chain_id": chain_id,
        "asset": token.to_checksum(None),
        "asset_name": name,
        "decimals": decimals,
    })
}

fn merged(mut base: Value, more: Value) -> Value {
    if let (Some(base), Value::Object(more)) = (base.as_object_mut(), more) {
        base.extend(more);
    }
    base
}

async fn overview(
    State(api): State<Api>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, Failure> {
    params::none(&pairs(query)?, "overview").map_err(bad_request)?;
    let service = &api.service;
    let log = service.log();
    let now = now();
    let today = now - now % DAY;
    // The last 7 days: today and the 6 before (UTC).
    let week = today.saturating_sub(6 * DAY);
    let minute = now - now % 60;
    let hour = minute.saturating_sub(59 * 60);
    let series_from = today.saturating_sub((SERIES_DAYS - 1) * DAY);
    let (days, minutes, payers, payees) = tokio::try_join!(
        log.settled_days(0),
        log.settled_series(hour, 60),
        log.top_parties(Party::Payer, TOP),
        log.top_parties(Party::Payee, TOP),
    )?;

    // Every accepted token, and any other the log holds, each with its three totals.
    let mut tokens: BTreeMap<(u64, Address), [Tally; 3]> = BTreeMap::new();
    for chain in service.chains() {
        for asset in chain.assets() {
            tokens.insert(
                (chain.scheme().chain_id(), asset.address),
                Default::default(),
            );
        }
    }
    for point in &days {
        let totals = tokens.entry((point.chain_id, point.token)).or_default();
        for (slot, from) in [(0, today), (1, week), (2, 0)] {
            if point.start >= from {
                totals[slot] = add(totals[slot], point.tally)?;
            }
        }
    }
    let assets: Vec<Value> = tokens
        .iter()
        .map(|(&(chain_id, token), [today, week, all])| {
            merged(
                token_json(service, chain_id, token),
                json!({ "today": tally(*today), "week": tally(*week), "all_time": tally(*all) }),
            )
        })
        .collect();
    let mut per_minute: BTreeMap<u64, u64> = (0..60).map(|i| (hour + i * 60, 0)).collect();
    for point in &minutes {
        *per_minute.entry(point.start).or_default() += point.tally.settlements;
    }
    let last_hour: u64 = per_minute.values().sum();

    // A point per day for each token with anything settled in the window.
    let mut lines: BTreeMap<(u64, Address), BTreeMap<u64, Tally>> = BTreeMap::new();
    for point in days.iter().filter(|p| p.start >= series_from) {
        let line = lines
            .entry((point.chain_id, point.token))
            .or_insert_with(|| {
                (0..SERIES_DAYS)
                    .map(|i| (series_from + i * DAY, Tally::default()))
                    .collect()
            });
        line.insert(point.start, point.tally);
    }
    let series: Vec<Value> = lines
        .into_iter()
        .map(|((chain_id, token), points)| {
            let points: Vec<Value> = points
                .into_iter()
                .map(|(t, tally)| {
                    json!({ "t": t, "settlements": tally.settlements, "amount": tally.amount.to_string() })
                })
                .collect();
            merged(token_json(service, chain_id, token), json!({ "points": points }))
        })
        .collect();

    let top = |list: &[PartyTally]| -> Vec<Value> {
        list.iter()
            .map(|p| {
                merged(
                    token_json(service, p.chain_id, p.token),
                    json!({
                        "address": p.address.to_checksum(None),
                        "settlements": p.tally.settlements,
                        "amount": p.tally.amount.to_string(),
                    }),
                )
            })
            .collect()
    };
    Ok(axum::Json(json!({
        "generated_at": now,
        "day_started_at": today,
        "assets": assets,
        "last_hour": {
            "settlements": last_hour,
            "per_minute": per_minute
                .into_iter()
                .map(|(t, settlements)| json!({ "t": t, "settlements": settlements }))
                .collect::<Vec<_>>(),
        },
        "series": { "bucket_seconds": DAY, "tokens": series },
        "top_payers": top(&payers),
        "top_payees": top(&payees),
    }))
    .into_response())
}

fn summary_json(service: &FacilitatorService, row: &SettlementSummary) -> Value {
    merged(
        token_json(service, row.key.chain_id, row.token),
        json!({
            "key": row.key.to_string(),
            "wire_network": row.wire_network,
            "payer": row.key.payer.to_checksum(None),
            "pay_to": row.pay_to.to_checksum(None),
            "amount": row.amount.to_string(),
            "state": row.state.as_str(),
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "tx_hash": row.tx_hash.map(|h| h.to_string()),
            "error_reason": row.error_reason,
        }),
    )
}

async fn settlements(
    State(api): State<Api>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, Failure> {
    let query = params::settlements(&pairs(query)?).map_err(bad_request)?;
    let page = api.service.log().settlements(&query.filter).await?;
    let rows: Vec<Value> = page
        .rows
        .iter()
        .map(|row| summary_json(&api.service, row))
        .collect();
    Ok(axum::Json(json!({
        "total": page.total,
        "page": query.page,
        "per_page": query.per_page,
        "pages": page.total.div_ceil(u64::from(query.per_page)),
        "settlements": rows,
    }))
    .into_response())
}

async fn settlement(State(api): State<Api>, Path(key): Path<String>) -> Result<Response, Failure> {
    let key: SettlementKey = key
        .parse()
        .map_err(|e: crate::store::BadSettlementKey| bad_request(e.to_string()))?;
    let log = api.service.log();
    let (summary, record) = tokio::try_join!(log.summary(&key), log.get(&key))?;
    let (Some(summary), Some(record)) = (summary, record) else {
        return Err(Failure(
            StatusCode::NOT_FOUND,
            format!("no settlement {key} in the log"),
        ));
    };
    let request = serde_json::from_str::<Value>(&record.settlement.request)
        .unwrap_or_else(|_| Value::String(record.settlement.request.clone()));
    let transactions: Vec<Value> = record
        .txs
        .iter()
        .map(|tx| {
            json!({
                "tx_hash": tx.tx_hash.to_string(),
                "signer": tx.signer.to_checksum(None),
                "signer_nonce": tx.signer_nonce,
            })
        })
        .collect();
    let details = json!({
        "fingerprint": record.settlement.fingerprint.to_string(),
        "nonce": key.nonce.to_string(),
        "valid_before": record.settlement.valid_before,
        "request": request,
        "response": record.response,
        "transactions": transactions,
    });
    Ok(axum::Json(merged(summary_json(&api.service, &summary), details)).into_response())
}

fn backlog(now: u64, backlog: Backlog) -> Value {
    json!({
        "count": backlog.count,
        "oldest_at": backlog.oldest_at,
        "oldest_age_seconds": backlog.oldest_at.map(|at| now.saturating_sub(at)),
    })
}

async fn health(
    State(api): State<Api>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, Failure> {
    params::none(&pairs(query)?, "health").map_err(bad_request)?;
    let service = &api.service;
    let log = service.log();
    let pending_filter = SettlementFilter {
        search: None,
        states: vec![SettlementState::Claimed, SettlementState::Submitted],
        oldest_first: true,
        offset: 0,
        limit: PENDING_LISTED,
    };
    let (report, pending, database) = tokio::join!(
        log.log_health(),
        log.settlements(&pending_filter),
        service.database_health(BALANCE_TIMEOUT),
    );
    let (report, pending) = (report?, pending?);
    let now = now();

    // Every signer that sends here: this instance's, and any other the log has seen sending
    // on a chain served here (instances sharing the log).
    let checks = service.chains().flat_map(|chain| {
        let chain_id = chain.scheme().chain_id();
        let own = chain.scheme().signer_address();
        let mut signers = vec![own];
        for &(id, signer) in &report.signers {
            if id == chain_id && !signers.contains(&signer) {
                signers.push(signer);
            }
        }
        signers.into_iter().map(move |signer| async move {
            let read = chain.scheme().provider().get_balance(signer);
            let (balance, error) = match tokio::time::timeout(BALANCE_TIMEOUT, read).await {
                Ok(Ok(balance)) => (Some(balance), None),
                Ok(Err(error)) => (None, Some(error.to_string())),
                Err(_) => (None, Some(format!("no answer within {BALANCE_TIMEOUT:?}"))),
            };
            let floor = chain.min_signer_balance();
            json!({
                "network": chain.scheme().network(),
                "address": signer.to_checksum(None),
                "this_instance": signer == own,
                "balance_wei": balance.map(|b: U256| b.to_string()),
                "min_balance_wei": floor.map(|f| f.to_string()),
                "low": matches!((balance, floor), (Some(b), Some(f)) if b < f),
                "error": error,
            })
        })
    });
    let signers = futures_util::future::join_all(checks).await;
    let failures: Vec<Value> = report
        .failures
        .iter()
        .map(|f| {
            json!({
                "state": f.state.as_str(),
                "reason": f.reason,
                "count": f.count,
                "last_at": f.last_at,
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "generated_at": now,
        "database": database,
        "in_flight": service.in_flight(),
        "claimed": backlog(now, report.claimed),
        "submitted": backlog(now, report.submitted),
        "pending": pending
            .rows
            .iter()
            .map(|row| summary_json(service, row))
            .collect::<Vec<_>>(),
        "failures": failures,
        "batch_sends": backlog(now, report.batch_sends),
        "signers": signers,
    }))
    .into_response())
}

/// What the event stream walks through.
struct Listening {
    heard: broadcast::Receiver<crate::LogEvent>,
    closing: watch::Receiver<bool>,
    /// For a log shared with other instances.
    tick: Option<tokio::time::Interval>,
}

async fn events(State(api): State<Api>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let tick = (api.service.log().backend() == "postgres").then(|| {
        let first = tokio::time::Instant::now() + SHARED_LOG_TICK;
        let mut tick = tokio::time::interval_at(first, SHARED_LOG_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    });
    let listening = Listening {
        heard: api.service.subscribe(),
        closing: api.closing.clone(),
        tick,
    };
    let stream = futures_util::stream::unfold(listening, |mut state| async move {
        if *state.closing.borrow() {
            return None;
        }
        let Listening {
            heard,
            closing,
            tick,
        } = &mut state;
        let tick = async {
            match tick.as_mut() {
                Some(tick) => {
                    tick.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let data = tokio::select! {
            _ = closing.changed() => return None,
            heard = heard.recv() => match heard {
                Ok(event) => serde_json::to_string(&event).unwrap_or_default(),
                // Fell behind: the page reads everything again anyway.
                Err(broadcast::error::RecvError::Lagged(_)) => json!({"type": "lagged"}).to_string(),
                Err(broadcast::error::RecvError::Closed) => return None,
            },
            () = tick => json!({"type": "tick"}).to_string(),
        };
        Some((Ok(Event::default().data(data)), state))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
