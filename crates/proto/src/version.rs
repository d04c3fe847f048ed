//! `x402Version` as a type: a v2 message cannot be built with version 1.

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The protocol version `N`, serialized as the JSON number `N`; any other number fails to parse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Version<const N: u8>;

/// x402 version 1 (requirements in the body, `X-PAYMENT`, v1 network names).
pub type V1 = Version<1>;
/// x402 version 2 (`PAYMENT-REQUIRED` / `PAYMENT-SIGNATURE`, CAIP-2 networks).
pub type V2 = Version<2>;

impl<const N: u8> Version<N> {
    /// The number this type stands for.
    pub const NUMBER: u8 = N;
}

impl<const N: u8> Serialize for Version<N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(N)
    }
}

impl<'de, const N: u8> Deserialize<'de> for Version<N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let found = u64::deserialize(deserializer)?;
        if found == u64::from(N) {
            Ok(Self)
        } else {
            Err(de::Error::custom(format_args!(
                "expected x402Version {N}, found {found}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_round_trips_and_rejects_others() {
        assert_eq!(serde_json::to_string(&V2::default()).unwrap(), "2");
        assert!(serde_json::from_str::<V2>("2").is_ok());
        let err = serde_json::from_str::<V2>("1").unwrap_err().to_string();
        assert!(err.contains("expected x402Version 2, found 1"), "{err}");
        assert!(serde_json::from_str::<V1>("\"1\"").is_err());
    }
}
