//! The shop taking Solana USDC beside the devnet's: our facilitator serving both chains (the
//! Solana plug-in registered at start), called in process.

use std::sync::Arc;

use axum::routing::get;
use reqwest::Response;
use x402_paywall::{PaymentOption, Paywall, PaywallConfig};
use x402_proto::Facilitator;
use x402_testkit::{Chain, Solana, Wire};

pub struct SolanaShop {
    pub solana: Solana,
    /// The devnet and our facilitator serving it and Solana.
    pub base: x402_testkit::Stack,
    pub url: String,
    pub http: reqwest::Client,
    /// The Solana payee's USDC when the shop opened.
    pub paid_at_start: u64,
}

/// The Solana option: the chain's USDC paid to its payee.
pub fn solana_option(solana: &Solana) -> PaymentOption {
    let state = solana.state();
    PaymentOption::exact_svm(
        solana.network(),
        state.mint.clone(),
        state.decimals,
        state.pay_to.clone(),
    )
    .with_max_timeout(120)
}

impl SolanaShop {
    /// Both chains, our facilitator, and the shop offering the devnet's USDC and Solana USDC.
    pub async fn start() -> Self {
        let solana = Solana::start().await;
        let base = x402_testkit::serve_with_solana(Chain::start().await, &solana).await;
        let paying: Arc<dyn Facilitator> = base.in_process();
        let paywall = Paywall::new(
            paying,
            vec![super::option(&base.chain), solana_option(&solana)],
            PaywallConfig::default(),
        )
        .unwrap();
        paywall
            .initialize()
            .await
            .expect("the facilitator answers /supported");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = super::app(&paywall).route("/health", get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let paid_at_start = solana.pay_to_balance().await;
        Self {
            solana,
            base,
            url,
            http: reqwest::Client::new(),
            paid_at_start,
        }
    }

    /// A Solana payment for `url`'s challenge (the answer to an unpaid GET) by payer 0, as a
    /// client of `wire` would: the header's name and value.
    pub async fn payment_for(&self, url: &str, wire: Wire) -> (&'static str, String) {
        let challenge = self.http.get(url).send().await.unwrap();
        self.solana.payment_for(challenge, 0, wire).await
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

    /// How many times `/think` ran.
    pub async fn think_runs(&self) -> usize {
        let text = self
            .http
            .get(format!("{}/runs", self.url))
            .send()
            .await
            .unwrap();
        text.text().await.unwrap().parse().unwrap()
    }

    /// Asserts that the Solana payee received `atomic` units since the shop opened.
    pub async fn assert_paid(&self, atomic: u64) {
        assert_eq!(
            self.solana.pay_to_balance().await - self.paid_at_start,
            atomic,
            "the Solana payee received {atomic} since the shop opened"
        );
    }
}
