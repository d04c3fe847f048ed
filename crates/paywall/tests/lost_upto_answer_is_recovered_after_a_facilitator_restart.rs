//! An `upto` payment whose answer is lost (the settlement is still pending when the paywall's
//! patience runs out) is recovered by the same request after our facilitator restarted: the
//! paywall finds the payment spent, asks the facilitator for its receipt under the request's
//! key, and the facilitator's durable log answers with the transaction first sent and the
//! amount it moved. The payer is charged once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use alloy::primitives::U256;
use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::Request;
use tower::ServiceExt;
use x402_evm::unix_now;
use x402_evm::upto::{UptoEvmClient, UptoEvmServer};
use x402_paywall::{PaymentOption, Paywall, PaywallConfig, RoutePrice};
use x402_proto::{
    BoxFuture, Facilitator, FacilitatorError, IdempotencyKey, PaymentId, PaymentIdError,
    PaymentRequest, Scheme, SettleResponse, SupportedResponse, TokenAmount, Usage, V2,
    VerifyResponse, decode_header, encode_header, headers, v2,
};
use x402_testkit::{Chain, Stack};

/// What the handler reports each call used, in atomic units.
const USED: u64 = 1_858;

/// Our facilitator in process, replaced when it restarts: what a paywall reaching it at a
/// fixed address sees.
struct Restartable(RwLock<Arc<dyn Facilitator>>);

impl Restartable {
    fn now(&self) -> Arc<dyn Facilitator> {
        self.0.read().unwrap().clone()
    }
}

impl Facilitator for Restartable {
    fn verify<'a>(
        &'a self,
        request: &'a PaymentRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        let facilitator = self.now();
        Box::pin(async move { facilitator.verify(request).await })
    }

    fn settle<'a>(
        &'a self,
        request: &'a PaymentRequest,
        key: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        let facilitator = self.now();
        Box::pin(async move { facilitator.settle(request, key).await })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        let facilitator = self.now();
        Box::pin(async move { facilitator.supported().await })
    }

    fn payment_id(&self, request: &PaymentRequest) -> Result<PaymentId, PaymentIdError> {
        self.now().payment_id(request)
    }
}

/// GET `/chat` through `app`, with `payment` (a `PAYMENT-SIGNATURE` value) when given.
async fn get_chat(app: &Router, payment: Option<&str>) -> Response {
    let mut request = Request::get("/chat");
    if let Some(payment) = payment {
        request = request.header(headers::PAYMENT_SIGNATURE, payment);
    }
    app.clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_upto_answer_is_recovered_after_a_restart_and_charged_once() {
    let chain = Chain::start().await;
    let payer = chain.devnet.payers()[0].signer.clone();
    chain.devnet.approve_permit2(&payer).await.unwrap();
    let mut stack = Stack::on_chain(chain, "[limits]\nsettle_wait_ms = 300", "").await;
    let facilitator = Arc::new(Restartable(RwLock::new(stack.in_process())));

    // A metered route offering `upto` $0.02; the paywall waits one second for a settlement.
    let mut requirements = stack.chain.requirements(1);
    requirements.scheme = Scheme::UPTO;
    let option = PaymentOption::from_requirements(&requirements, 6).with_max_timeout(300);
    let config = PaywallConfig {
        settle_patience: Duration::from_secs(1),
        ..PaywallConfig::default()
    };
    let paywall = Paywall::new(facilitator.clone(), vec![option], config)
        .unwrap()
        .with_schemes(vec![Arc::new(UptoEvmServer)]);
    paywall.initialize().await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let handler = get(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async {
            let mut response = "42 tokens".into_response();
            response.extensions_mut().insert(Usage::atomic(USED.into()));
            response
        }
    });
    let route = handler.layer(paywall.layer(RoutePrice::fixed("$0.02".parse().unwrap())));
    let app = Router::new().route("/chat", route);

    // The payer signs the offer once.
    let challenge = get_chat(&app, None).await;
    let required: v2::PaymentRequired =
        decode_header(challenge.headers()[headers::PAYMENT_REQUIRED].as_bytes()).unwrap();
    let accepted = required.accepts[0].clone();
    let signed = UptoEvmClient::new(payer.clone())
        .sign_upto(&accepted, unix_now())
        .await
        .unwrap();
    let payment = encode_header(&v2::PaymentPayload {
        x402_version: V2::default(),
        resource: None,
        accepted,
        payload: serde_json::to_value(signed).unwrap(),
        extensions: None,
    });
    let token = stack.chain.devnet.token().address;
    let held = stack
        .chain
        .devnet
        .balance_of(token, payer.address())
        .await
        .unwrap();
    let sent = stack.chain.facilitator_tx_count().await;

    // No block comes: the settlement stays pending past the paywall's patience, and the
    // answer is lost.
    stack.stop_automine().await;
    let lost = get_chat(&app, Some(&payment)).await;
    assert_eq!(lost.status(), 402, "the response is withheld");
    let pending: SettleResponse =
        decode_header(lost.headers()[headers::PAYMENT_RESPONSE].as_bytes()).unwrap();
    assert_eq!(
        pending.error_reason.as_ref().map(|r| r.as_str()),
        Some("settlement_pending"),
        "{pending:?}"
    );

    // The facilitator restarts (it knows the settlement from its log only); the block comes.
    stack.restart().await;
    *facilitator.0.write().unwrap() = stack.in_process();
    stack.mine().await;

    // The same request with the same payment: spent, and recovered as this request's.
    let recovered = get_chat(&app, Some(&payment)).await;
    assert_eq!(recovered.status(), 200);
    let receipt: SettleResponse =
        decode_header(recovered.headers()[headers::PAYMENT_RESPONSE].as_bytes()).unwrap();
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(
        receipt.transaction, pending.transaction,
        "the first transaction"
    );
    assert_eq!(
        receipt.amount,
        Some(TokenAmount::from_atomic(u128::from(USED)))
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "served again, not charged again"
    );
    assert_eq!(
        stack
            .chain
            .devnet
            .balance_of(token, payer.address())
            .await
            .unwrap(),
        held - U256::from(USED),
        "charged the usage once"
    );
    assert_eq!(stack.chain.facilitator_tx_count().await, sent + 1);
}
