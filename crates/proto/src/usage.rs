//! What a handler reports it used, for schemes that settle less than the price paid
//! (`upto`, `batch-settlement`): a handler answers with a [`Usage`] in its response
//! extensions, or with the `Settlement-Overrides` header the official SDKs read
//! (`{"amount": "1858" | "33.33%" | "$0.05"}`). A handler whose body streams puts a
//! [`UsageMeter`] there instead, and records the usage as the body goes out: the server settles
//! what it reads when the body has ended or was dropped.

use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Deserialize;

use crate::{AmountError, Price, U256};

/// The response header a handler may set instead of a [`Usage`] extension; a server removes it
/// before the response leaves.
pub const SETTLEMENT_OVERRIDES_HEADER: &str = "settlement-overrides";

/// An amount a handler reports it used, in one of the forms the official SDKs accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Usage {
    /// Atomic units of the asset.
    Atomic(U256),
    /// A share of the price paid, in hundredths of a percent (`33.33%` is 3333); floored.
    Percent(u32),
    /// US dollars, converted with the asset's decimals.
    Usd(Price),
}

/// Why a usage report could not be read or applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// The report is not one of the forms.
    #[error(
        "usage {given:?} is not an atomic amount (\"1858\"), a percentage with at most two decimals (\"33.33%\") or dollars (\"$0.05\")"
    )]
    Malformed {
        /// What was reported.
        given: String,
    },
    /// A percentage above 100.
    #[error("usage {given:?} is more than 100% of the price")]
    OverFullPrice {
        /// What was reported.
        given: String,
    },
    /// The `Settlement-Overrides` header is not `{"amount": "<usage>"}`.
    #[error("the Settlement-Overrides header is not {{\"amount\": \"<usage>\"}}: {detail}")]
    Header {
        /// What was wrong.
        detail: String,
    },
    /// A dollar amount that does not convert with the asset's decimals.
    #[error("usage in dollars does not convert to the asset: {0}")]
    Amount(#[from] AmountError),
}

impl Usage {
    /// Atomic units of the asset.
    pub fn atomic(units: u128) -> Self {
        Self::Atomic(U256::from(units))
    }

    /// Reads the `Settlement-Overrides` header's JSON.
    pub fn from_overrides_header(json: &[u8]) -> Result<Self, UsageError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Overrides {
            amount: String,
        }
        let overrides: Overrides =
            serde_json::from_slice(json).map_err(|e| UsageError::Header {
                detail: e.to_string(),
            })?;
        overrides.amount.parse()
    }

    /// The amount in atomic units, for a price of `paid` atomic units of an asset with
    /// `decimals` decimals. Not capped: the caller settles at most what was paid.
    pub fn resolve(&self, paid: U256, decimals: u8) -> Result<U256, UsageError> {
        match self {
            Self::Atomic(units) => Ok(*units),
            Self::Percent(hundredths) => Ok(paid * U256::from(*hundredths) / U256::from(10_000)),
            Self::Usd(price) => Ok(price.to_atomic(decimals)?.0),
        }
    }
}

/// The usage of a response whose body is still streaming: the handler puts one in the
/// response's extensions and records the usage so far as the body goes out; the server reads it
/// once the body has ended, or was dropped (the client went away), and settles that. Cheap to
/// clone: every clone reads and records the same usage.
///
/// A meter always holds a reading: it starts at what the response costs before any of its body
/// is sent (for a chat answer, the prompt).
#[derive(Clone, Debug)]
pub struct UsageMeter {
    used: Arc<Mutex<Usage>>,
}

impl UsageMeter {
    /// A meter reading `usage` until something else is recorded.
    pub fn starting_at(usage: Usage) -> Self {
        Self {
            used: Arc::new(Mutex::new(usage)),
        }
    }

    /// Records the usage so far (the whole of it, not an increment), replacing the last reading.
    pub fn record(&self, usage: Usage) {
        *self.used.lock().unwrap_or_else(PoisonError::into_inner) = usage;
    }

    /// The usage recorded last.
    pub fn reading(&self) -> Usage {
        self.used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl FromStr for Usage {
    type Err = UsageError;

    fn from_str(given: &str) -> Result<Self, UsageError> {
        let malformed = || UsageError::Malformed {
            given: given.to_owned(),
        };
        let text = given.trim();
        if let Some(percent) = text.strip_suffix('%') {
            let (whole, fraction) = percent.split_once('.').unwrap_or((percent, ""));
            let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
            if whole.is_empty()
                || fraction.len() > 2
                || !digits_only(whole)
                || !digits_only(fraction)
            {
                return Err(malformed());
            }
            let whole: u32 = whole.parse().map_err(|_| malformed())?;
            let fraction: u32 = format!("{fraction:0<2}").parse().map_err(|_| malformed())?;
            let hundredths = whole
                .checked_mul(100)
                .and_then(|w| w.checked_add(fraction))
                .ok_or_else(malformed)?;
            if hundredths > 10_000 {
                return Err(UsageError::OverFullPrice {
                    given: given.to_owned(),
                });
            }
            return Ok(Self::Percent(hundredths));
        }
        if text.starts_with('$') {
            return text.parse().map(Self::Usd).map_err(|_| malformed());
        }
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        U256::from_str_radix(text, 10)
            .map(Self::Atomic)
            .map_err(|_| malformed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_of_the_official_sdks_resolve() {
        let paid = U256::from(20_000u64);
        let resolve = |text: &str| text.parse::<Usage>().unwrap().resolve(paid, 6).unwrap();
        assert_eq!(resolve("1858"), U256::from(1858u64));
        assert_eq!(resolve("33.33%"), U256::from(6666u64));
        assert_eq!(resolve("50%"), U256::from(10_000u64));
        assert_eq!(resolve("0.5%"), U256::from(100u64));
        assert_eq!(resolve("100%"), paid);
        assert_eq!(resolve("$0.05"), U256::from(50_000u64));
        assert_eq!(resolve("0"), U256::ZERO);
    }

    #[test]
    fn percentages_floor() {
        let usage: Usage = "33.33%".parse().unwrap();
        assert_eq!(
            usage.resolve(U256::from(7u64), 6).unwrap(),
            U256::from(2u64)
        );
    }

    #[test]
    fn bad_reports_say_what_is_wrong() {
        for bad in [
            "", "-5", "1.5", "abc", "33.333%", "%", ".5%", "5%%", "$", "$-1", "1e3",
        ] {
            let error = bad.parse::<Usage>().unwrap_err();
            assert!(
                matches!(error, UsageError::Malformed { .. }),
                "{bad}: {error:?}"
            );
        }
        assert!(matches!(
            "100.01%".parse::<Usage>(),
            Err(UsageError::OverFullPrice { .. })
        ));
        assert!(matches!(
            "$0.0000001"
                .parse::<Usage>()
                .unwrap()
                .resolve(U256::from(1u64), 6),
            Err(UsageError::Amount(_))
        ));
    }

    #[test]
    fn a_meter_reads_what_any_clone_recorded_last() {
        let meter = UsageMeter::starting_at(Usage::atomic(9));
        assert_eq!(meter.reading(), Usage::atomic(9));
        let handler_side = meter.clone();
        handler_side.record(Usage::atomic(12));
        handler_side.record(Usage::atomic(15));
        assert_eq!(meter.reading(), Usage::atomic(15));
    }

    #[test]
    fn the_header_carries_an_amount_and_nothing_else() {
        assert_eq!(
            Usage::from_overrides_header(br#"{"amount":"25%"}"#).unwrap(),
            Usage::Percent(2500)
        );
        for bad in [
            &br#"{"amount":25}"#[..],
            br#"{}"#,
            br#"{"amount":"1","x":1}"#,
            b"25%",
        ] {
            assert!(
                matches!(
                    Usage::from_overrides_header(bad),
                    Err(UsageError::Header { .. })
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            Usage::from_overrides_header(br#"{"amount":"lots"}"#),
            Err(UsageError::Malformed { .. })
        ));
    }
}
