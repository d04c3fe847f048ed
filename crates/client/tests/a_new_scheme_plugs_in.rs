//! A payment mechanism none of our crates knows, registered at start on all three sides, is
//! offered in a 402, paid by the client, and verified and settled by the facilitator over
//! HTTP: the scheme seam needs no change to the paywall, facilitator or client crates.
//!
//! The toy scheme `toy-iou` runs on the made-up network `toy:1`: a payer holds a balance in
//! the facilitator's ledger and pays with an IOU (payer, payee, amount, nonce) sealed with a
//! secret only it and the ledger share; settling debits the payer once per nonce.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::keccak256;
use axum::Router;
use axum::routing::get;
use x402_client::{KnownAsset, Ledger, PayingClient, Policy};
use x402_facilitator::{FacilitatorService, HttpOptions, Metrics, SqliteStore};
use x402_paywall::{HttpFacilitator, PaymentOption, Paywall, PaywallConfig, RoutePrice};
use x402_proto::{
    BoxFuture, Facilitator, FacilitatorError, IdempotencyKey, Network, PaymentId, PaymentIdError,
    PaymentRequest, ReasonCode, Scheme, SchemeClient, SchemeServer, SchemeSignError,
    SettleResponse, SignedPayload, SupportedKind, SupportedResponse, TokenAmount, VerifyResponse,
    v2,
};

const TOY: Scheme = Scheme::from_static("toy-iou");
const TOY_NET: &str = "toy:1";
const ASSET: &str = "toy-credits";

fn seal(secret: &str, payer: &str, pay_to: &str, amount: &str, nonce: &str) -> String {
    keccak256(format!("{secret}|{payer}|{pay_to}|{amount}|{nonce}")).to_string()
}

/// The facilitator side: a ledger of balances, spent nonces and receipts.
#[derive(Debug, Default)]
struct ToyFacilitator {
    secrets: HashMap<String, String>,
    balances: Mutex<HashMap<String, u64>>,
    spent: Mutex<HashSet<String>>,
}

impl ToyFacilitator {
    fn check(&self, request: &PaymentRequest) -> Result<(String, String, u64, String), String> {
        let payload = request.payload();
        let field = |name: &str| {
            payload
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| format!("payload.{name} is missing"))
        };
        let (payer, pay_to, amount, nonce) = (
            field("payer")?,
            field("payTo")?,
            field("amount")?,
            field("nonce")?,
        );
        let secret = self
            .secrets
            .get(&payer)
            .ok_or_else(|| format!("{payer} has no account"))?;
        if field("seal")? != seal(secret, &payer, &pay_to, &amount, &nonce) {
            return Err("the seal does not match".into());
        }
        let requirements = request.requirements();
        if pay_to != requirements.pay_to || amount != requirements.amount.to_string() {
            return Err("the IOU is not for these requirements".into());
        }
        let amount: u64 = amount.parse().map_err(|_| "amount is not a number")?;
        Ok((payer, pay_to, amount, nonce))
    }

    /// Debits the payer once per nonce; every refusal is a failed settlement, never an error.
    fn settle_iou(&self, request: &PaymentRequest) -> SettleResponse {
        let network = request.wire_network().clone();
        let (payer, pay_to, amount, nonce) = match self.check(request) {
            Ok(checked) => checked,
            Err(why) => {
                return SettleResponse::failure(
                    network,
                    ReasonCode::INVALID_PAYLOAD,
                    why,
                    None,
                    None,
                );
            }
        };
        if !self.spent.lock().unwrap().insert(nonce.clone()) {
            return SettleResponse::failure(
                network,
                ReasonCode::DUPLICATE_SETTLEMENT,
                "this IOU was already settled",
                Some(payer),
                None,
            );
        }
        let mut balances = self.balances.lock().unwrap();
        let held = balances.get(&payer).copied().unwrap_or(0);
        if held < amount {
            return SettleResponse::failure(
                network,
                ReasonCode::INSUFFICIENT_FUNDS,
                format!("{payer} holds {held}"),
                Some(payer),
                None,
            );
        }
        balances.insert(payer.clone(), held - amount);
        *balances.entry(pay_to).or_default() += amount;
        SettleResponse {
            amount: Some(TokenAmount::from_atomic(u128::from(amount))),
            ..SettleResponse::success(network, Some(payer), format!("toy-tx-{nonce}"))
        }
    }

    fn balance(&self, who: &str) -> u64 {
        self.balances.lock().unwrap().get(who).copied().unwrap_or(0)
    }
}

impl Facilitator for ToyFacilitator {
    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async move {
            Ok(SupportedResponse {
                kinds: vec![SupportedKind {
                    x402_version: 2,
                    scheme: TOY,
                    network: Network::new(TOY_NET),
                    extra: Some(serde_json::json!({"ledger": "toy-ledger-1"})),
                }],
                extensions: Vec::new(),
                signers: [("toy:*".to_owned(), vec!["toy-ledger-1".to_owned()])].into(),
            })
        })
    }

    fn verify<'a>(
        &'a self,
        request: &'a PaymentRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async move {
            Ok(match self.check(request) {
                Ok((payer, ..)) => VerifyResponse::valid(payer),
                Err(why) => VerifyResponse::invalid(ReasonCode::INVALID_PAYLOAD, why, None),
            })
        })
    }

    fn settle<'a>(
        &'a self,
        request: &'a PaymentRequest,
        _idempotency_key: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(std::future::ready(Ok(self.settle_iou(request))))
    }

    fn payment_id(&self, request: &PaymentRequest) -> Result<PaymentId, PaymentIdError> {
        let nonce = request
            .payload()
            .get("nonce")
            .and_then(|v| v.as_str())
            .ok_or_else(|| PaymentIdError("payload.nonce is missing".into()))?;
        Ok(PaymentId::from_parts([TOY.as_str(), TOY_NET, nonce]))
    }
}

/// The client side: signs IOUs as one payer.
#[derive(Debug)]
struct ToyClient {
    payer: String,
    secret: String,
}

impl SchemeClient for ToyClient {
    fn can_pay(&self, requirements: &v2::PaymentRequirements) -> bool {
        requirements.scheme == TOY && requirements.network.as_str() == TOY_NET
    }

    fn payer(&self, _network: &Network) -> String {
        self.payer.clone()
    }

    fn sign<'a>(
        &'a self,
        requirements: &'a v2::PaymentRequirements,
        now: u64,
    ) -> BoxFuture<'a, Result<SignedPayload, SchemeSignError>> {
        Box::pin(async move {
            // The server's plug-in and the facilitator's advertised kind both reached us.
            let extra = requirements.extra.clone().unwrap_or_default();
            if extra["ledger"] != "toy-ledger-1" || extra["server"] != "toy-server" {
                return Err(SchemeSignError(format!("unexpected extra {extra}")));
            }
            let nonce = format!("{now}-{}", rand_suffix());
            let amount = requirements.amount.to_string();
            let seal = seal(
                &self.secret,
                &self.payer,
                &requirements.pay_to,
                &amount,
                &nonce,
            );
            Ok(SignedPayload {
                payload: serde_json::json!({
                    "payer": self.payer, "payTo": requirements.pay_to,
                    "amount": amount, "nonce": nonce, "seal": seal,
                }),
                nonce: Some(nonce),
                valid_before: Some(now + requirements.max_timeout_seconds),
                extensions: None,
                locks: None,
                channel: None,
            })
        })
    }
}

fn rand_suffix() -> String {
    alloy::primitives::B256::random().to_string()
}

/// The server side: marks its offers.
#[derive(Debug)]
struct ToyServer;

impl SchemeServer for ToyServer {
    fn scheme(&self) -> Scheme {
        TOY
    }

    fn enhance(&self, requirements: &mut v2::PaymentRequirements, kind: Option<&SupportedKind>) {
        x402_proto::copy_kind_extra(requirements, kind);
        if let Some(serde_json::Value::Object(extra)) = requirements.extra.as_mut() {
            extra.insert("server".into(), "toy-server".into());
        }
    }
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A facilitator serving the toy scheme over HTTP and a server charging 5 credits for
/// `/fortune` through it; alice holds 100 credits.
async fn toy_stack() -> (Arc<ToyFacilitator>, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let toy = Arc::new(ToyFacilitator {
        secrets: HashMap::from([("alice".to_owned(), "alice-secret".to_owned())]),
        balances: Mutex::new(HashMap::from([("alice".to_owned(), 100)])),
        spent: Mutex::default(),
    });

    // The facilitator: no EVM chain, the toy scheme registered, over HTTP.
    let store = Arc::new(SqliteStore::open(&dir.path().join("log.db")).unwrap());
    let service =
        FacilitatorService::new(Vec::new(), store, Duration::from_secs(5), Metrics::new())
            .with_schemes(vec![toy.clone()])
            .await
            .unwrap();
    let facilitator_url = serve(x402_facilitator::router(
        service,
        HttpOptions {
            bearer_token: None,
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
        },
    ))
    .await;
    let supported: serde_json::Value = reqwest::get(format!("{facilitator_url}/supported"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(supported["kinds"][0]["scheme"], "toy-iou");
    assert_eq!(supported["signers"]["toy:*"][0], "toy-ledger-1");

    // The server: a route priced in toy credits, its plug-in registered.
    let remote = HttpFacilitator::new(&facilitator_url, Duration::from_secs(10)).unwrap();
    let option = PaymentOption {
        scheme: TOY,
        network: Network::new(TOY_NET),
        asset: ASSET.into(),
        decimals: 0,
        pay_to: "bob".into(),
        max_timeout_seconds: 60,
        extra: None,
    };
    let paywall = Paywall::new(Arc::new(remote), vec![option], PaywallConfig::default())
        .unwrap()
        .with_schemes(vec![Arc::new(ToyServer)]);
    paywall.initialize().await.unwrap();
    let app = Router::new().route(
        "/fortune",
        get(|| async { "a toy scheme pays its way" })
            .layer(paywall.layer(RoutePrice::fixed("5".parse().unwrap()))),
    );
    (toy, serve(app).await, dir)
}

fn alice() -> ToyClient {
    ToyClient {
        payer: "alice".into(),
        secret: "alice-secret".into(),
    }
}

#[tokio::test]
async fn a_toy_scheme_is_offered_paid_verified_and_settled() {
    let (toy, server_url, _dir) = toy_stack().await;

    // The 402 offers the toy scheme, completed by the server's plug-in and the facilitator.
    let challenge = reqwest::get(format!("{server_url}/fortune")).await.unwrap();
    assert_eq!(challenge.status(), 402);
    let offered = x402_testkit::challenge_of(challenge.headers());
    assert_eq!(offered.accepts[0].scheme, TOY);
    assert_eq!(offered.accepts[0].amount, TokenAmount::from_atomic(5));
    let extra = offered.accepts[0].extra.clone().unwrap();
    assert_eq!(extra["ledger"], "toy-ledger-1");
    assert_eq!(extra["server"], "toy-server");

    // The client pays with its toy plug-in, within its policy.
    let policy = Policy {
        assets: vec![KnownAsset {
            network: Network::new(TOY_NET),
            address: ASSET.into(),
            decimals: 0,
        }],
        max_per_payment: "10".parse().unwrap(),
    };
    let client = PayingClient::new(
        reqwest::Client::new(),
        alloy::signers::local::PrivateKeySigner::random(),
        policy,
        Ledger::in_memory().unwrap(),
    )
    .with_scheme(Arc::new(alice()));
    let request = client
        .http()
        .get(format!("{server_url}/fortune"))
        .build()
        .unwrap();
    let paid = client.send(request, Some("fortune")).await.unwrap();
    let receipt = paid.receipt.clone().expect("a receipt");
    assert!(receipt.success, "{receipt:?}");
    assert!(receipt.transaction.starts_with("toy-tx-"));
    assert_eq!(paid.paid.unwrap().0.to_string(), "5");
    assert_eq!(
        paid.response.text().await.unwrap(),
        "a toy scheme pays its way"
    );
    assert_eq!((toy.balance("alice"), toy.balance("bob")), (95, 5));
    let rows = client.ledger().payments(0).unwrap();
    assert_eq!(rows[0].payer, "alice");
    assert_eq!(rows[0].network, TOY_NET);

    // The same client pays again: a fresh IOU, charged once more.
    let request = client
        .http()
        .get(format!("{server_url}/fortune"))
        .build()
        .unwrap();
    assert!(
        client
            .send(request, None)
            .await
            .unwrap()
            .receipt
            .unwrap()
            .success
    );
    assert_eq!((toy.balance("alice"), toy.balance("bob")), (90, 10));
}

#[tokio::test]
async fn a_toy_payment_buys_one_response_and_a_forged_one_buys_none() {
    let (toy, server_url, _dir) = toy_stack().await;
    let challenge = reqwest::get(format!("{server_url}/fortune")).await.unwrap();
    let offered = x402_testkit::challenge_of(challenge.headers());
    let requirements = offered.accepts[0].clone();
    let signed = alice().sign(&requirements, 1_000).await.unwrap();
    let header = |payload: serde_json::Value| {
        x402_proto::encode_header(&v2::PaymentPayload {
            x402_version: x402_proto::V2::default(),
            resource: Some(offered.resource.clone()),
            accepted: requirements.clone(),
            payload,
            extensions: None,
        })
    };
    let send = |value: String| {
        let url = format!("{server_url}/fortune");
        async move {
            reqwest::Client::new()
                .get(url)
                .header(x402_proto::headers::PAYMENT_SIGNATURE, value)
                .send()
                .await
                .unwrap()
        }
    };

    // Paid once, then the same payment again: the kept response, not a second charge.
    let first = send(header(signed.payload.clone())).await;
    assert_eq!(first.status(), 200);
    let again = send(header(signed.payload.clone())).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.text().await.unwrap(), "a toy scheme pays its way");
    assert_eq!((toy.balance("alice"), toy.balance("bob")), (95, 5));

    // An IOU whose amount was lowered after sealing is refused, and nothing is served.
    let mut forged = alice().sign(&requirements, 2_000).await.unwrap().payload;
    forged["amount"] = "4".into();
    let refused = send(header(forged)).await;
    assert_eq!(refused.status(), 402);
    assert!(refused.text().await.unwrap().contains("seal"));
    assert_eq!((toy.balance("alice"), toy.balance("bob")), (95, 5));
}
