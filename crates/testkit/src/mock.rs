//! A scripted facilitator for tests of servers without a chain.

use serde_json::json;
use x402_proto::{PaymentRequest, v2};

/// A facilitator that answers from a script, for tests of servers without a chain. Each call
/// takes the next scripted answer; the last one repeats. Every settle call's request and
/// idempotency key are recorded.
#[derive(Debug)]
pub struct MockFacilitator {
    verify: std::sync::Mutex<std::collections::VecDeque<MockAnswer<x402_proto::VerifyResponse>>>,
    settle: std::sync::Mutex<std::collections::VecDeque<MockAnswer<x402_proto::SettleResponse>>>,
    /// How many verify calls were made.
    pub verify_calls: std::sync::atomic::AtomicUsize,
    /// The idempotency key of every settle call, in order.
    pub settle_keys: std::sync::Mutex<Vec<Option<x402_proto::IdempotencyKey>>>,
    /// The request of every settle call, in order.
    pub settle_requests: std::sync::Mutex<Vec<PaymentRequest>>,
    /// What `supported()` answers (nothing, by default).
    pub supported: x402_proto::SupportedResponse,
    /// How long each settle call takes before it answers (none, by default).
    settle_delay: std::time::Duration,
    /// How many settle calls have answered (after their delay).
    pub settles_answered: std::sync::atomic::AtomicUsize,
}

/// One scripted answer: a response, or no answer at all.
pub type MockAnswer<T> = Result<T, x402_proto::FacilitatorError>;

/// The payer every mock answer names.
pub const MOCK_PAYER: &str = "0x857b06519E91e3A54538791bDbb0E22373e36b66";

impl Default for MockFacilitator {
    /// Every payment valid, every settlement a success.
    fn default() -> Self {
        Self::new(
            vec![Ok(x402_proto::VerifyResponse::valid(MOCK_PAYER))],
            vec![Ok(mock_settled("0xabc"))],
        )
    }
}

impl MockFacilitator {
    /// A facilitator answering verify and settle calls from these scripts.
    pub fn new(
        verify: Vec<MockAnswer<x402_proto::VerifyResponse>>,
        settle: Vec<MockAnswer<x402_proto::SettleResponse>>,
    ) -> Self {
        Self {
            verify: std::sync::Mutex::new(verify.into()),
            settle: std::sync::Mutex::new(settle.into()),
            verify_calls: Default::default(),
            settle_keys: Default::default(),
            settle_requests: Default::default(),
            supported: Default::default(),
            settle_delay: std::time::Duration::ZERO,
            settles_answered: Default::default(),
        }
    }

    /// The same facilitator, each settle call answering only after `delay` (a settlement that
    /// takes a while).
    pub fn with_settle_delay(mut self, delay: std::time::Duration) -> Self {
        self.settle_delay = delay;
        self
    }

    fn next<T: Clone>(
        script: &std::sync::Mutex<std::collections::VecDeque<MockAnswer<T>>>,
    ) -> MockAnswer<T> {
        let mut script = script.lock().expect("mock script lock");
        if script.len() > 1 {
            script.pop_front().expect("non-empty script")
        } else {
            script.front().cloned().expect("a scripted answer")
        }
    }

    /// How many settle calls were made.
    pub fn settle_calls(&self) -> usize {
        self.settle_keys.lock().expect("mock lock").len()
    }

    /// The amounts the settle calls asked for, in order (atomic units).
    pub fn settled_amounts(&self) -> Vec<x402_proto::U256> {
        let requests = self.settle_requests.lock().expect("mock lock");
        requests.iter().map(|r| r.requirements().amount.0).collect()
    }
}

/// A successful settlement receipt with transaction `tx`, on Base.
pub fn mock_settled(tx: &str) -> x402_proto::SettleResponse {
    x402_proto::SettleResponse::success(x402_proto::Network::BASE, Some(MOCK_PAYER.to_owned()), tx)
}

impl x402_proto::Facilitator for MockFacilitator {
    fn verify<'a>(
        &'a self,
        _request: &'a PaymentRequest,
    ) -> x402_proto::BoxFuture<'a, Result<x402_proto::VerifyResponse, x402_proto::FacilitatorError>>
    {
        self.verify_calls
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let answer = Self::next(&self.verify);
        Box::pin(async move { answer })
    }

    fn settle<'a>(
        &'a self,
        request: &'a PaymentRequest,
        idempotency_key: Option<&'a x402_proto::IdempotencyKey>,
    ) -> x402_proto::BoxFuture<'a, Result<x402_proto::SettleResponse, x402_proto::FacilitatorError>>
    {
        self.settle_requests
            .lock()
            .expect("mock lock")
            .push(request.clone());
        self.settle_keys
            .lock()
            .expect("mock lock")
            .push(idempotency_key.cloned());
        let answer = Self::next(&self.settle);
        Box::pin(async move {
            if !self.settle_delay.is_zero() {
                tokio::time::sleep(self.settle_delay).await;
            }
            self.settles_answered
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            answer
        })
    }

    fn supported(
        &self,
    ) -> x402_proto::BoxFuture<
        '_,
        Result<x402_proto::SupportedResponse, x402_proto::FacilitatorError>,
    > {
        Box::pin(std::future::ready(Ok(self.supported.clone())))
    }
}

/// A well-formed `exact` payment header for `accepted` (from a challenge) whose signature is
/// not real: for servers in front of a [`MockFacilitator`]. `nonce` tells payments apart.
pub fn mock_payment_header(accepted: &v2::PaymentRequirements, nonce: u8) -> String {
    let payment = json!({
        "x402Version": 2,
        "accepted": accepted,
        "payload": {
            "signature": format!("0x{}", "11".repeat(65)),
            "authorization": {
                "from": MOCK_PAYER,
                "to": accepted.pay_to,
                "value": accepted.amount.to_string(),
                "validAfter": "0",
                "validBefore": "99999999999",
                "nonce": format!("0x{}", format!("{nonce:02x}").repeat(32)),
            }
        }
    });
    x402_proto::encode_header(&payment)
}
