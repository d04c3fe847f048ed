//! The x402 protocol's nouns, with no I/O: the v1 and v2 wire types, the base64 header
//! codec, network names, token amounts and human prices, reason codes, requirement matching
//! and the [`Facilitator`] trait that verifiers and settlers implement.
//!
//! Open protocol values (networks, schemes, reason codes) are newtypes with constants so that
//! values from newer peers still parse. Open JSON (`extra`, the scheme `payload`, `extensions`)
//! is kept as raw [`serde_json::Value`] and compared structurally.

mod amount;
mod codec;
mod facilitator;
pub mod fuzzing;
mod identity;
mod matching;
mod names;
mod payload;
mod scheme;
mod secret;
mod server_hooks;
mod usage;
pub mod v1;
pub mod v2;
mod version;

pub use alloy_primitives::U256;
pub use amount::{AmountError, AssetAmount, Price, TokenAmount, decimal_u256};
pub use codec::{HeaderError, MAX_HEADER_BYTES, decode_header, encode_header, headers};
pub use facilitator::{
    BoxFuture, Facilitator, FacilitatorError, SettleResponse, SupportedKind, SupportedResponse,
    VerifyResponse,
};
pub use identity::{
    IdempotencyKey, IdempotencyKeyError, PaymentId, PaymentIdError, authorization_digest,
    payment_identifier, request_fingerprint, solana_message_key,
};
pub use matching::{extra_contains, requirements_match};
pub use names::{Network, ReasonCode, Scheme};
pub use payload::{PaymentPayload, PaymentRequest, PaymentRequired, SettleRequest, VerifyRequest};
pub use scheme::{
    SchemeClient, SchemeKey, SchemeServer, SchemeSignError, SignLimits, SignedPayload,
    copy_kind_extra,
};
pub use secret::Secret;
pub use server_hooks::{BeforeSettle, ChargeNote, HookRefusal, PaymentHooks, Ticket, VerifiedBy};
pub use usage::{SETTLEMENT_OVERRIDES_HEADER, Usage, UsageError, UsageMeter};
pub use version::{V1, V2, Version};
