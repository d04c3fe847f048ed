//! `PaymentMiddleware` in a `reqwest-middleware` stack, against a real paywalled axum route
//! on anvil: a middleware before ours sees one request and the paid answer, one after ours
//! sees the 402 and the paid retry; the receipt reaches the caller, the ledger row is paid
//! with the settlement's transaction, and the payee is paid once. A budget refusal is a
//! middleware error naming the limit, with nothing signed or paid.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy::primitives::U256;
use common::PaidRoute;
use x402_client::{
    Budget, Ledger, LedgerError, PayError, PayingClient, Payment, PaymentMiddleware, Policy,
    ServiceLabel,
};
use x402_proto::{SettleResponse, decode_header};

/// The `x-agent` header of every request that carried a payment.
fn paid_agents(server: &PaidRoute) -> Vec<Option<String>> {
    server
        .paid_requests()
        .iter()
        .map(|headers| {
            headers
                .get("x-agent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .collect()
}

/// Counts the requests it sees and, when `agent` is set, adds an `x-agent` header.
struct Counter {
    seen: Arc<AtomicUsize>,
    agent: Option<&'static str>,
}

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Counter {
    async fn handle(
        &self,
        mut request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        self.seen.fetch_add(1, Ordering::SeqCst);
        if let Some(agent) = self.agent {
            request
                .headers_mut()
                .insert("x-agent", agent.parse().unwrap());
        }
        next.run(request, extensions).await
    }
}

struct Stack {
    client: reqwest_middleware::ClientWithMiddleware,
    before: Arc<AtomicUsize>,
    after: Arc<AtomicUsize>,
    /// The paying client's ledger.
    ledger: Ledger,
}

/// `Counter` (adds `x-agent`) → `PaymentMiddleware` → `Counter`.
fn stack(payer: PayingClient) -> Stack {
    let ledger = payer.ledger().clone();
    let (before, after) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(Counter {
            seen: before.clone(),
            agent: Some("stack-test"),
        })
        .with(PaymentMiddleware::new(payer))
        .with(Counter {
            seen: after.clone(),
            agent: None,
        })
        .build();
    Stack {
        client,
        before,
        after,
        ledger,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_middleware_pays_once_and_hands_back_the_receipt() {
    let server = PaidRoute::start("$0.01").await;
    let before = server.payee_balance().await;
    let stack = stack(server.client());

    let response = stack
        .client
        .get(&server.url)
        .with_extension(ServiceLabel("data".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = response
        .headers()
        .get("payment-response")
        .expect("the receipt header is kept");
    let receipt: SettleResponse = decode_header(header.as_bytes()).unwrap();
    assert!(receipt.success);
    assert!(receipt.transaction.starts_with("0x"));
    let payment = response.extensions().get::<Payment>().unwrap().clone();
    assert_eq!(payment.receipt.as_ref(), Some(&receipt));
    let (amount, row) = payment.paid.unwrap();
    assert_eq!(amount.atomic.0, U256::from(10_000));
    assert_eq!(amount.to_string(), "0.01");
    assert_eq!(payment.unknown, None);
    assert_eq!(response.text().await.unwrap(), "paid data");

    // The middleware before ours saw one call; the one after ours saw the 402 and the retry.
    assert_eq!(stack.before.load(Ordering::SeqCst), 1);
    assert_eq!(stack.after.load(Ordering::SeqCst), 2);
    // The paid request went through the whole stack: it carries the header added before us.
    assert_eq!(paid_agents(&server), vec![Some("stack-test".to_owned())]);

    let records = stack.ledger.payments(0).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].id, row);
    assert_eq!(records[0].status, "paid");
    assert_eq!(records[0].service.as_deref(), Some("data"));
    assert_eq!(
        records[0].transaction.as_deref(),
        Some(receipt.transaction.as_str())
    );
    let moved = server.payee_balance().await - before;
    assert_eq!(moved, U256::from(10_000), "paid exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_refusal_is_a_middleware_error_naming_the_limit() {
    let server = PaidRoute::start("$0.01").await;
    let before = server.payee_balance().await;
    let stack = stack(server.client());
    stack.ledger.set_budget(&Budget::total(5_000)).unwrap();

    let error = stack.client.get(&server.url).send().await.unwrap_err();
    assert!(error.is_middleware(), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("the total limit is 5000 micro-USD"),
        "{message}"
    );
    let reqwest_middleware::Error::Middleware(inner) = &error else {
        panic!("expected a middleware error, got {error:?}");
    };
    assert!(matches!(
        inner.downcast_ref::<PayError>(),
        Some(PayError::Budget(LedgerError::BudgetExceeded {
            limit_name: "total",
            limit: 5_000,
            asked: 10_000,
            ..
        }))
    ));

    // Only the unpaid request went out; nothing was signed, recorded or paid.
    assert_eq!(stack.after.load(Ordering::SeqCst), 1);
    assert!(server.paid_requests().is_empty());
    assert!(stack.ledger.payments(0).unwrap().is_empty());
    assert_eq!(server.payee_balance().await, before);
}

#[tokio::test]
async fn a_streamed_body_is_refused_before_the_stack_sends_it() {
    let payer = PayingClient::new(
        reqwest::Client::new(),
        alloy::signers::local::PrivateKeySigner::random(),
        Policy::default(),
        Ledger::in_memory().unwrap(),
    );
    let stack = stack(payer);
    let stream = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{}"))
    });
    // Port 9: nothing listens; the refusal must come before any connection attempt.
    let error = stack
        .client
        .post("http://127.0.0.1:9/run")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap_err();
    let reqwest_middleware::Error::Middleware(inner) = &error else {
        panic!("expected a middleware error, got {error:?}");
    };
    assert!(matches!(
        inner.downcast_ref::<PayError>(),
        Some(PayError::BodyNotReplayable)
    ));
    assert_eq!(
        stack.after.load(Ordering::SeqCst),
        0,
        "nothing went down the stack"
    );
}
