//! Matching the requirements a client says it accepted against the ones a server offered.

use serde_json::Value;

use crate::v2::PaymentRequirements;

/// Whether `accepted` (echoed by a client) matches `offered` (built by the server), by the
/// rule of the 2.27 SDKs: every field equal except `extra`, and the accepted `extra` must
/// contain every key of the offered one with an equal value (clients may add keys).
pub fn requirements_match(accepted: &PaymentRequirements, offered: &PaymentRequirements) -> bool {
    accepted.scheme == offered.scheme
        && accepted.network == offered.network
        && accepted.amount == offered.amount
        && accepted.asset == offered.asset
        && accepted.pay_to == offered.pay_to
        && accepted.max_timeout_seconds == offered.max_timeout_seconds
        && extra_contains(accepted.extra.as_ref(), offered.extra.as_ref())
}

/// Whether `outer` holds every key of `inner` with a structurally equal value. A missing or
/// null `inner` is contained in anything.
pub fn extra_contains(outer: Option<&Value>, inner: Option<&Value>) -> bool {
    match (outer, inner) {
        (_, None | Some(Value::Null)) => true,
        (Some(Value::Object(outer)), Some(Value::Object(inner))) => inner
            .iter()
            .all(|(key, value)| outer.get(key) == Some(value)),
        (Some(outer), Some(inner)) => outer == inner,
        (None, Some(Value::Object(inner))) => inner.is_empty(),
        (None, Some(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Network, Scheme, TokenAmount};
    use serde_json::json;

    fn offer() -> PaymentRequirements {
        PaymentRequirements {
            scheme: Scheme::EXACT,
            network: Network::BASE,
            amount: TokenAmount::from_atomic(1000),
            asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into(),
            pay_to: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC".into(),
            max_timeout_seconds: 60,
            extra: Some(json!({"name": "USD Coin", "version": "2"})),
        }
    }

    #[test]
    fn identical_requirements_match() {
        assert!(requirements_match(&offer(), &offer()));
    }

    #[test]
    fn extra_may_grow_but_not_change() {
        let mut accepted = offer();
        accepted.extra = Some(json!({"version": "2", "name": "USD Coin", "memo": "x"}));
        assert!(requirements_match(&accepted, &offer()));
        accepted.extra = Some(json!({"name": "USDC", "version": "2"}));
        assert!(!requirements_match(&accepted, &offer()));
        accepted.extra = None;
        assert!(!requirements_match(&accepted, &offer()));
    }

    #[test]
    fn every_other_field_must_be_equal() {
        let changes: [fn(&mut PaymentRequirements); 6] = [
            |r| r.scheme = Scheme::UPTO,
            |r| r.network = Network::BASE_SEPOLIA,
            |r| r.amount = TokenAmount::from_atomic(999),
            |r| r.asset = "0x0000000000000000000000000000000000000001".into(),
            |r| r.pay_to = "0x0000000000000000000000000000000000000002".into(),
            |r| r.max_timeout_seconds = 61,
        ];
        for change in changes {
            let mut accepted = offer();
            change(&mut accepted);
            assert!(!requirements_match(&accepted, &offer()), "{accepted:?}");
        }
    }
}
