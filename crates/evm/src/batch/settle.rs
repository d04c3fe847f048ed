//! `/settle` of `batch-settlement`, as the official facilitator runs each payload:
//!
//! - `deposit`: verified again, then `deposit(config, amount, collector, data)` through the
//!   ERC-3009 or the Permit2 collector; the answer names the deposit as `amount` and the
//!   channel's state after it (read until the node shows the deposit) as
//!   `extra.channelState`. Sent once per (payer, ERC-3009 or Permit2 nonce, signature).
//! - `claim`: `claimWithSignature(rows, signature)`, signing the claim batch itself when the
//!   server sent no signature and every row names this facilitator's authorizer key. Sent once
//!   per claim batch.
//! - `settle`: `settle(receiver, token)` when the receiver has claimed more than it was paid,
//!   once the claims this facilitator sent for them are mined (a settle read before a claim
//!   pays less, or nothing: x402 issue #2471); `amount` is the escrow's `Settled` log. Sent
//!   once per (receiver, token, total claimed): a retry, or a concurrent twin, is answered for
//!   the transaction sent, not `nothing_to_settle`.
//! - enriched `refund`: `refundWithSignature`, after `claimWithSignature` in one `multicall`
//!   when claims come with it; `amount` is what went back, `extra.channelState` the channel
//!   after it. Sent once per (channel, refund nonce, amount).
//!
//! The log is asked before any check: a send recorded is answered for whatever the chain says
//! now (a refund's channel emptied by it, a receiver settled by it).

use std::sync::{Mutex, PoisonError};

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::rpc::types::TransactionReceipt;
use alloy::sol_types::SolCall;
use x402_proto::{
    FacilitatorError, IdempotencyKey, Network, PaymentRequest, ReasonCode, SettleResponse,
    TokenAmount,
};

use super::facilitator::{BatchEvmFacilitator, Refusal, Verified, opened, payload_payer, refuse};
use super::onchain::{self, ChannelState, IBatchSettlement};
use super::sends::{
    BatchSendKey, Naming, Plan, Planned, deposit_key, digest_key, permit2_deposit_key, settle_key,
};
use super::wire::{
    ChannelSnapshot, ClaimPayload, DepositAuthorization, DepositPayload, EnrichedRefundPayload,
    FacilitatorSettlePayload, PaymentResponseExtra, SettlePayload,
};
use super::{ChannelId, erc3009_deposit_nonce, sign_claim_batch, sign_refund};

fn failure(network: &Network, refusal: Refusal, payer: Option<String>) -> SettleResponse {
    SettleResponse::failure(network.clone(), refusal.code, refusal.message, payer, None)
}

/// A success in `tx_hash` moving `amount`, with the channel's state as `extra.channelState`.
fn with_channel(
    network: &Network,
    payer: Option<String>,
    tx_hash: B256,
    amount: u128,
    channel: Option<(ChannelId, ChannelState)>,
) -> SettleResponse {
    let extra = channel.map(|(channel_id, state)| PaymentResponseExtra {
        charged_amount: None,
        snapshot: ChannelSnapshot {
            channel_state: Some(state.extra(channel_id)),
            voucher_state: None,
        },
    });
    SettleResponse {
        amount: Some(TokenAmount::from_atomic(amount)),
        extra: extra.and_then(|extra| serde_json::to_value(extra).ok()),
        ..SettleResponse::success(network.clone(), payer, tx_hash.to_string())
    }
}

fn signing_failed(error: super::BatchSignError) -> FacilitatorError {
    FacilitatorError::Internal(format!("signing as the receiver authorizer: {error}"))
}

/// One `/settle` call: its request (recorded with what it sends), its network, and, when it
/// resumes a send recorded by a previous run, that send's key (then nothing new is sent).
pub(super) struct Call<'a> {
    request: &'a PaymentRequest,
    network: Network,
    json: String,
    resume: Option<BatchSendKey>,
}

impl<'a> Call<'a> {
    pub(super) fn new(request: &'a PaymentRequest, resume: Option<BatchSendKey>) -> Self {
        Self {
            request,
            network: request.wire_network().clone(),
            json: serde_json::to_string(request).unwrap_or_default(),
            resume,
        }
    }
}

/// A value a send's checks learn and its answer reads (a channel's state before it).
struct Learned<T>(Mutex<Option<T>>);

impl<T: Copy> Learned<T> {
    fn new() -> Self {
        Self(Mutex::new(None))
    }

    fn set(&self, value: T) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
    }

    fn get(&self) -> Option<T> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl BatchEvmFacilitator {
    /// Runs the payload on chain: [`x402_proto::Facilitator::settle`].
    pub(super) async fn settle_payment(
        &self,
        request: &PaymentRequest,
        _key: Option<&IdempotencyKey>,
    ) -> Result<SettleResponse, FacilitatorError> {
        self.settle_call(&Call::new(request, None)).await
    }

    /// Runs `call`'s payload, or resumes the send it recorded.
    pub(super) async fn settle_call(
        &self,
        call: &Call<'_>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let (request, network) = (call.request, &call.network);
        let raw = match opened(request) {
            Ok((_, raw)) => raw,
            Err(refusal) => return Ok(failure(network, refusal, payload_payer(request))),
        };
        let Ok(payload) = serde_json::from_value::<FacilitatorSettlePayload>(raw.clone()) else {
            let refusal = refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_PAYLOAD_TYPE,
                "the payload is not a batch-settlement deposit, claim, settle or enriched refund",
            );
            return Ok(failure(network, refusal, payload_payer(request)));
        };
        match payload {
            FacilitatorSettlePayload::Deposit(deposit) => self.settle_deposit(call, &deposit).await,
            FacilitatorSettlePayload::Claim(claim) => self.settle_claim(call, &claim).await,
            FacilitatorSettlePayload::Settle(settle) => self.settle_receiver(call, &settle).await,
            FacilitatorSettlePayload::Refund(refund) => self.settle_refund(call, &refund).await,
        }
    }

    /// Sends once under `key` (the resumed send's, when resuming) what `plan` decides.
    async fn send_once<S, F>(
        &self,
        call: &Call<'_>,
        (key, naming): (BatchSendKey, Naming),
        plan: impl Future<Output = Result<Plan, FacilitatorError>>,
        success: S,
    ) -> Result<SettleResponse, FacilitatorError>
    where
        S: Fn(B256, Box<TransactionReceipt>, Option<String>) -> F,
        F: Future<Output = SettleResponse>,
    {
        let resuming = call.resume.is_some();
        let key = call.resume.clone().unwrap_or(key);
        let plan = async move {
            if resuming {
                // The send resumed is no longer recorded: a previous run's request sends
                // nothing new.
                return Err(FacilitatorError::Internal(
                    "the batch-settlement send to resume is no longer recorded".into(),
                ));
            }
            plan.await
        };
        self.sends
            .once(
                &self.chain,
                &call.network,
                key,
                (&call.json, &naming),
                plan,
                success,
            )
            .await
    }

    async fn settle_deposit(
        &self,
        call: &Call<'_>,
        deposit: &DepositPayload,
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = &call.network;
        let config = &deposit.channel_config;
        let payer = Some(config.payer.to_checksum(None));
        let channel_id = deposit.voucher.channel_id;
        let key = match &deposit.deposit.authorization {
            DepositAuthorization::Erc3009Authorization(authorization) => {
                let nonce = erc3009_deposit_nonce(&channel_id, &authorization.salt);
                let signature = &authorization.signature;
                deposit_key(self.chain.chain_id(), config.payer, &nonce, signature)
            }
            DepositAuthorization::Permit2Authorization(authorization) => {
                let permit = &authorization.permit;
                permit2_deposit_key(
                    self.chain.chain_id(),
                    permit.from,
                    permit.nonce,
                    &authorization.signature,
                )
            }
        };
        let amount = deposit.deposit.amount;
        // The channel's state before the deposit, as verification read it.
        let before = Learned::<ChannelState>::new();
        let plan = async {
            Ok(match self.check(call.request).await? {
                Err(refusal) => Plan::Refused(failure(network, refusal, payer.clone())),
                Ok(Verified {
                    state,
                    deposit_call: Some(input),
                    ..
                }) => {
                    before.set(state);
                    Plan::Send(Planned {
                        input,
                        gas: onchain::DEPOSIT_GAS,
                    })
                }
                Ok(_) => {
                    let refusal = refuse(
                        ReasonCode::BATCH_SETTLEMENT_EVM_PAYLOAD_TYPE,
                        "the payload is not a deposit",
                    );
                    Plan::Refused(failure(network, refusal, payer.clone()))
                }
            })
        };
        let before = &before;
        let success = |tx_hash: B256, _: Box<TransactionReceipt>, payer: Option<String>| async move {
            let before = before.get();
            let expected = before.map(|state| state.balance.saturating_add(amount));
            let read = onchain::read_until(&self.chain, &channel_id, |state| {
                expected.is_none_or(|expected| state.balance >= expected)
            })
            .await;
            // The state read once it shows the deposit; else the state verified plus it.
            let state = match (read, before) {
                (Some(read), _) if expected.is_none_or(|e| read.balance >= e) => Some(read),
                (_, Some(before)) => Some(ChannelState {
                    balance: before.balance.saturating_add(amount),
                    ..before
                }),
                (read, None) => read,
            };
            let channel = state.map(|state| (channel_id, state));
            with_channel(network, payer, tx_hash, amount, channel)
        };
        let naming = Naming {
            failed: ReasonCode::BATCH_SETTLEMENT_EVM_DEPOSIT_TRANSACTION_FAILED,
            payer: payer.clone(),
        };
        self.send_once(call, (key, naming), plan, success).await
    }

    async fn settle_claim(
        &self,
        call: &Call<'_>,
        claim: &ClaimPayload,
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = &call.network;
        let digest = self.domain.claim_batch_digest(&claim.claims);
        let key = digest_key(self.chain.chain_id(), "claim", digest.as_slice());
        self.sends.claiming(&key, receivers_of(&claim.claims));
        let plan = async {
            let signature = match &claim.claim_authorizer_signature {
                Some(signature) => signature.clone(),
                None => match self.claim_signature(claim).await? {
                    Ok(signature) => signature,
                    Err(refusal) => return Ok(Plan::Refused(failure(network, refusal, None))),
                },
            };
            let input = claim_call(claim, signature);
            if let Err(revert) = onchain::simulate(&self.chain, &input).await {
                let refusal = refuse(
                    ReasonCode::BATCH_SETTLEMENT_EVM_CLAIM_SIMULATION_FAILED,
                    revert,
                );
                return Ok(Plan::Refused(failure(network, refusal, None)));
            }
            Ok(Plan::Send(Planned {
                input,
                gas: onchain::claim_gas(claim.claims.len()),
            }))
        };
        let success = |tx_hash: B256, _: Box<TransactionReceipt>, payer: Option<String>| async move {
            SettleResponse::success(network.clone(), payer, tx_hash.to_string())
        };
        let naming = Naming {
            failed: ReasonCode::BATCH_SETTLEMENT_EVM_CLAIM_TRANSACTION_FAILED,
            payer: None,
        };
        self.send_once(call, (key, naming), plan, success).await
    }

    /// This facilitator's signature over a claim batch whose rows all name its key.
    async fn claim_signature(
        &self,
        claim: &ClaimPayload,
    ) -> Result<Result<Bytes, Refusal>, FacilitatorError> {
        let Some(authorizer) = &self.authorizer else {
            return Ok(Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_AUTHORIZER_NOT_CONFIGURED,
                "the claim carries no claimAuthorizerSignature and this facilitator holds no receiver-authorizer key",
            )));
        };
        let ours = authorizer.address();
        if let Some(row) = claim
            .claims
            .iter()
            .find(|row| row.voucher.channel.receiver_authorizer != ours)
        {
            return Ok(Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_AUTHORIZER_ADDRESS_MISMATCH,
                format!(
                    "a claimed channel names receiver authorizer {}, not this facilitator's {ours}",
                    row.voucher.channel.receiver_authorizer
                ),
            )));
        }
        sign_claim_batch(authorizer.as_ref(), &self.domain, &claim.claims)
            .await
            .map(Ok)
            .map_err(signing_failed)
    }

    async fn settle_receiver(
        &self,
        call: &Call<'_>,
        settle: &SettlePayload,
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = &call.network;
        let (receiver, token) = (settle.receiver, settle.token);
        // Claims this facilitator sent for the receiver count once mined.
        if call.resume.is_none()
            && let Err(tx_hash) = self
                .sends
                .claims_mined(&self.chain, receiver, token)
                .await?
        {
            return Err(FacilitatorError::Unavailable(format!(
                "a claim for this receiver and token (transaction {tx_hash}) is not mined yet; settle again once it is"
            )));
        }
        let (claimed, settled) = match &call.resume {
            // The key is the resumed send's; nothing is sent.
            Some(_) => (0, 0),
            None => match onchain::read_receiver(&self.chain, receiver, token).await {
                Ok(state) => state,
                Err(error) => {
                    let refusal = refuse(ReasonCode::BATCH_SETTLEMENT_EVM_RPC_READ_FAILED, error);
                    return Ok(failure(network, refusal, None));
                }
            },
        };
        let key = settle_key(self.chain.chain_id(), receiver, token, claimed);
        let plan = async {
            if claimed <= settled {
                let refusal = refuse(
                    ReasonCode::BATCH_SETTLEMENT_EVM_NOTHING_TO_SETTLE,
                    "nothing to settle for receiver and token",
                );
                return Ok(Plan::Refused(failure(network, refusal, None)));
            }
            let input = IBatchSettlement::settleCall { receiver, token }.abi_encode();
            if let Err(revert) = onchain::simulate(&self.chain, &input).await {
                let refusal = refuse(
                    ReasonCode::BATCH_SETTLEMENT_EVM_SETTLE_SIMULATION_FAILED,
                    revert,
                );
                return Ok(Plan::Refused(failure(network, refusal, None)));
            }
            Ok(Plan::Send(Planned {
                input,
                gas: onchain::SETTLE_GAS,
            }))
        };
        let success = |tx_hash: B256, receipt: Box<TransactionReceipt>, payer: Option<String>| async move {
            let amount = onchain::settled_amount(&receipt, receiver, token);
            with_channel(network, payer, tx_hash, amount, None)
        };
        let naming = Naming {
            failed: ReasonCode::BATCH_SETTLEMENT_EVM_SETTLE_TRANSACTION_FAILED,
            payer: None,
        };
        self.send_once(call, (key, naming), plan, success).await
    }

    async fn settle_refund(
        &self,
        call: &Call<'_>,
        refund: &EnrichedRefundPayload,
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = &call.network;
        let config = &refund.channel_config;
        let payer = Some(config.payer.to_checksum(None));
        let channel_id = self.domain.channel_id(config);
        let nonce = refund.refund_nonce;
        // Another amount at the same nonce is another send, which the escrow refuses.
        let mut material = channel_id.as_b256().to_vec();
        material.extend(nonce.to_be_bytes::<32>());
        material.extend(refund.amount.to_be_bytes());
        let key = digest_key(self.chain.chain_id(), "refund", &material);
        self.sends
            .claiming(&key, receivers_of(&refund.claims.claims));
        let before = Learned::<ChannelState>::new();
        let plan = async {
            let state = match onchain::read_channel(&self.chain, &channel_id, None).await {
                Ok((state, _)) => state,
                Err(error) => return Err(error.into_facilitator()),
            };
            before.set(state);
            if refundable(refund, &state, &channel_id, &self.domain) == Some(0) {
                let refusal = refuse(
                    ReasonCode::BATCH_SETTLEMENT_EVM_REFUND_NO_BALANCE,
                    "Nothing to refund",
                );
                return Ok(Plan::Refused(failure(network, refusal, payer.clone())));
            }
            let input = match self.refund_call(refund, &channel_id).await? {
                Ok(input) => input,
                Err(refusal) => return Ok(Plan::Refused(failure(network, refusal, payer.clone()))),
            };
            if let Err(revert) = onchain::simulate(&self.chain, &input).await {
                let refusal = refuse(
                    ReasonCode::BATCH_SETTLEMENT_EVM_REFUND_SIMULATION_FAILED,
                    revert,
                );
                return Ok(Plan::Refused(failure(network, refusal, payer.clone())));
            }
            Ok(Plan::Send(Planned {
                input,
                gas: onchain::claim_gas(refund.claims.claims.len() + 1),
            }))
        };
        let before = &before;
        let success = |tx_hash: B256, receipt: Box<TransactionReceipt>, payer: Option<String>| async move {
            let before = before.get();
            let read =
                onchain::read_until(&self.chain, &channel_id, |state| state.refund_nonce > nonce)
                    .await
                    .filter(|state| state.refund_nonce > nonce);
            let after = match (read, before) {
                (Some(read), _) => Some(read),
                (None, Some(before)) => Some(expected_after_refund(refund, &before)),
                (None, None) => None,
            };
            // What the escrow says it refunded; else what the balance lost.
            let refunded =
                onchain::refunded_amount(&receipt, &channel_id).unwrap_or_else(|| {
                    match (before, after) {
                        (Some(before), Some(after)) => before.balance.saturating_sub(after.balance),
                        _ => 0,
                    }
                });
            let channel = after.map(|after| (channel_id, after));
            with_channel(network, payer, tx_hash, refunded, channel)
        };
        let naming = Naming {
            failed: ReasonCode::BATCH_SETTLEMENT_EVM_REFUND_TRANSACTION_FAILED,
            payer: payer.clone(),
        };
        self.send_once(call, (key, naming), plan, success).await
    }

    /// The refund's escrow call: `refundWithSignature`, behind `claimWithSignature` in one
    /// `multicall` when claims come with it; signatures the server left out are this
    /// facilitator's when it holds the channel's receiver-authorizer key.
    async fn refund_call(
        &self,
        refund: &EnrichedRefundPayload,
        channel_id: &ChannelId,
    ) -> Result<Result<Vec<u8>, Refusal>, FacilitatorError> {
        let config = &refund.channel_config;
        let not_configured = || {
            refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_AUTHORIZER_NOT_CONFIGURED,
                "the refund lacks the receiver authorizer's signatures and this facilitator holds no receiver-authorizer key",
            )
        };
        let refund_signature = match (&refund.refund_authorizer_signature, &self.authorizer) {
            (Some(signature), _) => signature.clone(),
            (None, None) => return Ok(Err(not_configured())),
            (None, Some(key)) if key.address() != config.receiver_authorizer => {
                return Ok(Err(refuse(
                    ReasonCode::BATCH_SETTLEMENT_EVM_AUTHORIZER_ADDRESS_MISMATCH,
                    format!(
                        "the channel's receiver authorizer is {}, not this facilitator's {}",
                        config.receiver_authorizer,
                        key.address()
                    ),
                )));
            }
            (None, Some(key)) => sign_refund(
                key.as_ref(),
                &self.domain,
                channel_id,
                refund.refund_nonce,
                refund.amount,
            )
            .await
            .map_err(signing_failed)?,
        };
        let refund_input = IBatchSettlement::refundWithSignatureCall {
            config: config.to_call(),
            amount: refund.amount,
            nonce: refund.refund_nonce,
            receiverAuthorizerSignature: refund_signature,
        }
        .abi_encode();
        let claims = &refund.claims;
        if claims.claims.is_empty() {
            return Ok(Ok(refund_input));
        }
        let claim_signature = match (&claims.claim_authorizer_signature, &self.authorizer) {
            (Some(signature), _) => signature.clone(),
            (None, None) => return Ok(Err(not_configured())),
            (None, Some(key)) => sign_claim_batch(key.as_ref(), &self.domain, &claims.claims)
                .await
                .map_err(signing_failed)?,
        };
        let claim_input = claim_call(claims, claim_signature);
        Ok(Ok(IBatchSettlement::multicallCall {
            data: vec![claim_input.into(), refund_input.into()],
        }
        .abi_encode()))
    }
}

/// The (receiver, token) pairs that `rows` claim for.
pub(super) fn receivers_of(
    rows: &[super::VoucherClaim],
) -> impl Iterator<Item = (Address, Address)> + '_ {
    rows.iter()
        .map(|row| (row.voucher.channel.receiver, row.voucher.channel.token))
}

/// `claimWithSignature(rows, signature)` for `claim`.
fn claim_call(claim: &ClaimPayload, signature: Bytes) -> Vec<u8> {
    IBatchSettlement::claimWithSignatureCall {
        voucherClaims: onchain::claim_rows(&claim.claims),
        authorizerSignature: signature,
    }
    .abi_encode()
}

/// What the claims coming with `refund` leave claimed on `channel_id`: the most any of its
/// rows claims, or what was claimed before.
fn claimed_after(
    refund: &EnrichedRefundPayload,
    before: &ChannelState,
    channel_id: &ChannelId,
    domain: &super::BatchDomain,
) -> u128 {
    refund
        .claims
        .claims
        .iter()
        .filter(|row| domain.channel_id(&row.voucher.channel) == *channel_id)
        .map(|row| row.total_claimed)
        .fold(before.total_claimed, u128::max)
}

/// What `refundWithSignature` would return after the claims coming with it, when that can be
/// told: none when the claims pass the balance (the simulation judges) or the amount is zero.
fn refundable(
    refund: &EnrichedRefundPayload,
    before: &ChannelState,
    channel_id: &ChannelId,
    domain: &super::BatchDomain,
) -> Option<u128> {
    let claimed = claimed_after(refund, before, channel_id, domain);
    if claimed > before.balance || refund.amount == 0 {
        return None;
    }
    Some(refund.amount.min(before.balance - claimed))
}

/// The channel after `refund` as computed from its state before, when the node does not show
/// it yet: the claims made, the refund paid, the nonce used.
fn expected_after_refund(refund: &EnrichedRefundPayload, before: &ChannelState) -> ChannelState {
    let last = refund.claims.claims.last().map(|row| row.total_claimed);
    let claimed = last.unwrap_or_default().max(before.total_claimed);
    let available = before.balance.saturating_sub(claimed);
    ChannelState {
        balance: before.balance - refund.amount.min(available),
        total_claimed: claimed,
        withdraw_requested_at: 0,
        refund_nonce: before.refund_nonce + U256::from(1),
    }
}
