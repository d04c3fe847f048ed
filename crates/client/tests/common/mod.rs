//! What the client's integration tests stand on: a route behind our paywall that keeps the
//! requests it was paid with, an app served on a loopback port, and a paying client with a
//! ledger of its own.
#![allow(dead_code, unreachable_pub)]

pub mod batch;

use std::sync::{Arc, Mutex};

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::routing::{MethodRouter, get};
use x402_client::{Ledger, PayingClient, Policy};
use x402_paywall::RoutePrice;
use x402_testkit::Stack;

/// Serves `app` on a free loopback port; the URL of `path` there.
pub async fn serve(app: axum::Router, path: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A client paying as `signer` over `http` with the default policy, its ledger in memory
/// (read it with [`PayingClient::ledger`]).
pub fn paying_client(http: reqwest::Client, signer: &PrivateKeySigner) -> PayingClient {
    PayingClient::new(
        http,
        signer.clone(),
        Policy::default(),
        Ledger::in_memory().unwrap(),
    )
}

/// `GET /data` behind our paywall, settling on a devnet through our facilitator, keeping the
/// headers of every request that carried a payment.
pub struct PaidRoute {
    /// The devnet and the facilitator the paywall settles through.
    pub settling: Stack,
    /// The route's URL.
    pub url: String,
    paid: Arc<Mutex<Vec<HeaderMap>>>,
}

impl PaidRoute {
    /// The route answering `paid data` at `price` (`"$0.01"`).
    pub async fn start(price: &str) -> Self {
        Self::with_handler(price, get(|| async { "paid data" })).await
    }

    /// The route answering with `handler` at `price`.
    pub async fn with_handler(price: &str, handler: MethodRouter) -> Self {
        let settling = Stack::start().await;
        let paywall = settling.paywall();
        let paid = Arc::new(Mutex::new(Vec::new()));
        let seen = paid.clone();
        let keep_paid = move |request: Request, next: Next| {
            let headers = request.headers();
            if headers.contains_key("payment-signature") || headers.contains_key("x-payment") {
                seen.lock().unwrap().push(headers.clone());
            }
            next.run(request)
        };
        let route = handler
            .layer(paywall.layer(RoutePrice::fixed(price.parse().unwrap())))
            .layer(axum::middleware::from_fn(keep_paid));
        let url = serve(axum::Router::new().route("/data", route), "/data").await;
        Self {
            settling,
            url,
            paid,
        }
    }

    /// The headers of each request that carried a payment, in order.
    pub fn paid_requests(&self) -> Vec<HeaderMap> {
        self.paid.lock().unwrap().clone()
    }

    /// The devnet's first funded payer.
    pub fn payer(&self) -> &PrivateKeySigner {
        &self.settling.chain.devnet.payers()[0].signer
    }

    /// A client of [`Self::payer`] with the default policy and a ledger of its own.
    pub fn client(&self) -> PayingClient {
        paying_client(reqwest::Client::new(), self.payer())
    }

    /// The payee's token balance.
    pub async fn payee_balance(&self) -> U256 {
        let chain = &self.settling.chain;
        chain.balance(chain.devnet.pay_to().address).await
    }
}
