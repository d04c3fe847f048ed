//! One settle call of a Permit2 payment, from the log lookup to its end. A settlement already
//! recorded for the payment's nonce is answered for: its answer, or the outcome of its
//! transaction (waited for), with the amount that transaction moves, and its success only to
//! the request it went to. A new settlement is recorded in the [`SendLog`] before its
//! transaction is broadcast, and ended there with its answer.

use x402_proto::{FacilitatorError, IdempotencyKey, PaymentRequest, ReasonCode, SettleResponse};

use super::log::{
    Ending, Holder, Permit2Nonce, Permit2Send, Recorded, SendLog, SendState, SentSettlement,
};
use super::pending::{PendingSends, Turns};
use super::*;

/// What a Permit2 facilitator keeps of its settlements: where sends are recorded, and the
/// turns that keep one settlement of a payment at a time.
#[derive(Debug, Clone)]
pub(crate) struct Sends {
    log: Arc<dyn SendLog>,
    turns: Arc<Turns>,
}

impl Default for Sends {
    /// Sends remembered in memory ([`PendingSends`]).
    fn default() -> Self {
        Self::new(Arc::new(PendingSends::default()))
    }
}

/// What a scheme's checks decided for a payment with no settlement recorded.
pub(crate) enum Prepared {
    /// Send this settle.
    Send(ProxySettle),
    /// Refused: nothing is sent.
    Refused(Refusal),
    /// Nothing to move (an `upto` usage of zero): a success without a transaction.
    Nothing,
}

/// One settle call: the payment, who asks, and how the scheme names failures.
pub(crate) struct SettleCall<'a> {
    chain: &'a ExactEvmScheme,
    request: &'a PaymentRequest,
    nonce: Permit2Nonce,
    fingerprint: B256,
    deadline: u64,
    payer: Option<String>,
    asker: Holder,
    /// The code of a transaction mined without moving the payment.
    failed: ReasonCode,
    /// The code of a refused broadcast, by the revert it names.
    reason_of: fn(&str) -> Option<ReasonCode>,
}

impl<W: Serialize> Permit2Payload<W> {
    /// A digest of the signed permit on `chain_id`: another payment reusing its nonce (another
    /// token, payee, amount or signature) has another.
    fn fingerprint(&self, chain_id: u64) -> B256 {
        let mut material = chain_id.to_be_bytes().to_vec();
        // The parsed payload written back: one text for every encoding of the same permit.
        material.extend(serde_json::to_vec(self).unwrap_or_default());
        alloy::primitives::keccak256(material)
    }
}

impl Sends {
    /// Sends recorded in `log`.
    pub(crate) fn new(log: Arc<dyn SendLog>) -> Self {
        Self {
            log,
            turns: Arc::default(),
        }
    }

    /// The call settling `payload` (of `request`) on `chain` for the request with `key`.
    pub(crate) fn call<'a, W: Serialize>(
        chain: &'a ExactEvmScheme,
        request: &'a PaymentRequest,
        payload: &Permit2Payload<W>,
        key: Option<&IdempotencyKey>,
        (failed, reason_of): (ReasonCode, fn(&str) -> Option<ReasonCode>),
    ) -> SettleCall<'a> {
        let auth = &payload.permit2_authorization;
        SettleCall {
            chain,
            request,
            nonce: Permit2Nonce {
                chain_id: chain.chain_id(),
                owner: auth.from,
                nonce: auth.nonce,
            },
            fingerprint: payload.fingerprint(chain.chain_id()),
            deadline: u64::try_from(auth.deadline).unwrap_or(u64::MAX),
            payer: Some(auth.from.to_checksum(None)),
            asker: Holder::of(key),
            failed,
            reason_of,
        }
    }

    /// Settles `call`'s payment: in turn with other settlements of it in this process; for
    /// the settlement recorded already, when there is one; otherwise as `fresh` (the scheme's
    /// checks, run only then) decides.
    pub(crate) async fn settle(
        &self,
        call: &SettleCall<'_>,
        fresh: impl Future<Output = Result<Prepared, FacilitatorError>>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let _turn = self.turns.take(call.nonce).await;
        if let Some(answer) = self.recorded(call).await? {
            return Ok(answer);
        }
        match fresh.await? {
            Prepared::Send(settle) => self.send(call, &settle).await,
            Prepared::Refused(refusal) => Ok(call.failure(refusal.code, refusal.message, None)),
            Prepared::Nothing => {
                let network = call.request.wire_network().clone();
                let nothing = SettleResponse::success(network, call.payer.clone(), "");
                Ok(call.with_amount(nothing, U256::ZERO))
            }
        }
    }

    /// The last checks of a Permit2 payment before it is valid: what the log holds for its
    /// nonce ([`Self::recorded_refusal`]), then `settle` simulated as it will be sent.
    pub(crate) async fn final_refusal<W: Serialize>(
        &self,
        chain: &ExactEvmScheme,
        payload: &Permit2Payload<W>,
        failed: ReasonCode,
        settle: ProxySettle,
    ) -> Result<Option<Refusal>, FacilitatorError> {
        match self.recorded_refusal(chain, payload, failed).await? {
            Some(refusal) => Ok(Some(refusal)),
            None => settle.simulate(chain).await,
        }
    }

    /// Why `payload` is not a valid payment any more by what the log holds for its nonce: its
    /// settlement was mined and failed (`failed`; Permit2 left the nonce unspent, but the
    /// payment proved it does not pay, so it must not buy anything again: the payer signs a new
    /// one), or another payment with its nonce was settled or is being settled.
    async fn recorded_refusal<W: Serialize>(
        &self,
        chain: &ExactEvmScheme,
        payload: &Permit2Payload<W>,
        failed: ReasonCode,
    ) -> Result<Option<Refusal>, FacilitatorError> {
        let auth = &payload.permit2_authorization;
        let nonce = Permit2Nonce {
            chain_id: chain.chain_id(),
            owner: auth.from,
            nonce: auth.nonce,
        };
        let Some(record) = self.log.find(&nonce).await? else {
            return Ok(None);
        };
        let newest = record
            .tx_hashes
            .last()
            .map_or_else(String::new, |hash| format!(" (transaction {hash})"));
        Ok(match record.state {
            SendState::Abandoned => None,
            _ if record.fingerprint != payload.fingerprint(chain.chain_id()) => Some(refuse(
                ReasonCode::PERMIT2_INVALID_NONCE,
                format!(
                    "another payment with this permit's nonce was settled or is being settled{newest}"
                ),
            )),
            SendState::Ended(answer) if !answer.success => Some(refuse(
                failed,
                format!(
                    "this payment's settlement failed on chain{newest}: {}; it pays nothing \
                     and is not accepted again, sign a new payment",
                    answer.error_message.as_deref().unwrap_or("reverted")
                ),
            )),
            _ => None,
        })
    }

    /// The answer for a settlement of `call`'s payment already recorded, or `None` when there
    /// is none (or it was abandoned) and the payment may be settled.
    async fn recorded(
        &self,
        call: &SettleCall<'_>,
    ) -> Result<Option<SettleResponse>, FacilitatorError> {
        match self.log.find(&call.nonce).await? {
            Some(record) => self.answer_for(call, record).await,
            None => Ok(None),
        }
    }

    async fn answer_for(
        &self,
        call: &SettleCall<'_>,
        record: SentSettlement,
    ) -> Result<Option<SettleResponse>, FacilitatorError> {
        let newest = record.tx_hashes.last().copied();
        if record.fingerprint != call.fingerprint {
            return Ok(Some(call.failure(
                ReasonCode::PERMIT2_INVALID_NONCE,
                "another payment with this permit's nonce was settled or is being settled",
                newest,
            )));
        }
        let answer = match record.state {
            SendState::Abandoned => return Ok(None),
            SendState::Ended(answer) if answer.success => {
                if self.log.hand_out(&call.nonce, &call.asker).await? {
                    call.with_amount(answer, record.transfer.value)
                } else {
                    call.taken(record.holder.as_ref(), newest)
                }
            }
            SendState::Ended(answer) => call.with_amount(answer, U256::ZERO),
            SendState::Sent => match (record.holder.as_ref(), newest) {
                (Some(holder), _) if *holder != call.asker => call.taken(Some(holder), newest),
                (_, Some(tx_hash)) => {
                    let transfer = &record.transfer;
                    let wait = call.chain.receipt_timeout();
                    let outcome = call.chain.wait_for_outcome(tx_hash, transfer, wait).await;
                    self.conclude(call, transfer, outcome).await?
                }
                (_, None) => call.failure(
                    ReasonCode::SETTLEMENT_PENDING,
                    "the settlement is being prepared; settle again for its outcome",
                    None,
                ),
            },
        };
        Ok(Some(answer))
    }

    /// Sends `settle` for `call`: signed, recorded, broadcast, and waited for (within the
    /// chain's receipt timeout; then `settlement_pending`).
    async fn send(
        &self,
        call: &SettleCall<'_>,
        settle: &ProxySettle,
    ) -> Result<SettleResponse, FacilitatorError> {
        let chain = call.chain;
        let slot = chain.reserve_send().await.map_err(unavailable)?;
        let signed = slot
            .sign_call(settle.proxy, settle.input.clone(), SETTLE_GAS_LIMIT)
            .await
            .map_err(unavailable)?;
        let send = Permit2Send {
            nonce: call.nonce,
            fingerprint: call.fingerprint,
            transfer: settle.transfer,
            deadline: call.deadline,
            request: call.request.clone(),
            holder: call.asker.is_keyed().then(|| call.asker.clone()),
            signer: chain.signer_address(),
            tx: signed.clone(),
        };
        // Recorded before the broadcast: whatever happens next, the transaction is found
        // again. A slot dropped without a broadcast gives its nonce back.
        match self.log.record(&send).await? {
            Recorded::Fresh => {}
            Recorded::Existing(record) => {
                drop(slot);
                return self.answer_for(call, *record).await?.ok_or_else(|| {
                    FacilitatorError::Unavailable(
                        "the settlement was taken over concurrently; settle again".into(),
                    )
                });
            }
        }
        let expected = &settle.transfer;
        let wait = || chain.wait_for_outcome(signed.tx_hash, expected, chain.receipt_timeout());
        let outcome = match slot.broadcast(&signed).await {
            Ok(sent) => match sent.outcome(expected) {
                Some(outcome) => outcome,
                None => wait().await,
            },
            Err(BroadcastError::Uncertain { .. }) => wait().await,
            Err(BroadcastError::Refused { reason, .. }) => {
                let code = (call.reason_of)(&reason).unwrap_or_else(|| call.failed.clone());
                let answer = call.failure(code, reason, None);
                self.log
                    .finish(&call.nonce, Ending::Abandoned, &answer)
                    .await?;
                return Ok(answer);
            }
        };
        self.conclude(call, expected, outcome).await
    }

    /// The answer for a sent settlement's `outcome`, written down once it is mined.
    async fn conclude(
        &self,
        call: &SettleCall<'_>,
        transfer: &TransferExpectation,
        outcome: Result<crate::Settlement, crate::SettleError>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = call.request.wire_network().clone();
        match outcome {
            Ok(settled) => {
                let tx_hash = settled.tx_hash;
                let answer =
                    SettleResponse::success(network, call.payer.clone(), tx_hash.to_string());
                let answer = call.with_amount(answer, transfer.value);
                self.log
                    .finish(&call.nonce, Ending::Confirmed, &answer)
                    .await?;
                if self.log.hand_out(&call.nonce, &call.asker).await? {
                    Ok(answer)
                } else {
                    Ok(call.taken(None, Some(tx_hash)))
                }
            }
            Err(crate::SettleError::Pending { tx_hash }) => Ok(call.failure(
                ReasonCode::SETTLEMENT_PENDING,
                "sent, not confirmed yet; settle again with the same payment for its outcome",
                Some(tx_hash),
            )),
            Err(error) => {
                let answer = call.failure(call.failed.clone(), error.to_string(), error.tx_hash());
                self.log
                    .finish(&call.nonce, Ending::Failed, &answer)
                    .await?;
                Ok(answer)
            }
        }
    }
}

impl SettleCall<'_> {
    /// A failure answer (nothing moved for this call), naming `tx_hash` when given.
    pub(crate) fn failure(
        &self,
        code: ReasonCode,
        message: impl Into<String>,
        tx_hash: Option<B256>,
    ) -> SettleResponse {
        let answer = SettleResponse::failure(
            self.request.wire_network().clone(),
            code,
            message,
            self.payer.clone(),
            tx_hash.map(|hash| hash.to_string()),
        );
        self.with_amount(answer, U256::ZERO)
    }

    /// `answer` naming what it moved: `moved` for a success, nothing for a failure.
    pub(crate) fn with_amount(&self, mut answer: SettleResponse, moved: U256) -> SettleResponse {
        let moved = if answer.success { moved } else { U256::ZERO };
        answer.amount = Some(TokenAmount(moved));
        answer
    }

    /// The refusal for a call whose payment's success went to `holder` (when known): a
    /// request with an idempotency key learns the payment bought something else; after a
    /// success handed to a call without a key, the permit is spent, as the chain says.
    fn taken(&self, holder: Option<&Holder>, tx_hash: Option<B256>) -> SettleResponse {
        if holder.is_some_and(|holder| !holder.is_keyed()) {
            return self.failure(
                ReasonCode::PERMIT2_INVALID_NONCE,
                "the permit's nonce is spent: its settlement went to another call",
                tx_hash,
            );
        }
        self.failure(
            ReasonCode::DUPLICATE_SETTLEMENT,
            "this payment was settled for another request; sign a new payment for this one",
            tx_hash,
        )
    }
}
