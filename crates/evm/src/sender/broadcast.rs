//! Handing a signed transaction to the node: plainly, or with `eth_sendRawTransactionSync`
//! where the node serves it, and how its answer is read.

use super::*;

/// How long a sync broadcast may hold the send slot before sync sends are turned off.
pub const SYNC_SEND_PATIENCE: Duration = Duration::from_millis(200);

/// The JSON-RPC error code of a method the node does not serve.
const METHOD_NOT_FOUND: i64 = -32601;

/// Whether broadcasts wait for the receipt in the same call (`eth_sendRawTransactionSync`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum SyncSend {
    /// Not asked yet: the node is asked with the first nonce read.
    #[default]
    Unknown,
    /// The node serves it and has mined every sync broadcast in time.
    On,
    /// The node does not serve it, or a sync broadcast was not mined in time.
    Off,
}

impl SyncSend {
    /// What the node's answer to a probe (`eth_sendRawTransactionSync("0x")`) says: every
    /// error but "method not found" means it parsed the call and serves it.
    pub(super) fn from_probe<T>(answer: &Result<T, TransportError>) -> Self {
        match answer {
            Err(RpcError::ErrorResp(payload)) if payload.code != METHOD_NOT_FOUND => Self::On,
            _ => Self::Off,
        }
    }
}

/// Why a broadcast did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BroadcastError {
    /// The node answered and refused the transaction: it is not in its pool.
    #[error("the node refused the transaction: {reason}")]
    Refused {
        /// The node's message.
        reason: String,
        /// The nonce was already used by another transaction of the signer.
        nonce_used: bool,
        /// The node simulated the call and it reverted.
        reverted: bool,
    },
    /// The node could not be reached or did not answer: the transaction may have been sent.
    #[error("the node did not answer the broadcast: {detail}")]
    Uncertain {
        /// The transport error.
        detail: String,
    },
}

impl BroadcastError {
    /// The node refused the transaction for offering too little gas (below the base fee or
    /// the pool's minimum): its nonce is still free, and a replacement with higher fees on it
    /// may go through.
    pub fn is_underpriced(&self) -> bool {
        match self {
            Self::Refused {
                reason,
                nonce_used: false,
                reverted: false,
            } => NodeRefusal::classify(0, reason, false) == NodeRefusal::Underpriced,
            _ => false,
        }
    }

    /// The settle error a caller should report when it gives up on this broadcast.
    pub fn into_settle_error(self, tx_hash: B256) -> SettleError {
        match self {
            Self::Refused {
                reason,
                reverted: true,
                ..
            } => SettleError::Rejected {
                code: reason_for_revert(&reason),
                reason,
            },
            Self::Refused { reason, .. } => SettleError::ChainUnavailable { detail: reason },
            Self::Uncertain { .. } => SettleError::Pending { tx_hash },
        }
    }
}

/// A broadcast the node took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The transaction is in the node's pool (or already was).
    Pooled,
    /// The node mined it before answering: its receipt.
    Mined(Box<TransactionReceipt>),
}

impl Sent {
    /// The settlement's outcome when the transaction is already mined.
    pub fn outcome(
        &self,
        expected: &TransferExpectation,
    ) -> Option<Result<Settlement, SettleError>> {
        match self {
            Self::Pooled => None,
            Self::Mined(receipt) => Some(tracking::judge_receipt(receipt, expected)),
        }
    }
}

pub(super) async fn send_raw(scheme: &ExactEvmScheme, raw: &Bytes) -> Result<(), BroadcastError> {
    let sent: Result<B256, TransportError> = scheme
        .provider()
        .client()
        .request("eth_sendRawTransaction", (raw,))
        .await;
    sent.map(|_| ()).or_else(refusal_or_known)
}

/// `eth_sendRawTransactionSync`, given [`SYNC_SEND_PATIENCE`]: the receipt, or, when it takes
/// longer, [`BroadcastError::Uncertain`] (the transaction may be in the pool; it is tracked).
pub(super) async fn send_raw_sync(
    scheme: &ExactEvmScheme,
    raw: &Bytes,
) -> Result<Sent, BroadcastError> {
    let call = scheme
        .provider()
        .client()
        .request::<_, TransactionReceipt>("eth_sendRawTransactionSync", (raw,));
    match tokio::time::timeout(SYNC_SEND_PATIENCE, call).await {
        Ok(Ok(receipt)) => Ok(Sent::Mined(Box::new(receipt))),
        // Already in the pool from an earlier send: it is followed by receipt polls.
        Ok(Err(error)) => refusal_or_known(error).map(|()| Sent::Pooled),
        Err(_) => Err(BroadcastError::Uncertain {
            detail: format!("not mined within {SYNC_SEND_PATIENCE:?} of a sync send"),
        }),
    }
}

/// How a node's answer to a broadcast that failed is taken: a transaction it already has is
/// sent; a refusal is classified.
fn refusal_or_known(error: TransportError) -> Result<(), BroadcastError> {
    match error {
        RpcError::ErrorResp(payload) => {
            let refusal = NodeRefusal::classify(
                payload.code,
                &payload.message,
                payload.as_revert_data().is_some(),
            );
            if refusal == NodeRefusal::AlreadyKnown {
                return Ok(());
            }
            Err(BroadcastError::Refused {
                nonce_used: refusal == NodeRefusal::NonceUsed,
                reverted: refusal == NodeRefusal::Reverted,
                reason: payload.message.to_string(),
            })
        }
        error => Err(BroadcastError::Uncertain {
            detail: error.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underpriced_refusals_are_told_apart() {
        let refused = |reason: &str, nonce_used: bool| BroadcastError::Refused {
            reason: reason.into(),
            nonce_used,
            reverted: false,
        };
        assert!(refused("replacement transaction underpriced", false).is_underpriced());
        assert!(refused("max fee per gas less than block base fee", false).is_underpriced());
        assert!(refused("transaction underpriced", false).is_underpriced());
        assert!(!refused("nonce too low", true).is_underpriced());
        assert!(!refused("insufficient funds for gas * price + value", false).is_underpriced());
        let uncertain = BroadcastError::Uncertain {
            detail: "underpriced".into(),
        };
        assert!(!uncertain.is_underpriced());
    }
}
