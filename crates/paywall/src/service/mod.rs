//! The paywall itself: [`Paywall`] (shared settings and the facilitator), [`PaymentLayer`]
//! (one per priced route) and the [`PaymentService`] it wraps a handler in. [`charge`] runs
//! one paid request from quote to receipt; [`steps`] holds the steps it takes (verify, settle,
//! recover, keep and replay responses); [`usage`] turns what a handler used into the amount
//! settled; [`stream`] settles a metered response whose body streams once the body is over.

mod charge;
mod deferred;
mod hooks;
mod record;
pub(crate) mod steps;
mod stream;
mod usage;

pub use stream::RECEIPT_EVENT;

use charge::charge;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response};
use tower::{Layer, Service};
use x402_proto::{
    BoxFuture, Facilitator, FacilitatorError, SchemeKey, SchemeServer, SupportedKind,
    copy_kind_extra, v2,
};

use crate::guard::{MemoryGuard, PaymentGuard, ResponseCacheConfig};
use crate::journal::PaymentJournal;
use crate::price::{PaymentOption, Rejection, RoutePrice};
use crate::response::{self};

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
    /// How many metered streams (content sent before its payment settles) one payer may
    /// have unsettled at once; more are answered 429 until one is over. Each such stream is
    /// content a payer could leave unpaid by draining its funds before the settlement.
    pub streams_per_payer: usize,
}

impl Default for PaywallConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            settle_patience: Duration::from_secs(60),
            public_url: None,
            response_cache: ResponseCacheConfig::default(),
            require_payment_identifier: false,
            streams_per_payer: 1,
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
    /// Whether challenges declare `eip2612GasSponsoring` (the facilitator supports it and an
    /// offer pays through Permit2), as found at [`Paywall::initialize`].
    gas_sponsoring: Arc<std::sync::atomic::AtomicBool>,
    /// Which options the facilitator serves (by index), as found at [`Paywall::initialize`];
    /// `None` until then.
    served: Arc<std::sync::RwLock<Option<Vec<bool>>>>,
    /// Settlements deferred until a streamed response is over, for a shutdown to wait for.
    deferred: Arc<deferred::Deferred>,
    /// Where each payment's outcome is recorded, if anywhere.
    journal: Option<Arc<dyn PaymentJournal>>,
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
        match self.scheme(&requirements.scheme) {
            Some(scheme) => scheme.enhance(requirements, kind),
            None => copy_kind_extra(requirements, kind),
        }
    }

    /// The server plug-in of `scheme` when it runs hooks around the facilitator.
    pub(super) fn hooked(&self, scheme: &x402_proto::Scheme) -> Option<Arc<dyn SchemeServer>> {
        self.schemes
            .iter()
            .find(|s| s.scheme() == *scheme && s.hooks().is_some())
            .cloned()
    }

    /// The server plug-in of `scheme`, if one was registered.
    pub(super) fn scheme(&self, scheme: &x402_proto::Scheme) -> Option<&dyn SchemeServer> {
        self.schemes
            .iter()
            .find(|s| s.scheme() == *scheme)
            .map(|s| &**s)
    }
}

impl Inner {
    /// The options offered: those the facilitator serves, once known (all of them when it
    /// serves none, so a challenge is never empty).
    pub(super) fn offered(&self) -> std::borrow::Cow<'_, [PaymentOption]> {
        let served = self
            .served
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match served.as_deref() {
            Some(mask) if mask.iter().any(|s| *s) && mask.iter().any(|s| !*s) => {
                let offered = self.options.iter().zip(mask);
                std::borrow::Cow::Owned(
                    offered
                        .filter(|(_, s)| **s)
                        .map(|(o, _)| o.clone())
                        .collect(),
                )
            }
            _ => std::borrow::Cow::Borrowed(&self.options),
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
                gas_sponsoring: Arc::default(),
                served: Arc::default(),
                deferred: Arc::default(),
                journal: None,
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

    /// Records every payment's outcome in `journal` (settled, charged, pending or failed),
    /// before the paid response goes out; see [`PaymentJournal`].
    pub fn with_journal(self, journal: Arc<dyn PaymentJournal>) -> Self {
        let mut inner = (*self.inner).clone();
        inner.journal = Some(journal);
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

    /// For a server shutting down, once it takes no more requests: cuts off the metered
    /// streams still running (each is settled for what it delivered so far, and an event
    /// stream still read gets its receipt event), then waits until every settlement deferred
    /// until a stream's end has finished, at most `timeout`. Those still unfinished then are
    /// logged with their payer and payment, and counted in the answer (0: all settled).
    /// Streams that start afterwards are cut off at once.
    pub async fn settle_pending(&self, timeout: Duration) -> usize {
        self.cut_off_streams();
        let unfinished = self.inner.deferred.settled(timeout).await;
        for (payer, payment) in &unfinished {
            tracing::error!(
                %payer,
                %payment,
                ?timeout,
                "a streamed response's settlement did not finish before shutdown; it may be left unpaid"
            );
        }
        unfinished.len()
    }

    /// Cuts off the metered streams still running, and those that start afterwards (each is
    /// settled for what it delivered), without waiting for their settlements: for a server
    /// starting to shut down, so that its connections end; [`Paywall::settle_pending`] then
    /// waits for the settlements.
    pub fn cut_off_streams(&self) {
        self.inner.deferred.close();
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
        let served: Vec<bool> = self
            .inner
            .options
            .iter()
            .map(|option| {
                let key = SchemeKey {
                    x402_version: 2,
                    scheme: option.scheme.clone(),
                    network: option.network.clone(),
                };
                let Some(kind) = kinds.iter().find(|kind| key.served_by(kind)) else {
                    tracing::warn!(scheme = %option.scheme, network = %option.network, "the facilitator does not serve this option; it is not offered");
                    return false;
                };
                match self.inner.scheme(&option.scheme).map(|s| s.check_support(kind)) {
                    Some(Err(problem)) => {
                        tracing::error!(scheme = %option.scheme, network = %option.network, %problem, "this option cannot be offered");
                        false
                    }
                    _ => true,
                }
            })
            .collect();
        *self
            .inner
            .served
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(served);
        let through_permit2 = self.inner.options.iter().any(|option| {
            option.scheme == x402_proto::Scheme::UPTO
                || option
                    .extra
                    .as_ref()
                    .and_then(|extra| extra.get("assetTransferMethod"))
                    .is_some_and(|method| method == "permit2")
        });
        let sponsored = supported
            .extensions
            .iter()
            .any(|key| key == crate::response::EIP2612_GAS_SPONSORING);
        self.inner.gas_sponsoring.store(
            through_permit2 && sponsored,
            std::sync::atomic::Ordering::Relaxed,
        );
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
