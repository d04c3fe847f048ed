//! The paywall itself: [`Paywall`] (shared settings and the facilitator), [`PaymentLayer`]
//! (one per priced route) and the [`PaymentService`] it wraps a handler in, whose `charge`
//! runs one paid request from quote to receipt; [`steps`] holds the steps it takes (verify,
//! settle, recover, keep and replay responses).

pub(crate) mod steps;
mod usage;

use steps::*;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::body::HttpBody as _;
use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Limited};
use tokio::sync::watch;
use tower::{Layer, Service, ServiceExt};
use x402_proto::{
    BoxFuture, Facilitator, FacilitatorError, IdempotencyKey, PaymentPayload, PaymentRequest,
    ReasonCode, SchemeKey, SchemeServer, SettleResponse, SupportedKind, authorization_digest,
    copy_kind_extra, decode_header, headers, payment_identifier, request_fingerprint,
    requirements_match, v1, v2,
};

use crate::guard::{
    Admission, Lease, MemoryGuard, PaymentGuard, RequestFingerprint, ResponseCacheConfig,
    StoredResponse,
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
    /// How long, and how much, paid responses are kept for clients that lost their answer.
    pub response_cache: ResponseCacheConfig,
    /// Whether every payment must carry a `payment-identifier` id (400 without one).
    pub require_payment_identifier: bool,
}

impl Default for PaywallConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            settle_patience: Duration::from_secs(60),
            public_url: None,
            response_cache: ResponseCacheConfig::default(),
            require_payment_identifier: false,
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

#[derive(Clone)]
struct Inner {
    facilitator: Arc<dyn Facilitator>,
    options: Vec<PaymentOption>,
    config: PaywallConfig,
    /// Payments in use and paid responses: one payment buys one response.
    guard: Arc<dyn PaymentGuard>,
    /// Scheme plug-ins that complete the offered requirements.
    schemes: Vec<Arc<dyn SchemeServer>>,
    /// What the facilitator advertised at [`Paywall::initialize`].
    kinds: Arc<std::sync::RwLock<Vec<SupportedKind>>>,
}

impl Inner {
    /// Completes offered requirements: the scheme's plug-in with the facilitator's kind for
    /// them, or by default the kind's `extra` copied in.
    fn enhance(&self, requirements: &mut v2::PaymentRequirements) {
        let kinds = self
            .kinds
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = SchemeKey {
            x402_version: 2,
            scheme: requirements.scheme.clone(),
            network: requirements.network.clone(),
        };
        let kind = kinds.iter().find(|k| key.served_by(k));
        match self
            .schemes
            .iter()
            .find(|s| s.scheme() == requirements.scheme)
        {
            Some(scheme) => scheme.enhance(requirements, kind),
            None => copy_kind_extra(requirements, kind),
        }
    }
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
        let guard = Arc::new(MemoryGuard::new(config.response_cache));
        Ok(Self {
            inner: Arc::new(Inner {
                facilitator,
                options,
                config,
                guard,
                schemes: Vec::new(),
                kinds: Arc::default(),
            }),
        })
    }

    /// Keeps payments in use and paid responses in `guard` instead of this process's memory
    /// (a store shared by several replicas).
    pub fn with_guard(self, guard: Arc<dyn PaymentGuard>) -> Self {
        let mut inner = (*self.inner).clone();
        inner.guard = guard;
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Completes the requirements of options in `schemes`' schemes with those plug-ins
    /// (others get the facilitator's advertised `extra` copied in).
    pub fn with_schemes(self, schemes: Vec<Arc<dyn SchemeServer>>) -> Self {
        let mut inner = (*self.inner).clone();
        inner.schemes = schemes;
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Asks the facilitator what it serves, so offers carry what it advertises for their
    /// kind (a facilitator address, a receiver). Call at start; until then, and when it
    /// fails, offers go out as configured. Returns the kinds found.
    pub async fn initialize(&self) -> Result<Vec<SupportedKind>, FacilitatorError> {
        let supported = self.inner.facilitator.supported().await?;
        let mut kinds = self
            .inner
            .kinds
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kinds.clone_from(&supported.kinds);
        Ok(supported.kinds)
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
        // A paid request runs in its own task: a client that goes away (timeout, dropped
        // connection) does not stop a handler whose payment is settling, and its answer is
        // kept for the client's retry.
        let task = tokio::spawn(charge(paywall, price, inner, request));
        Box::pin(async move {
            let mut response = match task.await {
                Ok(response) => response,
                Err(error) => {
                    tracing::error!(%error, "a paywalled request failed");
                    response::rejection(
                        Rejection::bad_request("the request failed inside the server")
                            .with_status(http::StatusCode::INTERNAL_SERVER_ERROR),
                    )
                }
            };
            response::expose_payment_headers(response.headers_mut());
            Ok(response)
        })
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
        &inner_state.options,
        |requirements| inner_state.enhance(requirements),
        &quote,
        &price,
        &parts,
        inner_state.config.public_url.as_deref(),
        inner_state.config.require_payment_identifier,
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
    let candidates = candidates(&challenge, &payment);
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
                    let paid = Paid::already_settled(request, option, &served.receipt);
                    parts.extensions.extend(quote.take_extensions());
                    let body = passthrough.unwrap_or_else(|| Body::from(body));
                    let mut response = run_paid(inner, parts, body, paid).await;
                    receipt.attach(response.headers_mut(), &served.receipt);
                    response
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
        }) => {
            // Spent already: by this same request (its answer was lost before the guard kept
            // it, e.g. across a restart), the facilitator gives our key its receipt again.
            match recover(inner_state, &request, &idempotency_key).await {
                Some(recovered) => {
                    let paid = Paid::already_settled(&request.0, &request.1, &recovered);
                    parts.extensions.extend(quote.take_extensions());
                    let body = passthrough.unwrap_or_else(|| Body::from(body));
                    let response = run_paid(inner, parts, body, paid).await;
                    return keep(inner_state, lease, receipt, recovered, response).await;
                }
                None => return challenge.respond(&message, &parts.headers, None),
            }
        }
        Err(Refusal::Invalid { message, .. }) => {
            return challenge.respond(&message, &parts.headers, None);
        }
    };

    // 5. Run and settle, in the order the route asks for.
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
            let receipt = match settle(inner_state, &verified, &idempotency_key).await {
                Ok(receipt) => receipt,
                Err(response) => {
                    return challenge.settle_failed(response, &parts.headers, verified.receipt);
                }
            };
            paid.transaction = Some(receipt.transaction.clone());
            let _ = settled_tx.send(Some(receipt.clone()));
            let mut response = run_paid(inner, parts, body, paid).await;
            if !matches!(usage::take_report(&mut response), usage::Report::None) {
                tracing::warn!(
                    "usage reported on a route settled before its handler; the price was settled"
                );
            }
            keep(inner_state, lease, verified.receipt, receipt, response).await
        }
        SettleTiming::AfterHandler => {
            let headers = parts.headers.clone();
            let mut response = run_paid(inner, parts, body, paid).await;
            let report = usage::take_report(&mut response);
            if response.status().as_u16() >= 400 {
                // Not charged: the payment is never settled, and its authorization expires.
                // The lease is dropped: the payment may be used again.
                return response;
            }
            let verified = Verified {
                request: usage::metered(inner_state, &verified.request, &verified.option, report),
                ..verified
            };
            match settle(inner_state, &verified, &idempotency_key).await {
                Ok(receipt) => {
                    let _ = settled_tx.send(Some(receipt.clone()));
                    keep(inner_state, lease, verified.receipt, receipt, response).await
                }
                // The handler's body is dropped: nothing paid, nothing served.
                Err(failure) => challenge.settle_failed(failure, &headers, verified.receipt),
            }
        }
    }
}
