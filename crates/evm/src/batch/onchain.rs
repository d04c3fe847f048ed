//! What the `batch-settlement` facilitator asks of the chain: the escrow's ABI, a channel's
//! state in one Multicall3 read (`channels`, `pendingWithdrawals`, `refundNonce`, and the
//! payer's token balance for a deposit), simulations from the facilitator's address, and one
//! transaction sent from the chain's signer and waited for.

use std::time::{Duration, Instant};

use alloy::network::TransactionBuilder;
use alloy::primitives::aliases::U40;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::sol_types::{SolCall, SolEvent};
use x402_proto::FacilitatorError;

use super::BATCH_SETTLEMENT_ADDRESS;
use super::encoding::ChannelId;
use super::wire::{self, ChannelStateExtra, VoucherClaim};
use crate::scheme::ExactEvmScheme;
use crate::smart_wallet::{IMulticall3, MULTICALL3_ADDRESS};

alloy::sol! {
    /// The escrow's calls the facilitator makes (`@x402/evm` 2.27 `batch-settlement/abi.ts`),
    /// a channel config as the tuple of the core's typed-data `ChannelConfig`, a claim row as
    /// `((config, maxClaimableAmount), signature, totalClaimed)`.
    #[derive(Debug)]
    interface IBatchSettlement {
        function deposit((address,address,address,address,address,uint40,bytes32) config, uint128 amount, address collector, bytes collectorData) external;
        function claimWithSignature((((address,address,address,address,address,uint40,bytes32),uint128),bytes,uint128)[] voucherClaims, bytes authorizerSignature) external;
        function settle(address receiver, address token) external;
        function refundWithSignature((address,address,address,address,address,uint40,bytes32) config, uint128 amount, uint256 nonce, bytes receiverAuthorizerSignature) external;
        function multicall(bytes[] data) external returns (bytes[] results);
        function channels(bytes32 channelId) external view returns (uint128 balance, uint128 totalClaimed);
        function pendingWithdrawals(bytes32 channelId) external view returns (uint128 amount, uint40 initiatedAt);
        function refundNonce(bytes32 channelId) external view returns (uint256);
        function receivers(address receiver, address token) external view returns (uint128 totalClaimed, uint128 totalSettled);
        event Settled(address indexed receiver, address indexed token, address indexed sender, uint128 amount);
        event Refunded(bytes32 indexed channelId, address indexed payer, uint128 amount);
    }

    /// The token read of a deposit's checks.
    #[derive(Debug)]
    interface ITokenBalance {
        function balanceOf(address owner) external view returns (uint256);
    }
}

/// Gas for `settle(receiver, token)`: fixed, as an estimate taken before a claim is visible
/// would under-gas it (the official facilitator's 120k).
pub(super) const SETTLE_GAS: u64 = 120_000;

/// Gas for a deposit through a collector (token authorization, transfer, bookkeeping).
pub(super) const DEPOSIT_GAS: u64 = 300_000;

/// Gas for a claim or refund: a base and a share per claim row.
pub(super) fn claim_gas(rows: usize) -> u64 {
    200_000 + 60_000 * rows as u64
}

/// How long and how often a deposit's balance, or a refund's nonce, is read again until the
/// node shows it (the official facilitator's 2 s and 150 ms).
const STATE_POLL: Duration = Duration::from_secs(2);
const STATE_POLL_EVERY: Duration = Duration::from_millis(150);

/// A channel config as the escrow's calls take it.
pub(super) type CallConfig = (Address, Address, Address, Address, Address, U40, B256);

impl wire::ChannelConfig {
    /// The config as the escrow's calls take it (the typed-data struct's fields, in order).
    pub(super) fn to_call(self) -> CallConfig {
        self.to_sol().into()
    }
}

/// Claim rows as `claimWithSignature` takes them.
pub(super) fn claim_rows(claims: &[VoucherClaim]) -> Vec<((CallConfig, u128), Bytes, u128)> {
    claims
        .iter()
        .map(|claim| {
            let voucher = (
                claim.voucher.channel.to_call(),
                claim.voucher.max_claimable_amount,
            );
            (voucher, claim.signature.clone(), claim.total_claimed)
        })
        .collect()
}

/// A channel's state on chain (`channels`, `pendingWithdrawals`, `refundNonce`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ChannelState {
    pub(super) balance: u128,
    pub(super) total_claimed: u128,
    pub(super) withdraw_requested_at: u64,
    pub(super) refund_nonce: U256,
}

impl ChannelState {
    /// As a verify answer's `extra` (and a settle answer's `channelState`) write it.
    pub(super) fn extra(&self, channel_id: ChannelId) -> ChannelStateExtra {
        ChannelStateExtra {
            channel_id,
            balance: self.balance,
            total_claimed: self.total_claimed,
            withdraw_requested_at: self.withdraw_requested_at,
            refund_nonce: self.refund_nonce,
            charged_cumulative_amount: None,
        }
    }
}

/// Why a read of the chain gave no state.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The node could not be asked.
    Unavailable(String),
    /// A read reverted or answered badly (`rpc_read_failed`).
    Failed(String),
}

impl ReadError {
    pub(super) fn into_facilitator(self) -> FacilitatorError {
        match self {
            Self::Unavailable(detail) | Self::Failed(detail) => {
                FacilitatorError::Unavailable(detail)
            }
        }
    }
}

fn call_to(chain: &ExactEvmScheme, to: Address, input: Vec<u8>) -> TransactionRequest {
    TransactionRequest::default()
        .with_from(chain.signer_address())
        .with_to(to)
        .with_input(Bytes::from(input))
}

/// Runs `calls` in one Multicall3 `aggregate3` read, each allowed to fail.
async fn multicall(
    chain: &ExactEvmScheme,
    calls: Vec<(Address, Vec<u8>)>,
) -> Result<Vec<Result<Bytes, ReadError>>, ReadError> {
    let calls = calls
        .into_iter()
        .map(|(target, data)| IMulticall3::Call3 {
            target,
            allowFailure: true,
            callData: data.into(),
        })
        .collect();
    let out = chain
        .provider()
        .call(call_to(
            chain,
            MULTICALL3_ADDRESS,
            IMulticall3::aggregate3Call { calls }.abi_encode(),
        ))
        .await
        .map_err(|e| ReadError::Unavailable(format!("reading the channel: {e}")))?;
    let results = IMulticall3::aggregate3Call::abi_decode_returns(&out)
        .map_err(|e| ReadError::Failed(format!("Multicall3 answered badly: {e}")))?;
    Ok(results
        .into_iter()
        .map(|result| {
            if result.success {
                Ok(result.returnData)
            } else {
                Err(ReadError::Failed("a read of the escrow reverted".into()))
            }
        })
        .collect())
}

fn decode<C: SolCall>(answer: Result<Bytes, ReadError>) -> Result<C::Return, ReadError> {
    let bytes = answer?;
    C::abi_decode_returns(&bytes)
        .map_err(|e| ReadError::Failed(format!("{} answered badly: {e}", C::SIGNATURE)))
}

/// The state of `channel_id`, and `owner`'s balance of `token` when asked, in one read.
pub(super) async fn read_channel(
    chain: &ExactEvmScheme,
    channel_id: &ChannelId,
    balance_of: Option<(Address, Address)>,
) -> Result<(ChannelState, Option<U256>), ReadError> {
    let id = *channel_id.as_b256();
    let mut calls = vec![
        (
            BATCH_SETTLEMENT_ADDRESS,
            IBatchSettlement::channelsCall { channelId: id }.abi_encode(),
        ),
        (
            BATCH_SETTLEMENT_ADDRESS,
            IBatchSettlement::pendingWithdrawalsCall { channelId: id }.abi_encode(),
        ),
        (
            BATCH_SETTLEMENT_ADDRESS,
            IBatchSettlement::refundNonceCall { channelId: id }.abi_encode(),
        ),
    ];
    if let Some((token, owner)) = balance_of {
        calls.push((token, ITokenBalance::balanceOfCall { owner }.abi_encode()));
    }
    let mut answers = multicall(chain, calls).await?.into_iter();
    let mut next = || {
        answers
            .next()
            .unwrap_or_else(|| Err(ReadError::Failed("Multicall3 left out a read".into())))
    };
    let channel = decode::<IBatchSettlement::channelsCall>(next())?;
    let pending = decode::<IBatchSettlement::pendingWithdrawalsCall>(next())?;
    let refund_nonce = decode::<IBatchSettlement::refundNonceCall>(next())?;
    let balance = match balance_of {
        Some(_) => Some(decode::<ITokenBalance::balanceOfCall>(next())?),
        None => None,
    };
    Ok((
        ChannelState {
            balance: channel.balance,
            total_claimed: channel.totalClaimed,
            withdraw_requested_at: pending.initiatedAt.to::<u64>(),
            refund_nonce,
        },
        balance,
    ))
}

/// Reads `channel_id` again until `done` holds of it, for at most two seconds: the node may
/// answer reads from before a transaction it has just mined. The last state read, if any.
pub(super) async fn read_until(
    chain: &ExactEvmScheme,
    channel_id: &ChannelId,
    done: impl Fn(&ChannelState) -> bool,
) -> Option<ChannelState> {
    let started = Instant::now();
    let mut last = None;
    loop {
        if let Ok((state, _)) = read_channel(chain, channel_id, None).await {
            if done(&state) {
                return Some(state);
            }
            last = Some(state);
        }
        if started.elapsed() >= STATE_POLL {
            return last;
        }
        tokio::time::sleep(STATE_POLL_EVERY).await;
    }
}

/// `receivers(receiver, token)`: what the receiver has claimed and been paid in all.
pub(super) async fn read_receiver(
    chain: &ExactEvmScheme,
    receiver: Address,
    token: Address,
) -> Result<(u128, u128), String> {
    let out = chain
        .provider()
        .call(call_to(
            chain,
            BATCH_SETTLEMENT_ADDRESS,
            IBatchSettlement::receiversCall { receiver, token }.abi_encode(),
        ))
        .await
        .map_err(|e| e.to_string())?;
    let state =
        IBatchSettlement::receiversCall::abi_decode_returns(&out).map_err(|e| e.to_string())?;
    Ok((state.totalClaimed, state.totalSettled))
}

/// Simulates calling the escrow with `input` from the facilitator's address: the revert, as
/// text, when it would fail.
pub(super) async fn simulate(chain: &ExactEvmScheme, input: &[u8]) -> Result<(), String> {
    chain
        .provider()
        .call(call_to(chain, BATCH_SETTLEMENT_ADDRESS, input.to_vec()))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The amount of the `Settled(receiver, token, …)` log the escrow wrote in `receipt`, or zero.
pub(super) fn settled_amount(
    receipt: &TransactionReceipt,
    receiver: Address,
    token: Address,
) -> u128 {
    receipt
        .inner
        .logs()
        .iter()
        .filter(|log| log.address() == BATCH_SETTLEMENT_ADDRESS)
        .filter_map(|log| IBatchSettlement::Settled::decode_log(&log.inner).ok())
        .find(|log| log.receiver == receiver && log.token == token)
        .map_or(0, |log| log.amount)
}

/// The amount of the `Refunded(channel_id, …)` log the escrow wrote in `receipt`, if any.
pub(super) fn refunded_amount(
    receipt: &TransactionReceipt,
    channel_id: &ChannelId,
) -> Option<u128> {
    receipt
        .inner
        .logs()
        .iter()
        .filter(|log| log.address() == BATCH_SETTLEMENT_ADDRESS)
        .filter_map(|log| IBatchSettlement::Refunded::decode_log(&log.inner).ok())
        .find(|log| log.channelId == *channel_id.as_b256())
        .map(|log| log.amount)
}
