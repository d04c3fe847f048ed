//! What a route charges: the accepted ways to pay, and a price fixed per route or quoted
//! from each request before any work is done.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use http::request::Parts;
use serde_json::{Value, json};
use x402_proto::{AmountError, Network, Price, Scheme, TokenAmount, v2};

/// One way to pay that a paywall accepts: a scheme, an asset on a network, paid to an address.
#[derive(Clone, Debug, PartialEq)]
pub struct PaymentOption {
    /// The scheme (`exact`; others need their plug-in on the client and the facilitator).
    pub scheme: Scheme,
    /// The CAIP-2 network (`eip155:8453`).
    pub network: Network,
    /// The token address.
    pub asset: String,
    /// The token's decimals, so USD prices become atomic units.
    pub decimals: u8,
    /// Who is paid.
    pub pay_to: String,
    /// How long a signed payment stays valid.
    pub max_timeout_seconds: u64,
    /// The scheme's data for clients, offered as the requirements' `extra` (for `exact` on
    /// EVM the token's EIP-712 domain: `{"name", "version"}`).
    pub extra: Option<Value>,
}

impl PaymentOption {
    /// `exact` on an EVM chain: an EIP-3009 token whose EIP-712 domain is `eip712_name`,
    /// `eip712_version`; a signed payment stays valid for five minutes.
    pub fn exact_evm(
        network: Network,
        asset: impl Into<String>,
        decimals: u8,
        pay_to: impl Into<String>,
        eip712_name: &str,
        eip712_version: &str,
    ) -> Self {
        Self {
            scheme: Scheme::EXACT,
            network,
            asset: asset.into(),
            decimals,
            pay_to: pay_to.into(),
            max_timeout_seconds: 300,
            extra: Some(json!({"name": eip712_name, "version": eip712_version})),
        }
    }

    /// `exact` on Solana: an SPL token (`mint`, with `decimals`) paid to `pay_to`'s associated
    /// token account; a signed payment stays valid for five minutes. The offer gains the
    /// facilitator's `extra.feePayer` from its `/supported` ([`Paywall::initialize`]); until
    /// it is known, the option is not offered (no client can pay it without one).
    ///
    /// [`Paywall::initialize`]: crate::Paywall::initialize
    pub fn exact_svm(
        network: Network,
        mint: impl Into<String>,
        decimals: u8,
        pay_to: impl Into<String>,
    ) -> Self {
        Self {
            scheme: Scheme::EXACT,
            network,
            asset: mint.into(),
            decimals,
            pay_to: pay_to.into(),
            max_timeout_seconds: 300,
            extra: None,
        }
    }

    /// Whether requirements completed for this option can be paid: `exact` on Solana needs
    /// the facilitator's fee payer in `extra.feePayer`.
    pub(crate) fn payable(requirements: &v2::PaymentRequirements) -> bool {
        let solana = requirements
            .network
            .to_caip2()
            .is_some_and(|n| n.namespace() == Some("solana"));
        !(solana && requirements.scheme == Scheme::EXACT)
            || requirements
                .extra
                .as_ref()
                .and_then(|extra| extra.get("feePayer"))
                .is_some_and(Value::is_string)
    }

    /// The option behind `requirements` (their scheme, network, asset, payee, timeout and
    /// `extra`; the amount is the route's), for an asset with `decimals`.
    pub fn from_requirements(requirements: &v2::PaymentRequirements, decimals: u8) -> Self {
        Self {
            scheme: requirements.scheme.clone(),
            network: requirements.network.clone(),
            asset: requirements.asset.clone(),
            decimals,
            pay_to: requirements.pay_to.clone(),
            max_timeout_seconds: requirements.max_timeout_seconds,
            extra: requirements.extra.clone(),
        }
    }

    /// The same option with signed payments valid for `seconds`.
    pub fn with_max_timeout(mut self, seconds: u64) -> Self {
        self.max_timeout_seconds = seconds;
        self
    }

    /// The requirements for `amount` atomic units of this option's asset, before the
    /// scheme's plug-in completes them.
    pub fn requirements(&self, amount: TokenAmount) -> v2::PaymentRequirements {
        v2::PaymentRequirements {
            scheme: self.scheme.clone(),
            network: self.network.clone(),
            amount,
            asset: self.asset.clone(),
            pay_to: self.pay_to.clone(),
            max_timeout_seconds: self.max_timeout_seconds,
            extra: self.extra.clone(),
        }
    }
}

/// When a route settles the payment relative to running its handler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SettleTiming {
    /// Verify, run the handler, and settle only if it succeeded (status < 400). The client is
    /// never charged for a failed request. The default.
    #[default]
    AfterHandler,
    /// Verify and settle, then run the handler: for long jobs whose result is delivered
    /// later, where the work must not start before the money has moved.
    BeforeHandler,
}

/// A price in USD for one request: a flat amount, or a rate times a number of units.
/// Converted to each accepted asset's atomic units, rounded up to whole units.
#[derive(Clone, Debug)]
pub struct Quote {
    usd: Price,
    units: u64,
    per: u64,
    settle: Option<SettleTiming>,
    streamed: bool,
    description: Option<String>,
    service: Option<String>,
    job: Option<String>,
    extensions: http::Extensions,
}

impl Quote {
    /// A flat price.
    pub fn usd(price: Price) -> Self {
        Self::per_unit(price, 1, 1)
    }

    /// `rate` for every `per` units, times `units` (`$0.0001` per 1000 tokens × 2500 tokens).
    pub fn per_unit(rate: Price, units: u64, per: u64) -> Self {
        Self {
            usd: rate,
            units,
            per,
            settle: None,
            streamed: false,
            description: None,
            service: None,
            job: None,
            extensions: http::Extensions::new(),
        }
    }

    /// Settles this request before the handler runs, whatever the route's default.
    pub fn settle_before_handler(mut self) -> Self {
        self.settle = Some(SettleTiming::BeforeHandler);
        self
    }

    /// Says that the answer to this request is a metered stream (sent before its payment
    /// settles), so that the paywall checks before the handler runs that the payment leaves
    /// time to stream and settle, and that the payer may have another stream (otherwise it
    /// checks once the handler's stream is ready, before it goes out).
    pub fn streamed(mut self) -> Self {
        self.streamed = true;
        self
    }

    /// Describes what this request buys, in the challenge.
    pub fn describe(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Names what this request buys (a service id) in the payment journal; without it the
    /// journal names the request's method and path.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// Names the job this request starts, so that the payment journal ties the payment to it.
    pub fn job(mut self, job: impl Into<String>) -> Self {
        self.job = Some(job.into());
        self
    }

    /// Hands `value` (say, the parsed and validated input) to the handler as a request
    /// extension, so it is not parsed twice.
    pub fn with_extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.insert(value);
        self
    }

    /// The price in atomic units of an asset with `decimals` decimals.
    pub fn atomic(&self, decimals: u8) -> Result<TokenAmount, AmountError> {
        self.usd.scaled_to_atomic(decimals, self.units, self.per)
    }

    /// The price in USD as a decimal string, to the precision of `decimals`.
    pub fn usd_string(&self, decimals: u8) -> Option<String> {
        self.atomic(decimals).ok().map(|a| a.to_human(decimals))
    }

    pub(crate) fn settle_timing(&self) -> Option<SettleTiming> {
        self.settle
    }

    pub(crate) fn streams(&self) -> bool {
        self.streamed
    }

    pub(crate) fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    pub(crate) fn service_label(&self) -> Option<&str> {
        self.service.as_deref()
    }

    pub(crate) fn job_label(&self) -> Option<&str> {
        self.job.as_deref()
    }

    pub(crate) fn take_extensions(&mut self) -> http::Extensions {
        std::mem::take(&mut self.extensions)
    }
}

/// A request refused before payment: bad input, answered with `status` and a JSON `body`
/// that says what to fix. No money is asked for or taken.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    /// The status (400 unless said otherwise).
    pub status: StatusCode,
    /// The JSON body; always has an `error` string.
    pub body: Value,
}

impl Rejection {
    /// A 400 whose body is `{"error": message}`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            body: json!({"error": message.into()}),
        }
    }

    /// The same rejection with another status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The same rejection with `key: value` added to the body (a `hint`, the valid choices).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        if let Value::Object(map) = &mut self.body {
            map.insert(key.to_owned(), value.into());
        }
        self
    }
}

type QuoteFn = dyn Fn(&Parts, &Bytes) -> Result<Quote, Rejection> + Send + Sync;

/// What a route charges and how.
#[derive(Clone)]
pub struct RoutePrice {
    pricing: Pricing,
    pub(crate) description: String,
    pub(crate) mime_type: Option<String>,
    pub(crate) settle: SettleTiming,
}

#[derive(Clone)]
enum Pricing {
    Fixed(Quote),
    Computed(Arc<QuoteFn>),
}

impl fmt::Debug for RoutePrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pricing = match &self.pricing {
            Pricing::Fixed(quote) => format!("fixed {:?}", quote.usd.as_str()),
            Pricing::Computed(_) => "computed from the request".to_owned(),
        };
        f.debug_struct("RoutePrice")
            .field("pricing", &pricing)
            .field("description", &self.description)
            .field("settle", &self.settle)
            .finish()
    }
}

impl RoutePrice {
    /// The same USD price for every request.
    pub fn fixed(usd: Price) -> Self {
        Self::with_pricing(Pricing::Fixed(Quote::usd(usd)))
    }

    /// A price quoted from each request, body included, before anything is paid or run.
    /// The function validates the input too: its [`Rejection`] is sent as is.
    pub fn computed(
        quote: impl Fn(&Parts, &Bytes) -> Result<Quote, Rejection> + Send + Sync + 'static,
    ) -> Self {
        Self::with_pricing(Pricing::Computed(Arc::new(quote)))
    }

    fn with_pricing(pricing: Pricing) -> Self {
        Self {
            pricing,
            description: String::new(),
            mime_type: Some("application/json".to_owned()),
            settle: SettleTiming::AfterHandler,
        }
    }

    /// What the route sells, shown in the challenge and the HTML paywall.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// The media type of what the route returns.
    pub fn mime_type(mut self, mime_type: impl Into<String>) -> Self {
        self.mime_type = Some(mime_type.into());
        self
    }

    /// Settle before running the handler (for long jobs).
    pub fn settle_before_handler(mut self) -> Self {
        self.settle = SettleTiming::BeforeHandler;
        self
    }

    pub(crate) fn quote(&self, parts: &Parts, body: &Bytes) -> Result<Quote, Rejection> {
        match &self.pricing {
            Pricing::Fixed(quote) => Ok(quote.clone()),
            Pricing::Computed(quote) => quote(parts, body),
        }
    }

    /// Whether the price depends on the body (so the body must be read first).
    pub(crate) fn reads_body(&self) -> bool {
        matches!(self.pricing, Pricing::Computed(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_convert_with_each_assets_decimals() {
        let quote = Quote::per_unit("0.003".parse().unwrap(), 1500, 1000);
        assert_eq!(quote.atomic(6).unwrap(), TokenAmount::from_atomic(4500));
        assert_eq!(quote.usd_string(6).as_deref(), Some("0.0045"));
        assert_eq!(
            quote.atomic(18).unwrap(),
            TokenAmount::from_atomic(4_500_000_000_000_000)
        );
    }

    #[test]
    fn rejections_carry_hints() {
        let rejection = Rejection::bad_request("unknown service \"x\"")
            .with("available_services", vec!["embed-l4"])
            .with_status(StatusCode::NOT_FOUND);
        assert_eq!(rejection.status, StatusCode::NOT_FOUND);
        assert_eq!(rejection.body["available_services"][0], "embed-l4");
        assert_eq!(rejection.body["error"], "unknown service \"x\"");
    }
}
