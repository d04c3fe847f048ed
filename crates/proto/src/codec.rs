//! The base64-JSON encoding of x402 HTTP headers.

use base64::Engine;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Header names. HTTP matches them case-insensitively.
pub mod headers {
    /// v2: the server's `PaymentRequired`, on a 402.
    pub const PAYMENT_REQUIRED: &str = "PAYMENT-REQUIRED";
    /// v2: the client's `PaymentPayload`.
    pub const PAYMENT_SIGNATURE: &str = "PAYMENT-SIGNATURE";
    /// v2: the settlement receipt (`SettleResponse`).
    pub const PAYMENT_RESPONSE: &str = "PAYMENT-RESPONSE";
    /// v1: the client's `PaymentPayload`.
    pub const X_PAYMENT: &str = "X-PAYMENT";
    /// v1: the settlement receipt (`SettleResponse`).
    pub const X_PAYMENT_RESPONSE: &str = "X-PAYMENT-RESPONSE";
    /// On a facilitator's `/settle`: the settler's key for the request it serves, so asking
    /// again with the same key gets the same answer.
    pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
}

/// The largest header value we decode. Real payment headers are 1–3 KiB.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Standard alphabet; padding written on encode, optional on decode (the official
/// SDKs' validators accept zero to two `=`).
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a header value could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The value is longer than [`MAX_HEADER_BYTES`].
    #[error("header value is {len} bytes; the limit is {MAX_HEADER_BYTES}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The value is not standard base64.
    #[error("header value is not standard base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The decoded bytes are not the expected JSON object.
    #[error("header value is not a valid x402 message: {0}")]
    Json(#[from] serde_json::Error),
}

/// Encodes a message as a header value: JSON, then standard padded base64.
pub fn encode_header<T: Serialize + ?Sized>(message: &T) -> String {
    // Our message types are plain data with string keys; serializing them cannot fail.
    let json = serde_json::to_vec(message).unwrap_or_default();
    ENGINE.encode(json)
}

/// Decodes a header value received from an untrusted peer.
///
/// Surrounding whitespace is ignored; anything else that is not base64 of the expected JSON is
/// an error that names the problem.
pub fn decode_header<T: DeserializeOwned>(value: &[u8]) -> Result<T, HeaderError> {
    if value.len() > MAX_HEADER_BYTES {
        return Err(HeaderError::TooLarge { len: value.len() });
    }
    let value = value.trim_ascii();
    let json = ENGINE.decode(value)?;
    Ok(serde_json::from_slice(&json)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    #[test]
    fn encodes_standard_padded_base64() {
        let encoded = encode_header(&json!({"a": "??>"}));
        assert_eq!(encoded, "eyJhIjoiPz8+In0=");
        let decoded: Value = decode_header(encoded.as_bytes()).unwrap();
        assert_eq!(decoded, json!({"a": "??>"}));
    }

    #[test]
    fn accepts_missing_padding_and_whitespace() {
        let decoded: Value = decode_header(b"  eyJhIjoiPz8+In0 ").unwrap();
        assert_eq!(decoded, json!({"a": "??>"}));
    }

    #[test]
    fn refuses_url_safe_alphabet_garbage_and_oversize() {
        assert!(matches!(
            decode_header::<Value>(b"eyJhIjoiPz8-In0="),
            Err(HeaderError::Base64(_))
        ));
        assert!(matches!(
            decode_header::<Value>(b"bm90IGpzb24="),
            Err(HeaderError::Json(_))
        ));
        let big = vec![b'A'; MAX_HEADER_BYTES + 1];
        assert!(matches!(
            decode_header::<Value>(&big),
            Err(HeaderError::TooLarge { .. })
        ));
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_round_trips(value in json_value()) {
            let encoded = encode_header(&value);
            prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)));
            let decoded: Value = decode_header(encoded.as_bytes()).unwrap();
            prop_assert_eq!(decoded, value);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_header::<Value>(&bytes);
            let _ = decode_header::<crate::PaymentPayload>(&bytes);
        }
    }
}
