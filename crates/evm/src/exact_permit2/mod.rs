//! `exact` on EVM chains with Permit2, for tokens without EIP-3009: the payer, having approved
//! Permit2 once, signs a Permit2 witness transfer of exactly the price to the x402 `exact`
//! proxy, binding the payee and the earliest time; the facilitator settles it through the
//! proxy. Offers say `extra.assetTransferMethod: "permit2"`; payloads carry
//! `permit2Authorization` where EIP-3009 ones carry `authorization`, and that is how a
//! facilitator tells them apart. Wire shapes, the verify order and the reason codes are those
//! of `@x402/evm` 2.27.

mod client;
mod facilitator;
mod payload;

pub use crate::permit2::{PERMIT2_ADDRESS, Permitted, permit2_domain};
pub use client::ExactPermit2Client;
pub(crate) use client::offers_permit2;
pub use facilitator::ExactPermit2Facilitator;
pub use payload::{
    EXACT_PERMIT2_PROXY, ExactPermit2Authorization, ExactPermit2Payload, ExactPermit2Witness,
    PermitWitnessTransferFrom, is_permit2_payload,
};
