//! What a node's JSON-RPC error means, decided in one place. Nodes word the same refusal
//! differently (geth, reth, erigon, anvil, besu, nethermind); every caller asks this
//! classifier instead of matching strings of its own.

/// What an error answer from `eth_sendRawTransaction` or `eth_call` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRefusal {
    /// The node already has this very transaction: not a failure.
    AlreadyKnown,
    /// The sender's nonce was used by another transaction.
    NonceUsed,
    /// The fees offered are too low (below the base fee, the pool's minimum, or what a
    /// replacement must offer); the nonce is still free.
    Underpriced,
    /// The EVM reverted the call.
    Reverted,
    /// Anything else (out of gas money, a rate limit, an unknown block, …).
    Other,
}

impl NodeRefusal {
    /// Classifies an error answer by its code, message, and whether it carries revert data.
    pub fn classify(code: i64, message: &str, has_revert_data: bool) -> Self {
        let message = message.to_ascii_lowercase();
        let says = |needles: &[&str]| needles.iter().any(|n| message.contains(n));
        if says(&[
            "already known",
            "known transaction",
            "already imported",
            "alreadyknown",
        ]) {
            Self::AlreadyKnown
        } else if says(&[
            "nonce too low",
            "nonce has already been used",
            "oldnonce",
            "noncetoolow",
        ]) {
            Self::NonceUsed
        } else if says(&[
            "underpriced",
            "fee cap",
            "less than block base fee",
            "max fee per gas less than",
            "below configured minimum gas price",
            "feetoolow",
            "gas price is too low",
        ]) {
            Self::Underpriced
        } else if has_revert_data || code == 3 || says(&["revert"]) {
            Self::Reverted
        } else {
            Self::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NodeRefusal::{self, *};

    /// Messages as nodes send them without revert data: (code, message, what they mean).
    const TABLE: &[(i64, &str, NodeRefusal)] = &[
        (-32000, "already known", AlreadyKnown),
        (-32010, "Known transaction", AlreadyKnown),
        (-32003, "transaction already imported", AlreadyKnown),
        (-32010, "AlreadyKnown", AlreadyKnown),
        (-32000, "nonce too low: next nonce 5, tx nonce 3", NonceUsed),
        (-32003, "Nonce too low", NonceUsed),
        (-32000, "nonce has already been used", NonceUsed),
        (-32010, "OldNonce", NonceUsed),
        (-32000, "replacement transaction underpriced", Underpriced),
        (
            -32000,
            "transaction underpriced: tip needed 1, tip permitted 0",
            Underpriced,
        ),
        (
            -32000,
            "max fee per gas less than block base fee: address 0x1, maxFeePerGas: 1, baseFee: 7",
            Underpriced,
        ),
        (-32000, "fee cap less than block base fee", Underpriced),
        (
            -32009,
            "Gas price below configured minimum gas price",
            Underpriced,
        ),
        (-32010, "FeeTooLow", Underpriced),
        (-32000, "execution reverted", Reverted),
        (
            -32015,
            "VM Exception while processing transaction: revert",
            Reverted,
        ),
        (-32000, "insufficient funds for gas * price + value", Other),
        (429, "Too Many Requests", Other),
        (-32000, "header not found", Other),
    ];

    #[test]
    fn real_node_messages_are_classified() {
        for (code, message, expected) in TABLE {
            assert_eq!(
                NodeRefusal::classify(*code, message, false),
                *expected,
                "{code} {message:?}"
            );
        }
        // A revert that came with its revert data.
        assert_eq!(
            NodeRefusal::classify(
                3,
                "execution reverted: FiatTokenV2: invalid signature",
                true
            ),
            Reverted
        );
    }
}
