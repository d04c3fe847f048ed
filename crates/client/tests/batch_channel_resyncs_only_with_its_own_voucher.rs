//! A `batch-settlement` client that lost its channel's record (a fresh ledger) resyncs from
//! the server's corrective 402 only when the voucher the server holds recovers to the client's
//! own signer and the chain agrees: against the official server it then pays on; against a
//! server that lies with a voucher someone else signed, it adopts nothing.

mod common;

use std::sync::{Arc, Mutex};

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use common::batch::{OfficialBatch, PRICE, USAGE};
use serde_json::{Value, json};
use x402_client::{Ledger, PayError, PayingClient, Policy};
use x402_evm::batch::{ChannelId, sign_voucher};
use x402_proto::{ReasonCode, decode_header, encode_header, headers, v2};
use x402_testkit::Chain;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_client_adopts_the_official_servers_count_after_checking_its_voucher() {
    let stack = OfficialBatch::start().await;
    let signer = stack.payer(1).clone();
    let first = stack.client_with(&signer, Ledger::in_memory().unwrap());
    for _ in 0..3 {
        stack.pay(&first).await.unwrap();
    }
    // The same payer on a new machine: no record, the chain shows nothing claimed yet.
    let fresh = stack.client_with(&signer, Ledger::in_memory().unwrap());
    let paid = stack.pay(&fresh).await.unwrap();
    assert_eq!(paid.response.status(), 200);
    let state = &paid.receipt.unwrap().extra.unwrap()["channelState"];
    assert_eq!(state["chargedCumulativeAmount"], (4 * USAGE).to_string());
    let rows = fresh.ledger().payments(0).unwrap();
    let statuses: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(
        statuses,
        ["paid", "failed"],
        "the corrected attempt, then the paid one"
    );
    assert!(
        rows[1]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains(ReasonCode::BATCH_SETTLEMENT_EVM_CUMULATIVE_AMOUNT_MISMATCH.as_str()),
        "{:?}",
        rows[1].detail
    );
    assert_eq!(
        fresh.ledger().channels().unwrap()[0].record.charged,
        4 * USAGE
    );
    // No second deposit: the chain showed the channel funded.
    assert!(fresh.ledger().channel_funds(None).unwrap().is_empty());
}

/// A server that answers every payment with a corrective 402 claiming `CLAIMED` charged,
/// holding a voucher for `SIGNED` signed by `voucher_signer`; it keeps the vouchers it got.
struct Liar {
    url: String,
    seen: Arc<Mutex<Vec<Value>>>,
}

const CLAIMED: u128 = 5_000;
const SIGNED: u128 = 6_000;

impl Liar {
    async fn start(chain: &Chain, voucher_signer: PrivateKeySigner) -> Self {
        let offer = chain.batch_offer(PRICE, Address::repeat_byte(7));
        let domain = chain.batch_domain();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        let handler = move |request_headers: HeaderMap| {
            let (offer, kept, voucher_signer) =
                (offer.clone(), kept.clone(), voucher_signer.clone());
            async move {
                let mut required = v2::PaymentRequired {
                    x402_version: x402_proto::V2::default(),
                    error: None,
                    resource: v2::ResourceInfo {
                        url: "http://liar/batched".into(),
                        description: None,
                        mime_type: None,
                    },
                    accepts: vec![offer.clone()],
                    extensions: None,
                };
                if let Some(payment) = request_headers.get(headers::PAYMENT_SIGNATURE) {
                    let payment: v2::PaymentPayload = decode_header(payment.as_bytes()).unwrap();
                    let voucher = payment.payload["voucher"].clone();
                    kept.lock().unwrap().push(voucher.clone());
                    let id: ChannelId = voucher["channelId"].as_str().unwrap().parse().unwrap();
                    let held = sign_voucher(&voucher_signer, &domain, id, SIGNED)
                        .await
                        .unwrap();
                    required.error = Some(
                        ReasonCode::BATCH_SETTLEMENT_EVM_CUMULATIVE_AMOUNT_MISMATCH
                            .as_str()
                            .into(),
                    );
                    let extra = required.accepts[0].extra.as_mut().unwrap();
                    extra["channelState"] = json!({
                        "channelId": id, "balance": "0", "totalClaimed": "0",
                        "withdrawRequestedAt": 0, "refundNonce": "0",
                        "chargedCumulativeAmount": CLAIMED.to_string(),
                    });
                    extra["voucherState"] = json!({
                        "signedMaxClaimable": SIGNED.to_string(), "signature": held.signature,
                    });
                }
                (
                    StatusCode::PAYMENT_REQUIRED,
                    [(headers::PAYMENT_REQUIRED, encode_header(&required))],
                )
                    .into_response()
            }
        };
        let url = common::serve(
            axum::Router::new().route("/batched", get(handler)),
            "/batched",
        )
        .await;
        Self { url, seen }
    }

    fn vouchers(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }
}

fn client(chain: &Chain, signer: &PrivateKeySigner) -> PayingClient {
    PayingClient::new(
        reqwest::Client::new(),
        signer.clone(),
        Policy::default(),
        Ledger::in_memory().unwrap(),
    )
    .with_chain(chain.devnet.rpc_url().clone())
}

async fn pay(client: &PayingClient, url: &str) -> Result<x402_client::PaidResponse, PayError> {
    client
        .send(client.http().get(url).build().unwrap(), None)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrective_402_with_a_voucher_the_client_never_signed_is_not_adopted() {
    let chain = Chain::start().await;
    let payer = chain.devnet.payers()[0].signer.clone();

    // The voucher is someone else's: the count is not adopted and nothing is retried.
    let liar = Liar::start(&chain, PrivateKeySigner::random()).await;
    let lied_to = client(&chain, &payer);
    match pay(&lied_to, &liar.url).await {
        Err(PayError::Refused {
            status: 402,
            reason,
            ..
        }) => {
            assert!(reason.contains("cumulative_amount_mismatch"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(liar.vouchers().len(), 1, "no retry on a lie");
    let kept = &lied_to.ledger().channels().unwrap()[0].record;
    assert_eq!(kept.charged, 0, "the lie was not adopted");

    // The same answer holding the payer's own voucher is adopted: the retry vouches on it.
    let honest = Liar::start(&chain, payer.clone()).await;
    let trusting = client(&chain, &payer);
    assert!(pay(&trusting, &honest.url).await.is_err());
    let vouchers = honest.vouchers();
    assert_eq!(vouchers.len(), 2, "one retry");
    assert_eq!(vouchers[0]["maxClaimableAmount"], PRICE.to_string());
    assert_eq!(
        vouchers[1]["maxClaimableAmount"],
        (CLAIMED + PRICE).to_string()
    );
}
