//! The scheme seam: what a payment mechanism (`exact` on EVM, `upto`, `batch-settlement`,
//! `exact` on Solana, …) provides to each of the three parties, so that a new mechanism is a
//! sibling crate registered at start and no other layer changes.
//!
//! - A facilitator serves a plug-in — any [`Facilitator`](crate::Facilitator), in process or
//!   remote — for every (x402 version, scheme, network) its `supported()` lists; requests are
//!   routed to it by that [`SchemeKey`].
//! - A paying client signs with a [`SchemeClient`] for the offers it says it can pay.
//! - A server (the paywall) lets a [`SchemeServer`] complete the requirements it offers,
//!   with what the facilitator advertised for the kind (a facilitator address, a receiver),
//!   and turn what a handler reports it used ([`Usage`](crate::Usage)) into the amount settled.
//!
//! The traits are object-safe and hold no I/O of their own; implementations live with their
//! mechanism (`x402-evm` for `exact` on EVM).

use std::fmt;

use serde_json::Value;

use crate::{
    BoxFuture, Network, PaymentHooks, PaymentRequest, Scheme, SettleResponse, SupportedKind,
    TokenAmount, U256, v2,
};

/// The key a request is routed by: its protocol version, scheme and network (as written on
/// the wire: a v1 request names `base`, a v2 one `eip155:8453`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SchemeKey {
    /// The protocol version (1 or 2).
    pub x402_version: u8,
    /// The scheme name.
    pub scheme: Scheme,
    /// The network.
    pub network: Network,
}

impl SchemeKey {
    /// The key of a request.
    pub fn of(request: &PaymentRequest) -> Self {
        Self {
            x402_version: request.version(),
            scheme: request.accepted().0.clone(),
            network: request.wire_network().clone(),
        }
    }

    /// The key a supported kind serves.
    pub fn of_kind(kind: &SupportedKind) -> Self {
        Self {
            x402_version: kind.x402_version,
            scheme: kind.scheme.clone(),
            network: kind.network.clone(),
        }
    }

    /// Whether a request with this key is served by `kind` (network spellings compared as
    /// networks, so `base` and `eip155:8453` agree within one version).
    pub fn served_by(&self, kind: &SupportedKind) -> bool {
        kind.x402_version == self.x402_version
            && kind.scheme == self.scheme
            && kind.network.same_as(&self.network)
    }
}

impl fmt::Display for SchemeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {} (x402 v{})",
            self.scheme, self.network, self.x402_version
        )
    }
}

/// A signed scheme payload, and what a client's ledger keeps of it.
#[derive(Clone, Debug, PartialEq)]
pub struct SignedPayload {
    /// The scheme's `payload` object.
    pub payload: Value,
    /// What the payment spends once (an authorization nonce), to find it later on chain.
    pub nonce: Option<String>,
    /// The Unix time after which it can no longer settle.
    pub valid_before: Option<u64>,
    /// Extensions the payment carries (`extensions` of the v2 payload), such as an EIP-2612
    /// approval for gas sponsoring.
    pub extensions: Option<Value>,
    /// Funds the payment locks beside its price (a `batch-settlement` deposit into escrow):
    /// not spent, but out of the payer's hands until refunded or withdrawn. The client's
    /// ledger counts it against its deposit cap, not its spending budget.
    pub locks: Option<TokenAmount>,
    /// The payment channel it pays on, if any (a `batch-settlement` channel id), so the
    /// client's ledger can tie the charge and any deposit to it.
    pub channel: Option<String>,
}

impl SignedPayload {
    /// A payload that spends nothing once and locks nothing (a voucher).
    pub fn plain(payload: Value) -> Self {
        Self {
            payload,
            nonce: None,
            valid_before: None,
            extensions: None,
            locks: None,
            channel: None,
        }
    }
}

/// What a client lets a signature commit it to beyond the price.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignLimits {
    /// The most a deposit signed now may lock, in atomic units of the offer's asset; `None`
    /// is no limit. A scheme that needs more refuses before signing anything.
    pub max_lock: Option<TokenAmount>,
}

/// Why a client could not sign for an offer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SchemeSignError(pub String);

/// A payment mechanism as a paying client runs it: which offers it can pay, and signing.
pub trait SchemeClient: Send + Sync + fmt::Debug {
    /// Whether this client can pay `requirements` (its scheme, and a network it holds a key
    /// for).
    fn can_pay(&self, requirements: &v2::PaymentRequirements) -> bool;

    /// The paying address on `network`.
    fn payer(&self, network: &Network) -> String;

    /// Signs a payment meeting `requirements` at Unix time `now`.
    fn sign<'a>(
        &'a self,
        requirements: &'a v2::PaymentRequirements,
        now: u64,
    ) -> BoxFuture<'a, Result<SignedPayload, SchemeSignError>>;

    /// [`sign`](Self::sign) within `limits`. By default the limits are ignored: a scheme that
    /// locks nothing cannot cross them.
    fn sign_within<'a>(
        &'a self,
        requirements: &'a v2::PaymentRequirements,
        now: u64,
        limits: SignLimits,
    ) -> BoxFuture<'a, Result<SignedPayload, SchemeSignError>> {
        let _ = limits;
        self.sign(requirements, now)
    }

    /// What a payment signed for `requirements` actually cost, by its successful `receipt`:
    /// `upto`'s settled amount, `batch-settlement`'s `chargedAmount`. `None` means the price
    /// (the default: a fixed-price scheme moves its price whatever the receipt says). The
    /// client never counts more than the price, whatever this answers.
    fn charged(
        &self,
        requirements: &v2::PaymentRequirements,
        receipt: &SettleResponse,
    ) -> Option<TokenAmount> {
        let _ = (requirements, receipt);
        None
    }

    /// Called once for every payment this plug-in signed, when its answer is known:
    /// `receipt` is the settlement receipt that came back (successful or not), `None` when
    /// there was none (refused without one, or the answer was lost). A stateful scheme
    /// (`batch-settlement`) advances its channel here and lets the next request on it sign.
    /// By default nothing.
    fn on_response(
        &self,
        requirements: &v2::PaymentRequirements,
        signed: &SignedPayload,
        receipt: Option<&SettleResponse>,
    ) {
        let _ = (requirements, signed, receipt);
    }

    /// Given a 402 that refused a payment this plug-in signed (`corrective`, with the server's
    /// reason in `error` and its offers), resynchronizes the plug-in's state when the server
    /// says it is off (a `batch-settlement` cumulative-amount mismatch). `Ok(true)` means the
    /// client should sign again and retry once. By default `Ok(false)`.
    fn recover<'a>(
        &'a self,
        corrective: &'a v2::PaymentRequired,
    ) -> BoxFuture<'a, Result<bool, SchemeSignError>> {
        let _ = corrective;
        Box::pin(async { Ok(false) })
    }

    /// Whether its payments need the server's answer handed back through
    /// [`on_response`](Self::on_response) to keep its state right (a channel's count). Such a
    /// scheme pays only on paths that hand answers back, not through a bare signature for a
    /// challenge that came by another transport. By default `false`.
    fn needs_response(&self) -> bool {
        false
    }
}

/// A payment mechanism as a server offers it.
pub trait SchemeServer: Send + Sync + fmt::Debug {
    /// The scheme this completes requirements for.
    fn scheme(&self) -> Scheme;

    /// Completes requirements before they are offered, with `kind`: what the facilitator
    /// advertised for this (version, scheme, network), when it is known. By default copies
    /// the kind's `extra` keys that the requirements do not set.
    fn enhance(&self, requirements: &mut v2::PaymentRequirements, kind: Option<&SupportedKind>) {
        copy_kind_extra(requirements, kind);
    }

    /// What to settle, in atomic units, for a request paid against `paid` whose handler
    /// reported it `used` (resolved to atomic units; `None` when it reported nothing). By
    /// default the price paid, whatever was reported: a fixed-price scheme (`exact`) cannot
    /// settle anything else. A metered scheme settles what was used. The server never settles
    /// more than the price paid, whatever this answers.
    fn settlement_amount(&self, paid: &v2::PaymentRequirements, used: Option<U256>) -> U256 {
        let _ = used;
        paid.amount.0
    }

    /// The last Unix second at which a payment whose scheme `payload` is this can still be
    /// settled: its signed deadline, less what facilitators keep in hand before it. A server
    /// that sends content before it settles (a metered stream) cuts the content off in time
    /// to settle by then, and refuses up front a payment that leaves too little time. By
    /// default `None`: the scheme's payments carry no deadline the server needs to heed.
    fn settle_by(&self, payload: &Value) -> Option<u64> {
        let _ = payload;
        None
    }

    /// The hooks a scheme whose server keeps state (payment channels) runs around the
    /// facilitator ([`PaymentHooks`]). By default none: the facilitator verifies and settles.
    fn hooks(&self) -> Option<&dyn PaymentHooks> {
        None
    }

    /// Whether this plug-in can offer what the facilitator advertised as `kind` (checked at
    /// start): a problem to report, and the option not offered, when it cannot. By default it
    /// can.
    fn check_support(&self, kind: &SupportedKind) -> Result<(), String> {
        let _ = kind;
        Ok(())
    }
}

/// Copies the keys of `kind.extra` that `requirements.extra` lacks (the default
/// [`SchemeServer::enhance`]).
pub fn copy_kind_extra(requirements: &mut v2::PaymentRequirements, kind: Option<&SupportedKind>) {
    let Some(Value::Object(advertised)) = kind.and_then(|k| k.extra.as_ref()) else {
        return;
    };
    let extra = requirements
        .extra
        .get_or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(extra) = extra {
        for (key, value) in advertised {
            extra.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TokenAmount;
    use serde_json::json;

    fn kind(version: u8, scheme: &str, network: &str, extra: Option<Value>) -> SupportedKind {
        SupportedKind {
            x402_version: version,
            scheme: Scheme::new(scheme),
            network: Network::new(network),
            extra,
        }
    }

    fn key(version: u8, scheme: &str, network: &str) -> SchemeKey {
        SchemeKey {
            x402_version: version,
            scheme: Scheme::new(scheme),
            network: Network::new(network),
        }
    }

    #[test]
    fn a_key_is_served_by_its_version_scheme_and_network() {
        let exact_base = kind(2, "exact", "eip155:8453", None);
        assert!(key(2, "exact", "eip155:8453").served_by(&exact_base));
        assert!(key(2, "exact", "base").served_by(&exact_base));
        assert!(!key(1, "exact", "eip155:8453").served_by(&exact_base));
        assert!(!key(2, "upto", "eip155:8453").served_by(&exact_base));
        assert!(!key(2, "exact", "eip155:84532").served_by(&exact_base));
    }

    #[test]
    fn advertised_extra_fills_only_what_the_server_left_unset() {
        let mut requirements = v2::PaymentRequirements {
            scheme: Scheme::new("toy"),
            network: Network::new("toy:1"),
            amount: TokenAmount::from_atomic(5),
            asset: "tok".into(),
            pay_to: "me".into(),
            max_timeout_seconds: 60,
            extra: Some(json!({"name": "mine"})),
        };
        let advertised = kind(
            2,
            "toy",
            "toy:1",
            Some(json!({"name": "theirs", "facilitatorAddress": "0xabc"})),
        );
        copy_kind_extra(&mut requirements, Some(&advertised));
        assert_eq!(
            requirements.extra,
            Some(json!({"name": "mine", "facilitatorAddress": "0xabc"}))
        );
        let mut bare = requirements.clone();
        bare.extra = None;
        copy_kind_extra(&mut bare, Some(&advertised));
        assert_eq!(bare.extra.unwrap()["name"], "theirs");
        let mut untouched = requirements.clone();
        copy_kind_extra(&mut untouched, None);
        assert_eq!(untouched, requirements);
    }
}
