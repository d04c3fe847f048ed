//! A `batch-settlement` shop on a dev chain: our facilitator in process (holding the receiver
//! authorizer's key, its calls counted), the `BatchServer` plug-in over an in-memory channel
//! store, and one route charged for what its handler reports it used.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use x402_evm::batch::{BatchServer, ChannelId, ChannelRecord, ChannelStore, MemoryChannelStore};
use x402_paywall::{PaymentOption, Paywall, PaywallConfig, RoutePrice};
use x402_proto::{SettleResponse, Usage, decode_header, v2};
use x402_testkit::{BatchPayer, Chain, CountingFacilitator, Stack};

/// The route's price (its most per request): $0.001, in atomic units of the 6-decimal token.
pub const PRICE: u128 = 1_000;

/// What a deposit puts in the channel.
pub const DEPOSIT: u128 = 10_000;

pub struct BatchShop {
    pub stack: Stack,
    pub app: Router,
    pub facilitator: Arc<CountingFacilitator>,
    pub store: Arc<MemoryChannelStore>,
    /// The offer the route's challenge makes.
    pub offer: v2::PaymentRequirements,
    /// How many times the handler ran.
    pub runs: Arc<AtomicUsize>,
}

/// What one paid request got back.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub receipt: Option<SettleResponse>,
    pub challenge: Option<v2::PaymentRequired>,
    pub body: String,
}

/// Reports `x-used` (or the query's `used`) atomic units as its usage, answers with `x-status`
/// (200 by default), after `x-sleep-ms`.
async fn handler(runs: Arc<AtomicUsize>, uri: http::Uri, headers: HeaderMap) -> Response {
    runs.fetch_add(1, Ordering::SeqCst);
    let query = uri.query().unwrap_or_default().to_owned();
    let header = |name: &str| {
        let in_query = name.strip_prefix("x-").and_then(|key| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        });
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .or(in_query)
            .and_then(|v| v.parse::<u64>().ok())
    };
    if let Some(ms) = header("x-sleep-ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = StatusCode::from_u16(header("x-status").unwrap_or(200) as u16).unwrap();
    let used = header("x-used");
    let mut response = (status, format!("served, used {used:?}")).into_response();
    if let Some(used) = used {
        response.extensions_mut().insert(Usage::atomic(used.into()));
    }
    response
}

/// Opens a shop whose `BatchServer` is `configure`d (the facilitator's authorizer delegated).
pub async fn open(configure: impl FnOnce(BatchServer) -> BatchServer) -> BatchShop {
    let authorizer = PrivateKeySigner::random();
    let stack = Stack::with_receiver_authorizer(Chain::start().await, &authorizer).await;
    let facilitator = Arc::new(CountingFacilitator::new(stack.in_process()));
    let store = Arc::new(MemoryChannelStore::new());
    let server = configure(BatchServer::new(store.clone()));
    // The option as configured: the token's EIP-712 domain, no receiver authorizer (the
    // plug-in takes the facilitator's).
    let mut offered = stack.chain.requirements(1);
    offered.scheme = x402_proto::Scheme::BATCH_SETTLEMENT;
    let option = PaymentOption::from_requirements(&offered, 6).with_max_timeout(300);
    let paywall = Paywall::new(facilitator.clone(), vec![option], PaywallConfig::default())
        .unwrap()
        .with_schemes(vec![Arc::new(server)]);
    paywall.initialize().await.expect("the facilitator answers");
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let app = Router::new().route(
        "/units",
        get(move |uri: http::Uri, headers: HeaderMap| handler(counted.clone(), uri, headers))
            .layer(paywall.layer(RoutePrice::fixed("$0.001".parse().unwrap()))),
    );
    let unpaid = app
        .clone()
        .oneshot(Request::get("/units").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(unpaid.status(), 402);
    let challenge: v2::PaymentRequired =
        decode_header(unpaid.headers()["payment-required"].as_bytes()).unwrap();
    let offer = challenge.accepts[0].clone();
    BatchShop {
        stack,
        app,
        facilitator,
        store,
        offer,
        runs,
    }
}

impl BatchShop {
    pub fn chain(&self) -> &Chain {
        &self.stack.chain
    }

    /// Serves the shop over HTTP on a loopback port: its base URL.
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = self.app.clone();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}")
    }

    /// Payer `index`'s first channel for the shop's offer.
    pub fn payer(&self, index: usize) -> BatchPayer {
        self.chain()
            .batch_payer(&self.offer, index, alloy::primitives::B256::ZERO)
    }

    /// Pays the route with `payload`, the handler told by `headers` (`x-used`, `x-status`,
    /// `x-sleep-ms`).
    pub async fn pay(&self, payload: Value, headers: &[(&str, &str)]) -> Answer {
        let mut request = Request::get("/units").header(
            "PAYMENT-SIGNATURE",
            BatchPayer::header(&self.offer, payload),
        );
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let receipt = response
            .headers()
            .get("payment-response")
            .map(|v| decode_header(v.as_bytes()).expect("a receipt"));
        let challenge = response
            .headers()
            .get("payment-required")
            .map(|v| decode_header(v.as_bytes()).expect("a challenge"));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            receipt,
            challenge,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// The server's record of `id`.
    pub async fn record(&self, id: &ChannelId) -> Option<ChannelRecord> {
        self.store.get(id).await.unwrap()
    }

    /// Opens `payer`'s channel with a deposit of [`DEPOSIT`] whose request used `used`;
    /// advances the payer's count.
    pub async fn deposit(&self, payer: &mut BatchPayer, used: u128) -> Answer {
        let payload = payer.deposit(self.chain(), &self.offer, DEPOSIT).await;
        let used = used.to_string();
        let answer = self.pay(payload, &[("x-used", &used)]).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        payer.charged = charged_cumulative(&answer);
        answer
    }
}

/// `chargedAmount` of a receipt.
pub fn charged_amount(answer: &Answer) -> u128 {
    let extra = answer
        .receipt
        .as_ref()
        .expect("a receipt")
        .extra
        .as_ref()
        .expect("extra");
    extra["chargedAmount"].as_str().unwrap().parse().unwrap()
}

/// `channelState.chargedCumulativeAmount` of a receipt.
pub fn charged_cumulative(answer: &Answer) -> u128 {
    let extra = answer
        .receipt
        .as_ref()
        .expect("a receipt")
        .extra
        .as_ref()
        .expect("extra");
    extra["channelState"]["chargedCumulativeAmount"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}
