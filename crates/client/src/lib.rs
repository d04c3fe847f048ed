//! The agent side of x402: an HTTP client that pays 402 challenges from any x402 server (v1 or
//! v2) within a [`Policy`] (allowed assets and networks, a most-per-payment in human units)
//! and a [`Budget`] (per payment, per hour, per day, total), recording every payment in a
//! SQLite [`Ledger`].
//!
//! Budgets are reserved before anything is signed, in one database transaction, so concurrent
//! calls can never overspend; a reservation is committed with the settlement's transaction
//! hash, marked failed, marked unknown (sent, answer lost), or released. Unknown payments stay
//! counted until [`Ledger::reconcile`] reads their authorization's state on chain.
//!
//! The same pay-and-retry runs as a `reqwest-middleware` middleware, [`PaymentMiddleware`],
//! for clients that already have a middleware stack. [`GatewayClient`] calls the inference
//! gateway's typed API through it.

mod balance;
mod channels;
mod client;
mod gateway;
pub mod ledger;
mod middleware;
mod policy;
mod reconcile;
mod refund;

pub use balance::{BalanceError, token_balance};
pub use channels::{ChannelRow, DepositIntent, FundsRecord};
pub use client::{PaidResponse, PayError, PayingClient};
pub use gateway::{GatewayClient, GatewayError, GatewayRun, RunAnswer, poll_job};
pub use ledger::{
    Budget, DEFAULT_DEPOSIT_CAP, DailyTotal, Ledger, LedgerError, MicroUsd, PaymentIntent,
    PaymentRecord, Reservation, TotalsBy, format_micro_usd,
};
pub use middleware::{Payment, PaymentMiddleware, ServiceLabel};
pub use policy::{Choice, KnownAsset, Policy, PolicyError};
pub use reconcile::{Outcome, RELEASE_GRACE_SECS, ReconcileError, Reconciled};
pub use refund::Refunded;
