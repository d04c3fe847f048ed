//! The seam a scheme whose server keeps state (`batch-settlement`'s payment channels) plugs
//! into around the facilitator, as the official SDK's scheme hooks do: judge a payment before
//! the facilitator is asked (and spare the call when local state suffices), reserve the state
//! it spends once it is valid, charge it locally or rewrite it before it is settled, mirror
//! what the facilitator answered, and let the reservation go when the request is not charged.
//!
//! A server (the paywall) finds the hooks through
//! [`SchemeServer::hooks`](crate::SchemeServer::hooks) and calls them in this order for one
//! request:
//!
//! 1. [`PaymentHooks::before_verify`]: a refusal ends the request (a 402 whose challenge may
//!    carry the scheme's corrective state), a verdict spares the facilitator's `/verify`;
//! 2. [`PaymentHooks::after_verify`] once the payment is valid: a [`Ticket`] for the state it
//!    reserved, or a refusal;
//! 3. [`PaymentHooks::skip_handler`]: some payments (a refund request) buy no handler run;
//! 4. [`PaymentHooks::before_settle`] with the amount to charge (and the server's [`ChargeNote`],
//!    its record of a charge made here): settled here, or the request to send to the
//!    facilitator's `/settle`;
//! 5. [`PaymentHooks::after_settle`] with the facilitator's receipt;
//! 6. [`PaymentHooks::cancel`] whenever the request ends uncharged after step 2 (the handler
//!    failed, settling failed, the server gave up): only its own reservation is let go.
//!
//! No I/O here: the hooks are implemented with their mechanism (`x402-evm`'s `BatchServer`).

use std::fmt;

use serde_json::Value;

use crate::{BoxFuture, PaymentRequest, ReasonCode, SettleResponse, VerifyResponse};

/// Why a hook refuses a payment: the reason code official clients read as the challenge's
/// `error`, a message for people, and, for a client whose view of the scheme's state is
/// behind, keys to merge into the `extra` of the offer it paid (a corrective 402).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct HookRefusal {
    /// The code (the 402's top-level `error`).
    pub reason: ReasonCode,
    /// Why, for people.
    pub message: String,
    /// Keys to add to the paid offer's `extra` in the 402 (an object), if any.
    pub corrective: Option<Value>,
    /// Whether the server itself failed (its state could not be read or written): answered
    /// 503, nothing charged, rather than 402.
    pub unavailable: bool,
}

impl HookRefusal {
    /// A refusal of the payment.
    pub fn new(reason: ReasonCode, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            corrective: None,
            unavailable: false,
        }
    }

    /// The refusal, with `extra` keys for the paid offer of the 402.
    pub fn with_corrective(mut self, extra: Value) -> Self {
        self.corrective = Some(extra);
        self
    }

    /// A refusal because the server's own state failed (answered 503).
    pub fn unavailable(reason: ReasonCode, message: impl Into<String>) -> Self {
        Self {
            unavailable: true,
            ..Self::new(reason, message)
        }
    }
}

/// Who judged a payment valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifiedBy {
    /// The hooks, from the state the server keeps ([`PaymentHooks::before_verify`]).
    Server,
    /// The facilitator's `/verify` (its answer's `extra` is fresh state).
    Facilitator,
}

/// The state one request reserved ([`PaymentHooks::after_verify`]): carried to
/// [`PaymentHooks::before_settle`], [`PaymentHooks::after_settle`] or
/// [`PaymentHooks::cancel`], so that only the request holding it can charge or release what
/// it reserved. Not `Clone`: one request, one ticket.
#[derive(PartialEq, Eq)]
pub struct Ticket {
    id: u64,
}

impl Ticket {
    /// A ticket for reservation `id` (made by the hooks that reserved it).
    pub fn new(id: u64) -> Self {
        Self { id }
    }

    /// The reservation it stands for.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ticket({:#x})", self.id)
    }
}

/// The server's own record of a charge the hooks make themselves (the paywall's payment journal
/// entry, as bytes), made from the receipt the client is given. Hooks whose state can keep it
/// commit it in the same transaction as the charge ([`BeforeSettle::Noted`]): no charge goes
/// unrecorded, and the record costs the server no commit of its own on the paid path.
pub trait ChargeNote: Send + Sync {
    /// The record of the charge answered with `receipt`, or `None` when there is nothing to
    /// record (the payment was not used up).
    fn note(&self, receipt: &SettleResponse) -> Option<Vec<u8>>;
}

/// What [`PaymentHooks::before_settle`] decided.
// One per settled request: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum BeforeSettle {
    /// Charged by the server itself: this is the receipt (the facilitator is not called).
    Settled(SettleResponse),
    /// Charged by the server itself, with the [`ChargeNote`]'s record committed alongside the
    /// charge: this is the receipt, and the server records the charge no further.
    Noted(SettleResponse),
    /// Send this request (the paid one, or one the hooks rewrote) to the facilitator's
    /// `/settle`, then give its receipt to [`PaymentHooks::after_settle`].
    Facilitator(PaymentRequest),
}

/// Hooks around the facilitator for a scheme whose server keeps state. Object-safe; every
/// method is called with the paid request (its requirements the offer paid).
pub trait PaymentHooks: Send + Sync + fmt::Debug {
    /// Before `/verify`: a refusal, a verdict that spares the facilitator (`Some`), or `None`
    /// to ask the facilitator.
    fn before_verify<'a>(
        &'a self,
        request: &'a PaymentRequest,
    ) -> BoxFuture<'a, Result<Option<VerifyResponse>, HookRefusal>>;

    /// Once the payment is valid (`verified`, judged `by` the hooks or the facilitator):
    /// reserves what it spends, answering the ticket for it, or refuses.
    fn after_verify<'a>(
        &'a self,
        request: &'a PaymentRequest,
        verified: &'a VerifyResponse,
        by: VerifiedBy,
    ) -> BoxFuture<'a, Result<Ticket, HookRefusal>>;

    /// For a payment that buys no handler run (a refund request): the JSON body to answer
    /// with (status 200, with the receipt), once it is settled.
    fn skip_handler(&self, request: &PaymentRequest) -> Option<Value> {
        let _ = request;
        None
    }

    /// Before settling `request` (its requirements' amount is what to charge, as the handler's
    /// usage decided; it may be above the price): charge it here, or say what to send the
    /// facilitator. A refusal charges nothing and lets the reservation go. A charge made here
    /// may carry `note`'s record in its own commit ([`BeforeSettle::Noted`]).
    fn before_settle<'a>(
        &'a self,
        request: &'a PaymentRequest,
        ticket: &'a Ticket,
        note: Option<&'a dyn ChargeNote>,
    ) -> BoxFuture<'a, Result<BeforeSettle, HookRefusal>>;

    /// After the facilitator settled what [`Self::before_settle`] sent (`receipt` a success):
    /// records it and answers the receipt to give the client.
    fn after_settle<'a>(
        &'a self,
        request: &'a PaymentRequest,
        ticket: &'a Ticket,
        receipt: SettleResponse,
    ) -> BoxFuture<'a, SettleResponse>;

    /// Whether `request`, settled with `receipt`, is used up: a server keeps its answer for a
    /// retry of the same payment rather than charge it twice. By default it is; a payment that
    /// was charged nothing and can pay again as it is (a `batch-settlement` voucher whose
    /// request used nothing: the client's next voucher is the same one) is not.
    fn spent(&self, request: &PaymentRequest, receipt: &SettleResponse) -> bool {
        let _ = (request, receipt);
        true
    }

    /// The request ends uncharged: lets go of what `ticket` reserved (only that).
    fn cancel<'a>(&'a self, request: &'a PaymentRequest, ticket: &'a Ticket) -> BoxFuture<'a, ()>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_refusal_carries_its_code_and_corrective_keys() {
        let refusal = HookRefusal::new(ReasonCode::new("some_code"), "behind")
            .with_corrective(json!({"channelState": {}}));
        assert_eq!(refusal.to_string(), "some_code: behind");
        assert_eq!(refusal.corrective, Some(json!({"channelState": {}})));
        assert!(!refusal.unavailable);
        assert!(HookRefusal::unavailable(ReasonCode::new("x"), "db down").unavailable);
        assert_eq!(format!("{:?}", Ticket::new(255)), "Ticket(0xff)");
    }
}
