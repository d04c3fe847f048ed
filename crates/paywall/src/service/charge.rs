//! One paid request from quote to receipt: quote, challenge, admit the payment (one payment,
//! one response), verify, run the handler and settle in the order the route asks for, and keep
//! the answer for a client that lost it.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use tokio::sync::watch;
use tower::Service;
use x402_proto::{
    Facilitator, FacilitatorError, IdempotencyKey, PaymentPayload, PaymentRequest, ReasonCode,
    UsageMeter, authorization_digest, decode_header, payment_identifier,
};

use crate::guard::{Admission, Lease};
use crate::paid::Paid;
use crate::price::{PaymentOption, Rejection, RoutePrice, SettleTiming};
use crate::response::{self, Challenge, ReceiptHeader};

use super::hooks::Held;
use super::record::Note;
use super::steps::{
    IN_USE, NO_MATCH, Refusal, SPENT_ELSEWHERE, body_refused, candidates, conflict, fingerprint,
    keep, not_replayed, not_spent, payment_header, recover, refuse_replay, replay, run_paid,
    settle, spent, verify,
};
use super::stream::{self, Unsettled, settle_when_over};
use super::{Paywall, usage};

/// A payment that verified, with what is needed to settle it.
pub(super) struct Verified {
    /// Shared with what its scheme's hooks reserved ([`Held`]), which needs it to let go.
    pub(super) request: Arc<PaymentRequest>,
    pub(super) option: PaymentOption,
    pub(super) payer: String,
    pub(super) receipt: ReceiptHeader,
    /// When it was sent to be verified: a metered stream's time counts from then.
    pub(super) at: std::time::Instant,
    /// What its scheme's hooks reserved for it, charged when it settles and let go of if it
    /// never does.
    pub(super) held: Option<Held>,
    /// Whether its outcome is journaled already: its scheme's state committed the journal
    /// entry with the charge.
    pub(super) journaled: bool,
}

pub(super) async fn charge<S>(
    paywall: Paywall,
    price: Arc<RoutePrice>,
    inner: S,
    request: Request<Body>,
) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
    S::Future: Send,
{
    let inner_state = &paywall.inner;
    let (mut parts, body) = request.into_parts();

    // 1. Quote, before anything is paid: bad input is refused here with a 4xx.
    // A fixed price needs no body: it is handed to the handler untouched (streamed), unless
    // a payment comes with a body of declared size within the limit, which is read so that
    // the payment is tied to exactly this body.
    let max = inner_state.config.max_body_bytes;
    let small_paid_body = payment_header(&parts.headers).is_some()
        && parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|len| len <= max);
    let (body, passthrough) = if price.reads_body() || small_paid_body {
        match Limited::new(body, max).collect().await {
            Ok(collected) => (collected.to_bytes(), None),
            Err(error) => return body_refused(&*error, max),
        }
    } else {
        (Bytes::new(), Some(body))
    };
    let mut quote = match price.quote(&parts, &body) {
        Ok(quote) => quote,
        Err(rejection) => return response::rejection(rejection),
    };
    let challenge = match Challenge::build(
        &inner_state.offered(),
        |requirements| inner_state.enhance(requirements),
        &quote,
        &price,
        &parts,
        inner_state.config.public_url.as_deref(),
        inner_state.config.require_payment_identifier,
    ) {
        Ok(challenge) => challenge.with_gas_sponsoring(
            inner_state
                .gas_sponsoring
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        Err(rejection) => return response::rejection(rejection),
    };

    // 2. The payment, if any.
    let Some((header_value, receipt)) = payment_header(&parts.headers) else {
        return challenge.respond("Payment required", &parts.headers, None);
    };
    let payment: PaymentPayload = match decode_header(header_value.as_bytes()) {
        Ok(payment) => payment,
        Err(error) => {
            let message = format!(
                "the {} header is not a valid payment: {error}",
                receipt.request_header()
            );
            return challenge.respond(&message, &parts.headers, None);
        }
    };
    let purchase = match payment.payment_identifier() {
        Ok(purchase) => purchase,
        Err(message) => return response::rejection(Rejection::bad_request(message)),
    };
    if purchase.is_none() && inner_state.config.require_payment_identifier {
        return response::rejection(Rejection::bad_request(format!(
            "this server requires the `{}` extension: put a unique id of 16 to 128 characters \
             (A-Z, a-z, 0-9, '_', '-') in the payment's extensions.{}.info.id",
            payment_identifier::KEY,
            payment_identifier::KEY,
        )));
    }
    let candidates = candidates(&challenge, payment);
    let Some((first, _)) = candidates.first() else {
        return challenge.respond(NO_MATCH, &parts.headers, None);
    };
    let payment_id = match inner_state.facilitator.payment_id(first) {
        Ok(id) => id,
        Err(error) => return challenge.respond(&error.to_string(), &parts.headers, None),
    };

    // 3. One payment, one response: a payment in use or spent on another request is
    // refused; one spent on this same request gets its answer again.
    let fingerprint = fingerprint(&parts, passthrough.is_none().then_some(&body));
    let note = Note::new(
        payment_id.to_string(),
        &parts,
        &fingerprint,
        quote.service_label().map(str::to_owned),
        quote.job_label().map(str::to_owned),
    );
    let authorization = authorization_digest(first);
    let guard = &inner_state.guard;
    let lease = match guard
        .admit(
            &payment_id,
            &authorization,
            purchase.as_deref(),
            &fingerprint,
        )
        .await
    {
        Ok(Admission::Granted) => Lease::new(
            guard.clone(),
            payment_id.clone(),
            authorization,
            purchase.clone(),
            fingerprint,
        ),
        Ok(Admission::Served {
            served,
            by_identifier,
        }) => {
            if by_identifier && served.authorization != authorization {
                // A retry of a purchase, signed anew: it must be a genuine payment by the
                // payer who bought it (it is not settled; the purchase is paid already).
                let payer = served.receipt.payer.clone().unwrap_or_default();
                match verify(inner_state, candidates.clone(), receipt).await {
                    Ok(verified) if verified.payer.eq_ignore_ascii_case(&payer) => {}
                    Ok(_) => {
                        return conflict(
                            "this payment identifier was bought by another payer; use a new \
                             identifier",
                        );
                    }
                    Err(Refusal::Unavailable(error)) => return response::unavailable(&error),
                    Err(Refusal::Invalid { message, .. }) => {
                        return challenge.respond(&message, &parts.headers, None);
                    }
                }
            }
            tracing::info!(payment = %payment_id, "a paid request came again; answering it again");
            return match served.response {
                Some(stored) => replay(stored),
                None => {
                    let (request, option) = &candidates[0];
                    let metered = usage::settles_by_usage(inner_state, request);
                    let paid = Paid::already_settled(request, option, &served.receipt, metered);
                    let streams = quote.streams();
                    parts.extensions.extend(quote.take_extensions());
                    let body = passthrough.unwrap_or_else(|| Body::from(body));
                    match run_again(inner, parts, body, paid, metered, streams).await {
                        Some(mut response) => {
                            receipt.attach(response.headers_mut(), &served.receipt);
                            response
                        }
                        None => replay(not_replayed(receipt, &served.receipt)),
                    }
                }
            };
        }
        Ok(Admission::InUse { by_identifier }) => {
            return if by_identifier {
                conflict(
                    "a request with this payment identifier is being served right now; \
                     wait for it, then retry with the same identifier",
                )
            } else {
                challenge.respond(IN_USE, &parts.headers, None)
            };
        }
        Ok(Admission::Conflict { by_identifier }) => {
            return if by_identifier {
                conflict(
                    "this payment identifier was used for a different request (method, path \
                     or body); use a new identifier for a new request",
                )
            } else {
                challenge.respond(SPENT_ELSEWHERE, &parts.headers, None)
            };
        }
        Err(error) => {
            tracing::error!(%error, "payment guard failed; refusing to serve");
            return response::unavailable(&FacilitatorError::Unavailable(error.to_string()));
        }
    };
    let idempotency_key = IdempotencyKey::for_request(&payment_id, &fingerprint);

    // 4. Verify against the requirements the client chose.
    let verified = match verify(inner_state, candidates, receipt).await {
        Ok(verified) => verified,
        Err(Refusal::Unavailable(error)) => return response::unavailable(&error),
        Err(Refusal::Invalid {
            message,
            spent: Some(request),
            ..
        }) => {
            // Spent already: by this same request (its answer was lost before the guard kept
            // it, e.g. across a restart), the facilitator gives our key its receipt again.
            match recover(inner_state, &request, &idempotency_key).await {
                Some(recovered) => {
                    let verified = Verified {
                        request: Arc::new(request.0.clone()),
                        option: request.1.clone(),
                        payer: recovered.payer.clone().unwrap_or_default(),
                        receipt,
                        at: std::time::Instant::now(),
                        held: None,
                        journaled: false,
                    };
                    note.settled(inner_state, &verified, &request.0, &recovered)
                        .await;
                    let metered = usage::settles_by_usage(inner_state, &request.0);
                    let paid = Paid::already_settled(&request.0, &request.1, &recovered, metered);
                    let streams = quote.streams();
                    parts.extensions.extend(quote.take_extensions());
                    let body = passthrough.unwrap_or_else(|| Body::from(body));
                    return match run_again(inner, parts, body, paid, metered, streams).await {
                        Some(response) => {
                            keep(inner_state, lease, receipt, recovered, response, metered).await
                        }
                        None => refuse_replay(lease, receipt, recovered).await,
                    };
                }
                None => return challenge.respond(&message, &parts.headers, None),
            }
        }
        Err(Refusal::Invalid {
            message,
            reason,
            corrective,
            ..
        }) => {
            let mut response =
                challenge.respond_corrected(&message, &parts.headers, corrective.as_deref());
            if reason == Some(ReasonCode::PERMIT2_ALLOWANCE_REQUIRED) {
                // The payer must approve Permit2 first: 412, as official servers answer.
                *response.status_mut() = http::StatusCode::PRECONDITION_FAILED;
            }
            return response;
        }
    };

    // A payment that buys no handler run (a refund request): settled now, answered with the
    // scheme's body and the receipt.
    let mut verified = verified;
    if let Some(body) = verified.held.as_ref().and_then(Held::skip_handler) {
        return match settle(inner_state, &mut verified, &idempotency_key, None).await {
            Ok(receipt) => {
                let response = response::json(http::StatusCode::OK, &body);
                keep(
                    inner_state,
                    lease,
                    verified.receipt,
                    receipt,
                    response,
                    false,
                )
                .await
            }
            Err(failure) => challenge.settle_failed(failure, &parts.headers, verified.receipt),
        };
    }

    // 5. Run and settle, in the order the route asks for.
    let (settled_tx, settled_rx) = watch::channel(None);
    let timing = quote.settle_timing().unwrap_or(price.settle);
    let metered = usage::settles_by_usage(inner_state, &verified.request);
    // A metered stream goes out before its payment settles: admitted before the handler runs
    // when the quote says the answer streams, else once the handler's stream is ready.
    let mut admitted = None;
    if quote.streams() && timing == SettleTiming::AfterHandler && metered {
        match stream::admit(inner_state, &verified, &challenge, &parts.headers).await {
            Ok(stream) => admitted = Some(stream),
            Err(refusal) => return refusal,
        }
    }
    let mut paid = Paid {
        payer: verified.payer.clone(),
        scheme: verified.option.scheme.clone(),
        metered,
        amount: verified.request.requirements().amount,
        asset: verified.option.asset.clone(),
        network: verified.option.network.clone(),
        decimals: verified.option.decimals,
        version: verified.request.version(),
        transaction: None,
        settlement: settled_rx,
    };
    parts.extensions.extend(quote.take_extensions());
    let body = passthrough.unwrap_or_else(|| Body::from(body));

    match timing {
        SettleTiming::BeforeHandler => {
            let receipt =
                match settle(inner_state, &mut verified, &idempotency_key, Some(&note)).await {
                    Ok(receipt) => receipt,
                    Err(failure) => {
                        note.failed(inner_state, &verified, &verified.request, &failure)
                            .await;
                        return challenge.settle_failed(failure, &parts.headers, verified.receipt);
                    }
                };
            note.settled(inner_state, &verified, &verified.request, &receipt)
                .await;
            paid.transaction = Some(receipt.transaction.clone()).filter(|tx| !tx.is_empty());
            let _ = settled_tx.send(Some(receipt.clone()));
            let mut response = run_paid(inner, parts, body, paid).await;
            if !matches!(usage::take_report(&mut response), usage::Report::None) {
                tracing::warn!(
                    "usage reported on a route settled before its handler; the price was settled"
                );
            }
            let kind = verified.receipt;
            keep(inner_state, lease, kind, receipt, response, metered).await
        }
        SettleTiming::AfterHandler => {
            let headers = parts.headers.clone();
            let mut response = run_paid(inner, parts, body, paid).await;
            let meter = response.extensions_mut().remove::<UsageMeter>();
            let report = usage::take_report(&mut response);
            if response.status().as_u16() >= 400 {
                // Not charged: the payment is never settled, and its authorization expires.
                // The lease is dropped and what the scheme reserved let go of: the payment
                // may be used again.
                if let Some(held) = verified.held.take() {
                    held.release().await;
                }
                return response;
            }
            if let Some(meter) = meter
                && metered
            {
                // A metered body that streams: sent now, settled when it is over. Not admitted
                // yet, it is admitted now, or dropped unsent.
                let admitted = match admitted {
                    Some(admitted) => admitted,
                    None => match stream::admit(inner_state, &verified, &challenge, &headers).await
                    {
                        Ok(admitted) => admitted,
                        Err(refusal) => return refusal,
                    },
                };
                let unsettled = Unsettled {
                    inner: paywall.inner.clone(),
                    note,
                    verified,
                    payment: payment_id,
                    key: idempotency_key,
                    lease,
                    settled: settled_tx,
                    meter,
                    admitted,
                };
                return settle_when_over(unsettled, response);
            }
            let mut verified = verified;
            verified.request =
                usage::metered(inner_state, verified.request, &verified.option, report);
            match settle(inner_state, &mut verified, &idempotency_key, Some(&note)).await {
                Ok(receipt) => {
                    let _ = settled_tx.send(Some(receipt.clone()));
                    let kind = verified.receipt;
                    if !spent(inner_state, &verified.request, &receipt) {
                        return not_spent(lease, kind, &receipt, response);
                    }
                    note.settled(inner_state, &verified, &verified.request, &receipt)
                        .await;
                    keep(inner_state, lease, kind, receipt, response, metered).await
                }
                // The handler's body is dropped: nothing paid, nothing served.
                Err(failure) => {
                    note.failed(inner_state, &verified, &verified.request, &failure)
                        .await;
                    challenge.settle_failed(failure, &headers, verified.receipt)
                }
            }
        }
    }
}

/// Runs the handler again for a request whose payment (`paid`) settled already, charging
/// nothing more: its answer, or `None` for a metered stream, which is sent once and never
/// again (a new one would be content nobody pays for). With a payment charged by usage
/// (`metered`), a stream the quote announced (`streams`) is not run at all, and one that shows
/// itself by its [`UsageMeter`] is dropped unsent. Any other answer is the lost-answer feature: the same request, the same
/// payment, served again.
async fn run_again<S>(
    inner: S,
    parts: http::request::Parts,
    body: Body,
    paid: Paid,
    metered: bool,
    streams: bool,
) -> Option<Response<Body>>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    if metered && streams {
        return None;
    }
    let response = run_paid(inner, parts, body, paid).await;
    if metered && response.extensions().get::<UsageMeter>().is_some() {
        tracing::warn!("a settled metered stream was asked for again; it is not sent again");
        return None;
    }
    Some(response)
}
