//! A paid API in a few dozen lines: `GET /joke` costs $0.001, `POST /count-words` costs
//! $0.0001 per word of the body. Payments are verified and settled by the facilitator at
//! `FACILITATOR_URL` and paid to `PAY_TO` in USDC on Base (`NETWORK`, `ASSET`, `ASSET_NAME`
//! and `ASSET_VERSION` change the asset). Prints `LISTENING <port>` once it serves.
//!
//! ```sh
//! FACILITATOR_URL=http://127.0.0.1:8402 PAY_TO=0x… cargo run -p x402-example-paid-api
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};
use x402_paywall::{
    HttpFacilitator, Paid, PaymentOption, Paywall, PaywallConfig, Quote, Rejection, RoutePrice,
};
use x402_proto::Network;

fn env(name: &str, default: Option<&str>) -> anyhow::Result<String> {
    match (std::env::var(name), default) {
        (Ok(value), _) => Ok(value),
        (Err(_), Some(default)) => Ok(default.to_owned()),
        (Err(_), None) => anyhow::bail!("set {name}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let facilitator =
        HttpFacilitator::new(&env("FACILITATOR_URL", None)?, Duration::from_secs(30))?;
    let usdc = PaymentOption::exact_evm(
        Network::new(env("NETWORK", Some("eip155:8453"))?),
        env("ASSET", Some("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"))?,
        6,
        env("PAY_TO", None)?,
        &env("ASSET_NAME", Some("USD Coin"))?,
        &env("ASSET_VERSION", Some("2"))?,
    )
    .with_max_timeout(120);
    let paywall = Paywall::new(Arc::new(facilitator), vec![usdc], PaywallConfig::default())?;

    // A fixed price, and a price computed from the body before anything is paid.
    let joke = RoutePrice::fixed("$0.001".parse()?).description("A joke");
    let per_word = RoutePrice::computed(|_, body| {
        let words = std::str::from_utf8(body)
            .map_err(|_| Rejection::bad_request("send the text as UTF-8"))?
            .split_whitespace()
            .count() as u64;
        if words == 0 {
            return Err(Rejection::bad_request("send some words to count"));
        }
        Ok(Quote::per_unit("0.0001".parse().expect("a price"), words, 1).with_extension(words))
    })
    .description("Counts words, $0.0001 each");

    let app = Router::new()
        .route("/joke", get(tell_joke).layer(paywall.layer(joke)))
        .route(
            "/count-words",
            post(count_words).layer(paywall.layer(per_word)),
        );

    let listener = tokio::net::TcpListener::bind(env("LISTEN", Some("127.0.0.1:3000"))?)
        .await
        .context("binding LISTEN")?;
    println!("LISTENING {}", listener.local_addr()?.port());
    axum::serve(listener, app).await?;
    Ok(())
}

/// `GET /joke`: runs only once paid; `Paid` says who paid.
async fn tell_joke(Extension(paid): Extension<Paid>) -> Json<Value> {
    Json(json!({
        "joke": "A 402 walks into a bar. The bartender says: that will be $0.001.",
        "paid_by": paid.payer(),
    }))
}

/// `POST /count-words`: the count the price was computed from, and what was charged for it.
async fn count_words(
    Extension(words): Extension<u64>,
    Extension(paid): Extension<Paid>,
) -> Json<Value> {
    Json(json!({"words": words, "charged_usd": paid.amount_human()}))
}
