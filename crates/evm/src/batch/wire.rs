//! `batch-settlement` as `@x402/evm` 2.27 puts it on the wire (`batch-settlement/types.ts`):
//! the payloads a client sends (`deposit`, `voucher`, `refund`), the ones a server sends only to
//! a facilitator's `/settle` (`claim`, `settle`, the enriched `refund`), and the `extra` objects
//! of an offer, a verify answer and a payment response.
//!
//! Amounts the contract keeps as `uint128` are `u128` here (decimal strings that must fit);
//! other amounts are `U256`; delays and timestamps are JSON numbers. Addresses are written in
//! lower case (the SDK writes checksummed ones; both read alike everywhere).

use alloy::primitives::{Address, B256, Bytes, U256};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use x402_proto::decimal_u256;

use super::encoding::{ChannelId, decimal_u128, uint40};
use crate::permit2::Permit2Authorization;

/// A channel's immutable terms (`channelConfig`); its EIP-712 hash is the channel id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelConfig {
    /// Whose deposit funds the channel, and who may withdraw it.
    pub payer: Address,
    /// The key that signs vouchers (an EOA, checked by `ecrecover`); zero means the payer
    /// signs, checked by ERC-1271 for a contract.
    pub payer_authorizer: Address,
    /// Who is paid (`payTo`).
    pub receiver: Address,
    /// The key that signs claims and refunds for the receiver (never zero).
    pub receiver_authorizer: Address,
    /// The token (`asset`).
    pub token: Address,
    /// Seconds between a payer's withdrawal request and its completion (`uint40`).
    #[serde(with = "uint40")]
    pub withdraw_delay: u64,
    /// Distinguishes channels with otherwise equal terms (parallel lanes).
    pub salt: B256,
}

/// A signed voucher (`voucher`): the receiver may claim up to `max_claimable_amount` in all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoucherFields {
    /// The channel.
    pub channel_id: ChannelId,
    /// The cumulative ceiling, in atomic units.
    #[serde(with = "decimal_u128")]
    pub max_claimable_amount: u128,
    /// The payer authorizer's signature over the voucher.
    pub signature: Bytes,
}

/// `payload` of a `batch-settlement` payment, as a client sends it (`type` tells which).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum BatchPayload {
    /// Funds the channel (or tops it up) and pays with a voucher, in one request (boxed: it is
    /// the large one).
    Deposit(Box<DepositPayload>),
    /// Pays with a voucher on a funded channel.
    Voucher(VoucherPayload),
    /// Asks the server to return the unclaimed escrow (a zero-charge voucher).
    Refund(RefundPayload),
}

/// `payload` of a facilitator `/settle` request, as a server sends it (`type` tells which).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum FacilitatorSettlePayload {
    /// Runs the client's deposit on chain (boxed: it is the large one).
    Deposit(Box<DepositPayload>),
    /// Claims vouchers (`claimWithSignature`).
    Claim(ClaimPayload),
    /// Moves what was claimed to the receiver (`settle(receiver, token)`).
    Settle(SettlePayload),
    /// Claims what is charged, then refunds the rest (`refundWithSignature`; boxed, as large).
    Refund(Box<EnrichedRefundPayload>),
}

/// A `deposit` payload: the channel, the voucher for this request and the deposit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositPayload {
    /// The channel's terms.
    pub channel_config: ChannelConfig,
    /// The voucher paying this request.
    pub voucher: VoucherFields,
    /// What is deposited, and the payer's authorization to take it.
    pub deposit: Deposit,
}

/// `deposit` of a deposit payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deposit {
    /// Atomic units added to the channel's balance.
    #[serde(with = "decimal_u128")]
    pub amount: u128,
    /// How the tokens are taken from the payer.
    pub authorization: DepositAuthorization,
}

/// `deposit.authorization`: exactly one of the two forms, keyed by its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DepositAuthorization {
    /// An ERC-3009 `receiveWithAuthorization` to the ERC-3009 collector.
    Erc3009Authorization(Erc3009Authorization),
    /// A Permit2 witness transfer to the Permit2 collector.
    Permit2Authorization(Permit2DepositAuthorization),
}

/// `erc3009Authorization`: the payer's ERC-3009 `ReceiveWithAuthorization` to the ERC-3009
/// collector; its nonce is derived from the channel and `salt`
/// ([`erc3009_deposit_nonce`](super::erc3009_deposit_nonce)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Erc3009Authorization {
    /// Unix seconds; valid strictly after (the SDK writes `"0"`).
    #[serde(with = "decimal_u256")]
    pub valid_after: U256,
    /// Unix seconds; valid strictly before.
    #[serde(with = "decimal_u256")]
    pub valid_before: U256,
    /// 32 random bytes making the nonce unique per deposit.
    pub salt: B256,
    /// The payer's signature.
    pub signature: Bytes,
}

/// `permit2Authorization`: a Permit2 witness transfer of the deposit to the Permit2 collector,
/// bound to the channel (the permit's fields as `upto` and `exact` write them, and the payer's
/// signature beside them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit2DepositAuthorization {
    /// The permit: payer, token and amount (the deposit), spender (the Permit2 collector),
    /// nonce, deadline and the channel as witness.
    #[serde(flatten)]
    pub permit: Permit2Authorization<DepositWitness>,
    /// The payer's signature.
    pub signature: Bytes,
}

/// `witness` of a Permit2 deposit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositWitness {
    /// The channel funded.
    pub channel_id: ChannelId,
}

/// A `voucher` payload: the channel and the voucher paying this request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoucherPayload {
    /// The channel's terms.
    pub channel_config: ChannelConfig,
    /// The voucher.
    pub voucher: VoucherFields,
}

/// A client's `refund` payload: a zero-charge voucher (its ceiling is what was charged) and,
/// for a partial refund, the amount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundPayload {
    /// The channel's terms.
    pub channel_config: ChannelConfig,
    /// The zero-charge voucher.
    pub voucher: VoucherFields,
    /// How much to refund; everything left when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "decimal_u128::option"
    )]
    pub amount: Option<u128>,
}

/// The `refund` payload a server sends to a facilitator's `/settle`: the client's, with the
/// amount decided, the refund nonce, the claims to make first and the receiver authorizer's
/// signatures when the server holds that key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrichedRefundPayload {
    /// The channel's terms.
    pub channel_config: ChannelConfig,
    /// The client's zero-charge voucher.
    pub voucher: VoucherFields,
    /// How much to refund.
    #[serde(with = "decimal_u128")]
    pub amount: u128,
    /// The channel's refund nonce on chain (`refundNonce(channelId)`).
    #[serde(with = "decimal_u256")]
    pub refund_nonce: U256,
    /// The receiver authorizer's signature over the [`Refund`](super::eip712::Refund).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_authorizer_signature: Option<Bytes>,
    /// The vouchers to claim in the same transaction, before refunding (`claims`, and
    /// `claimAuthorizerSignature` over them), as a claim payload carries them.
    #[serde(flatten)]
    pub claims: ClaimPayload,
}

/// A `claim` payload: vouchers to claim in one `claimWithSignature`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimPayload {
    /// The rows.
    pub claims: Vec<VoucherClaim>,
    /// The receiver authorizer's signature over the [`ClaimBatch`](super::eip712::ClaimBatch);
    /// absent when the facilitator is to sign as the authorizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_authorizer_signature: Option<Bytes>,
}

/// One claimed voucher (a row of `claims`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoucherClaim {
    /// The voucher, with its channel's whole config.
    pub voucher: ClaimedVoucher,
    /// The payer authorizer's signature over it.
    pub signature: Bytes,
    /// How much of it the receiver takes in all (at most the ceiling).
    #[serde(with = "decimal_u128")]
    pub total_claimed: u128,
}

/// `voucher` of a claim row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimedVoucher {
    /// The channel's terms.
    pub channel: ChannelConfig,
    /// The voucher's ceiling.
    #[serde(with = "decimal_u128")]
    pub max_claimable_amount: u128,
}

/// A `settle` payload: move what `receiver` has claimed of `token` to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlePayload {
    /// The receiver.
    pub receiver: Address,
    /// The token.
    pub token: Address,
}

/// How a deposit takes the payer's tokens (`extra.assetTransferMethod`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AssetTransferMethod {
    /// ERC-3009 `receiveWithAuthorization` (the default).
    #[default]
    Eip3009,
    /// A Permit2 witness transfer.
    Permit2,
}

/// `extra` of a `batch-settlement` offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequirementsExtra {
    /// The key that signs claims and refunds for the receiver.
    pub receiver_authorizer: Address,
    /// The withdraw delay channels must have, in seconds.
    #[serde(with = "uint40")]
    pub withdraw_delay: u64,
    /// The token's EIP-712 name (needed for ERC-3009 deposits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The token's EIP-712 version (needed for ERC-3009 deposits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// How deposits take the tokens; ERC-3009 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_transfer_method: Option<AssetTransferMethod>,
    /// The smallest deposit the server wants, in atomic units (a hint; servers default to ten
    /// times the price).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "decimal_u128::option"
    )]
    pub min_deposit: Option<u128>,
    /// In a corrective 402 only: the server's view of the client's channel.
    #[serde(flatten)]
    pub snapshot: ChannelSnapshot,
    /// Any other keys, kept as they came.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A channel's state as a facilitator reads it on chain and a server reports it
/// (`channelState`; also the whole `extra` of a valid `/verify` answer, without
/// `chargedCumulativeAmount`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelStateExtra {
    /// The channel.
    pub channel_id: ChannelId,
    /// Escrowed atomic units.
    #[serde(with = "decimal_u128")]
    pub balance: u128,
    /// Atomic units claimed by the receiver so far.
    #[serde(with = "decimal_u128")]
    pub total_claimed: u128,
    /// When the payer asked to withdraw (Unix seconds); 0 when they have not.
    #[serde(with = "uint40")]
    pub withdraw_requested_at: u64,
    /// The channel's refund nonce.
    #[serde(with = "decimal_u256")]
    pub refund_nonce: U256,
    /// What the server has charged on the channel in all (server reports only).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "decimal_u128::option"
    )]
    pub charged_cumulative_amount: Option<u128>,
}

/// `extra` of a valid facilitator `/verify` answer: the channel's state on chain.
pub type VerifyExtra = ChannelStateExtra;

/// `voucherState` of a corrective 402: the latest voucher the server holds, so the client can
/// check its own signature before adopting the server's count.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoucherStateExtra {
    /// Its ceiling.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "decimal_u128::option"
    )]
    pub signed_max_claimable: Option<u128>,
    /// Its signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Bytes>,
}

/// `extra` of a `batch-settlement` payment response (`PAYMENT-RESPONSE`, `/settle`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentResponseExtra {
    /// What this request was charged (voucher and deposit responses).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "decimal_u128::option"
    )]
    pub charged_amount: Option<u128>,
    /// The channel after this request (its state with `chargedCumulativeAmount`).
    #[serde(flatten)]
    pub snapshot: ChannelSnapshot,
}

/// A server's view of a channel, as a corrective 402's offer and a payment response carry it
/// (`channelState`, `voucherState`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelSnapshot {
    /// The channel's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_state: Option<ChannelStateExtra>,
    /// The latest voucher the server holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voucher_state: Option<VoucherStateExtra>,
}

impl BatchPayload {
    /// The channel's terms.
    pub fn channel_config(&self) -> &ChannelConfig {
        match self {
            Self::Deposit(p) => &p.channel_config,
            Self::Voucher(p) => &p.channel_config,
            Self::Refund(p) => &p.channel_config,
        }
    }

    /// The voucher it carries.
    pub fn voucher(&self) -> &VoucherFields {
        match self {
            Self::Deposit(p) => &p.voucher,
            Self::Voucher(p) => &p.voucher,
            Self::Refund(p) => &p.voucher,
        }
    }
}
