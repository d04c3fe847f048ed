//! Where a sent settlement transaction stands: mined (and whether it moved the payment), in
//! the pool, replaced with higher fees, or unknown to the node.

use super::*;

impl ExactEvmScheme {
    /// Where a settlement transaction stands, checking that a mined one moved the payment.
    /// One round trip when mined, two when not.
    pub async fn transaction_status(
        &self,
        tx_hash: B256,
        expected: &TransferExpectation,
    ) -> Result<TxStatus, SettleError> {
        let unavailable = |e: TransportError| SettleError::ChainUnavailable {
            detail: e.to_string(),
        };
        if let Some(receipt) = self
            .provider()
            .get_transaction_receipt(tx_hash)
            .await
            .map_err(unavailable)?
        {
            return Ok(TxStatus::Mined(judge_receipt(&receipt, expected)));
        }
        let known = self
            .provider()
            .get_transaction_by_hash(tx_hash)
            .await
            .map_err(unavailable)?;
        Ok(if known.is_some() {
            TxStatus::InPool
        } else {
            TxStatus::Unknown
        })
    }

    /// The receipt of a transaction, judged, or `None` while it is not mined.
    pub async fn mined_outcome(
        &self,
        tx_hash: B256,
        expected: &TransferExpectation,
    ) -> Result<Option<Result<Settlement, SettleError>>, SettleError> {
        let receipt = self
            .provider()
            .get_transaction_receipt(tx_hash)
            .await
            .map_err(chain_unavailable)?;
        Ok(receipt.map(|receipt| judge_receipt(&receipt, expected)))
    }

    /// Signs a replacement for the settlement transaction `raw` (one this scheme signed):
    /// the same nonce, call and gas limit, with both fees raised by at least an eighth, or to
    /// what the node suggests now when that is more, never above the policy's cap. Broadcast
    /// it with [`Self::rebroadcast`] once recorded.
    pub async fn replacement(&self, raw: &Bytes) -> Result<Replacement, SettleError> {
        let malformed = |reason: String| SettleError::Rejected {
            code: ReasonCode::UNEXPECTED_SETTLE_ERROR,
            reason,
        };
        let envelope = TxEnvelope::decode_2718(&mut raw.as_ref())
            .map_err(|e| malformed(format!("the transaction to replace does not decode: {e}")))?;
        let TxEnvelope::Eip1559(signed) = envelope else {
            return Err(malformed(
                "only EIP-1559 settlement transactions can be replaced".into(),
            ));
        };
        let mut tx = signed.tx().clone();
        if tx.chain_id != self.chain_id() {
            return Err(malformed(format!(
                "the transaction to replace is for chain {}, not {}",
                tx.chain_id,
                self.chain_id()
            )));
        }
        let old = Fees {
            max_fee_per_gas: tx.max_fee_per_gas,
            max_priority_fee_per_gas: tx.max_priority_fee_per_gas,
        };
        let cap = self.fee_bump().max_fee_per_gas_cap;
        let current = self.current_fees().await?;
        let Some(fees) = bumped_fees(old, current, cap) else {
            return Ok(Replacement::AtCap {
                max_fee_per_gas: old.max_fee_per_gas,
                cap,
            });
        };
        tx.max_fee_per_gas = fees.max_fee_per_gas;
        tx.max_priority_fee_per_gas = fees.max_priority_fee_per_gas;
        let nonce = tx.nonce;
        let envelope = NetworkWallet::<Ethereum>::sign_transaction_from(
            self.wallet(),
            self.signer_address(),
            TypedTransaction::Eip1559(tx),
        )
        .await
        .map_err(|e| malformed(format!("signing the replacement transaction: {e}")))?;
        Ok(Replacement::Signed(SignedSettlement {
            tx_hash: *envelope.tx_hash(),
            raw: envelope.encoded_2718().into(),
            signer_nonce: nonce,
        }))
    }

    /// The fees a new transaction would offer now, asked from the node (one round trip).
    pub(super) async fn current_fees(&self) -> Result<Fees, SettleError> {
        let mut batch = alloy::rpc::client::BatchRequest::new(self.provider().client());
        let fees = FeeCalls::add(&mut batch)?;
        batch.send().await.map_err(chain_unavailable)?;
        fees.fees().await
    }

    /// Sends an already signed transaction again (after a restart, or when the node dropped
    /// it). The nonce it uses was allocated when it was signed.
    pub async fn rebroadcast(&self, raw: &Bytes) -> Result<(), BroadcastError> {
        send_raw(self, raw).await
    }

    /// How many transactions of the signer are mined (its next nonce as of the latest block).
    pub async fn mined_nonce(&self) -> Result<u64, SettleError> {
        self.provider()
            .get_transaction_count(self.signer_address())
            .latest()
            .await
            .map_err(chain_unavailable)
    }

    /// Whether `payer`'s authorization `nonce` has been used (or canceled) on `asset`.
    pub async fn authorization_used(
        &self,
        asset: Address,
        payer: Address,
        nonce: B256,
    ) -> Result<bool, SettleError> {
        let call = IEip3009::authorizationStateCall {
            authorizer: payer,
            nonce,
        };
        let tx = TransactionRequest::default()
            .with_to(asset)
            .with_input(call.abi_encode());
        let out = self.provider().call(tx).await.map_err(chain_unavailable)?;
        IEip3009::authorizationStateCall::abi_decode_returns(&out).map_err(|e| {
            SettleError::ChainUnavailable {
                detail: format!("authorizationState answered badly: {e}"),
            }
        })
    }
}

/// A mined receipt is a settlement only if it succeeded and the token logged the expected
/// `Transfer(from, to, value)`: status 1 alone does not prove that money moved.
pub(super) fn judge_receipt(
    receipt: &alloy::rpc::types::TransactionReceipt,
    expected: &TransferExpectation,
) -> Result<Settlement, SettleError> {
    let tx_hash = receipt.transaction_hash;
    if !receipt.status() {
        return Err(SettleError::Reverted { tx_hash });
    }
    let transferred = receipt.inner.logs().iter().any(|log| {
        log.address() == expected.asset
            && IEip3009::Transfer::decode_log_data(&log.inner.data).is_ok_and(|t| {
                t.from == expected.from && t.to == expected.to && t.value == expected.value
            })
    });
    if !transferred {
        return Err(SettleError::TransferEventMissing { tx_hash });
    }
    Ok(Settlement {
        tx_hash,
        block_number: receipt.block_number,
        payer: expected.from,
    })
}
