//! What makes two presented payments "the same payment", and the keys a settler uses to ask
//! for an answer again.
//!
//! A payment is identified by what can be spent only once on chain, parsed and normalized,
//! never by its bytes: two encodings of one authorization (hex in another case, a field
//! added to `payload`, keys in another order) are one payment. The paywall's
//! one-payment-one-response guard, the facilitator's settlement log and every scheme agree
//! on this identity.

use std::fmt;

use alloy_primitives::{Address, B256, U256, keccak256};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{PaymentPayload, PaymentRequest, Scheme};

/// The identity of a payment: the scheme, the network and what the scheme spends once
/// (for `exact` on EVM: the token, the payer and the authorization nonce).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PaymentId(String);

/// Why a payment has no identity: its scheme payload cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the payment cannot be identified: {0}")]
pub struct PaymentIdError(pub String);

impl PaymentId {
    /// An identity made by a scheme that knows its own payload. `parts` are joined with `:`.
    pub fn from_parts<I, S>(parts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let joined: Vec<String> = parts.into_iter().map(|p| p.as_ref().to_owned()).collect();
        Self(joined.join(":"))
    }

    /// The identity of a payment, for the schemes this crate can read without I/O: `exact`
    /// on `eip155` networks (token, payer, nonce). Any other scheme is identified by a
    /// digest of its payload with object keys sorted, so reordered keys are one payment but
    /// added fields are not; a scheme that knows better provides its own identity (see
    /// [`Facilitator::payment_id`](crate::Facilitator::payment_id)).
    pub fn derive(request: &PaymentRequest) -> Result<Self, PaymentIdError> {
        let requirements = request.requirements();
        let network = requirements.network.as_str();
        let scheme = &requirements.scheme;
        if let Some(permit) = request.payload().get("permit2Authorization")
            && network.starts_with("eip155:")
        {
            // Permit2 spends a nonce of the owner's, whatever the token or spender.
            let payer: Address = json_str(permit, "from")?.trim().parse().map_err(|_| {
                PaymentIdError("permit2Authorization.from is not an address".into())
            })?;
            let nonce: U256 = json_str(permit, "nonce")?.trim().parse().map_err(|_| {
                PaymentIdError("permit2Authorization.nonce is not a decimal number".into())
            })?;
            return Ok(Self::from_parts([
                scheme.as_str(),
                network,
                "permit2",
                &format!("{payer:#x}"),
                &nonce.to_string(),
            ]));
        }
        if *scheme == Scheme::EXACT && network.starts_with("eip155:") {
            let asset: Address = requirements.asset.trim().parse().map_err(|_| {
                PaymentIdError(format!("asset {:?} is not an address", requirements.asset))
            })?;
            let authorization = request
                .payload()
                .get("authorization")
                .ok_or_else(|| PaymentIdError("payload.authorization is missing".into()))?;
            let payer: Address = json_str(authorization, "from")?
                .trim()
                .parse()
                .map_err(|_| PaymentIdError("authorization.from is not an address".into()))?;
            let nonce: B256 = json_str(authorization, "nonce")?
                .trim()
                .parse()
                .map_err(|_| PaymentIdError("authorization.nonce is not 32 bytes of hex".into()))?;
            return Ok(Self::from_parts([
                scheme.as_str(),
                network,
                &format!("{asset:#x}"),
                &format!("{payer:#x}"),
                &format!("{nonce:#x}"),
            ]));
        }
        if *scheme == Scheme::EXACT
            && let Some(caip2) = request.wire_network().to_caip2()
            && caip2.namespace() == Some("solana")
        {
            // One signed message is one payment, whatever signatures ride with it.
            let text = request
                .payload()
                .get("transaction")
                .and_then(Value::as_str)
                .ok_or_else(|| PaymentIdError("payload.transaction is missing".into()))?;
            return Ok(Self::from_parts([
                scheme.as_str(),
                caip2.as_str(),
                "svm",
                &solana_message_key(text)?,
            ]));
        }
        let digest = canonical_digest(request.payload());
        Ok(Self::from_parts([
            scheme.as_str(),
            network,
            &format!("{digest:#x}"),
        ]))
    }

    /// The identity as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PaymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key a Solana payment is known by, as the official facilitator's duplicate cache keys
/// it: base64 of the SHA-256 of the message bytes of the base64 wire transaction `text` (what
/// follows its compact-u16 signature count and the signatures).
pub fn solana_message_key(text: &str) -> Result<String, PaymentIdError> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let undecodable = |why: &str| PaymentIdError(format!("payload.transaction {why}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| undecodable("is not base64"))?;
    // compact-u16: 7 bits a byte, at most 3 bytes.
    let (mut count, mut at) = (0usize, 0usize);
    loop {
        let byte = *bytes
            .get(at)
            .ok_or_else(|| undecodable("ends before its signatures"))?;
        count |= usize::from(byte & 0x7f) << (7 * at);
        at += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if at == 3 {
            return Err(undecodable("has a bad signature count"));
        }
    }
    let message = bytes
        .get(at + count * 64..)
        .filter(|m| count > 0 && !m.is_empty())
        .ok_or_else(|| undecodable("has no message after its signatures"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(message)))
}

fn json_str<'a>(object: &'a Value, field: &str) -> Result<&'a str, PaymentIdError> {
    object
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| PaymentIdError(format!("authorization.{field} is missing or not a string")))
}

/// keccak256 of `value`'s canonical JSON. A server asks for a payment's identity and then its
/// authorization digest, which for most schemes hash the same payload: the last payload hashed
/// on this thread is remembered with its digest (by its bytes, so any other payload is hashed).
fn canonical_digest(value: &Value) -> B256 {
    thread_local! {
        static LAST: std::cell::RefCell<(Vec<u8>, B256)> =
            const { std::cell::RefCell::new((Vec::new(), B256::ZERO)) };
    }
    let bytes = canonical_json(value);
    LAST.with_borrow_mut(|(last, digest)| {
        if *last != bytes {
            *digest = keccak256(&bytes);
            *last = bytes;
        }
        *digest
    })
}

/// JSON with object keys sorted at every level, whatever the map type keeps: compact, strings
/// escaped as `serde_json` escapes them. Payment identities are digests of it and outlive the
/// process (journals, guards), so its bytes must never change.
fn canonical_json(value: &Value) -> Vec<u8> {
    fn write(value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                // serde_json's map iterates sorted unless a crate turns on `preserve_order`.
                if !entries.is_sorted_by(|a, b| a.0 <= b.0) {
                    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                }
                out.push(b'{');
                for (i, (key, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    scalar(&**key, out);
                    out.push(b':');
                    write(item, out);
                }
                out.push(b'}');
            }
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(item, out);
                }
                out.push(b']');
            }
            other => scalar(other, out),
        }
    }
    /// A string, number, boolean or null, as `serde_json` writes it compactly (writing to a
    /// `Vec` cannot fail, nor can serializing these).
    fn scalar<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
        let _ = serde_json::to_writer(out, value);
    }
    let mut out = Vec::with_capacity(1024);
    write(value, &mut out);
    out
}

/// A digest of everything a payment authorizes, normalized: for `exact` on EVM the
/// authorization's fields as numbers and addresses and the signature's bytes, so encodings of
/// one authorization share it and any other authorization (another value, another signature)
/// differs; for other schemes the payload with sorted keys. Two payments with one
/// [`PaymentId`] but different digests are a genuine payment and a forgery of its nonce.
pub fn authorization_digest(request: &PaymentRequest) -> [u8; 32] {
    let payload = request.payload();
    let requirements = request.requirements();
    if requirements.scheme == Scheme::EXACT
        && let Some(auth) = payload.get("authorization")
    {
        let field = |name: &str| auth.get(name).and_then(Value::as_str).map(str::trim);
        let hex_bytes = |text: Option<&str>| {
            text.map(|t| {
                t.strip_prefix("0x")
                    .or_else(|| t.strip_prefix("0X"))
                    .unwrap_or(t)
            })
            .map(str::to_ascii_lowercase)
        };
        let normalized = serde_json::json!({
            "from": hex_bytes(field("from")),
            "to": hex_bytes(field("to")),
            "value": field("value").and_then(|v| v.parse::<alloy_primitives::U256>().ok()).map(|v| v.to_string()),
            "validAfter": field("validAfter").and_then(|v| v.parse::<alloy_primitives::U256>().ok()).map(|v| v.to_string()),
            "validBefore": field("validBefore").and_then(|v| v.parse::<alloy_primitives::U256>().ok()).map(|v| v.to_string()),
            "nonce": hex_bytes(field("nonce")),
            "signature": hex_bytes(payload.get("signature").and_then(Value::as_str).map(str::trim)),
            "asset": requirements.asset.to_ascii_lowercase(),
            "network": requirements.network.as_str(),
        });
        return keccak256(canonical_json(&normalized)).0;
    }
    canonical_digest(payload).0
}

/// A digest of the parts of a request, each length-prefixed so that moving bytes from one part
/// to the next gives another digest. The paywall fingerprints method, path and body with it.
pub fn request_fingerprint(parts: &[&[u8]]) -> [u8; 32] {
    let mut material = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for part in parts {
        material.extend_from_slice(&(part.len() as u64).to_be_bytes());
        material.extend_from_slice(part);
    }
    keccak256(&material).0
}

/// A key a settler sends with `/settle` (`Idempotency-Key`) so that asking again for the same
/// request gets the same answer. One key per request served; any other key asking for a
/// payment that is settled or being settled is refused.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

/// Why a string is not an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "an idempotency key is 1 to {max} printable ASCII characters without spaces; got {got}",
    max = IdempotencyKey::MAX_LEN
)]
pub struct IdempotencyKeyError {
    /// What was wrong, briefly.
    pub got: String,
}

impl IdempotencyKey {
    /// The longest key accepted.
    pub const MAX_LEN: usize = 255;

    /// Checks and wraps a key.
    pub fn new(value: impl Into<String>) -> Result<Self, IdempotencyKeyError> {
        let value = value.into();
        if value.is_empty() {
            return Err(IdempotencyKeyError {
                got: "an empty string".into(),
            });
        }
        if value.len() > Self::MAX_LEN {
            return Err(IdempotencyKeyError {
                got: format!("{} characters", value.len()),
            });
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(IdempotencyKeyError {
                got: "a space or a non-printable character".into(),
            });
        }
        Ok(Self(value))
    }

    /// A key derived from a payment and the request it pays for: the same payment for the
    /// same request always gives the same key, on every replica.
    pub fn for_request(payment: &PaymentId, request_fingerprint: &[u8; 32]) -> Self {
        let mut material = Vec::with_capacity(payment.as_str().len() + 33);
        material.extend_from_slice(payment.as_str().as_bytes());
        material.push(0);
        material.extend_from_slice(request_fingerprint);
        Self(format!("req-{:x}", keccak256(&material)))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({:?})", self.0)
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = IdempotencyKeyError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<IdempotencyKey> for String {
    fn from(key: IdempotencyKey) -> Self {
        key.0
    }
}

/// The `payment-identifier` extension: an id the client chooses for one purchase, so that a
/// retry (even with a newly signed payment) gets the first answer instead of paying again.
pub mod payment_identifier {
    use serde_json::{Value, json};

    /// The extension's key in `extensions`.
    pub const KEY: &str = "payment-identifier";
    /// The shortest id accepted.
    pub const MIN_LEN: usize = 16;
    /// The longest id accepted.
    pub const MAX_LEN: usize = 128;

    /// What a server puts under [`KEY`] in its challenge's `extensions`.
    pub fn declaration(required: bool) -> Value {
        json!({
            "info": { "required": required },
            "schema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {
                    "required": { "type": "boolean" },
                    "id": {
                        "type": "string",
                        "minLength": MIN_LEN,
                        "maxLength": MAX_LEN,
                        "pattern": "^[a-zA-Z0-9_-]+$"
                    }
                },
                "required": ["required"]
            }
        })
    }

    /// Whether `id` has the form the extension requires.
    pub fn is_valid(id: &str) -> bool {
        (MIN_LEN..=MAX_LEN).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }

    /// The id a payment carries: `Ok(None)` when it has none, `Err` with what to fix when
    /// the extension is there but malformed.
    pub fn read(payment: &crate::PaymentPayload) -> Result<Option<String>, String> {
        let extensions = match payment {
            crate::PaymentPayload::V2(p) => p.extensions.as_ref(),
            crate::PaymentPayload::V1(_) => None,
        };
        let Some(extension) = extensions.and_then(|e| e.get(KEY)) else {
            return Ok(None);
        };
        let id = match extension.get("info").and_then(|info| info.get("id")) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(id)) => id,
            Some(_) => return Err(format!("extensions.{KEY}.info.id must be a string")),
        };
        if !is_valid(id) {
            return Err(format!(
                "extensions.{KEY}.info.id must be {MIN_LEN} to {MAX_LEN} characters of \
                 A-Z, a-z, 0-9, '_' or '-'"
            ));
        }
        Ok(Some(id.clone()))
    }
}

impl PaymentPayload {
    /// The `payment-identifier` id this payment carries, if any (see [`payment_identifier`]).
    pub fn payment_identifier(&self) -> Result<Option<String>, String> {
        payment_identifier::read(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(payload: Value) -> PaymentRequest {
        let accepted = json!({
            "scheme": "exact",
            "network": "eip155:8453",
            "amount": "1000",
            "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "maxTimeoutSeconds": 60,
            "extra": {"name": "USD Coin", "version": "2"}
        });
        serde_json::from_value(json!({
            "x402Version": 2,
            "paymentPayload": {"x402Version": 2, "accepted": accepted, "payload": payload},
            "paymentRequirements": accepted,
        }))
        .unwrap()
    }

    fn exact_payload(signature: &str, nonce: &str, from: &str) -> Value {
        json!({
            "signature": signature,
            "authorization": {
                "from": from,
                "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                "value": "1000",
                "validAfter": "0",
                "validBefore": "99999999999",
                "nonce": nonce,
            }
        })
    }

    #[test]
    fn re_encodings_of_one_authorization_are_one_payment() {
        let nonce = "0xabcdef0000000000000000000000000000000000000000000000000000000001";
        let from = "0x857b06519E91e3A54538791bDbb0E22373e36b66";
        let plain = PaymentId::derive(&request(exact_payload("0xdead", nonce, from))).unwrap();
        let mut shouted = exact_payload(
            "0xDEAD",
            &nonce.to_uppercase().replace("0X", "0x"),
            &from.to_lowercase(),
        );
        shouted["extra"] = json!("ignored");
        let loud = PaymentId::derive(&request(shouted)).unwrap();
        assert_eq!(plain, loud);
        assert!(
            plain
                .as_str()
                .starts_with("exact:eip155:8453:0x833589fcd6edb6e08f4c7c32d4f71b54bda02913:")
        );
        let other = "0xabcdef0000000000000000000000000000000000000000000000000000000002";
        let different = PaymentId::derive(&request(exact_payload("0xdead", other, from))).unwrap();
        assert_ne!(plain, different);
    }

    #[test]
    fn unreadable_exact_payloads_have_no_identity() {
        let error = PaymentId::derive(&request(json!({"signature": "0x"}))).unwrap_err();
        assert!(error.0.contains("authorization"), "{error}");
        let bad_nonce = exact_payload("0x", "0x12", "0x857b06519E91e3A54538791bDbb0E22373e36b66");
        assert!(PaymentId::derive(&request(bad_nonce)).is_err());
    }

    #[test]
    fn canonical_json_is_compact_sorted_and_escaped_as_serde_json_escapes() {
        let value = json!({
            "z": [1, -2.5, true, null, "a\"b\\c\n\u{1}é", {"b": [], "a": {}}],
            "é": 0,
            "a": {"k": "v", "K": u64::MAX},
        });
        let expected = r#"{"a":{"K":18446744073709551615,"k":"v"},"z":[1,-2.5,true,null,"a\"b\\c\n\u0001é",{"a":{},"b":[]}],"é":0}"#;
        assert_eq!(String::from_utf8(canonical_json(&value)).unwrap(), expected);
    }

    #[test]
    fn other_schemes_are_identified_by_sorted_payload() {
        let mut a = request(json!({"b": 1, "a": {"y": 2, "x": 1}}));
        let mut b = request(json!({"a": {"x": 1, "y": 2}, "b": 1}));
        for r in [&mut a, &mut b] {
            if let PaymentRequest::V2 {
                payload,
                requirements,
            } = r
            {
                payload.accepted.scheme = Scheme::from_static("toy");
                requirements.scheme = Scheme::from_static("toy");
            }
        }
        assert_eq!(
            PaymentId::derive(&a).unwrap(),
            PaymentId::derive(&b).unwrap()
        );
    }

    #[test]
    fn the_authorization_digest_ignores_encoding_and_sees_every_signed_field() {
        let nonce = "0xabcdef0000000000000000000000000000000000000000000000000000000001";
        let from = "0x857b06519E91e3A54538791bDbb0E22373e36b66";
        let base = authorization_digest(&request(exact_payload("0xdead", nonce, from)));
        let mut loud = exact_payload("0xDEAD", nonce, &from.to_lowercase());
        loud["extra"] = json!(1);
        assert_eq!(base, authorization_digest(&request(loud)));
        let mut other_value = exact_payload("0xdead", nonce, from);
        other_value["authorization"]["value"] = json!("0");
        assert_ne!(base, authorization_digest(&request(other_value)));
        assert_ne!(
            base,
            authorization_digest(&request(exact_payload("0xbeef", nonce, from)))
        );
    }

    #[test]
    fn fingerprints_separate_their_parts() {
        assert_ne!(
            request_fingerprint(&[b"ab", b"c"]),
            request_fingerprint(&[b"a", b"bc"])
        );
        assert_eq!(
            request_fingerprint(&[b"POST", b"/run"]),
            request_fingerprint(&[b"POST", b"/run"])
        );
    }

    #[test]
    fn idempotency_keys_are_checked_and_derived_stably() {
        assert!(IdempotencyKey::new("").is_err());
        assert!(IdempotencyKey::new("has space").is_err());
        assert!(IdempotencyKey::new("x".repeat(256)).is_err());
        assert_eq!(IdempotencyKey::new("abc-123").unwrap().as_str(), "abc-123");
        let id = PaymentId::from_parts(["exact", "eip155:1", "0x1"]);
        let one = IdempotencyKey::for_request(&id, &[1; 32]);
        assert_eq!(one, IdempotencyKey::for_request(&id, &[1; 32]));
        assert_ne!(one, IdempotencyKey::for_request(&id, &[2; 32]));
    }

    #[test]
    fn payment_identifier_is_read_and_checked() {
        let mut payment: PaymentPayload = serde_json::from_value(json!({
            "x402Version": 2,
            "accepted": {"scheme": "exact", "network": "eip155:8453", "amount": "1",
                "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
                "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 60},
            "payload": {},
        }))
        .unwrap();
        assert_eq!(payment.payment_identifier(), Ok(None));
        if let PaymentPayload::V2(p) = &mut payment {
            p.extensions = Some(
                json!({"payment-identifier": {"info": {"required": false, "id": "pay_0123456789abcdef"}}}),
            );
        }
        assert_eq!(
            payment.payment_identifier(),
            Ok(Some("pay_0123456789abcdef".into()))
        );
        if let PaymentPayload::V2(p) = &mut payment {
            p.extensions = Some(json!({"payment-identifier": {"info": {"id": "short"}}}));
        }
        assert!(
            payment
                .payment_identifier()
                .unwrap_err()
                .contains("16 to 128")
        );
    }

    #[test]
    fn a_permit2_payment_is_its_owner_and_nonce_however_written() {
        let request = |from: &str, nonce: &str, scheme: &str| {
            let requirements = json!({
                "scheme": scheme, "network": "eip155:8453", "amount": "1000",
                "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
                "payTo": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "maxTimeoutSeconds": 60,
            });
            serde_json::from_value::<PaymentRequest>(json!({
                "x402Version": 2,
                "paymentPayload": {"x402Version": 2, "accepted": requirements, "payload": {
                    "signature": "0x12",
                    "permit2Authorization": {"from": from, "nonce": nonce, "permitted": {}},
                }},
                "paymentRequirements": requirements,
            }))
            .unwrap()
        };
        let id = |r: &PaymentRequest| PaymentId::derive(r).unwrap();
        let payer = "0x857b06519E91e3A54538791bDbb0E22373e36b66";
        let first = id(&request(payer, "42", "exact"));
        assert_eq!(first, id(&request(&payer.to_lowercase(), "0042", "exact")));
        assert_ne!(first, id(&request(payer, "43", "exact")));
        assert_ne!(first, id(&request(payer, "42", "upto")));
        let broken = request(payer, "not a number", "exact");
        assert!(PaymentId::derive(&broken).is_err());
    }
}
