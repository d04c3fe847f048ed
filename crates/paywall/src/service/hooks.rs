//! The paywall's side of a scheme's [`PaymentHooks`] (a scheme whose server keeps state, like
//! `batch-settlement`'s channels): verification asks the hooks first and lets them reserve
//! what the payment spends; settling goes through them; and what a request reserved is let
//! go of whenever the request ends without being charged ([`Held`] is dropped uncharged:
//! the handler failed, settling failed, a stream was refused, the request's task ended).

use std::sync::Arc;

use serde_json::Value;
use x402_proto::{
    BeforeSettle, ChargeNote, FacilitatorError, HookRefusal, IdempotencyKey, PaymentHooks,
    PaymentRequest, SchemeServer, SettleResponse, Ticket,
};

use super::Inner;
use super::steps::{SettleFailure, settle_request};

/// What a request reserved through its scheme's hooks: charged by [`Held::settle`], or let
/// go of when dropped.
pub(crate) struct Held {
    scheme: Arc<dyn SchemeServer>,
    /// The request as verified (whose reservation this is).
    request: Arc<PaymentRequest>,
    /// `None` once charged (nothing to let go of).
    ticket: Option<Ticket>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("scheme", &self.scheme.scheme())
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

impl Held {
    /// The reservation `ticket` made by `scheme`'s hooks for `request`.
    pub(super) fn new(
        scheme: Arc<dyn SchemeServer>,
        request: Arc<PaymentRequest>,
        ticket: Ticket,
    ) -> Self {
        Self {
            scheme,
            request,
            ticket: Some(ticket),
        }
    }

    fn hooks(&self) -> Option<&dyn PaymentHooks> {
        self.scheme.hooks()
    }

    /// The body to answer with instead of running the handler, for a payment that buys no
    /// handler run (a refund request).
    pub(super) fn skip_handler(&self) -> Option<Value> {
        self.hooks()?.skip_handler(&self.request)
    }

    /// Charges `charged` (the verified request, its amount what the handler used): through
    /// the hooks, and the facilitator when they say so. Answers the receipt and whether the
    /// hooks committed `note`'s record with the charge (the journal has it then). Any failure
    /// leaves the reservation to be let go of when `self` is dropped.
    pub(super) async fn settle(
        mut self,
        inner: &Inner,
        charged: &PaymentRequest,
        payer: &str,
        key: &IdempotencyKey,
        note: Option<&dyn ChargeNote>,
    ) -> Result<(SettleResponse, bool), SettleFailure> {
        let (Some(hooks), Some(ticket)) = (self.scheme.hooks(), self.ticket.as_ref()) else {
            return settle_request(inner, charged, payer, key)
                .await
                .map(|receipt| (receipt, false));
        };
        let receipt = match hooks.before_settle(charged, ticket, note).await {
            Err(refusal) => Err(refused(charged, payer, refusal)),
            Ok(BeforeSettle::Settled(receipt)) => Ok((receipt, false)),
            Ok(BeforeSettle::Noted(receipt)) => Ok((receipt, true)),
            Ok(BeforeSettle::Facilitator(request)) => {
                match settle_request(inner, &request, payer, key).await {
                    Ok(receipt) => Ok((hooks.after_settle(charged, ticket, receipt).await, false)),
                    Err(failure) => Err(failure),
                }
            }
        };
        match receipt {
            Ok(receipt) => {
                self.ticket = None;
                Ok(receipt)
            }
            Err(failure) => {
                self.release().await;
                Err(failure)
            }
        }
    }

    /// Lets go of the reservation now (the request ends uncharged), so that the same payment
    /// can be sent again at once.
    pub(super) async fn release(mut self) {
        if let (Some(ticket), Some(hooks)) = (self.ticket.take(), self.scheme.hooks()) {
            hooks.cancel(&self.request, &ticket).await;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let scheme = self.scheme.clone();
        let request = self.request.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Some(hooks) = scheme.hooks() {
                        hooks.cancel(&request, &ticket).await;
                    }
                });
            }
            Err(_) => tracing::warn!(
                ?ticket,
                "a payment reservation ended outside a runtime; it lapses by itself"
            ),
        }
    }
}

/// The failure a hook's refusal to settle is answered with: a failed receipt (402), or 503
/// when the server's own state failed.
fn refused(request: &PaymentRequest, payer: &str, refusal: HookRefusal) -> SettleFailure {
    tracing::warn!(%payer, reason = %refusal.reason, message = %refusal.message, "the scheme refused to charge; nothing was charged");
    if refusal.unavailable {
        return SettleFailure::Unavailable(FacilitatorError::Unavailable(refusal.to_string()));
    }
    SettleFailure::Refused(SettleResponse::failure(
        request.wire_network().clone(),
        refusal.reason,
        refusal.message,
        Some(payer.to_owned()),
        None,
    ))
}
