//! Every response the paywall writes itself: the 402 challenge (v2 header, v1 JSON body or
//! an HTML page), settlement failures, 503 when no facilitator answers, and input refusals.

use axum::body::Body;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use serde_json::json;
use x402_proto::{
    FacilitatorError, SettleResponse, V1, V2, encode_header, headers, payment_identifier, v1, v2,
};

use crate::price::{PaymentOption, Quote, Rejection, RoutePrice};
use crate::service::steps::{Corrective, SettleFailure};

/// The headers a browser script must be allowed to read.
const EXPOSED: &str = "PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE";

/// Lets cross-origin scripts read the payment headers of any paywalled response.
pub(crate) fn expose_payment_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
}

/// The receipt header that answers the payment header a client used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReceiptHeader {
    /// `X-PAYMENT` → `X-PAYMENT-RESPONSE`.
    V1,
    /// `PAYMENT-SIGNATURE` → `PAYMENT-RESPONSE`.
    V2,
}

impl ReceiptHeader {
    pub(crate) fn request_header(self) -> &'static str {
        match self {
            Self::V1 => headers::X_PAYMENT,
            Self::V2 => headers::PAYMENT_SIGNATURE,
        }
    }

    fn name(self) -> HeaderName {
        HeaderName::from_static(match self {
            Self::V1 => "x-payment-response",
            Self::V2 => "payment-response",
        })
    }

    pub(crate) fn attach(self, headers: &mut HeaderMap, receipt: &SettleResponse) {
        if let Ok(value) = HeaderValue::from_str(&encode_header(receipt)) {
            headers.insert(self.name(), value);
        }
    }
}

/// A request's challenge: what it costs, in every accepted asset.
#[derive(Debug)]
pub(crate) struct Challenge {
    resource: v2::ResourceInfo,
    offers: Vec<(v2::PaymentRequirements, PaymentOption)>,
    /// The price in USD, for people (the HTML page).
    usd: Option<String>,
    /// Whether payments must carry a `payment-identifier` id.
    require_payment_identifier: bool,
    /// Whether the challenge declares `eip2612GasSponsoring`.
    gas_sponsoring: bool,
}

/// The `eip2612GasSponsoring` extension's key.
pub(crate) const EIP2612_GAS_SPONSORING: &str = "eip2612GasSponsoring";

/// The `eip2612GasSponsoring` declaration of a challenge: a payer without a Permit2 allowance
/// may send an EIP-2612 approval of Permit2 along with its payment, and the facilitator
/// settles both in one transaction.
fn gas_sponsoring_declaration() -> serde_json::Value {
    json!({
        "info": {
            "description": "The facilitator accepts an EIP-2612 approval of the canonical Permit2 sent with the payment.",
            "version": "1",
        },
        "schema": {
            "type": "object",
            "required": ["from", "asset", "spender", "amount", "nonce", "deadline", "signature", "version"],
            "properties": {
                "from": {"type": "string", "pattern": "^0x[a-fA-F0-9]{40}$"},
                "asset": {"type": "string", "pattern": "^0x[a-fA-F0-9]{40}$"},
                "spender": {"type": "string", "pattern": "^0x[a-fA-F0-9]{40}$"},
                "amount": {"type": "string", "pattern": "^[0-9]+$"},
                "nonce": {"type": "string", "pattern": "^[0-9]+$"},
                "deadline": {"type": "string", "pattern": "^[0-9]+$"},
                "signature": {"type": "string", "pattern": "^0x[a-fA-F0-9]+$"},
                "version": {"type": "string"},
            },
        },
    })
}

impl Challenge {
    pub(crate) fn build(
        options: &[PaymentOption],
        enhance: impl Fn(&mut v2::PaymentRequirements),
        quote: &Quote,
        route: &RoutePrice,
        parts: &Parts,
        public_url: Option<&str>,
        require_payment_identifier: bool,
    ) -> Result<Self, Rejection> {
        let mut offers = Vec::with_capacity(options.len());
        for option in options {
            let amount = quote.atomic(option.decimals).map_err(|e| {
                Rejection::bad_request(format!("this request cannot be priced: {e}"))
            })?;
            let mut requirements = option.requirements(amount);
            enhance(&mut requirements);
            offers.push((requirements, option.clone()));
        }
        // Offers no client can pay yet (a Solana offer before the facilitator named its fee
        // payer) are left out, unless that would leave none.
        if offers.iter().any(|(r, _)| PaymentOption::payable(r)) {
            offers.retain(|(r, _)| PaymentOption::payable(r));
        }
        let usd = options.first().and_then(|o| quote.usd_string(o.decimals));
        let description = quote
            .description()
            .map(str::to_owned)
            .or_else(|| (!route.description.is_empty()).then(|| route.description.clone()));
        Ok(Self {
            resource: v2::ResourceInfo {
                url: resource_url(parts, public_url),
                description,
                mime_type: route.mime_type.clone(),
            },
            offers,
            usd,
            require_payment_identifier,
            gas_sponsoring: false,
        })
    }

    /// Declares `eip2612GasSponsoring` (when `on`).
    pub(crate) fn with_gas_sponsoring(mut self, on: bool) -> Self {
        self.gas_sponsoring = on;
        self
    }

    pub(crate) fn resource(&self) -> &v2::ResourceInfo {
        &self.resource
    }

    pub(crate) fn offers(
        &self,
    ) -> impl Iterator<Item = (&v2::PaymentRequirements, &PaymentOption)> {
        self.offers.iter().map(|(offer, option)| (offer, option))
    }

    /// A 402 saying `error`: the v2 challenge in `PAYMENT-REQUIRED`, and as the body either
    /// the v1 challenge (JSON) or, for browsers, an HTML page.
    pub(crate) fn respond(
        &self,
        error: &str,
        request_headers: &HeaderMap,
        receipt: Option<(ReceiptHeader, &SettleResponse)>,
    ) -> Response<Body> {
        self.respond_with(error, request_headers, receipt, None)
    }

    /// [`Self::respond`], the offer a client paid gaining `corrective`'s keys in its `extra`
    /// (a corrective 402: the scheme's view of the client's state, for it to catch up).
    pub(crate) fn respond_corrected(
        &self,
        error: &str,
        request_headers: &HeaderMap,
        corrective: Option<&Corrective>,
    ) -> Response<Body> {
        self.respond_with(error, request_headers, None, corrective)
    }

    fn respond_with(
        &self,
        error: &str,
        request_headers: &HeaderMap,
        receipt: Option<(ReceiptHeader, &SettleResponse)>,
        corrective: Option<&Corrective>,
    ) -> Response<Body> {
        let mut extensions = json!({
            payment_identifier::KEY:
                payment_identifier::declaration(self.require_payment_identifier),
        });
        if self.gas_sponsoring {
            extensions[EIP2612_GAS_SPONSORING] = gas_sponsoring_declaration();
        }
        let v2_challenge = v2::PaymentRequired {
            x402_version: V2::default(),
            error: Some(error.to_owned()),
            resource: self.resource.clone(),
            accepts: self
                .offers
                .iter()
                .map(|(offer, _)| corrected(offer, corrective))
                .collect(),
            extensions: Some(extensions),
        };
        let v1_challenge = v1::PaymentRequired {
            x402_version: V1::default(),
            error: Some(error.to_owned()),
            accepts: self
                .offers
                .iter()
                .filter_map(|(offer, _)| v1::PaymentRequirements::from_v2(offer, &self.resource))
                .collect(),
            payer: receipt.and_then(|(_, r)| r.payer.clone()),
        };
        let (content_type, body) = if wants_html(request_headers) {
            ("text/html; charset=utf-8", Body::from(self.html(error)))
        } else {
            (
                "application/json",
                Body::from(serde_json::to_vec(&v1_challenge).unwrap_or_default()),
            )
        };
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::PAYMENT_REQUIRED;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(value) = HeaderValue::from_str(&encode_header(&v2_challenge)) {
            headers.insert(HeaderName::from_static("payment-required"), value);
        }
        if let Some((kind, receipt)) = receipt {
            kind.attach(headers, receipt);
        }
        response
    }

    /// The answer when settlement did not succeed: 402 with the failed receipt, or 503 when
    /// no facilitator answered. Never the handler's body.
    pub(crate) fn settle_failed(
        &self,
        failure: SettleFailure,
        request_headers: &HeaderMap,
        kind: ReceiptHeader,
    ) -> Response<Body> {
        match failure {
            SettleFailure::Unavailable(error) => unavailable(&error),
            SettleFailure::Refused(receipt) => {
                let reason = receipt
                    .error_reason
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "settlement_failed".to_owned());
                let message = match &receipt.error_message {
                    Some(message) => format!("{reason}: {message}"),
                    None => reason,
                };
                self.respond(&message, request_headers, Some((kind, &receipt)))
            }
        }
    }

    fn html(&self, error: &str) -> String {
        let what = self
            .resource
            .description
            .as_deref()
            .unwrap_or("this resource");
        let price = self
            .usd
            .as_deref()
            .map(|usd| format!("${usd}"))
            .unwrap_or_else(|| "a small payment".to_owned());
        let rows: String = self
            .offers
            .iter()
            .map(|(offer, option)| {
                format!(
                    "<tr><td>{}</td><td>{} atomic units of <code>{}</code></td><td><code>{}</code></td></tr>",
                    escape(offer.network.as_str()),
                    escape(&offer.amount.to_string()),
                    escape(&option.asset),
                    escape(&offer.pay_to),
                )
            })
            .collect();
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Payment required</title>\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <style>body{{font-family:system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;color:#222}}\
             code{{font-size:.85em;word-break:break-all}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.4rem;text-align:left}}</style>\
             </head><body><h1>Payment required</h1>\
             <p>{what} costs <strong>{price}</strong> in USDC, paid per request with the \
             <a href=\"https://x402.org\">x402</a> protocol.</p>\
             <p>{error}</p>\
             <table><tr><th>Network</th><th>Amount</th><th>Pay to</th></tr>{rows}</table>\
             <p>Pay with any x402 client (for example <code>@x402/fetch</code> or <code>x402 pay</code>): \
             it reads the <code>PAYMENT-REQUIRED</code> header of this response, signs a USDC \
             authorization and retries with it.</p>\
             <p>Resource: <code>{url}</code></p></body></html>\n",
            what = escape(what),
            price = escape(&price),
            error = escape(error),
            url = escape(&self.resource.url),
        )
    }
}

/// Whether the client is a browser asking for a page.
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

fn resource_url(parts: &Parts, public_url: Option<&str>) -> String {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    match public_url {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => {
            let host = parts
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .or_else(|| parts.uri.authority().map(|a| a.as_str()))
                .unwrap_or("localhost");
            format!("http://{host}{path}")
        }
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `offer`, with `corrective`'s keys merged into its `extra` when it is the offer they are for
/// (same scheme, network, asset and payee).
fn corrected(
    offer: &v2::PaymentRequirements,
    corrective: Option<&Corrective>,
) -> v2::PaymentRequirements {
    let mut offer = offer.clone();
    let Some(corrective) = corrective else {
        return offer;
    };
    let paid = &corrective.offer;
    let same = offer.scheme == paid.scheme
        && offer.network == paid.network
        && offer.asset.eq_ignore_ascii_case(&paid.asset)
        && offer.pay_to.eq_ignore_ascii_case(&paid.pay_to);
    if let (true, serde_json::Value::Object(keys)) = (same, &corrective.extra) {
        let extra = offer
            .extra
            .get_or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let serde_json::Value::Object(extra) = extra {
            extra.extend(keys.clone());
        }
    }
    offer
}

/// A JSON answer the paywall writes itself (a refund acknowledged).
pub(crate) fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// 503: no facilitator answered, so nothing can be verified or settled and nothing is served.
pub(crate) fn unavailable(error: &FacilitatorError) -> Response<Body> {
    tracing::warn!(%error, "payment facilitator unavailable; refusing to serve");
    let body = json!({
        "error": "the payment facilitator is unavailable; nothing was charged, try again shortly",
        "detail": error.to_string(),
        "retryable": error.is_retryable(),
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// A refusal of the input, before any payment.
pub(crate) fn rejection(rejection: Rejection) -> Response<Body> {
    let mut response = Response::new(Body::from(rejection.body.to_string()));
    *response.status_mut() = rejection.status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<b>\"x\" & 'y'</b>"),
            "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;"
        );
    }

    #[test]
    fn a_challenge_offers_every_option_in_its_own_decimals() {
        let usdc = PaymentOption::exact_evm(
            x402_proto::Network::BASE,
            "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
            6,
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "USD Coin",
            "2",
        )
        .with_max_timeout(60);
        let other = PaymentOption {
            network: x402_proto::Network::new("eip155:999999".to_owned()),
            asset: "0x0000000000000000000000000000000000000abc".into(),
            decimals: 18,
            ..usdc.clone()
        };
        let route = RoutePrice::fixed("$0.01".parse().unwrap()).description("weather");
        let (parts, ()) = http::Request::builder()
            .uri("/weather")
            .header("host", "shop.test")
            .body(())
            .unwrap()
            .into_parts();
        let quote = Quote::usd("$0.01".parse().unwrap());
        let challenge =
            Challenge::build(&[usdc, other], |_| {}, &quote, &route, &parts, None, false).unwrap();
        let amounts: Vec<String> = challenge
            .offers()
            .map(|(o, _)| o.amount.to_string())
            .collect();
        assert_eq!(amounts, ["10000", "10000000000000000"]);

        let response = challenge.respond("Payment required", &HeaderMap::new(), None);
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
        let header = response.headers()["payment-required"].as_bytes();
        let v2: v2::PaymentRequired = x402_proto::decode_header(header).unwrap();
        assert_eq!(v2.accepts.len(), 2);
        assert_eq!(v2.resource.url, "http://shop.test/weather");
        let declared = &v2.extensions.as_ref().unwrap()["payment-identifier"];
        assert_eq!(declared["info"]["required"], false);
        // The v1 body lists only the options v1 clients can name (base has a v1 name; the
        // other chain does not).
        let body = futures_body(response);
        let v1: v1::PaymentRequired = serde_json::from_slice(&body).unwrap();
        assert_eq!(v1.accepts.len(), 1);
        assert_eq!(v1.accepts[0].network.as_str(), "base");
    }

    fn futures_body(response: Response<Body>) -> bytes::Bytes {
        use http_body_util::BodyExt;
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(response.into_body().collect())
            .unwrap()
            .to_bytes()
    }

    #[test]
    fn resource_urls_prefer_the_public_base() {
        let (parts, ()) = http::Request::builder()
            .uri("/run?x=1")
            .header("host", "127.0.0.1:9000")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(resource_url(&parts, None), "http://127.0.0.1:9000/run?x=1");
        assert_eq!(
            resource_url(&parts, Some("https://api.example.com/")),
            "https://api.example.com/run?x=1"
        );
    }
}
