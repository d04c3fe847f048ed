//! A payment whose answer is lost is recorded `unknown` and keeps counting against the budget;
//! reconciliation reads the authorization on chain and makes it `paid` (it settled) or
//! `released` (it expired unused), and a retry with the same payment that gets a receipt
//! commits it. The servers here settle through a real facilitator on anvil and then never
//! answer, or answer 500.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::U256;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::paying_client;
use x402_client::{Budget, LedgerError, Outcome, PaidResponse, PayError, PayingClient, Reconciled};
use x402_proto::{Facilitator, PaymentRequest, SettleResponse, V2, v2};
use x402_testkit::Chain;

/// What the server does with a paid request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// Settles, then never answers.
    SettleThenHang,
    /// Settles, then never answers the first paid request; answers later ones with the receipt.
    SettleThenHangOnce,
    /// Settles, then answers 500 without a receipt.
    SettleThenFail,
    /// Never settles and never answers.
    Hang,
}

/// $0.01 of the devnet token.
const PRICE: u128 = 10_000;

struct Server {
    chain: Chain,
    url: String,
    /// What the facilitator answered each paid request.
    settlements: Arc<Mutex<Vec<SettleResponse>>>,
    _facilitator: x402_facilitator::RunningFacilitator,
    _dir: tempfile::TempDir,
}

type Settle = Arc<
    dyn Fn(PaymentRequest) -> Pin<Box<dyn Future<Output = SettleResponse> + Send>> + Send + Sync,
>;

async fn server(behaviour: Behaviour, max_timeout_seconds: u64) -> Server {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let facilitator = x402_testkit::start_facilitator(&chain, dir.path()).await;
    let service: Arc<dyn Facilitator> = Arc::new(facilitator.service().clone());
    let settle: Settle = Arc::new(move |request| {
        let service = service.clone();
        Box::pin(async move {
            // One key per request served, as our paywall sends: a retry of the same request
            // with the same payment is answered again.
            let id = x402_proto::PaymentId::derive(&request).expect("readable payment");
            let key = x402_proto::IdempotencyKey::for_request(&id, &[0; 32]);
            service
                .settle(&request, Some(&key))
                .await
                .expect("facilitator answers")
        })
    });

    let mut requirements = chain.requirements(PRICE);
    requirements.max_timeout_seconds = max_timeout_seconds;
    let settlements = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/data", listener.local_addr().unwrap());
    let challenge = v2::PaymentRequired {
        x402_version: V2::default(),
        error: None,
        resource: v2::ResourceInfo {
            url: url.clone(),
            description: Some("data".into()),
            mime_type: None,
        },
        accepts: vec![requirements.clone()],
        extensions: None,
    };
    let record = settlements.clone();
    let app = axum::Router::new().route(
        "/data",
        axum::routing::get(move |headers: HeaderMap| {
            let (challenge, requirements, settle, record) = (
                challenge.clone(),
                requirements.clone(),
                settle.clone(),
                record.clone(),
            );
            async move { handle(behaviour, headers, challenge, requirements, settle, record).await }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        chain,
        url,
        settlements,
        _facilitator: facilitator,
        _dir: dir,
    }
}

impl Server {
    /// The payee's token balance.
    async fn payee_balance(&self) -> U256 {
        self.chain.balance(self.chain.devnet.pay_to().address).await
    }
}

async fn handle(
    behaviour: Behaviour,
    headers: HeaderMap,
    challenge: v2::PaymentRequired,
    requirements: v2::PaymentRequirements,
    settle: Settle,
    record: Arc<Mutex<Vec<SettleResponse>>>,
) -> Response {
    let Some(header) = headers.get("payment-signature") else {
        return (
            StatusCode::PAYMENT_REQUIRED,
            [("payment-required", x402_proto::encode_header(&challenge))],
            "pay",
        )
            .into_response();
    };
    let payload: v2::PaymentPayload = x402_proto::decode_header(header.as_bytes()).unwrap();
    if behaviour == Behaviour::Hang {
        return std::future::pending().await;
    }
    let receipt = settle(PaymentRequest::V2 {
        payload,
        requirements,
    })
    .await;
    assert!(receipt.success, "the facilitator settled: {receipt:?}");
    let attempt = {
        let mut record = record.lock().unwrap();
        record.push(receipt.clone());
        record.len()
    };
    match behaviour {
        Behaviour::SettleThenHangOnce if attempt > 1 => (
            [("payment-response", x402_proto::encode_header(&receipt))],
            "paid data",
        )
            .into_response(),
        Behaviour::SettleThenFail => (StatusCode::INTERNAL_SERVER_ERROR, "broke").into_response(),
        _ => std::future::pending().await,
    }
}

/// A client of payer 0 whose requests give up after 3 s, with a budget for 1.5 payments.
fn client(server: &Server) -> PayingClient {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let client = paying_client(http, &server.chain.devnet.payers()[0].signer);
    client.ledger().set_budget(&Budget::total(15_000)).unwrap();
    client
}

/// `client` pays for the server's route, for `service`.
async fn pay(
    client: &PayingClient,
    server: &Server,
    service: Option<&str>,
) -> Result<PaidResponse, PayError> {
    let request = client.http().get(&server.url).build().unwrap();
    client.send(request, service).await
}

fn status_of(client: &PayingClient, id: i64) -> x402_client::PaymentRecord {
    client
        .ledger()
        .payments(0)
        .unwrap()
        .into_iter()
        .find(|r| r.id == id)
        .unwrap()
}

/// The next $0.01 payment is refused by the budget because `spent` is counted.
fn assert_budget_counts(client: &PayingClient, spent: u64) {
    let intent = x402_client::PaymentIntent {
        url: "http://elsewhere/".into(),
        micro_usd: 10_000,
        amount: "10000".into(),
        ..Default::default()
    };
    match client.ledger().reserve(&intent) {
        Err(LedgerError::BudgetExceeded {
            limit_name: "total",
            spent: counted,
            ..
        }) => assert_eq!(counted, spent),
        other => panic!("expected the budget to refuse, got {other:?}"),
    }
}

async fn mine_a_block(server: &Server) {
    server.chain.devnet.mine().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_payment_whose_answer_was_lost_is_unknown_then_paid() {
    let server = server(Behaviour::SettleThenHang, 60).await;
    let before = server.payee_balance().await;
    let client = client(&server);

    let id = match pay(&client, &server, Some("data")).await {
        Err(PayError::AnswerLost { id, detail }) => {
            assert!(detail.contains("retry with the same payment"), "{detail}");
            id
        }
        other => panic!("expected AnswerLost, got {other:?}"),
    };
    let record = status_of(&client, id);
    assert_eq!(record.status, "unknown");
    assert!(record.nonce.as_deref().is_some_and(|n| n.len() == 66));
    assert_budget_counts(&client, 10_000);
    // The first request settled; the retry got the facilitator's same answer.
    let settlements = server.settlements.lock().unwrap().clone();
    assert_eq!(settlements.len(), 2);
    assert_eq!(settlements[0].transaction, settlements[1].transaction);
    let transaction = settlements[0].transaction.clone();

    let outcomes = client
        .reconcile(server.chain.devnet.rpc_url().as_str())
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [Reconciled {
            id,
            outcome: Outcome::Paid {
                transaction: Some(transaction.clone())
            }
        }]
    );
    let record = status_of(&client, id);
    assert_eq!(record.status, "paid");
    assert_eq!(record.transaction.as_deref(), Some(transaction.as_str()));
    assert_eq!(client.ledger().spent(0).unwrap(), 10_000);
    assert_budget_counts(&client, 10_000);
    // The payee was paid once.
    assert_eq!(server.payee_balance().await - before, U256::from(PRICE));
    // Nothing is left to reconcile.
    assert!(
        client
            .reconcile(server.chain.devnet.rpc_url().as_str())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_payment_that_gets_a_receipt_commits_it() {
    let server = server(Behaviour::SettleThenHangOnce, 60).await;
    let before = server.payee_balance().await;
    let client = client(&server);

    let paid = pay(&client, &server, Some("data")).await.unwrap();
    assert_eq!(paid.response.status(), 200);
    let receipt = paid.receipt.expect("the retry carries the receipt");
    let (_, id) = paid.paid.expect("paid");
    let record = status_of(&client, id);
    assert_eq!(record.status, "paid");
    assert_eq!(record.transaction, Some(receipt.transaction.clone()));
    let settlements = server.settlements.lock().unwrap().clone();
    assert_eq!(settlements.len(), 2, "one request and one retry");
    assert_eq!(settlements[1].transaction, receipt.transaction);
    assert_eq!(server.payee_balance().await - before, U256::from(PRICE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_after_settling_is_unknown_then_paid() {
    let server = server(Behaviour::SettleThenFail, 60).await;
    let client = client(&server);
    let answer = pay(&client, &server, None).await.unwrap();
    assert_eq!(answer.response.status(), 500);
    assert!(answer.paid.is_none());
    let id = answer.unknown.expect("the payment's fate is unknown");
    assert_eq!(status_of(&client, id).status, "unknown");
    assert_budget_counts(&client, 10_000);

    let outcomes = client
        .reconcile(server.chain.devnet.rpc_url().as_str())
        .await
        .unwrap();
    assert!(
        matches!(&outcomes[..], [Reconciled { id: i, outcome: Outcome::Paid { transaction: Some(_) } }] if *i == id),
        "{outcomes:?}"
    );
    assert_eq!(status_of(&client, id).status, "paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsettled_payment_is_released_once_its_authorization_expired() {
    // Valid for 2 s only.
    let server = server(Behaviour::Hang, 2).await;
    let before = server.payee_balance().await;
    let sent_before = server.chain.facilitator_tx_count().await;
    let client = client(&server);
    let rpc = server.chain.devnet.rpc_url().to_string();

    let Err(PayError::AnswerLost { id, .. }) = pay(&client, &server, None).await else {
        panic!("expected AnswerLost");
    };
    assert_eq!(status_of(&client, id).status, "unknown");
    assert_budget_counts(&client, 10_000);

    // Its validBefore has passed by the clock (6 s of timeouts), but the idle chain's latest
    // block is older: a block could still include it, so it stays unknown and counted.
    let valid_before = status_of(&client, id).valid_before.unwrap();
    assert!(x402_evm::unix_now() > valid_before);
    let outcomes = client.reconcile(&rpc).await.unwrap();
    assert_eq!(
        outcomes,
        [Reconciled {
            id,
            outcome: Outcome::StillValid { valid_before }
        }]
    );
    assert_eq!(status_of(&client, id).status, "unknown");
    assert_budget_counts(&client, 10_000);

    // Once the chain is past validBefore, the authorization can never be used.
    mine_a_block(&server).await;
    let outcomes = client.reconcile(&rpc).await.unwrap();
    assert_eq!(
        outcomes,
        [Reconciled {
            id,
            outcome: Outcome::Released
        }]
    );
    let record = status_of(&client, id);
    assert_eq!(record.status, "released");
    assert!(record.detail.unwrap().contains("expired unused"));
    assert_eq!(client.ledger().outstanding(0).unwrap(), 0);
    drop(
        client
            .ledger()
            .reserve(&x402_client::PaymentIntent {
                micro_usd: 10_000,
                ..Default::default()
            })
            .expect("the budget is free again"),
    );
    assert_eq!(server.payee_balance().await, before);
    assert_eq!(server.chain.facilitator_tx_count().await, sent_before);
}
