//! Settling what a handler reports it used: a [`Usage`] in the response's extensions, or the
//! `Settlement-Overrides` header (removed before the response leaves). The route's scheme
//! plug-in turns it into the amount settled
//! ([`x402_proto::SchemeServer::settlement_amount`]); a
//! fixed-price scheme settles the price whatever was reported, and nothing is ever settled
//! above the price the client paid.

use std::sync::Arc;

use axum::body::Body;
use http::Response;
use x402_proto::{PaymentRequest, SETTLEMENT_OVERRIDES_HEADER, U256, Usage};

use super::Inner;
use crate::price::PaymentOption;

/// What a handler reported: nothing, a usage, or something unreadable (logged).
pub(super) enum Report {
    None,
    Used(Usage),
    Unreadable,
}

/// Takes what the handler reported out of `response` (the extension first, then the header);
/// the header is removed in every case.
pub(super) fn take_report(response: &mut Response<Body>) -> Report {
    let header = response.headers_mut().remove(SETTLEMENT_OVERRIDES_HEADER);
    if let Some(usage) = response.extensions_mut().remove::<Usage>() {
        return Report::Used(usage);
    }
    let Some(header) = header else {
        return Report::None;
    };
    match Usage::from_overrides_header(header.as_bytes()) {
        Ok(usage) => Report::Used(usage),
        Err(error) => {
            tracing::warn!(%error, "the handler's usage report is unreadable");
            Report::Unreadable
        }
    }
}

/// The request to settle for a paid `request` whose handler reported `report`: the same
/// request, or one whose requirements name the amount the scheme settles for that usage. A
/// report that cannot be read or converted settles the price paid, as the official SDKs do.
pub(super) fn metered(
    inner: &Inner,
    request: Arc<PaymentRequest>,
    option: &PaymentOption,
    report: Report,
) -> Arc<PaymentRequest> {
    match settled_amount(inner, &request, option, report) {
        Some(amount) => Arc::new(with_amount(Arc::unwrap_or_clone(request), amount)),
        None => request,
    }
}

/// What [`metered`] settles when it is not the price paid.
fn settled_amount(
    inner: &Inner,
    request: &PaymentRequest,
    option: &PaymentOption,
    report: Report,
) -> Option<U256> {
    let paid = request.requirements();
    let used = match report {
        Report::None => None,
        Report::Unreadable => return None,
        Report::Used(usage) => match usage.resolve(paid.amount.0, option.decimals) {
            Ok(used) => Some(used),
            Err(error) => {
                tracing::warn!(%error, "the handler's usage does not convert; settling the price paid");
                return None;
            }
        },
    };
    let plug_in = inner.scheme(&paid.scheme);
    let amount = plug_in.map_or(paid.amount.0, |scheme| {
        scheme.settlement_amount(&paid, used)
    });
    // A scheme with hooks judges the amount itself (`batch-settlement` refuses a charge above
    // what the payer signed); any other settles at most the price paid.
    let amount = match plug_in.and_then(|scheme| scheme.hooks()) {
        Some(_) => amount,
        None => capped(amount, paid.amount.0),
    };
    (amount != paid.amount.0).then_some(amount)
}

/// Whether the scheme `request` pays with settles what was used rather than a fixed price: its
/// plug-in settles less than the price for no usage. A metered response whose body streams is
/// then settled when the body is over; otherwise the price is settled before it goes out.
pub(super) fn settles_by_usage(inner: &Inner, request: &PaymentRequest) -> bool {
    let paid = request.requirements();
    inner
        .scheme(&paid.scheme)
        .is_some_and(|scheme| scheme.settlement_amount(&paid, Some(U256::ZERO)) < paid.amount.0)
}

/// `amount`, never above the price paid.
fn capped(amount: U256, paid: U256) -> U256 {
    if amount > paid {
        tracing::warn!(%amount, %paid, "usage above the price paid; settling the price paid");
        return paid;
    }
    amount
}

/// `request` with its requirements asking for `amount` (the payload, and what it accepted,
/// unchanged: the facilitator checks the amount against what was signed).
fn with_amount(mut request: PaymentRequest, amount: U256) -> PaymentRequest {
    match &mut request {
        PaymentRequest::V1 { requirements, .. } => requirements.max_amount_required.0 = amount,
        PaymentRequest::V2 { requirements, .. } => requirements.amount.0 = amount,
    }
    request
}
