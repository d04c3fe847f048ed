//! The client pays servers it did not grow up with: a v1-only server (JSON challenge, reads only
//! `X-PAYMENT`), and the official `@x402/express` server (npm 2.27.0) settling through our
//! facilitator on anvil.

mod common;

use std::process::Command;
use std::sync::Arc;

use alloy::primitives::U256;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{paying_client, serve};
use x402_facilitator::RunningFacilitator;
use x402_proto::{Facilitator, PaymentRequest, V1, decode_header, encode_header, v1, v2};
use x402_testkit::Chain;

async fn facilitator(chain: &Chain, dir: &tempfile::TempDir) -> RunningFacilitator {
    x402_testkit::start_facilitator(chain, dir.path()).await
}

#[derive(Clone)]
struct V1Server {
    facilitator: Arc<dyn Facilitator>,
    requirements: v1::PaymentRequirements,
}

/// A server that speaks only x402 v1, as the legacy SDKs do.
async fn v1_only(State(server): State<V1Server>, headers: HeaderMap) -> Response {
    assert!(
        !headers.contains_key("payment-signature"),
        "a v1 server is paid with X-PAYMENT"
    );
    let challenge = |error: &str| {
        let body = v1::PaymentRequired {
            x402_version: V1::default(),
            error: Some(error.to_owned()),
            accepts: vec![server.requirements.clone()],
            payer: None,
        };
        (StatusCode::PAYMENT_REQUIRED, axum::Json(body)).into_response()
    };
    let Some(header) = headers.get("x-payment") else {
        return challenge("X-PAYMENT header is required");
    };
    let Ok(payload) = decode_header::<v1::PaymentPayload>(header.as_bytes()) else {
        return challenge("undecodable X-PAYMENT");
    };
    let request = PaymentRequest::V1 {
        payload,
        requirements: server.requirements.clone(),
    };
    let verified = server.facilitator.verify(&request).await.unwrap();
    if !verified.is_valid {
        return challenge(&format!("{:?}", verified.invalid_reason));
    }
    let receipt = server.facilitator.settle(&request, None).await.unwrap();
    (
        [("x-payment-response", encode_header(&receipt))],
        "v1 content",
    )
        .into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_only_server_is_paid_with_x_payment() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let running = facilitator(&chain, &dir).await;
    let resource = v2::ResourceInfo {
        url: "http://legacy/v1".into(),
        description: Some("legacy".into()),
        mime_type: None,
    };
    let requirements =
        v1::PaymentRequirements::from_v2(&chain.requirements(10_000), &resource).unwrap();
    assert_eq!(requirements.network.as_str(), "base");
    let state = V1Server {
        facilitator: Arc::new(running.service().clone()),
        requirements,
    };
    let app = axum::Router::new()
        .route("/v1", axum::routing::get(v1_only))
        .with_state(state);
    let url = serve(app, "/v1").await;

    let payee = chain.devnet.pay_to().address;
    let before = chain.balance(payee).await;
    let client = paying_client(reqwest::Client::new(), &chain.devnet.payers()[1].signer);
    let paid = client
        .send(client.http().get(&url).build().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(paid.response.status(), 200);
    let receipt = paid.receipt.expect("X-PAYMENT-RESPONSE read");
    assert!(receipt.success);
    assert_eq!(paid.response.text().await.unwrap(), "v1 content");
    assert_eq!(chain.balance(payee).await - before, U256::from(10_000));
    let record = &client.ledger().payments(0).unwrap()[0];
    assert_eq!(record.status, "paid");
    assert_eq!(
        record.transaction.as_deref(),
        Some(receipt.transaction.as_str())
    );
    assert_eq!(record.network, "eip155:8453");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_express_server_is_paid_and_settles_on_anvil() {
    let tools = x402_testkit::official_sdks("@x402/express");
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let running = facilitator(&chain, &dir).await;
    let payee = chain.devnet.pay_to().address;
    let mut command = Command::new("node");
    command
        .arg(tools.join("interop/express-server.mjs"))
        .env("FACILITATOR_URL", running.url())
        .env("PAY_TO", payee.to_checksum(None))
        .env("PRICE", "$0.02");
    let (_server, port) = x402_testkit::spawn_announcing(command, "LISTENING ").await;

    let before = chain.balance(payee).await;
    let client = paying_client(reqwest::Client::new(), &chain.devnet.payers()[2].signer);
    let url = format!("http://127.0.0.1:{port}/paid");
    let paid = client
        .send(client.http().get(&url).build().unwrap(), Some("express"))
        .await
        .unwrap();
    assert_eq!(paid.response.status(), 200);
    let receipt = paid.receipt.expect("PAYMENT-RESPONSE");
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(chain.balance(payee).await - before, U256::from(20_000));
    assert_eq!(client.ledger().payments(0).unwrap()[0].micro_usd, 20_000);
}
