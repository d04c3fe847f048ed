//! `upto` on EVM chains: the payer signs a Permit2 witness transfer of up to a maximum to the
//! x402 `upto` proxy, binding the payee and the one facilitator that may submit it; after the
//! handler the server names the amount actually used, and the facilitator settles that much
//! (never more than the maximum, nothing when it is zero) through the proxy. Wire shapes, the
//! verify order and the reason codes are those of `@x402/evm` 2.27.

mod client;
mod facilitator;
mod payload;
mod server;
mod settle;
mod verify;

pub use client::UptoEvmClient;
pub use facilitator::UptoEvmFacilitator;
pub use payload::{
    PERMIT2_ADDRESS, PermitWitnessTransferFrom, Permitted, UPTO_PERMIT2_PROXY, UptoAuthorization,
    UptoPayload, WireWitness, permit2_domain,
};
pub use server::UptoEvmServer;
