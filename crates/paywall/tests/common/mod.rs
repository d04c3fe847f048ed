//! A shop behind the paywall on a dev chain: our facilitator (in process or over HTTP) and
//! an axum app with a few priced routes.
#![allow(dead_code, unreachable_pub)]

pub mod batch;
pub mod streams;
pub mod svm;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use reqwest::Response;
use serde_json::{Value, json};
use x402_facilitator::RunningFacilitator;
use x402_paywall::{Paid, PaymentOption, Paywall, PaywallConfig, Quote, Rejection, RoutePrice};
use x402_proto::Facilitator;
use x402_testkit::{Chain, Wire};

/// Price of the fixed routes, in USD, and in atomic USDC.
pub const PRICE: &str = "$0.01";
pub const PRICE_ATOMIC: u64 = 10_000;

pub struct Shop {
    /// The devnet and our facilitator.
    pub base: x402_testkit::Stack,
    /// What the shop's paywall settles through.
    pub paying: Arc<dyn Facilitator>,
    pub url: String,
    pub http: reqwest::Client,
    /// The payee's balance when the shop opened.
    pub paid_at_start: U256,
}

/// The accepted option for the devnet's USDC, paid to its payee.
pub fn option(chain: &Chain) -> PaymentOption {
    PaymentOption::from_requirements(&chain.requirements(1), 6).with_max_timeout(120)
}

/// How long `/think` takes: a paid handler that runs for seconds, like an LLM call.
pub const THINK: Duration = Duration::from_millis(1_200);

/// The shop's routes behind `paywall`.
pub fn app(paywall: &Paywall) -> Router {
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    let fixed = || RoutePrice::fixed(PRICE.parse().unwrap()).description("Today's weather");
    let priced = RoutePrice::computed(|_, body| {
        let request: Value = serde_json::from_slice(body)
            .map_err(|e| Rejection::bad_request(format!("body is not JSON: {e}")))?;
        let units = request["units"]
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| Rejection::bad_request("units must be a positive integer"))?;
        Ok(Quote::per_unit("0.001".parse().unwrap(), units, 1).with_extension(units))
    });
    Router::new()
        .route(
            "/weather",
            get(|Extension(paid): Extension<Paid>| async move {
                Json(json!({
                    "report": "sunny",
                    "payer": paid.payer(),
                    "amount": paid.amount_human(),
                    "version": paid.version(),
                }))
            })
            .layer(paywall.layer(fixed())),
        )
        .route(
            "/fail",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "backend exploded") })
                .layer(paywall.layer(fixed())),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(700)).await;
                "slow but paid"
            })
            .layer(paywall.layer(fixed())),
        )
        .route(
            "/priced",
            post(
                |Extension(units): Extension<u64>, Extension(paid): Extension<Paid>| async move {
                    Json(json!({"units": units, "charged": paid.amount_human()}))
                },
            )
            .layer(paywall.layer(priced)),
        )
        .route(
            "/think",
            post(move |body: String| {
                let runs = counted.clone();
                async move {
                    let run = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    tokio::time::sleep(THINK).await;
                    Json(json!({"answer": format!("thought about {body}"), "run": run}))
                }
            })
            .layer(paywall.layer(fixed())),
        )
        .route(
            "/runs",
            get(move || async move { runs.load(std::sync::atomic::Ordering::SeqCst).to_string() }),
        )
        .route(
            "/job",
            post(|Extension(paid): Extension<Paid>| async move {
                Json(json!({"transaction": paid.transaction()}))
            })
            .layer(paywall.layer(fixed().settle_before_handler())),
        )
}

impl Shop {
    /// Chain, facilitator, and the shop paid through the facilitator in process.
    pub async fn start() -> Self {
        Self::start_with(|running| Arc::new(running.service().clone())).await
    }

    /// The same, paid through `facilitator` (say, an HTTP one).
    pub async fn start_with(
        make: impl FnOnce(&RunningFacilitator) -> Arc<dyn Facilitator>,
    ) -> Self {
        let base = x402_testkit::Stack::start().await;
        let paying = make(base.facilitator.as_ref().expect("running"));
        let url = serve(&base.chain, paying.clone()).await;
        let paid_at_start = base.pay_to_balance().await;
        Self {
            paid_at_start,
            base,
            paying,
            url,
            http: reqwest::Client::new(),
        }
    }

    /// The same shop served again by a new process (a new paywall with an empty guard, the
    /// same facilitator): what a restart looks like. Its URL.
    pub async fn serve_again(&self) -> String {
        serve(&self.base.chain, self.paying.clone()).await
    }

    /// How many times `/think` ran.
    pub async fn think_runs(&self, url: &str) -> usize {
        let text = self.http.get(format!("{url}/runs")).send().await.unwrap();
        text.text().await.unwrap().parse().unwrap()
    }

    pub fn payer(&self) -> &alloy::signers::local::PrivateKeySigner {
        &self.base.chain.devnet.payers()[0].signer
    }

    pub fn pay_to(&self) -> Address {
        self.base.chain.devnet.pay_to().address
    }

    pub async fn pay_to_balance(&self) -> U256 {
        self.base.pay_to_balance().await
    }

    /// Asserts that the payee received `atomic` units since the shop opened.
    pub async fn assert_paid(&self, atomic: u64) {
        assert_eq!(
            self.pay_to_balance().await - self.paid_at_start,
            U256::from(atomic),
            "the payee received {atomic} since the shop opened"
        );
    }

    /// A payment for `url`'s challenge (the answer to an unpaid GET), signed by the payer as
    /// a client of `wire` would: the header's name and value.
    pub async fn payment_for(&self, url: &str, wire: Wire) -> (&'static str, String) {
        let challenge = self.http.get(url).send().await.unwrap();
        x402_testkit::payment_for(challenge, self.payer(), wire).await
    }

    /// GETs `url` with the payment header `(name, value)`.
    pub async fn get_paid(&self, url: &str, (name, value): &(&'static str, String)) -> Response {
        self.http
            .get(url)
            .header(*name, value)
            .send()
            .await
            .unwrap()
    }
}

async fn serve(chain: &Chain, facilitator: Arc<dyn Facilitator>) -> String {
    let paywall = Paywall::new(facilitator, vec![option(chain)], PaywallConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = app(&paywall);
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A metered scheme's server side, for routes in front of a scripted facilitator: it settles
/// what was used, nothing when nothing was reported, and by the payload's
/// `authorization.validBefore` (the scripted payments' deadline).
#[derive(Debug)]
pub struct ToyMetered;

impl x402_proto::SchemeServer for ToyMetered {
    fn scheme(&self) -> x402_proto::Scheme {
        x402_proto::Scheme::new("toy-metered")
    }

    fn settlement_amount(
        &self,
        _paid: &x402_proto::v2::PaymentRequirements,
        used: Option<x402_proto::U256>,
    ) -> x402_proto::U256 {
        used.unwrap_or(x402_proto::U256::ZERO)
    }

    fn settle_by(&self, payload: &Value) -> Option<u64> {
        payload["authorization"]["validBefore"]
            .as_str()?
            .parse()
            .ok()
    }
}

/// USDC on Base, and a payee, for routes in front of a scripted facilitator.
const BASE_USDC: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
const PAY_TO: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

/// Base USDC paid to one payee, by `exact` and by the toy metered scheme ([`ToyMetered`]).
pub fn exact_and_metered_options() -> (PaymentOption, PaymentOption) {
    let exact = PaymentOption::exact_evm(
        x402_proto::Network::BASE,
        BASE_USDC,
        6,
        PAY_TO,
        "USD Coin",
        "2",
    );
    let metered = PaymentOption {
        scheme: x402_proto::Scheme::new("toy-metered"),
        ..exact.clone()
    };
    (exact, metered)
}
