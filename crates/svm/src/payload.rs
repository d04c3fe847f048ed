//! The wire payload of `exact` on Solana and its decoding.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use solana_message::VersionedMessage;
use solana_transaction::versioned::VersionedTransaction;

use crate::VerifyError;

/// The scheme's `payload` object: `{"transaction": "<base64 wire transaction>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExactSvmPayload {
    /// The partially signed transaction, base64 of its wire bytes.
    pub transaction: String,
}

impl ExactSvmPayload {
    /// The payload carrying `transaction`.
    pub fn of(transaction: &VersionedTransaction) -> Self {
        let bytes = wincode::serialize(transaction).expect("a built transaction serializes");
        Self {
            transaction: BASE64.encode(bytes),
        }
    }
}

/// A payload read back into its transaction.
#[derive(Clone, Debug)]
pub struct DecodedPayment {
    /// The transaction.
    pub transaction: VersionedTransaction,
    /// The bytes its signatures sign.
    pub message_bytes: Vec<u8>,
}

/// The most bytes a Solana transaction may take on the wire (one packet).
const MAX_TRANSACTION_BYTES: usize = 1232;

impl DecodedPayment {
    /// Reads a scheme `payload` object: a `transaction` string holding one base64 legacy or v0
    /// transaction whose signature count matches its message.
    pub fn decode(payload: &Value) -> Result<Self, VerifyError> {
        let text = payload
            .get("transaction")
            .and_then(Value::as_str)
            .ok_or_else(|| VerifyError::Undecodable("payload.transaction is missing".into()))?;
        Self::from_base64(text)
    }

    /// Reads a base64 wire transaction.
    pub fn from_base64(text: &str) -> Result<Self, VerifyError> {
        // Four base64 characters carry three bytes: refuse what cannot fit a packet before
        // decoding it.
        if text.len() > MAX_TRANSACTION_BYTES.div_ceil(3) * 4 {
            return Err(VerifyError::Undecodable(format!(
                "longer than a transaction's {MAX_TRANSACTION_BYTES} bytes"
            )));
        }
        let bytes = BASE64
            .decode(text)
            .map_err(|error| VerifyError::Undecodable(format!("not base64: {error}")))?;
        let transaction: VersionedTransaction = wincode::deserialize(&bytes)
            .map_err(|error| VerifyError::Undecodable(error.to_string()))?;
        if matches!(transaction.message, VersionedMessage::V1(_)) {
            return Err(VerifyError::Undecodable(
                "only legacy and v0 transactions are accepted".into(),
            ));
        }
        transaction
            .sanitize()
            .map_err(|error| VerifyError::Undecodable(error.to_string()))?;
        let message_bytes = transaction.message.serialize();
        Ok(Self {
            transaction,
            message_bytes,
        })
    }

    /// The key a settlement of this payment is remembered by, as the official facilitator's
    /// duplicate cache keys it: base64 of the SHA-256 of the message bytes. Two presentations
    /// of one signed message share it, however they are encoded.
    pub fn message_key(&self) -> String {
        BASE64.encode(Sha256::digest(&self.message_bytes))
    }

    /// The transaction as base64 wire bytes.
    pub fn to_base64(&self) -> String {
        ExactSvmPayload::of(&self.transaction).transaction
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hostile_payloads_are_refused_as_undecodable() {
        for payload in [
            json!({}),
            json!({"transaction": 5}),
            json!({"transaction": "not base64!"}),
            json!({"transaction": ""}),
            json!({"transaction": "AAAA"}),
            json!({"transaction": "A".repeat(5000)}),
            json!({"transaction": BASE64.encode([1u8; 200])}),
        ] {
            let error = DecodedPayment::decode(&payload).unwrap_err();
            assert!(
                matches!(error, VerifyError::Undecodable(_)),
                "{payload}: {error:?}"
            );
        }
    }
}
