//! x402 paywall middleware for axum / tower: charge per request, in USDC, with no accounts.
//!
//! A [`Paywall`] holds the facilitator (in process, or remote via [`HttpFacilitator`]) and
//! the accepted ways to pay; [`Paywall::layer`] makes a [`PaymentLayer`] for one route with
//! its [`RoutePrice`], fixed or quoted from the request body.
//!
//! One route serves both protocol versions: a 402 carries the v2 challenge in
//! `PAYMENT-REQUIRED` and the v1 challenge as its JSON body (an HTML page for browsers);
//! payments are read from `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1) and the receipt comes
//! back in `PAYMENT-RESPONSE` or `X-PAYMENT-RESPONSE` to match.
//!
//! The flow is verify → handler → settle, and settles only when the handler succeeded
//! (status < 400); a failed settlement answers 402 and the handler's body is never sent. A
//! route (or a single quote) can settle before the handler instead, for long jobs. When the
//! facilitator cannot be reached the answer is 503: nothing is served for free.
//!
//! A handler whose body streams and is charged by usage (`upto`) puts an
//! [`x402_proto::UsageMeter`] in its response: the response goes out at once and the payment is
//! settled for the metered usage when the body ends or the client goes away; an event stream
//! then ends with a [`RECEIPT_EVENT`] carrying the receipt. Such a stream is cut off, and
//! settled whether or not its client still reads, in time to settle before its payment's
//! deadline; it is never sent again for the same payment (a retry gets 409 with the receipt,
//! even once the response cache has forgotten it). A payment that leaves too little time, a payer with
//! too many streams unsettled, and a payer who left a stream unpaid are refused before the
//! handler runs when the quote says the answer streams ([`Quote::streamed`]), else before the
//! body goes out.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use axum::{Extension, Router, routing::get};
//! # use x402_paywall::{HttpFacilitator, Paid, PaymentOption, Paywall, PaywallConfig, RoutePrice};
//! # fn app(option: PaymentOption) -> Result<Router, Box<dyn std::error::Error>> {
//! let facilitator = HttpFacilitator::new("http://127.0.0.1:8402", std::time::Duration::from_secs(30))?;
//! let paywall = Paywall::new(Arc::new(facilitator), vec![option], PaywallConfig::default())?;
//! let app = Router::new().route(
//!     "/weather",
//!     get(|Extension(paid): Extension<Paid>| async move { format!("sunny; paid by {}", paid.payer()) })
//!         .layer(paywall.layer(RoutePrice::fixed("$0.001".parse()?).description("Today's weather"))),
//! );
//! # Ok(app) }
//! ```

mod guard;
mod journal;
mod paid;
mod price;
mod remote;
mod response;
mod service;

pub use guard::{
    Admission, GuardError, Lease, MemoryGuard, PaymentGuard, RequestFingerprint,
    ResponseCacheConfig, Served, StoredResponse, StreamAdmission, StreamTicket, UnpaidStream,
};
pub use journal::{JournalError, MemoryJournal, PaymentEntry, PaymentJournal, PaymentState};
pub use paid::Paid;
pub use price::{PaymentOption, Quote, Rejection, RoutePrice, SettleTiming};
pub use remote::HttpFacilitator;
pub use service::{
    PaymentLayer, PaymentService, Paywall, PaywallConfig, PaywallError, RECEIPT_EVENT,
};
