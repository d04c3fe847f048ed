//! The HTTP face: `POST /verify`, `POST /settle`, `GET /supported`, `GET /health`,
//! `GET /metrics`. Status codes are decided here and only here.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use x402_proto::{
    FacilitatorError, IdempotencyKey, PaymentRequest, ReasonCode, Secret, headers as x402_headers,
};

use crate::service::FacilitatorService;

/// How the HTTP layer behaves.
#[derive(Clone, Debug, Default)]
pub struct HttpOptions {
    /// When set, `/verify` and `/settle` need `Authorization: Bearer <token>`.
    pub bearer_token: Option<Secret>,
    /// The largest body accepted.
    pub max_body_bytes: usize,
    /// How long any request may take.
    pub request_timeout: Duration,
}

/// How long `/health` waits for each chain.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// The router for `service`.
pub fn router(service: FacilitatorService, options: HttpOptions) -> Router {
    let token = options.bearer_token.clone();
    let paid = Router::new()
        .route("/verify", post(verify))
        .route("/settle", post(settle))
        .route_layer(middleware::from_fn(move |request: Request, next: Next| {
            let token = token.clone();
            async move { require_token(token.as_ref().map(Secret::expose), request, next).await }
        }));
    Router::new()
        .merge(paid)
        .route("/supported", get(supported))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            options.request_timeout,
        ))
        .with_state(service)
}

async fn require_token(expected: Option<&str>, request: Request, next: Next) -> Response {
    if let Some(expected) = expected {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the facilitator's token as `Authorization: Bearer <token>`",
            );
        }
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error": code, "message": message.into()})),
    )
        .into_response()
}

/// A response that refuses a request before it reaches the service, saying what to fix.
struct Refused(Box<Response>);

impl Refused {
    fn bad_request(message: impl Into<String>) -> Self {
        Self::with_status(StatusCode::BAD_REQUEST, message)
    }

    fn with_status(status: StatusCode, message: impl Into<String>) -> Self {
        Self(Box::new(error(status, "invalid_request", message)))
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// The body of `/verify` and `/settle`, parsed, or refused with what is wrong with it.
struct Parsed(PaymentRequest);

impl<S: Send + Sync> FromRequest<S> for Parsed {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        parse_request(&headers, &body)
            .map(Self)
            .map_err(IntoResponse::into_response)
    }
}

/// The settler's `Idempotency-Key`, when sent, or refused when it is not usable.
struct Idempotency(Option<IdempotencyKey>);

impl<S: Send + Sync> FromRequestParts<S> for Idempotency {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Refused> {
        idempotency_key(&parts.headers).map(Self)
    }
}

/// Parses a verify/settle body, or says what is wrong with it.
fn parse_request(headers: &HeaderMap, body: &[u8]) -> Result<PaymentRequest, Refused> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("application/json") || v.contains("+json"));
    if !is_json {
        return Err(Refused::with_status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the request as `Content-Type: application/json`",
        ));
    }
    if body.is_empty() {
        return Err(Refused::bad_request(
            "the body is empty; send {\"paymentPayload\": …, \"paymentRequirements\": …}",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        Refused::bad_request(format!(
            "the body is not a payment request ({{paymentPayload, paymentRequirements}}): {e}"
        ))
    })
}

/// The settler's `Idempotency-Key`, when sent.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, Refused> {
    let Some(value) = headers.get(x402_headers::IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let refuse = |what: String| {
        Refused::bad_request(format!("the Idempotency-Key header is not usable: {what}"))
    };
    let text = value
        .to_str()
        .map_err(|_| refuse("it is not ASCII".to_owned()))?;
    IdempotencyKey::new(text)
        .map(Some)
        .map_err(|e| refuse(e.to_string()))
}

/// Maps a failure to get an answer at all. The body keeps the wire shape (`isValid` /
/// `success` false, a reason code) so official clients read the reason too.
fn unavailable(error: &FacilitatorError, verify: bool) -> Response {
    let (status, reason) = match error {
        FacilitatorError::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            ReasonCode::CHAIN_UNAVAILABLE,
        ),
        FacilitatorError::BadRequest(_) => (StatusCode::BAD_REQUEST, ReasonCode::INVALID_PAYLOAD),
        FacilitatorError::BadResponse(_) | FacilitatorError::Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            if verify {
                ReasonCode::UNEXPECTED_VERIFY_ERROR
            } else {
                ReasonCode::UNEXPECTED_SETTLE_ERROR
            },
        ),
    };
    let body = if verify {
        json!({"isValid": false, "invalidReason": reason, "invalidMessage": error.to_string()})
    } else {
        json!({"success": false, "errorReason": reason, "errorMessage": error.to_string(),
               "transaction": "", "network": ""})
    };
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
    }
    response
}

async fn verify(State(service): State<FacilitatorService>, Parsed(request): Parsed) -> Response {
    answer(service.verify(&request).await, true)
}

async fn settle(
    State(service): State<FacilitatorService>,
    Idempotency(key): Idempotency,
    Parsed(request): Parsed,
) -> Response {
    answer(service.settle(&request, key.as_ref()).await, false)
}

/// The service's answer, or what the failure to get one maps to.
fn answer<T: serde::Serialize>(result: Result<T, FacilitatorError>, verify: bool) -> Response {
    match result {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(e) => unavailable(&e, verify),
    }
}

async fn supported(State(service): State<FacilitatorService>) -> Response {
    axum::Json(service.supported()).into_response()
}

async fn health(State(service): State<FacilitatorService>) -> Response {
    let (chains, database) = tokio::join!(
        service.health(HEALTH_TIMEOUT),
        service.database_health(HEALTH_TIMEOUT)
    );
    let healthy = chains.iter().all(|c| c.healthy) && database.reachable;
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut reasons: Vec<String> = chains
        .iter()
        .filter_map(|c| c.reason.as_ref().map(|r| format!("{}: {r}", c.network)))
        .collect();
    if let Some(error) = &database.error {
        reasons.push(format!(
            "database: the settlement log ({}) is unreachable, nothing can settle: {error}",
            database.backend
        ));
    }
    let mut body = json!({
        "status": if healthy { "ok" } else { "unhealthy" },
        "chains": chains,
        "database": database,
        "pendingSettlements": service.in_flight(),
    });
    if !reasons.is_empty() {
        body["reasons"] = json!(reasons);
    }
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(service): State<FacilitatorService>) -> Response {
    let text = service.metrics().render(service.in_flight());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "this facilitator serves POST /verify, POST /settle, GET /supported, GET /health, GET /metrics",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        let headers = HeaderMap::new();
        let response = parse_request(&headers, b"").unwrap_err().0;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let response = parse_request(&headers, b"{\"paymentPayload\": 1}")
            .unwrap_err()
            .0;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        let response = parse_request(&headers, b"{}").unwrap_err().0;
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
