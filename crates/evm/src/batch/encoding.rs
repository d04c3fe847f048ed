//! How `batch-settlement` writes its numbers and channel ids on the wire: amounts the contract
//! keeps as `uint128` are decimal strings that must fit 128 bits, delays (`uint40`) are JSON
//! numbers, and a channel id is `0x` and exactly 64 hex digits, kept in lower case.

use std::fmt;
use std::str::FromStr;

use alloy::primitives::{B256, U256};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use x402_proto::TokenAmount;

/// The largest `uint40`: the contract's type for delays and timestamps.
pub const UINT40_MAX: u64 = (1 << 40) - 1;

/// A channel's id: the EIP-712 hash of its [`ChannelConfig`](super::ChannelConfig) under the
/// batch-settlement domain of its chain ([`BatchDomain::channel_id`](super::BatchDomain::channel_id)).
///
/// On the wire it is `0x` followed by exactly 64 hex digits (any case); anything else is refused
/// before it can reach storage, and it is always written back in lower case, so one channel has
/// one spelling (the official SDK's `normalizeChannelId`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(B256);

/// A channel id that is not `0x` and 64 hex digits. The message does not echo the input,
/// which is untrusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a channel id is 0x followed by exactly 64 hex digits")]
pub struct ChannelIdError;

impl ChannelId {
    /// The id with these 32 bytes.
    pub const fn new(bytes: B256) -> Self {
        Self(bytes)
    }

    /// The 32 bytes, as the contract takes them (`bytes32`).
    pub const fn as_b256(&self) -> &B256 {
        &self.0
    }
}

impl FromStr for ChannelId {
    type Err = ChannelIdError;

    /// Reads `0x` and 64 hex digits, in any case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text.strip_prefix("0x").ok_or(ChannelIdError)?;
        if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ChannelIdError);
        }
        let mut bytes = [0u8; 32];
        alloy::hex::decode_to_slice(digits, &mut bytes).map_err(|_| ChannelIdError)?;
        Ok(Self(B256::new(bytes)))
    }
}

impl fmt::Display for ChannelId {
    /// `0x` and 64 lower-case hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelId({self})")
    }
}

impl From<B256> for ChannelId {
    fn from(bytes: B256) -> Self {
        Self(bytes)
    }
}

impl Serialize for ChannelId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChannelId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why an amount does not fit the contract's `uint128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} {value} is above 2^128 - 1: the batch-settlement contract keeps amounts as uint128"
)]
pub struct AboveUint128 {
    /// Which amount.
    pub what: &'static str,
    /// Its value.
    pub value: U256,
}

/// `value` as the contract's `uint128`, or why it does not fit.
pub fn to_uint128(what: &'static str, value: U256) -> Result<u128, AboveUint128> {
    u128::try_from(value).map_err(|_| AboveUint128 { what, value })
}

/// Serde for a `uint128` amount written as a decimal string (`"25000"`), for
/// `#[serde(with = "...")]`: digits only, and refused with a clear message when it needs more
/// than 128 bits.
pub mod decimal_u128 {
    use super::*;

    /// Writes the amount as a decimal string.
    pub fn serialize<S: Serializer>(value: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    /// Reads a decimal string that fits 128 bits.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let TokenAmount(value) = text.parse().map_err(serde::de::Error::custom)?;
        to_uint128("amount", value).map_err(serde::de::Error::custom)
    }

    /// [`decimal_u128`](self) for an optional amount (absent when `None`).
    pub mod option {
        use super::*;

        /// Writes the amount, if any, as a decimal string.
        pub fn serialize<S: Serializer>(
            value: &Option<u128>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(value) => super::serialize(value, serializer),
                None => serializer.serialize_none(),
            }
        }

        /// Reads an optional decimal string that fits 128 bits.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<u128>, D::Error> {
            #[derive(Deserialize)]
            struct Amount(#[serde(with = "super")] u128);
            Ok(Option::<Amount>::deserialize(deserializer)?.map(|Amount(value)| value))
        }
    }
}

/// Serde for a `uint40` (a delay or a timestamp in seconds) written as a JSON number, refused
/// when it needs more than 40 bits.
pub mod uint40 {
    use super::*;

    /// Writes the number.
    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(*value)
    }

    /// Reads a whole number that fits 40 bits.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        let value = u64::deserialize(deserializer)?;
        if value > UINT40_MAX {
            return Err(serde::de::Error::custom(format!(
                "{value} is above 2^40 - 1: the batch-settlement contract keeps it as uint40"
            )));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_ids_are_canonical_and_lower_case() {
        let upper = format!("\"0x{}\"", "AB".repeat(32));
        let id: ChannelId = serde_json::from_str(&upper).unwrap();
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            format!("\"0x{}\"", "ab".repeat(32))
        );
        let bad = [
            String::new(),
            "ab".repeat(32),
            format!("0X{}", "ab".repeat(32)),
            format!("0x{}", "ab".repeat(31)),
            format!("0x{}", "ab".repeat(33)),
            format!("0x{}g", "a".repeat(63)),
            format!("0x{}/", "a".repeat(63)),
            format!(" 0x{}", "ab".repeat(32)),
        ];
        for text in bad {
            assert_eq!(text.parse::<ChannelId>(), Err(ChannelIdError), "{text:?}");
            assert!(serde_json::from_value::<ChannelId>(text.into()).is_err());
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Amounts {
        #[serde(with = "decimal_u128")]
        required: u128,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "decimal_u128::option"
        )]
        optional: Option<u128>,
    }

    #[test]
    fn uint128_amounts_are_decimal_strings_that_fit() {
        let max = u128::MAX.to_string();
        let read: Amounts =
            serde_json::from_value(serde_json::json!({"required": max, "optional": "7"})).unwrap();
        assert_eq!(
            read,
            Amounts {
                required: u128::MAX,
                optional: Some(7)
            }
        );
        assert_eq!(
            serde_json::to_value(&read).unwrap(),
            serde_json::json!({"required": max, "optional": "7"})
        );
        let absent: Amounts = serde_json::from_value(serde_json::json!({"required": "0"})).unwrap();
        assert_eq!(absent.optional, None);
        assert_eq!(
            serde_json::to_value(&absent).unwrap(),
            serde_json::json!({"required": "0"})
        );

        let above = (U256::from(u128::MAX) + U256::from(1)).to_string();
        for json in [
            serde_json::json!({"required": above}),
            serde_json::json!({"required": "1", "optional": above}),
        ] {
            let error = serde_json::from_value::<Amounts>(json).unwrap_err();
            assert!(error.to_string().contains("uint128"), "{error}");
        }
        for bad in ["", "-1", "1e3", "0x10", "1.5", " 1"] {
            assert!(
                serde_json::from_value::<Amounts>(serde_json::json!({"required": bad})).is_err()
            );
        }
        // A JSON number is not an amount on this wire.
        assert!(serde_json::from_value::<Amounts>(serde_json::json!({"required": 5})).is_err());
    }

    #[test]
    fn uint40_numbers_fit_forty_bits() {
        #[derive(Deserialize)]
        struct Delay(#[serde(with = "uint40")] u64);
        let Delay(max) = serde_json::from_value(UINT40_MAX.into()).unwrap();
        assert_eq!(max, UINT40_MAX);
        assert!(serde_json::from_value::<Delay>((UINT40_MAX + 1).into()).is_err());
        assert!(serde_json::from_value::<Delay>("900".into()).is_err());
        assert!(serde_json::from_value::<Delay>(serde_json::json!(900.5)).is_err());
    }
}
