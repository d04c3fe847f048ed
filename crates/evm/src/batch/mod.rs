//! `batch-settlement` on EVM chains (payment channels), the chain-independent core: the payer
//! escrows a deposit once in the x402 batch-settlement contract, then signs a cumulative EIP-712
//! voucher per request; the server checks vouchers locally and claims many in one transaction.
//! Wire names, type strings, addresses and reason codes are those of `@x402/evm` 2.27.
//!
//! - [`wire`] types: [`BatchPayload`] (what clients send: `deposit`, `voucher`, `refund`),
//!   [`FacilitatorSettlePayload`] (what servers send to `/settle`: `deposit`, `claim`,
//!   `settle`, the enriched `refund`), and the `extra` of an offer ([`RequirementsExtra`]), of a
//!   verify answer ([`VerifyExtra`]) and of a payment response ([`PaymentResponseExtra`]).
//! - Typed data ([`eip712`]): [`BatchDomain`] (one per chain) computes [`channel_id`]s and the
//!   voucher, refund and claim-batch digests; [`erc3009_deposit_nonce`] binds a deposit to its
//!   channel.
//! - Signing: [`channel_config_for`] an offer, [`sign_voucher`], [`sign_erc3009_deposit`],
//!   [`sign_permit2_deposit`] (payer side); [`sign_claim_batch`], [`sign_refund`] (receiver authorizer).
//! - Local verification: [`verify_voucher_locally`] against [`ChannelTerms`] read once from an
//!   offer and [`ChannelFunds`] mirrored from the chain, every refusal a [`BatchVerifyError`]
//!   with its reason code.
//!
//! - The facilitator ([`BatchEvmFacilitator`]): `/verify` of deposits, vouchers and refunds
//!   against the chain, `/settle` of deposits, claims, settles and refunds, each sent once
//!   through a [`BatchSendLog`]; unmined sends are followed (rebroadcasts, fee bumps) and
//!   reconciled at start ([`BatchEvmFacilitator::reconcile`]).
//!
//! - A server's record of each channel paid to it ([`ChannelRecord`]), kept through a
//!   [`ChannelStore`] (one atomic update per channel; [`MemoryChannelStore`] in process).
//! - The server's claiming job ([`BatchClaimer`]): claims the vouchers it holds through a
//!   facilitator and settles them to the receiver, on a schedule, past bounds of unclaimed
//!   money ([`ClaimPolicy`]) and at once when a payer starts a withdrawal.
//! - The server plug-in ([`BatchServer`]): offers, and the paywall's hooks that verify
//!   vouchers locally, reserve a channel per request, charge what the handler used up to the
//!   signed ceiling, answer corrective 402s and enrich refunds.
//!
//! - The paying client's plug-in ([`BatchEvmClient`]): deposit once, then a cumulative voucher
//!   per request, the charged count advanced by each receipt, corrective 402s checked against
//!   the payer's own signature and the chain, cooperative refunds; its channels kept through a
//!   [`ClientChannelStore`] ([`MemoryClientChannels`] by default).
//!
//! The facilitator reads and writes the chain; the client plug-in only reads it.

mod channels;
mod claimer;
mod client;
pub mod eip712;
mod encoding;
mod facilitator;
mod onchain;
mod permit2_deposit;
mod reconcile;
mod sends;
mod server;
mod settle;
mod sign;
mod verify;
pub mod wire;

use alloy::primitives::{Address, address};

pub use crate::permit2::{Permit2Authorization, Permitted};
pub use channels::{
    ChannelRecord, ChannelStore, ChannelStoreError, ChannelWrite, HeldVoucher, MemoryChannelStore,
    NotedUpdate, OnchainMirror, Reservation,
};
pub use claimer::{
    AssetExposure, AuthorizerKey, BatchClaimer, ClaimError, ClaimFailure, ClaimLock, ClaimPolicy,
    ClaimRun, ClaimStats, ClaimerTask, Exposure, HeldClaimLock, SentClaim, SentSettle,
};
pub use client::{
    BatchEvmClient, ClientChannel, ClientChannelStore, ClientStoreError,
    DEFAULT_DEPOSIT_MULTIPLIER, DEFAULT_LEASE, MemoryClientChannels, deposit_amount,
};
pub use eip712::{BatchDomain, batch_domain, channel_id, erc3009_deposit_nonce};
pub use encoding::{
    AboveUint128, ChannelId, ChannelIdError, UINT40_MAX, decimal_u128, to_uint128, uint40,
};
pub use facilitator::BatchEvmFacilitator;
pub use reconcile::BatchReconcileReport;
pub use sends::{BatchSend, BatchSendKey, BatchSendLog, BatchTx, MemoryBatchLog};
pub use server::{
    BatchServer, ChannelRefusal, MIN_DEPOSIT_MULTIPLIER, corrective_extra, expected_ceiling,
    mirror_is_fresh, onchain_state_ttl, reservation_ttl,
};
pub use sign::{
    BatchSignError, channel_config_for, domain_of, next_ceiling, sign_claim_batch,
    sign_erc3009_deposit, sign_permit2_deposit, sign_refund, sign_voucher,
};
pub use verify::{
    BatchVerifyError, ChannelFunds, ChannelTerms, VerifiedVoucher, VoucherPurpose, check_ceiling,
    check_voucher_signature, recover_strict, verify_voucher_locally,
};
pub use wire::{
    AssetTransferMethod, BatchPayload, ChannelConfig, ChannelSnapshot, ChannelStateExtra,
    ClaimPayload, ClaimedVoucher, Deposit, DepositAuthorization, DepositPayload, DepositWitness,
    EnrichedRefundPayload, Erc3009Authorization, FacilitatorSettlePayload, PaymentResponseExtra,
    Permit2DepositAuthorization, RefundPayload, RequirementsExtra, SettlePayload, VerifyExtra,
    VoucherClaim, VoucherFields, VoucherPayload, VoucherStateExtra,
};

/// The x402 batch-settlement contract (escrow, claims, refunds), the same on every chain.
pub const BATCH_SETTLEMENT_ADDRESS: Address = address!("4020074e9dF2ce1deE5A9C1b5c3f541D02a10003");

/// The collector that takes ERC-3009 deposits (`receiveWithAuthorization` to itself).
pub const ERC3009_DEPOSIT_COLLECTOR_ADDRESS: Address =
    address!("4020806089470a89826cB9fB1f4059150b550004");

/// The collector that takes Permit2 deposits (the permits' spender).
pub const PERMIT2_DEPOSIT_COLLECTOR_ADDRESS: Address =
    address!("4020425FAf3B746C082C2f942b4E5159887B0005");

/// The contract's EIP-712 domain name.
pub const DOMAIN_NAME: &str = "x402 Batch Settlement";

/// The contract's EIP-712 domain version.
pub const DOMAIN_VERSION: &str = "1";

/// The shortest withdraw delay the contract allows (15 minutes), in seconds.
pub const MIN_WITHDRAW_DELAY: u64 = 900;

/// The longest withdraw delay the contract allows (30 days), in seconds.
pub const MAX_WITHDRAW_DELAY: u64 = 2_592_000;

/// The withdraw delay official servers offer and clients assume when an offer names none.
pub const DEFAULT_WITHDRAW_DELAY: u64 = MIN_WITHDRAW_DELAY;
