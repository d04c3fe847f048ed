//! Sending settlement transactions from one signer without waiting for receipts.
//!
//! Nonces are allocated locally, and a transaction is signed (so its hash is known) before it
//! is broadcast: a caller can record the hash durably in between, while it holds the
//! [`SendSlot`]. Slots are handed out one at a time, so transactions reach the node in nonce
//! order and a refused broadcast gives its nonce back instead of leaving a gap.
//!
//! A transaction left unmined because its fees are too low is replaced on the same nonce
//! ([`ExactEvmScheme::replacement`]): the same call with fees raised by at least an eighth,
//! never above the configured cap, so at most one of them can ever be mined. [`fees`] prices
//! transactions and their replacements, [`broadcast`] hands them to the node, [`tracking`]
//! asks the chain where a sent transaction stands.
//!
//! Where the node offers `eth_sendRawTransactionSync` (EIP-7966) and mines at once (a dev chain
//! on automine, a sequencer with instant inclusion), a broadcast made while no other settlement
//! waits for the signer comes back with the receipt, and no receipt poll is needed. The send
//! slot is held until the node answers, so under load (others waiting) broadcasts do not wait
//! for mining and the pipeline stays full, and the first sync broadcast not mined within
//! [`SYNC_SEND_PATIENCE`] turns sync sends off for the chain: on a chain with block times the
//! next nonce is not held back for a whole block.

mod broadcast;
mod fees;
mod lease;
mod tracking;

pub use broadcast::{BroadcastError, SYNC_SEND_PATIENCE, Sent};
use broadcast::{SyncSend, send_raw, send_raw_sync};
use fees::{FeeCalls, Fees, bumped_fees};
pub use lease::{NonceLease, NonceLeases};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alloy::consensus::{TxEnvelope, TypedTransaction};
use alloy::eips::eip2718::{Decodable2718, Encodable2718};
use alloy::network::{Ethereum, NetworkTransactionBuilder, NetworkWallet, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::client::{BatchRequest, Waiter};
use alloy::rpc::json_rpc::RpcError;
use alloy::rpc::types::{BlockNumberOrTag, TransactionReceipt, TransactionRequest};
use alloy::sol_types::{SolCall, SolEvent};
use alloy::transports::TransportError;
use tokio::sync::MutexGuard;
use x402_proto::ReasonCode;

use crate::abi::IEip3009;
use crate::chain::PollBackoff;
use crate::error::{SettleError, reason_for_revert};
use crate::node_error::NodeRefusal;
use crate::scheme::{ExactEvmScheme, Settlement, VerifiedPayment, settlement_call};

/// How long fetched gas fees are reused before asking the node again.
const FEE_TTL: Duration = Duration::from_secs(2);

/// Gas for `transferWithAuthorization` with an ECDSA signature (66k–84k seen on USDC).
const ECDSA_TRANSFER_GAS_LIMIT: u64 = 200_000;
/// Gas when the payer is a contract wallet validating through EIP-1271.
const CONTRACT_WALLET_TRANSFER_GAS_LIMIT: u64 = 500_000;
/// Gas when a counterfactual wallet is deployed in the same transaction (wallet factories
/// use roughly 100k–400k for the deployment).
const DEPLOY_AND_TRANSFER_GAS_LIMIT: u64 = 1_500_000;

/// The signer's send queue: its state, and how many senders wait for it.
#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    state: tokio::sync::Mutex<SenderState>,
    waiting: AtomicUsize,
}

/// Counts a sender waiting for the queue while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The signer's view of its own transactions: the next nonce and recent fees.
#[derive(Debug, Default)]
pub(crate) struct SenderState {
    /// `None` until read from the node, and again after anything that may have desynced it.
    next_nonce: Option<u64>,
    fees: Option<(Fees, Instant)>,
    sync_send: SyncSend,
}

/// The gas limit of the transaction settling `payment`. A fixed limit instead of an estimate:
/// verify has just simulated the transfer (with this limit, for a payer whose code runs in it),
/// so estimating again costs a round trip and only hides races (which then surface as a mined
/// revert, reported with its hash).
pub(crate) fn settlement_gas_limit(payment: &VerifiedPayment) -> u64 {
    if payment.wallet_deployment().is_some() {
        DEPLOY_AND_TRANSFER_GAS_LIMIT
    } else if payment.is_contract_payer() {
        CONTRACT_WALLET_TRANSFER_GAS_LIMIT
    } else {
        ECDSA_TRANSFER_GAS_LIMIT
    }
}

/// The node could not be asked: `error` says why.
fn chain_unavailable(error: impl std::fmt::Display) -> SettleError {
    SettleError::ChainUnavailable {
        detail: error.to_string(),
    }
}

/// A settlement transaction signed and not yet broadcast: its hash is final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedSettlement {
    /// The transaction hash.
    pub tx_hash: B256,
    /// The EIP-2718 encoded transaction, ready for `eth_sendRawTransaction`.
    pub raw: Bytes,
    /// The sender's nonce it uses.
    pub signer_nonce: u64,
}

/// What a transfer must look like on chain to count as settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferExpectation {
    /// The token.
    pub asset: Address,
    /// The payer.
    pub from: Address,
    /// The payee.
    pub to: Address,
    /// The amount, in atomic units.
    pub value: U256,
}

impl VerifiedPayment {
    /// The Transfer log that settling this payment must produce.
    pub fn expectation(&self) -> TransferExpectation {
        let auth = &self.payload().authorization;
        TransferExpectation {
            asset: self.asset(),
            from: auth.from,
            to: auth.to,
            value: auth.value,
        }
    }
}

/// What [`ExactEvmScheme::replacement`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replacement {
    /// A replacement signed and not yet broadcast: same nonce and call, higher fees.
    Signed(SignedSettlement),
    /// Raising the fees enough to replace the transaction would pass the cap.
    AtCap {
        /// The `maxFeePerGas` the transaction offers now, in wei.
        max_fee_per_gas: u128,
        /// The cap, in wei.
        cap: u128,
    },
}

/// Where a transaction stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxStatus {
    /// Mined: the settlement, or why it failed (reverted, or no matching Transfer).
    Mined(Result<Settlement, SettleError>),
    /// The node knows it and it is not mined yet.
    InPool,
    /// The node does not know it (never arrived, or dropped).
    Unknown,
}

/// The right to send the signer's next transaction. While it lives, no other transaction is
/// signed (by this process, or by another instance sharing the signer through
/// [`NonceLeases`]); dropping it without a successful broadcast leaves the nonce for the next
/// one.
#[derive(Debug)]
pub struct SendSlot<'a> {
    scheme: &'a ExactEvmScheme,
    state: MutexGuard<'a, SenderState>,
    nonce: u64,
    fees: Fees,
    /// The shared record's lease, when the signer is shared by several instances.
    lease: Option<Box<dyn NonceLease>>,
}

impl ExactEvmScheme {
    /// Waits for the signer's next nonce, reading it (and gas fees, when stale) from the node
    /// in one batch when it is not known.
    pub async fn reserve_send(&self) -> Result<SendSlot<'_>, SettleError> {
        let queue = self.send_queue();
        let mut state = {
            let _waiting = Waiting::new(&queue.waiting);
            queue.state.lock().await
        };
        // Shared with other instances: wait for the shared record's lease too, then read the
        // node's pending count under it (another instance may have sent since).
        let lease = match self.nonce_leases() {
            Some(leases) => {
                let _waiting = Waiting::new(&queue.waiting);
                let lease = leases
                    .lease(self.chain_id(), self.signer_address())
                    .await
                    .map_err(|detail| SettleError::NonceLeaseUnavailable { detail })?;
                state.next_nonce = None;
                Some(lease)
            }
            None => None,
        };
        let fees_fresh = state
            .fees
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() < FEE_TTL);
        if state.next_nonce.is_none() || !fees_fresh {
            let mut batch = alloy::rpc::client::BatchRequest::new(self.provider().client());
            let count = batch
                .add_call::<_, U256>(
                    "eth_getTransactionCount",
                    &(self.signer_address(), BlockNumberOrTag::Pending),
                )
                .map_err(chain_unavailable)?;
            let fees = FeeCalls::add(&mut batch)?;
            let probe = (state.sync_send == SyncSend::Unknown)
                .then(|| {
                    batch.add_call::<_, serde_json::Value>(
                        "eth_sendRawTransactionSync",
                        &(Bytes::new(),),
                    )
                })
                .transpose()
                .map_err(chain_unavailable)?;
            batch.send().await.map_err(chain_unavailable)?;
            if let Some(probe) = probe {
                state.sync_send = SyncSend::from_probe(&probe.await);
                tracing::debug!(network = %self.network(), sync_send = ?state.sync_send, "asked the node for eth_sendRawTransactionSync");
            }
            let count = count.await.map_err(chain_unavailable)?;
            let fees = fees.fees().await?;
            if state.next_nonce.is_none() {
                state.next_nonce = Some(count.saturating_to());
            }
            state.fees = Some((fees, Instant::now()));
        }
        let mut nonce = state.next_nonce.unwrap_or_default();
        if let Some(lease) = &lease {
            nonce = nonce.max(lease.recorded_next());
        }
        let fees = state.fees.map(|(fees, _)| fees).unwrap_or(Fees {
            max_fee_per_gas: 1,
            max_priority_fee_per_gas: 0,
        });
        Ok(SendSlot {
            scheme: self,
            state,
            nonce,
            fees,
            lease,
        })
    }

    /// `call` as this signer sends a transaction now: from the signer, with `gas_limit` and
    /// the fees it would offer (the send queue's when fresh, else the node's). Simulated, it
    /// sees what the sent transaction will (`gasleft()`, `tx.gasprice`, `tx.origin`): a payer's
    /// contract cannot accept the simulation and refuse the transaction by telling them apart.
    pub(crate) async fn as_sent(
        &self,
        call: TransactionRequest,
        gas_limit: u64,
    ) -> Result<TransactionRequest, SettleError> {
        let cached = self.send_queue().state.try_lock().ok().and_then(|state| {
            state
                .fees
                .filter(|(_, at)| at.elapsed() < FEE_TTL)
                .map(|(fees, _)| fees)
        });
        let fees = match cached {
            Some(fees) => fees,
            None => {
                let mut batch = BatchRequest::new(self.provider().client());
                let fees = FeeCalls::add(&mut batch)?;
                batch.send().await.map_err(chain_unavailable)?;
                fees.fees().await?
            }
        };
        Ok(call
            .with_from(self.signer_address())
            .with_gas_limit(gas_limit)
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas))
    }

    /// Forgets the local nonce, so the next slot reads it from the node again.
    pub async fn resync_nonce(&self) {
        self.send_queue().state.lock().await.next_nonce = None;
    }

    /// Sends a verified payment and waits a bounded time for its receipt: reserve, sign,
    /// broadcast, wait. For callers that keep no record of their own.
    pub async fn settle(&self, payment: VerifiedPayment) -> Result<Settlement, SettleError> {
        let slot = self.reserve_send().await?;
        let signed = slot.sign(&payment).await?;
        let expected = payment.expectation();
        match slot.broadcast(&signed).await {
            Ok(sent) => {
                if let Some(outcome) = sent.outcome(&expected) {
                    return outcome;
                }
            }
            Err(error) => {
                let error = error.into_settle_error(signed.tx_hash);
                if !matches!(error, SettleError::Pending { .. }) {
                    return Err(error);
                }
            }
        }
        tracing::debug!(tx_hash = %signed.tx_hash, payer = %payment.payer(), "settlement sent");
        self.wait_for_outcome(signed.tx_hash, &expected, self.receipt_timeout())
            .await
    }

    /// Polls for the receipt of `tx_hash` at the scheme's interval for at most `wait`.
    /// Gives [`SettleError::Pending`] when it is not mined by then.
    pub async fn wait_for_outcome(
        &self,
        tx_hash: B256,
        expected: &TransferExpectation,
        wait: Duration,
    ) -> Result<Settlement, SettleError> {
        let started = Instant::now();
        let mut backoff = PollBackoff::new(self.poll_interval());
        loop {
            match self.mined_outcome(tx_hash, expected).await {
                Ok(Some(outcome)) => return outcome,
                Ok(None) => {}
                Err(error) => tracing::debug!(%tx_hash, %error, "receipt poll failed"),
            }
            if started.elapsed() >= wait {
                return Err(SettleError::Pending { tx_hash });
            }
            tokio::time::sleep(backoff.next_wait()).await;
        }
    }
}

impl SendSlot<'_> {
    /// The nonce this slot's transaction uses.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// Builds and signs the settlement transaction for `payment` with this slot's nonce.
    pub async fn sign(&self, payment: &VerifiedPayment) -> Result<SignedSettlement, SettleError> {
        let scheme = self.scheme;
        if payment.network().evm_chain_id() != Some(scheme.chain_id()) {
            return Err(SettleError::Rejected {
                code: ReasonCode::INVALID_NETWORK,
                reason: format!(
                    "payment was verified for {}, not {}",
                    payment.network(),
                    scheme.network()
                ),
            });
        }
        let (to, input) = settlement_call(payment);
        self.sign_call(to, input, settlement_gas_limit(payment))
            .await
    }

    /// Builds and signs a transaction calling `to` with `input` and `gas_limit`, with this
    /// slot's nonce: for settlements of other schemes on this chain and signer.
    pub async fn sign_call(
        &self,
        to: Address,
        input: impl Into<Bytes>,
        gas_limit: u64,
    ) -> Result<SignedSettlement, SettleError> {
        let scheme = self.scheme;
        let request = TransactionRequest::default()
            .with_from(scheme.signer_address())
            .with_to(to)
            .with_input(input.into())
            .with_gas_limit(gas_limit)
            .with_nonce(self.nonce)
            .with_chain_id(scheme.chain_id())
            .with_max_fee_per_gas(self.fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(self.fees.max_priority_fee_per_gas);
        let envelope: TxEnvelope =
            request
                .build(scheme.wallet())
                .await
                .map_err(|e| SettleError::Rejected {
                    code: ReasonCode::UNEXPECTED_SETTLE_ERROR,
                    reason: format!("signing the settlement transaction: {e}"),
                })?;
        Ok(SignedSettlement {
            tx_hash: *envelope.tx_hash(),
            raw: envelope.encoded_2718().into(),
            signer_nonce: self.nonce,
        })
    }

    /// Broadcasts `signed`, which this slot signed. On success (or when the node already had
    /// it) the nonce is consumed. A refusal gives the nonce back; a broadcast that may or may
    /// not have arrived makes the next slot read the nonce from the node.
    ///
    /// Where the node mines at once, the answer carries the receipt ([`Sent::Mined`]).
    pub async fn broadcast(mut self, signed: &SignedSettlement) -> Result<Sent, BroadcastError> {
        debug_assert_eq!(signed.signer_nonce, self.nonce);
        // With others waiting for the slot, waiting here for the block would hold them back.
        let alone = self.scheme.send_queue().waiting.load(Ordering::SeqCst) == 0;
        let result = if self.state.sync_send == SyncSend::On && alone {
            let sent = send_raw_sync(self.scheme, &signed.raw).await;
            if matches!(sent, Err(BroadcastError::Uncertain { .. })) {
                tracing::info!(network = %self.scheme.network(), patience = ?SYNC_SEND_PATIENCE, "the node did not mine a transaction at once; broadcasting without waiting for receipts from now on");
                self.state.sync_send = SyncSend::Off;
            }
            sent
        } else {
            send_raw(self.scheme, &signed.raw)
                .await
                .map(|()| Sent::Pooled)
        };
        match &result {
            Ok(_) => self.state.next_nonce = Some(self.nonce + 1),
            Err(BroadcastError::Refused {
                nonce_used: true, ..
            })
            | Err(BroadcastError::Uncertain { .. }) => self.state.next_nonce = None,
            Err(refused @ BroadcastError::Refused { .. }) => {
                if refused.is_underpriced() {
                    self.state.fees = None;
                }
            }
        }
        // The shared record moves past the nonce when the node has the transaction (or may
        // have it: it is recorded, and tracking rebroadcasts it until it is mined); after a
        // refusal the lease is let go of as it was, and the next holder signs the nonce again.
        if let Some(lease) = self.lease.take()
            && matches!(result, Ok(_) | Err(BroadcastError::Uncertain { .. }))
            && let Err(detail) = lease.consume(self.nonce).await
        {
            // Harmless: the next holder reads the node's pending count, which counts this one.
            tracing::warn!(nonce = self.nonce, %detail, "could not move the shared nonce record");
        }
        result
    }
}
