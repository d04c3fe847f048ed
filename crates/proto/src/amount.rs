//! Token amounts in atomic units, and human prices converted with an asset's decimals.

use std::fmt;
use std::str::FromStr;

use alloy_primitives::U256;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an amount or price string was refused. Each message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Nothing was given.
    #[error("amount is empty: write a number such as \"0.01\" or \"$0.001\"")]
    Empty,
    /// A sign was given; prices and amounts are never negative.
    #[error("amount {input:?} has a sign: amounts are unsigned")]
    Signed {
        /// What was given.
        input: String,
    },
    /// Exponent notation was given.
    #[error("amount {input:?} uses scientific notation: write it out in full, e.g. \"0.000001\"")]
    Scientific {
        /// What was given.
        input: String,
    },
    /// Anything else that is not a plain decimal number.
    #[error("amount {input:?} is not a plain decimal number such as \"12\" or \"0.25\"")]
    Malformed {
        /// What was given.
        input: String,
    },
    /// More fractional digits than the asset has decimals.
    #[error("price {input:?} has more precision than the asset's {decimals} decimals")]
    TooPrecise {
        /// What was given.
        input: String,
        /// The asset's decimals.
        decimals: u8,
    },
    /// The amount is zero, or a price converts to zero atomic units.
    #[error("price {input:?} is zero in atomic units of an asset with {decimals} decimals")]
    Zero {
        /// What was given.
        input: String,
        /// The asset's decimals.
        decimals: u8,
    },
    /// The value does not fit in 256 bits.
    #[error("amount {input:?} is too large")]
    Overflow {
        /// What was given.
        input: String,
    },
}

/// An amount in the asset's smallest unit (for USDC, millionths of a dollar).
///
/// On the wire it is a decimal string (`"1000"`), as every x402 SDK writes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenAmount(pub U256);

impl TokenAmount {
    /// Zero atomic units.
    pub const ZERO: Self = Self(U256::ZERO);

    /// An amount from a count of atomic units.
    pub fn from_atomic(units: u128) -> Self {
        Self(U256::from(units))
    }

    /// The amount in whole units of an asset with `decimals` decimals, without trailing
    /// zeros: 1500 with 6 decimals is `"0.0015"`.
    pub fn to_human(&self, decimals: u8) -> String {
        let digits = self.0.to_string();
        let decimals = usize::from(decimals);
        if decimals == 0 {
            return digits;
        }
        let padded = format!("{digits:0>width$}", width = decimals + 1);
        let (whole, frac) = padded.split_at(padded.len() - decimals);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            whole.to_owned()
        } else {
            format!("{whole}.{frac}")
        }
    }
}

/// An amount of a particular asset: atomic units and the asset's decimals, so it can be read
/// in whole units without guessing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AssetAmount {
    /// Atomic units.
    pub atomic: TokenAmount,
    /// The asset's decimals.
    pub decimals: u8,
}

impl AssetAmount {
    /// `atomic` units of an asset with `decimals`.
    pub fn new(atomic: TokenAmount, decimals: u8) -> Self {
        Self { atomic, decimals }
    }
}

impl fmt::Display for AssetAmount {
    /// In whole units (`0.002` for 2000 units of a 6-decimal asset).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.atomic.to_human(self.decimals))
    }
}

impl fmt::Display for TokenAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<U256> for TokenAmount {
    fn from(value: U256) -> Self {
        Self(value)
    }
}

impl FromStr for TokenAmount {
    type Err = AmountError;

    /// Parses an atomic amount: ASCII digits only.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        parse_unsigned_decimal(input).map(Self)
    }
}

impl Serialize for TokenAmount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        decimal_u256::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for TokenAmount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        decimal_u256::deserialize(deserializer).map(Self)
    }
}

/// Serde helpers for a `U256` written as a decimal string, for `#[serde(with = "...")]`.
pub mod decimal_u256 {
    use super::*;

    /// Writes the number as a decimal string.
    pub fn serialize<S: Serializer>(value: &U256, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    /// Reads a decimal string of ASCII digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<U256, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        parse_unsigned_decimal(&text).map_err(serde::de::Error::custom)
    }
}

fn classify_bad_number(input: &str) -> AmountError {
    let input_owned = input.to_owned();
    if input.is_empty() {
        AmountError::Empty
    } else if input.starts_with(['-', '+']) {
        AmountError::Signed { input: input_owned }
    } else if input.contains(['e', 'E']) && input.chars().any(|c| c.is_ascii_digit()) {
        AmountError::Scientific { input: input_owned }
    } else {
        AmountError::Malformed { input: input_owned }
    }
}

fn parse_unsigned_decimal(input: &str) -> Result<U256, AmountError> {
    if input.is_empty() || !input.bytes().all(|b| b.is_ascii_digit()) {
        return Err(classify_bad_number(input));
    }
    U256::from_str_radix(input, 10).map_err(|_| AmountError::Overflow {
        input: input.to_owned(),
    })
}

/// A price in whole units of an asset, as people write it: `"$0.001"`, `"0.25"`, `"3"`.
///
/// It becomes a [`TokenAmount`] only once the asset's decimals are known
/// ([`Price::to_atomic`]), so a price can never be charged with the wrong scale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Price {
    input: String,
    /// The digits without the decimal point.
    mantissa: U256,
    /// How many of the digits are after the decimal point.
    scale: u32,
}

impl Price {
    /// The text this price was parsed from.
    pub fn as_str(&self) -> &str {
        &self.input
    }

    /// Atomic units of an asset with `decimals` decimals. Refuses prices that need more
    /// precision than the asset has (they would be silently rounded) and prices that are zero.
    pub fn to_atomic(&self, decimals: u8) -> Result<TokenAmount, AmountError> {
        let decimals_u32 = u32::from(decimals);
        let too_precise = || AmountError::TooPrecise {
            input: self.input.clone(),
            decimals,
        };
        let overflow = || AmountError::Overflow {
            input: self.input.clone(),
        };
        let atomic = if self.scale > decimals_u32 {
            let divisor = pow10(self.scale - decimals_u32).ok_or_else(too_precise)?;
            let (quotient, remainder) = self.mantissa.div_rem(divisor);
            if !remainder.is_zero() {
                return Err(too_precise());
            }
            quotient
        } else {
            let factor = pow10(decimals_u32 - self.scale).ok_or_else(overflow)?;
            self.mantissa.checked_mul(factor).ok_or_else(overflow)?
        };
        if atomic.is_zero() {
            return Err(AmountError::Zero {
                input: self.input.clone(),
                decimals,
            });
        }
        Ok(TokenAmount(atomic))
    }
}

impl Price {
    /// Atomic units of an asset with `decimals` decimals for `units / per` of this price
    /// (a rate of "$0.0001 per 1000 tokens" for 2500 tokens is `scaled(6, 2500, 1000)`),
    /// rounded **up** to the next atomic unit so a metered price is never zero or
    /// undercharged. Refuses `per == 0` and `units == 0`.
    pub fn scaled_to_atomic(
        &self,
        decimals: u8,
        units: u64,
        per: u64,
    ) -> Result<TokenAmount, AmountError> {
        if units == 0 || per == 0 {
            return Err(AmountError::Zero {
                input: format!("{} x {units}/{per}", self.input),
                decimals,
            });
        }
        let overflow = || AmountError::Overflow {
            input: self.input.clone(),
        };
        let numerator = self
            .mantissa
            .checked_mul(U256::from(units))
            .and_then(|n| n.checked_mul(pow10(u32::from(decimals))?))
            .ok_or_else(overflow)?;
        let denominator = pow10(self.scale)
            .and_then(|d| d.checked_mul(U256::from(per)))
            .ok_or_else(overflow)?;
        let (quotient, remainder) = numerator.div_rem(denominator);
        let atomic = if remainder.is_zero() {
            quotient
        } else {
            quotient + U256::from(1u8)
        };
        if atomic.is_zero() {
            return Err(AmountError::Zero {
                input: self.input.clone(),
                decimals,
            });
        }
        Ok(TokenAmount(atomic))
    }
}

fn pow10(exp: u32) -> Option<U256> {
    U256::from(10u8).checked_pow(U256::from(exp))
}

impl Serialize for Price {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Price {
    /// A price is written as text (`"0.001"`, `"$0.001"`), and read as [`FromStr`] reads it.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Price {
    type Err = AmountError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let trimmed = raw.trim();
        let body = trimmed.strip_prefix('$').unwrap_or(trimmed);
        let (whole, frac) = match body.split_once('.') {
            Some((whole, frac)) => (whole, Some(frac)),
            None => (body, None),
        };
        let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let well_formed = digits_ok(whole)
            && match frac {
                // "5." and "." are not prices; ".5" is.
                Some(frac) => !frac.is_empty() && digits_ok(frac),
                None => !whole.is_empty(),
            };
        if !well_formed {
            return Err(classify_bad_number(body));
        }
        let frac = frac.unwrap_or("");
        let all_digits = format!("{whole}{frac}");
        let mantissa = parse_unsigned_decimal(&all_digits).map_err(|_| AmountError::Overflow {
            input: trimmed.to_owned(),
        })?;
        let scale = u32::try_from(frac.len()).map_err(|_| AmountError::Overflow {
            input: trimmed.to_owned(),
        })?;
        Ok(Self {
            input: trimmed.to_owned(),
            mantissa,
            scale,
        })
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.input)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn scaled_prices_round_up_to_whole_atomic_units() {
        let rate: Price = "$0.0001".parse().unwrap();
        // 2500 tokens at $0.0001 per 1000 = $0.00025 = 250 micro-USDC.
        assert_eq!(
            rate.scaled_to_atomic(6, 2500, 1000).unwrap(),
            TokenAmount::from_atomic(250)
        );
        // 7 tokens = $0.0000007, rounds up to 1 micro-USDC rather than to zero.
        assert_eq!(
            rate.scaled_to_atomic(6, 7, 1000).unwrap(),
            TokenAmount::from_atomic(1)
        );
        // 18-decimal assets keep the full precision.
        assert_eq!(
            rate.scaled_to_atomic(18, 7, 1000).unwrap(),
            TokenAmount::from_atomic(700_000_000_000)
        );
        let whole: Price = "0.005".parse().unwrap();
        assert_eq!(
            whole.scaled_to_atomic(6, 1, 1).unwrap(),
            TokenAmount::from_atomic(5000)
        );
        assert!(matches!(
            whole.scaled_to_atomic(6, 0, 1),
            Err(AmountError::Zero { .. })
        ));
        assert!(matches!(
            whole.scaled_to_atomic(6, 1, 0),
            Err(AmountError::Zero { .. })
        ));
    }

    use super::*;
    use proptest::prelude::*;

    fn atomic(price: &str, decimals: u8) -> Result<TokenAmount, AmountError> {
        price.parse::<Price>()?.to_atomic(decimals)
    }

    #[test]
    fn converts_dollar_prices_with_decimals() {
        assert_eq!(atomic("$0.001", 6).unwrap(), TokenAmount::from_atomic(1000));
        assert_eq!(
            atomic("0.25", 6).unwrap(),
            TokenAmount::from_atomic(250_000)
        );
        assert_eq!(atomic("3", 6).unwrap(), TokenAmount::from_atomic(3_000_000));
        assert_eq!(atomic(".5", 2).unwrap(), TokenAmount::from_atomic(50));
        assert_eq!(atomic("0.0100", 2).unwrap(), TokenAmount::from_atomic(1));
        assert_eq!(
            atomic("1", 18).unwrap(),
            TokenAmount(U256::from(10u64).pow(U256::from(18)))
        );
    }

    #[test]
    fn refuses_what_is_not_a_price() {
        assert_eq!(atomic("", 6), Err(AmountError::Empty));
        assert_eq!(atomic("$", 6), Err(AmountError::Empty));
        assert!(matches!(atomic("-1", 6), Err(AmountError::Signed { .. })));
        assert!(matches!(
            atomic("$-0.1", 6),
            Err(AmountError::Signed { .. })
        ));
        assert!(matches!(
            atomic("1e-3", 6),
            Err(AmountError::Scientific { .. })
        ));
        assert!(matches!(
            atomic("1E3", 6),
            Err(AmountError::Scientific { .. })
        ));
        for bad in [
            "abc", "1.2.3", "5.", ".", "1 000", "0x10", "1,5", "$$1", "NaN",
        ] {
            assert!(
                matches!(atomic(bad, 6), Err(AmountError::Malformed { .. })),
                "{bad} should be malformed"
            );
        }
    }

    #[test]
    fn refuses_zero_and_silent_rounding() {
        assert!(matches!(atomic("$0", 6), Err(AmountError::Zero { .. })));
        assert!(matches!(atomic("0.000", 6), Err(AmountError::Zero { .. })));
        assert!(matches!(
            atomic("$0.0000001", 6),
            Err(AmountError::TooPrecise { decimals: 6, .. })
        ));
        assert!(matches!(
            atomic("0.0000015", 6),
            Err(AmountError::TooPrecise { .. })
        ));
        let message = atomic("$0.0000001", 6).unwrap_err().to_string();
        assert!(message.contains("6 decimals"), "{message}");
    }

    #[test]
    fn refuses_overflow() {
        let huge = "9".repeat(80);
        assert!(matches!(
            atomic(&huge, 6),
            Err(AmountError::Overflow { .. })
        ));
        assert!(matches!(
            huge.parse::<TokenAmount>(),
            Err(AmountError::Overflow { .. })
        ));
    }

    #[test]
    fn atomic_amounts_are_decimal_strings() {
        let amount: TokenAmount = serde_json::from_str("\"10000\"").unwrap();
        assert_eq!(amount, TokenAmount::from_atomic(10_000));
        assert_eq!(serde_json::to_string(&amount).unwrap(), "\"10000\"");
        assert!(serde_json::from_str::<TokenAmount>("10000").is_err());
        assert!(serde_json::from_str::<TokenAmount>("\"0x10\"").is_err());
        assert!(serde_json::from_str::<TokenAmount>("\"-1\"").is_err());
        assert!(serde_json::from_str::<TokenAmount>("\"\"").is_err());
    }

    #[test]
    fn human_form() {
        assert_eq!(TokenAmount::from_atomic(1000).to_human(6), "0.001");
        assert_eq!(TokenAmount::from_atomic(1_500_000).to_human(6), "1.5");
        assert_eq!(TokenAmount::from_atomic(2_000_000).to_human(6), "2");
        assert_eq!(TokenAmount::from_atomic(0).to_human(6), "0");
        assert_eq!(TokenAmount::from_atomic(7).to_human(0), "7");
    }

    proptest! {
        #[test]
        fn atomic_amounts_round_trip(units in any::<u128>()) {
            let amount = TokenAmount::from_atomic(units);
            let json = serde_json::to_string(&amount).unwrap();
            prop_assert_eq!(serde_json::from_str::<TokenAmount>(&json).unwrap(), amount);
        }

        #[test]
        fn human_form_converts_back(units in 1u128..u128::MAX, decimals in 0u8..=18) {
            let amount = TokenAmount::from_atomic(units);
            let human = amount.to_human(decimals);
            let back = human.parse::<Price>().unwrap().to_atomic(decimals).unwrap();
            prop_assert_eq!(back, amount);
        }

        #[test]
        fn dollar_sign_is_optional(whole in 0u64..1_000_000, frac in 0u32..1_000_000) {
            let plain = format!("{whole}.{frac:06}");
            let a = plain.parse::<Price>().unwrap().to_atomic(6);
            let b = format!("${plain}").parse::<Price>().unwrap().to_atomic(6);
            prop_assert_eq!(a.clone(), b);
            if whole == 0 && frac == 0 {
                prop_assert!(matches!(a, Err(AmountError::Zero { .. })), "zero must be refused");
            } else {
                let expected = u128::from(whole) * 1_000_000 + u128::from(frac);
                prop_assert_eq!(a.unwrap(), TokenAmount::from_atomic(expected));
            }
        }

        #[test]
        fn parsing_never_panics(input in ".{0,40}", decimals in any::<u8>()) {
            if let Ok(price) = input.parse::<Price>() {
                let _ = price.to_atomic(decimals);
            }
            let _ = input.parse::<TokenAmount>();
        }

        #[test]
        fn negative_and_scientific_are_refused(mantissa in 1u32..100_000, exp in -20i32..20) {
            let negative = format!("-{mantissa}");
            let refused = matches!(negative.parse::<Price>(), Err(AmountError::Signed { .. }));
            prop_assert!(refused);
            let scientific = format!("{mantissa}e{exp}");
            let refused = matches!(scientific.parse::<Price>(), Err(AmountError::Scientific { .. }));
            prop_assert!(refused);
        }
    }
}
