//! The paywall itself: [`Paywall`] (shared settings and the facilitator), [`PaymentLayer`]
//! (one per priced route) and the [`PaymentService`] it wraps a handler in.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Limited};
use tokio::sync::watch;
use tower::{Layer, Service, ServiceExt};
use x402_proto::{
    BoxFuture, Facilitator, FacilitatorError, PaymentPayload, PaymentRequest, ReasonCode,
    SettleResponse, decode_header, headers, requirements_match, v1,
};

use crate::paid::Paid;
use crate::price::{PaymentOption, Rejection, RoutePrice, SettleTiming};
use crate::response::{self, Challenge, ReceiptHeader};

/// Settings shared by every route behind one paywall.
#[derive(Clone, Debug)]
pub struct PaywallConfig {
    /// The largest request body read to quote a price (larger ones get 400).
    pub max_body_bytes: usize,
    /// How long to keep asking a facilitator that answers `settlement_pending` before giving
    /// up and answering 402 (the transaction may still confirm; the receipt names it).
    pub settle_patience: Duration,
    /// The public base URL (`https://api.example.com`) used in challenges; by default the
    /// request's `Host` header over plain HTTP.
    pub public_url: Option<String>,
}

impl Default for PaywallConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            settle_patience: Duration::from_secs(60),
            public_url: None,
        }
    }
}

/// Why a paywall cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum PaywallError {
    /// No way to pay was given.
    #[error("a paywall needs at least one payment option (asset, network, payTo)")]
    NoOptions,
}

/// A paywall: the facilitator that verifies and settles, the accepted ways to pay, and the
/// settings. Cheap to clone; make one [`PaymentLayer`] per priced route with
/// [`Paywall::layer`].
#[derive(Clone)]
pub struct Paywall {
    inner: Arc<Inner>,
}

struct Inner {
    facilitator: Arc<dyn Facilitator>,
    options: Vec<PaymentOption>,
    config: PaywallConfig,
    /// Payments being used by a request right now, so one signature cannot buy two
    /// concurrent responses before it settles.
    in_use: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Paywall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paywall")
            .field("options", &self.inner.options)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Paywall {
    /// A paywall that accepts `options` (in order of preference) and verifies and settles
    /// through `facilitator`: in process or remote
    /// ([`HttpFacilitator`](crate::HttpFacilitator)).
    pub fn new(
        facilitator: Arc<dyn Facilitator>,
        options: Vec<PaymentOption>,
        config: PaywallConfig,
    ) -> Result<Self, PaywallError> {
        if options.is_empty() {
            return Err(PaywallError::NoOptions);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                facilitator,
                options,
                config,
                in_use: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The accepted ways to pay.
    pub fn options(&self) -> &[PaymentOption] {
        &self.inner.options
    }

    /// A layer charging `price` for the route it wraps.
    pub fn layer(&self, price: RoutePrice) -> PaymentLayer {
        PaymentLayer {
            paywall: self.clone(),
            price: Arc::new(price),
        }
    }
}

/// Charges for one route. See [`Paywall::layer`].
#[derive(Clone, Debug)]
pub struct PaymentLayer {
    paywall: Paywall,
    price: Arc<RoutePrice>,
}

impl<S> Layer<S> for PaymentLayer {
    type Service = PaymentService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PaymentService {
            paywall: self.paywall.clone(),
            price: self.price.clone(),
            inner,
        }
    }
}

/// A handler behind the paywall.
#[derive(Clone, Debug)]
pub struct PaymentService<S> {
    paywall: Paywall,
    price: Arc<RoutePrice>,
    inner: S,
}

impl<S> Service<Request<Body>> for PaymentService<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner service is cloned per request and driven to readiness there.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let paywall = self.paywall.clone();
        let price = self.price.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut response = charge(paywall, price, inner, request).await;
            response::expose_payment_headers(response.headers_mut());
            Ok(response)
        })
    }
}

/// Releases a payment's "in use" mark when its request is over, however it ends.
struct InUse<'a> {
    set: &'a Mutex<HashSet<String>>,
    key: String,
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.key);
        }
    }
}

/// A payment that verified, with what is needed to settle it.
struct Verified {
    request: PaymentRequest,
    option: PaymentOption,
    payer: String,
    receipt: ReceiptHeader,
}

async fn charge<S>(
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
    // A fixed price needs no body: it is handed to the handler untouched (streamed).
    let (body, passthrough) = if price.reads_body() {
        match Limited::new(body, inner_state.config.max_body_bytes)
            .collect()
            .await
        {
            Ok(collected) => (collected.to_bytes(), None),
            Err(error) => return body_refused(&*error, inner_state.config.max_body_bytes),
        }
    } else {
        (Bytes::new(), Some(body))
    };
    let mut quote = match price.quote(&parts, &body) {
        Ok(quote) => quote,
        Err(rejection) => return response::rejection(rejection),
    };
    let challenge = match Challenge::build(
        &inner_state.options,
        &quote,
        &price,
        &parts,
        inner_state.config.public_url.as_deref(),
    ) {
        Ok(challenge) => challenge,
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
    let key = payment.payload().to_string();
    let _in_use = {
        let mut set = inner_state
            .in_use
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !set.insert(key.clone()) {
            return challenge.respond(
                "this payment is already being used by another request; sign a new one",
                &parts.headers,
                None,
            );
        }
        InUse {
            set: &inner_state.in_use,
            key,
        }
    };

    // 3. Verify against the requirements the client chose.
    let verified = match verify(inner_state, &challenge, payment, receipt).await {
        Ok(verified) => verified,
        Err(Refusal::Unavailable(error)) => return response::unavailable(&error),
        Err(Refusal::Invalid(message)) => {
            return challenge.respond(&message, &parts.headers, None);
        }
    };

    // 4. Run and settle, in the order the route asks for.
    let (settled_tx, settled_rx) = watch::channel(None);
    let timing = quote.settle_timing().unwrap_or(price.settle);
    let mut paid = Paid {
        payer: verified.payer.clone(),
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
            let receipt = match settle(inner_state, &verified).await {
                Ok(receipt) => receipt,
                Err(response) => {
                    return challenge.settle_failed(response, &parts.headers, verified.receipt);
                }
            };
            paid.transaction = Some(receipt.transaction.clone());
            let _ = settled_tx.send(Some(receipt.clone()));
            parts.extensions.insert(paid);
            let mut response = run(inner, Request::from_parts(parts, body)).await;
            verified.receipt.attach(response.headers_mut(), &receipt);
            response
        }
        SettleTiming::AfterHandler => {
            let headers = parts.headers.clone();
            parts.extensions.insert(paid);
            let response = run(inner, Request::from_parts(parts, body)).await;
            if response.status().as_u16() >= 400 {
                // Not charged: the payment is never settled, and its authorization expires.
                return response;
            }
            match settle(inner_state, &verified).await {
                Ok(receipt) => {
                    let _ = settled_tx.send(Some(receipt.clone()));
                    let mut response = response;
                    verified.receipt.attach(response.headers_mut(), &receipt);
                    response
                }
                // The handler's body is dropped: nothing paid, nothing served.
                Err(failure) => challenge.settle_failed(failure, &headers, verified.receipt),
            }
        }
    }
}

fn body_refused(
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
fn payment_header(headers: &http::HeaderMap) -> Option<(&HeaderValue, ReceiptHeader)> {
    if let Some(value) = headers.get(headers::PAYMENT_SIGNATURE) {
        return Some((value, ReceiptHeader::V2));
    }
    headers
        .get(headers::X_PAYMENT)
        .map(|value| (value, ReceiptHeader::V1))
}

enum Refusal {
    Unavailable(FacilitatorError),
    Invalid(String),
}

async fn verify(
    inner: &Inner,
    challenge: &Challenge,
    payment: PaymentPayload,
    receipt: ReceiptHeader,
) -> Result<Verified, Refusal> {
    let candidates: Vec<(PaymentRequest, &PaymentOption)> = match payment {
        PaymentPayload::V2(payload) => challenge
            .offers()
            .find(|(offer, _)| requirements_match(&payload.accepted, offer))
            .map(|(offer, option)| {
                vec![(
                    PaymentRequest::V2 {
                        payload: payload.clone(),
                        requirements: offer.clone(),
                    },
                    option,
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
                        option,
                    )
                })
            })
            .collect(),
    };
    if candidates.is_empty() {
        return Err(Refusal::Invalid(
            "No matching payment requirements: the payment does not match any option of this \
             request's challenge (scheme, network, asset, amount, payTo); pay one of `accepts`"
                .to_owned(),
        ));
    }
    let mut last_refusal = String::new();
    for (request, option) in candidates {
        let answer = inner
            .facilitator
            .verify(&request)
            .await
            .map_err(Refusal::Unavailable)?;
        if answer.is_valid {
            let payer = answer.payer.unwrap_or_default();
            return Ok(Verified {
                request,
                option: option.clone(),
                payer,
                receipt,
            });
        }
        last_refusal = match (answer.invalid_reason, answer.invalid_message) {
            (Some(reason), Some(message)) => format!("{reason}: {message}"),
            (Some(reason), None) => reason.to_string(),
            (None, Some(message)) => message,
            (None, None) => "payment refused by the facilitator".to_owned(),
        };
    }
    Err(Refusal::Invalid(last_refusal))
}

/// What settling gave when it did not succeed: a failed receipt, or no answer at all.
pub(crate) enum SettleFailure {
    Refused(SettleResponse),
    Unavailable(FacilitatorError),
}

async fn settle(inner: &Inner, verified: &Verified) -> Result<SettleResponse, SettleFailure> {
    let started = Instant::now();
    loop {
        let answer = inner
            .facilitator
            .settle(&verified.request)
            .await
            .map_err(SettleFailure::Unavailable)?;
        if answer.success {
            return Ok(answer);
        }
        let pending = answer.error_reason.as_ref() == Some(&ReasonCode::SETTLEMENT_PENDING);
        if !pending || started.elapsed() >= inner.config.settle_patience {
            tracing::warn!(
                payer = %verified.payer,
                reason = ?answer.error_reason,
                message = ?answer.error_message,
                transaction = %answer.transaction,
                "settlement failed; the response is withheld"
            );
            return Err(SettleFailure::Refused(answer));
        }
        // Settling the same payment again joins the one in flight (facilitators settle a
        // payment at most once); wait for it rather than drop a response that was paid for.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn run<S>(inner: S, request: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    match inner.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
