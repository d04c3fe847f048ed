//! The steps of a paid request: matching the payment to the offers, verifying, settling,
//! recovering a settlement after a restart, and keeping and replaying paid responses.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::body::HttpBody as _;
use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::{Service, ServiceExt};
use x402_proto::{
    ChargeNote, Facilitator, FacilitatorError, HookRefusal, IdempotencyKey, PaymentPayload,
    PaymentRequest, ReasonCode, SettleResponse, VerifiedBy, headers, request_fingerprint,
    requirements_match, v1, v2,
};

use crate::guard::{Lease, RequestFingerprint, StoredResponse};
use crate::paid::Paid;
use crate::price::{PaymentOption, Rejection};
use crate::response::{self, Challenge, ReceiptHeader};

use super::Inner;
use super::charge::Verified;
use super::hooks::Held;
use super::record::Note;

pub(super) const NO_MATCH: &str = "No matching payment requirements: the payment does not match any \
    option of this request's challenge (scheme, network, asset, amount, payTo); pay one of \
    `accepts`";
// These begin with `ReasonCode::PAYMENT_IN_USE` / `PAYMENT_ALREADY_USED` (checked by a test),
// which clients match on.
pub(super) const IN_USE: &str = "payment_in_use: this payment is being used by another request right \
    now; one payment buys one response, sign a new payment";
pub(super) const SPENT_ELSEWHERE: &str = "payment_already_used: this payment already bought the response \
    to a different request (method, path or body), or another authorization with its nonce \
    did; sign a new payment for this one";

/// The offers a payment may be meant for, each as a request to the facilitator.
pub(super) fn candidates(
    challenge: &Challenge,
    payment: PaymentPayload,
) -> Vec<(PaymentRequest, PaymentOption)> {
    match payment {
        PaymentPayload::V2(payload) => challenge
            .offers()
            .find(|(offer, _)| requirements_match(&payload.accepted, offer))
            .map(|(offer, option)| {
                vec![(
                    PaymentRequest::V2 {
                        payload,
                        requirements: offer.clone(),
                    },
                    option.clone(),
                )]
            })
            .unwrap_or_default(),
        PaymentPayload::V1(payload) => challenge
            .offers()
            .filter_map(|(offer, option)| {
                let v1 = v1::PaymentRequirements::from_v2(offer, challenge.resource())?;
                (v1.scheme == payload.scheme && v1.network == payload.network).then(|| {
                    (
                        PaymentRequest::V1 {
                            payload: payload.clone(),
                            requirements: v1,
                        },
                        option.clone(),
                    )
                })
            })
            .collect(),
    }
}

/// What a paid response answers to: method, path and query, and the body when it was read
/// (a streamed body is represented by its declared type and length).
pub(super) fn fingerprint(
    parts: &http::request::Parts,
    body: Option<&Bytes>,
) -> RequestFingerprint {
    let target = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let header = |name: http::HeaderName| {
        parts
            .headers
            .get(name)
            .map_or(&[][..], HeaderValue::as_bytes)
    };
    match body {
        Some(body) => {
            request_fingerprint(&[parts.method.as_str().as_bytes(), target.as_bytes(), body])
        }
        None => request_fingerprint(&[
            parts.method.as_str().as_bytes(),
            target.as_bytes(),
            b"streamed",
            header(http::header::CONTENT_TYPE),
            header(http::header::CONTENT_LENGTH),
        ]),
    }
}

pub(super) fn conflict(message: &str) -> Response<Body> {
    response::rejection(Rejection::bad_request(message).with_status(http::StatusCode::CONFLICT))
}

/// A kept paid response, sent again as it was.
pub(super) fn replay(stored: StoredResponse) -> Response<Body> {
    let mut response = Response::new(Body::from(stored.body));
    *response.status_mut() =
        http::StatusCode::from_u16(stored.status).unwrap_or(http::StatusCode::OK);
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// Attaches the receipt, and records in the guard what the payment bought: the response
/// itself when its body is in memory and small enough to keep, else only that it was served
/// (a retry then runs the handler again, charged nothing), or, for a payment charged for what
/// it used (`metered`), that it is not served again ([`not_replayed`]): one payment, one
/// metered answer.
pub(super) async fn keep(
    inner: &Inner,
    lease: Lease,
    kind: ReceiptHeader,
    receipt: SettleResponse,
    mut response: Response<Body>,
    metered: bool,
) -> Response<Body> {
    kind.attach(response.headers_mut(), &receipt);
    let limit = inner.config.response_cache.max_entry_bytes as u64;
    let small = response
        .body()
        .size_hint()
        .exact()
        .is_some_and(|size| size <= limit);
    let (response, stored) = if small {
        let (parts, body) = response.into_parts();
        match body.collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                let stored = StoredResponse {
                    status: parts.status.as_u16(),
                    headers: stored_headers(&parts.headers),
                    body: bytes.clone(),
                };
                (Response::from_parts(parts, Body::from(bytes)), Some(stored))
            }
            Err(error) => {
                tracing::warn!(%error, "a paid response body failed while being kept");
                (Response::from_parts(parts, Body::empty()), None)
            }
        }
    } else {
        (response, None)
    };
    let stored = match stored {
        None if metered => Some(not_replayed(kind, &receipt)),
        stored => stored,
    };
    if let Err(error) = lease.served(receipt, stored).await {
        tracing::warn!(%error, "could not keep a paid response; a retry will run it again");
    }
    response
}

/// Whether `request`, settled with `receipt`, is used up (see
/// [`PaymentHooks::spent`](x402_proto::PaymentHooks::spent)): always, but for a scheme whose
/// hooks say a payment charged nothing can pay again.
pub(super) fn spent(inner: &Inner, request: &PaymentRequest, receipt: &SettleResponse) -> bool {
    let scheme = inner.hooked(&request.requirements().scheme);
    scheme
        .as_deref()
        .and_then(|scheme| scheme.hooks())
        .is_none_or(|hooks| hooks.spent(request, receipt))
}

/// The answer to a payment that was not used up: the receipt attached, nothing kept, the
/// payment free to pay again (its lease dropped).
pub(super) fn not_spent(
    lease: Lease,
    kind: ReceiptHeader,
    receipt: &SettleResponse,
    mut response: Response<Body>,
) -> Response<Body> {
    drop(lease);
    kind.attach(response.headers_mut(), receipt);
    response
}

/// Records in the guard that the payment settled with `receipt` bought a metered answer that
/// is not served again, and answers so ([`not_replayed`]).
pub(super) async fn refuse_replay(
    lease: Lease,
    kind: ReceiptHeader,
    receipt: SettleResponse,
) -> Response<Body> {
    let stored = not_replayed(kind, &receipt);
    if let Err(error) = lease.served(receipt, Some(stored.clone())).await {
        tracing::warn!(%error, "could not record a settled metered payment");
    }
    replay(stored)
}

/// What a retry of a request whose payment settled for what its answer used gets: 409, the
/// receipt, and why. Such an answer (a stream, or one too large to keep) is not sent again:
/// running the handler again would serve new content that nobody pays for.
pub(super) fn not_replayed(kind: ReceiptHeader, receipt: &SettleResponse) -> StoredResponse {
    let rejection = Rejection::bad_request(format!(
        "{}: this payment bought an answer charged for what it used (a streamed answer, or one \
         too large to keep), which was sent; it is not sent again, sign a new payment for a \
         new answer",
        ReasonCode::PAYMENT_ALREADY_USED
    ))
    .with_status(http::StatusCode::CONFLICT);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    kind.attach(&mut headers, receipt);
    StoredResponse {
        status: rejection.status.as_u16(),
        headers: stored_headers(&headers),
        body: Bytes::from(rejection.body.to_string()),
    }
}

/// `headers` as the guard keeps them.
fn stored_headers(headers: &http::HeaderMap) -> Vec<(String, Bytes)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                Bytes::copy_from_slice(value.as_bytes()),
            )
        })
        .collect()
}

pub(super) fn body_refused(
    error: &(dyn std::error::Error + Send + Sync + 'static),
    limit: usize,
) -> Response<Body> {
    if error.is::<http_body_util::LengthLimitError>() {
        // 400, like every other input refusal, before any payment is asked for.
        response::rejection(Rejection::bad_request(format!(
            "the request body is larger than {limit} bytes; send a smaller input"
        )))
    } else {
        response::rejection(Rejection::bad_request(format!(
            "the request body could not be read: {error}"
        )))
    }
}

/// The payment header and the receipt header that answers it: `PAYMENT-SIGNATURE` →
/// `PAYMENT-RESPONSE`, `X-PAYMENT` → `X-PAYMENT-RESPONSE`.
pub(super) fn payment_header(headers: &http::HeaderMap) -> Option<(&HeaderValue, ReceiptHeader)> {
    if let Some(value) = headers.get(headers::PAYMENT_SIGNATURE) {
        return Some((value, ReceiptHeader::V2));
    }
    headers
        .get(headers::X_PAYMENT)
        .map(|value| (value, ReceiptHeader::V1))
}

pub(super) enum Refusal {
    Unavailable(FacilitatorError),
    Invalid {
        message: String,
        /// The facilitator's reason code for the last refusal.
        reason: Option<ReasonCode>,
        /// The request the facilitator called spent, if any.
        spent: Option<Box<(PaymentRequest, PaymentOption)>>,
        /// For a client whose view of the scheme's state is behind: the offer it paid and the
        /// keys its challenge gains (a corrective 402).
        corrective: Option<Box<Corrective>>,
    },
}

/// The keys a corrective 402 adds to the `extra` of the offer that was paid.
pub(crate) struct Corrective {
    /// The offer paid.
    pub(crate) offer: v2::PaymentRequirements,
    /// The keys.
    pub(crate) extra: Value,
}

impl Refusal {
    /// A scheme hook's refusal of `request`: 503 when the server's own state failed, else a
    /// 402 whose error is exactly the reason code (as official clients match it), with the
    /// hook's corrective keys.
    fn from_hook(refusal: HookRefusal, request: &PaymentRequest) -> Self {
        tracing::info!(reason = %refusal.reason, message = %refusal.message, "the scheme refused a payment");
        if refusal.unavailable {
            return Self::Unavailable(FacilitatorError::Unavailable(refusal.to_string()));
        }
        let corrective = match (refusal.corrective, request) {
            (Some(extra), PaymentRequest::V2 { requirements, .. }) => Some(Box::new(Corrective {
                offer: requirements.clone(),
                extra,
            })),
            _ => None,
        };
        Self::Invalid {
            message: refusal.reason.to_string(),
            reason: Some(refusal.reason),
            spent: None,
            corrective,
        }
    }
}

pub(super) async fn verify(
    inner: &Inner,
    candidates: Vec<(PaymentRequest, PaymentOption)>,
    receipt: ReceiptHeader,
) -> Result<Verified, Refusal> {
    let at = Instant::now();
    let mut last_refusal = String::new();
    let mut last_reason = None;
    let mut spent = None;
    for (request, option) in candidates {
        let hooked = inner.hooked(&request.requirements().scheme);
        let hooks = hooked.as_deref().and_then(|scheme| scheme.hooks());
        let verdict = match hooks {
            Some(hooks) => hooks
                .before_verify(&request)
                .await
                .map_err(|refusal| Refusal::from_hook(refusal, &request))?,
            None => None,
        };
        let (answer, by) = match verdict {
            Some(answer) => (answer, VerifiedBy::Server),
            None => (
                inner
                    .facilitator
                    .verify(&request)
                    .await
                    .map_err(Refusal::Unavailable)?,
                VerifiedBy::Facilitator,
            ),
        };
        if answer.is_valid {
            let request = Arc::new(request);
            let held = match (&hooked, hooks) {
                (Some(scheme), Some(hooks)) => {
                    let ticket = hooks
                        .after_verify(&request, &answer, by)
                        .await
                        .map_err(|refusal| Refusal::from_hook(refusal, &request))?;
                    Some(Held::new(scheme.clone(), request.clone(), ticket))
                }
                _ => None,
            };
            let payer = answer.payer.unwrap_or_default();
            return Ok(Verified {
                request,
                option,
                payer,
                receipt,
                at,
                held,
                journaled: false,
            });
        }
        if answer
            .invalid_reason
            .as_ref()
            .is_some_and(|reason| SPENT_REASONS.contains(reason))
        {
            spent = Some(Box::new((request.clone(), option.clone())));
        }
        last_reason.clone_from(&answer.invalid_reason);
        last_refusal = match (answer.invalid_reason, answer.invalid_message) {
            // A scheme with hooks is answered as official servers answer it: the code alone,
            // which its clients match on.
            (Some(reason), _) if hooks.is_some() => reason.to_string(),
            (Some(reason), Some(message)) => format!("{reason}: {message}"),
            (Some(reason), None) => reason.to_string(),
            (None, Some(message)) => message,
            (None, None) => "payment refused by the facilitator".to_owned(),
        };
    }
    Err(Refusal::Invalid {
        message: last_refusal,
        reason: last_reason,
        spent,
        corrective: None,
    })
}

/// Reasons that mean the payment was already spent (so it may have been spent on this very
/// request, whose answer was lost).
pub(super) const SPENT_REASONS: [ReasonCode; 3] = [
    ReasonCode::EXACT_EVM_NONCE_ALREADY_USED,
    ReasonCode::PERMIT2_INVALID_NONCE,
    ReasonCode::DUPLICATE_SETTLEMENT,
];

/// Asks the facilitator for the receipt of a spent payment under this request's key: it
/// answers with the success only if the payment was settled for this same request.
pub(super) async fn recover(
    inner: &Inner,
    request: &(PaymentRequest, PaymentOption),
    key: &IdempotencyKey,
) -> Option<SettleResponse> {
    match inner.facilitator.settle(&request.0, Some(key)).await {
        Ok(answer) if answer.success => {
            tracing::info!(transaction = %answer.transaction, "a spent payment was this request's; serving it again");
            Some(answer)
        }
        _ => None,
    }
}

/// What settling gave when it did not succeed: a failed receipt, or no answer at all.
pub(crate) enum SettleFailure {
    Refused(SettleResponse),
    Unavailable(FacilitatorError),
}

/// Settles what `verified` pays: through its scheme's hooks when it holds a reservation of
/// theirs (charged there, or sent to the facilitator as they say), else by the facilitator.
pub(super) async fn settle(
    inner: &Inner,
    verified: &mut Verified,
    key: &IdempotencyKey,
    note: Option<&Note>,
) -> Result<SettleResponse, SettleFailure> {
    match verified.held.take() {
        Some(held) => {
            let (receipt, noted) = {
                let charging = note.map(|note| note.charging(inner, verified));
                held.settle(
                    inner,
                    &verified.request,
                    &verified.payer,
                    key,
                    charging.as_ref().map(|c| c as &dyn ChargeNote),
                )
                .await?
            };
            verified.journaled = noted;
            Ok(receipt)
        }
        None => settle_request(inner, &verified.request, &verified.payer, key).await,
    }
}

/// Settles `request` (paid by `payer`) with the facilitator, waiting out `settlement_pending`
/// for the paywall's patience.
pub(super) async fn settle_request(
    inner: &Inner,
    request: &PaymentRequest,
    payer: &str,
    key: &IdempotencyKey,
) -> Result<SettleResponse, SettleFailure> {
    let started = Instant::now();
    loop {
        let answer = inner
            .facilitator
            .settle(request, Some(key))
            .await
            .map_err(SettleFailure::Unavailable)?;
        if answer.success {
            return Ok(answer);
        }
        let pending = answer.error_reason.as_ref() == Some(&ReasonCode::SETTLEMENT_PENDING);
        if !pending || started.elapsed() >= inner.config.settle_patience {
            tracing::warn!(
                %payer,
                reason = ?answer.error_reason,
                message = ?answer.error_message,
                transaction = %answer.transaction,
                "settlement failed; the response is withheld"
            );
            return Err(SettleFailure::Refused(answer));
        }
        // Settling the same payment again with the same key joins the one in flight
        // (facilitators settle a payment at most once); wait for it rather than drop a
        // response that was paid for.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs the handler with the payment for its request in its extensions.
pub(super) async fn run_paid<S>(
    inner: S,
    mut parts: http::request::Parts,
    body: Body,
    paid: Paid,
) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    parts.extensions.insert(paid);
    run(inner, Request::from_parts(parts, body)).await
}

pub(super) async fn run<S>(inner: S, request: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    match inner.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_start_with_the_reason_codes_clients_match() {
        assert!(IN_USE.starts_with(ReasonCode::PAYMENT_IN_USE.as_str()));
        assert!(SPENT_ELSEWHERE.starts_with(ReasonCode::PAYMENT_ALREADY_USED.as_str()));
    }
}
