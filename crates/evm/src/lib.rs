//! The x402 `exact` scheme on EVM chains, through EIP-3009 `transferWithAuthorization`.
//!
//! - [`sign_exact`] builds and signs a payment as the official clients do.
//! - [`ExactEvmScheme::verify`] runs every check of the reference facilitator in its order and
//!   returns a [`VerifiedPayment`]; [`ExactEvmScheme::settle`] consumes one, so an unverified
//!   payment cannot be settled.
//! - [`ExactEvmFacilitator`] serves one chain behind the [`x402_proto::Facilitator`] trait.
//! - [`exact_permit2`] is `exact` with Permit2, for tokens without EIP-3009; the
//!   [`ExactEvmFacilitator`] routes payloads carrying `permit2Authorization` to it.
//! - Smart-wallet payers verify through ERC-1271, and undeployed ones through ERC-6492 from an
//!   allowed factory ([`ChainConfig::eip6492_allowed_factories`]); see [`PayerSignature`].

mod abi;
mod assets;
pub mod batch;
mod chain;
mod client;
mod error;
pub mod exact_permit2;
mod facilitator;
mod node_error;
mod payload;
pub mod permit2;
mod scheme;
mod sender;
mod smart_wallet;
pub mod upto;

pub use abi::{IEip3009, TransferWithAuthorization};
pub use assets::{AssetInfo, default_asset, default_assets};
pub use chain::{ChainConfig, FeeBumpPolicy, GWEI, PollBackoff, poll_interval_for};
pub use client::{ExactEvmClient, SignError, sign_exact, sign_payment, sign_payment_v1};
pub use error::{SettleError, VerifyError};
pub use facilitator::{ExactEvmFacilitator, claimed_payer, exact_kinds, verify_refusal};
pub use node_error::NodeRefusal;
pub use payload::{Authorization, ExactEvmPayload, authorization_digest, eip712_domain};
pub use scheme::{ChainHealth, ExactEvmScheme, Settlement, VerifiedPayment};
pub use sender::{
    BroadcastError, NonceLease, NonceLeases, Replacement, SYNC_SEND_PATIENCE, SendSlot, Sent,
    SignedSettlement, TransferExpectation, TxStatus,
};
pub use smart_wallet::{
    ERC1271_MAGIC_VALUE, ERC6492_MAGIC_SUFFIX, Erc6492DecodeError, Erc6492Deployment,
    MULTICALL3_ADDRESS, PayerSignature, wrap_erc6492,
};

/// Seconds of slack the reference facilitator keeps before `validBefore`, for block time.
pub const VALID_BEFORE_BUFFER_SECS: u64 = 6;

/// How far before now clients date `validAfter`, to tolerate clock skew.
pub const VALID_AFTER_SKEW_SECS: u64 = 600;

/// The current Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
