//! Messages that exist in both versions, told apart by their `x402Version`.

use serde::de::{self, DeserializeOwned};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::{Network, Scheme, v1, v2};

fn version_of<E: de::Error>(value: &Value, what: &str) -> Result<u64, E> {
    value
        .get("x402Version")
        .ok_or_else(|| E::custom(format_args!("{what} is missing x402Version")))?
        .as_u64()
        .ok_or_else(|| E::custom(format_args!("{what} has a non-numeric x402Version")))
}

fn from_value<T: DeserializeOwned, E: de::Error>(value: Value, what: &str) -> Result<T, E> {
    serde_json::from_value(value).map_err(|e| E::custom(format_args!("{what}: {e}")))
}

fn unsupported<E: de::Error>(what: &str, version: u64) -> E {
    E::custom(format_args!(
        "{what} has x402Version {version}; supported versions are 1 and 2"
    ))
}

/// Serde for an enum of a v1 and a v2 message: written as the message itself, read by its
/// `x402Version`. `$what` names the message in errors.
macro_rules! versioned_serde {
    ($name:ident, $what:literal) => {
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    Self::V1(p) => p.serialize(serializer),
                    Self::V2(p) => p.serialize(serializer),
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = Value::deserialize(deserializer)?;
                match version_of(&value, $what)? {
                    1 => from_value(value, concat!("v1 ", $what)).map(Self::V1),
                    2 => from_value(value, concat!("v2 ", $what)).map(Self::V2),
                    other => Err(unsupported($what, other)),
                }
            }
        }
    };
}

/// A signed payment of either version: what `PAYMENT-SIGNATURE` or `X-PAYMENT` carries.
// One value per HTTP request: the size difference between versions costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum PaymentPayload {
    /// A v1 payment.
    V1(v1::PaymentPayload),
    /// A v2 payment.
    V2(v2::PaymentPayload),
}

impl PaymentPayload {
    /// The protocol version.
    pub fn version(&self) -> u8 {
        match self {
            Self::V1(_) => 1,
            Self::V2(_) => 2,
        }
    }

    /// The scheme the client chose.
    pub fn scheme(&self) -> &Scheme {
        match self {
            Self::V1(p) => &p.scheme,
            Self::V2(p) => &p.accepted.scheme,
        }
    }

    /// The network the client chose, as written.
    pub fn network(&self) -> &Network {
        match self {
            Self::V1(p) => &p.network,
            Self::V2(p) => &p.accepted.network,
        }
    }

    /// The scheme's signed data.
    pub fn payload(&self) -> &Value {
        match self {
            Self::V1(p) => &p.payload,
            Self::V2(p) => &p.payload,
        }
    }
}

versioned_serde!(PaymentPayload, "payment payload");

/// A 402 challenge of either version: the v2 header or the v1 JSON body.
// One value per HTTP request: the size difference between versions costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum PaymentRequired {
    /// A v1 body.
    V1(v1::PaymentRequired),
    /// A v2 `PAYMENT-REQUIRED` header.
    V2(v2::PaymentRequired),
}

versioned_serde!(PaymentRequired, "payment challenge");

/// What a resource server sends a facilitator's `/verify` and `/settle`: a payment and the
/// requirements it must meet, both of the same version.
// One value per HTTP request: the size difference between versions costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum PaymentRequest {
    /// A v1 payment against v1 requirements.
    V1 {
        /// The client's payment.
        payload: v1::PaymentPayload,
        /// The server's requirements.
        requirements: v1::PaymentRequirements,
    },
    /// A v2 payment against v2 requirements.
    V2 {
        /// The client's payment.
        payload: v2::PaymentPayload,
        /// The server's requirements.
        requirements: v2::PaymentRequirements,
    },
}

/// The body of `POST /verify`.
pub type VerifyRequest = PaymentRequest;
/// The body of `POST /settle`.
pub type SettleRequest = PaymentRequest;

impl PaymentRequest {
    /// The protocol version.
    pub fn version(&self) -> u8 {
        match self {
            Self::V1 { .. } => 1,
            Self::V2 { .. } => 2,
        }
    }

    /// The scheme and network the client says it paid with, as written.
    pub fn accepted(&self) -> (&Scheme, &Network) {
        match self {
            Self::V1 { payload, .. } => (&payload.scheme, &payload.network),
            Self::V2 { payload, .. } => (&payload.accepted.scheme, &payload.accepted.network),
        }
    }

    /// The requirements in v2 form (a v1 network name becomes CAIP-2).
    pub fn requirements(&self) -> std::borrow::Cow<'_, v2::PaymentRequirements> {
        match self {
            Self::V1 { requirements, .. } => std::borrow::Cow::Owned(requirements.to_v2()),
            Self::V2 { requirements, .. } => std::borrow::Cow::Borrowed(requirements),
        }
    }

    /// The network of the requirements as written, for echoing in responses.
    pub fn wire_network(&self) -> &Network {
        match self {
            Self::V1 { requirements, .. } => &requirements.network,
            Self::V2 { requirements, .. } => &requirements.network,
        }
    }

    /// The scheme's signed data.
    pub fn payload(&self) -> &Value {
        match self {
            Self::V1 { payload, .. } => &payload.payload,
            Self::V2 { payload, .. } => &payload.payload,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireRequestOut<'a, P, R> {
    x402_version: u8,
    payment_payload: &'a P,
    payment_requirements: &'a R,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequestIn {
    #[serde(default)]
    #[allow(dead_code)]
    x402_version: Option<Value>,
    payment_payload: Value,
    payment_requirements: Value,
}

impl Serialize for PaymentRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::V1 {
                payload,
                requirements,
            } => WireRequestOut {
                x402_version: 1,
                payment_payload: payload,
                payment_requirements: requirements,
            }
            .serialize(serializer),
            Self::V2 {
                payload,
                requirements,
            } => WireRequestOut {
                x402_version: 2,
                payment_payload: payload,
                payment_requirements: requirements,
            }
            .serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for PaymentRequest {
    /// Dispatches on `paymentPayload.x402Version`, as the reference facilitator does.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireRequestIn::deserialize(deserializer)?;
        match version_of(&wire.payment_payload, "paymentPayload")? {
            1 => Ok(Self::V1 {
                payload: from_value(wire.payment_payload, "paymentPayload (v1)")?,
                requirements: from_value(wire.payment_requirements, "paymentRequirements (v1)")?,
            }),
            2 => Ok(Self::V2 {
                payload: from_value(wire.payment_payload, "paymentPayload (v2)")?,
                requirements: from_value(wire.payment_requirements, "paymentRequirements (v2)")?,
            }),
            other => Err(unsupported("paymentPayload", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_versions_are_named_in_the_error() {
        let err = serde_json::from_value::<PaymentPayload>(json!({"x402Version": 3}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("x402Version 3"), "{err}");
        let err = serde_json::from_value::<PaymentPayload>(json!({"scheme": "exact"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing x402Version"), "{err}");
    }

    #[test]
    fn request_errors_name_the_part() {
        let err = serde_json::from_value::<PaymentRequest>(json!({
            "x402Version": 2,
            "paymentPayload": {"x402Version": 2, "payload": {}},
            "paymentRequirements": {}
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("paymentPayload (v2)"), "{err}");
        let err = serde_json::from_value::<PaymentRequest>(json!({"paymentPayload": {}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("paymentRequirements"), "{err}");
    }
}
