//! One payment buys one response: the guard that keeps a payment to the one request it paid
//! for, and the paid responses kept so that a client who lost its answer gets it again.
//!
//! Keys are the payment's identity ([`PaymentId`], the same for every encoding of one
//! authorization) and, when the client sent one, its `payment-identifier` id. The guard is a
//! store behind [`PaymentGuard`]: [`MemoryGuard`] for one process; a shared database lets
//! several replicas agree.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use x402_proto::{BoxFuture, PaymentId, SettleResponse};

/// A digest of the request a payment pays for (method, path and query, body).
pub type RequestFingerprint = [u8; 32];

/// A paid response as it was sent, to send again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    /// The status code.
    pub status: u16,
    /// The headers, receipt included.
    pub headers: Vec<(String, Bytes)>,
    /// The body.
    pub body: Bytes,
}

impl StoredResponse {
    fn size(&self) -> usize {
        self.body.len()
            + self
                .headers
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>()
    }
}

/// What was served for a payment.
#[derive(Clone, Debug, PartialEq)]
pub struct Served {
    /// The request it paid for.
    pub request: RequestFingerprint,
    /// The digest of the authorization that paid (see
    /// [`authorization_digest`](x402_proto::authorization_digest)).
    pub authorization: [u8; 32],
    /// The settlement receipt.
    pub receipt: SettleResponse,
    /// The response, when it was small enough to keep (otherwise the handler runs again).
    pub response: Option<StoredResponse>,
}

/// The guard's answer for a payment presented with a request.
#[derive(Debug)]
pub enum Admission {
    /// The payment is this request's now: hold it with a [`Lease`], settle it, then
    /// [`Lease::served`], or drop the lease to give the payment back (nothing was charged).
    Granted,
    /// Another request is using the payment right now.
    InUse {
        /// Whether the clash is on the client's `payment-identifier` (not the payment).
        by_identifier: bool,
    },
    /// The payment (or the purchase id) already bought a response to this same request. By
    /// the purchase id, the payment presented may be another one (a retry signed anew): the
    /// caller checks that it is genuine before answering.
    Served {
        /// What was served.
        served: Box<Served>,
        /// Whether it was found by the client's `payment-identifier`.
        by_identifier: bool,
    },
    /// The payment (or the purchase id) already bought a response to a different request.
    Conflict {
        /// Whether the clash is on the client's `payment-identifier` (not the payment).
        by_identifier: bool,
    },
}

/// Why the guard could not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("payment guard: {0}")]
pub struct GuardError(pub String);

/// Where payments in use and paid responses are kept.
pub trait PaymentGuard: Send + Sync + std::fmt::Debug {
    /// Decides what to do with `payment` (its `authorization` digest, and the client's
    /// `purchase` id, if any) presented for `request`. Atomic: of concurrent admissions of
    /// one payment, at most one is granted. A served payment answers again only the same
    /// request with the same authorization; a served purchase id, the same request.
    fn admit<'a>(
        &'a self,
        payment: &'a PaymentId,
        authorization: &'a [u8; 32],
        purchase: Option<&'a str>,
        request: &'a RequestFingerprint,
    ) -> BoxFuture<'a, Result<Admission, GuardError>>;

    /// Records that the payment (and purchase id) bought `served`, and frees them.
    fn record<'a>(
        &'a self,
        payment: &'a PaymentId,
        purchase: Option<&'a str>,
        served: Served,
    ) -> BoxFuture<'a, Result<(), GuardError>>;

    /// Frees a payment (and purchase id) without recording anything: nothing was charged.
    fn release(&self, payment: &PaymentId, purchase: Option<&str>);
}

/// A payment granted to one request. Dropping it frees the payment.
#[derive(Debug)]
pub struct Lease {
    guard: Arc<dyn PaymentGuard>,
    payment: PaymentId,
    purchase: Option<String>,
    request: RequestFingerprint,
    authorization: [u8; 32],
    held: bool,
}

impl Lease {
    /// Holds a payment (with its authorization digest) that `guard` granted for `request`.
    pub fn new(
        guard: Arc<dyn PaymentGuard>,
        payment: PaymentId,
        authorization: [u8; 32],
        purchase: Option<String>,
        request: RequestFingerprint,
    ) -> Self {
        Self {
            guard,
            payment,
            purchase,
            request,
            authorization,
            held: true,
        }
    }

    /// Records what the payment bought and frees it.
    pub async fn served(
        mut self,
        receipt: SettleResponse,
        response: Option<StoredResponse>,
    ) -> Result<(), GuardError> {
        self.held = false;
        let served = Served {
            request: self.request,
            authorization: self.authorization,
            receipt,
            response,
        };
        self.guard
            .record(&self.payment, self.purchase.as_deref(), served)
            .await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.held {
            self.guard.release(&self.payment, self.purchase.as_deref());
        }
    }
}

/// The guard's keys for a payment and its purchase id.
fn keys_for(payment: &PaymentId, purchase: Option<&str>) -> Vec<String> {
    let mut keys = vec![format!("payment:{payment}")];
    if let Some(id) = purchase {
        keys.push(format!("purchase:{id}"));
    }
    keys
}

/// Limits of [`MemoryGuard`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseCacheConfig {
    /// How long a paid response is kept to be sent again.
    pub ttl: Duration,
    /// The most bytes kept in all; the oldest go first.
    pub max_bytes: usize,
    /// The largest single response kept; larger ones are re-run on a retry.
    pub max_entry_bytes: usize,
}

impl Default for ResponseCacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(600),
            max_bytes: 64 * 1024 * 1024,
            max_entry_bytes: 4 * 1024 * 1024,
        }
    }
}

/// The guard of one process, in memory: payments in use, and paid responses for
/// [`ResponseCacheConfig::ttl`].
#[derive(Debug)]
pub struct MemoryGuard {
    config: ResponseCacheConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    in_use: HashSet<String>,
    served: HashMap<String, (Instant, Arc<Served>)>,
    /// Keys of `served` in insertion order, for expiry and eviction.
    order: VecDeque<(Instant, String)>,
    bytes: usize,
}

impl State {
    fn expire(&mut self, ttl: Duration, max_bytes: usize) {
        let now = Instant::now();
        while let Some((at, key)) = self.order.front().cloned() {
            let too_old = now.duration_since(at) >= ttl;
            if !too_old && self.bytes <= max_bytes {
                break;
            }
            self.order.pop_front();
            // A key recorded again later has a newer entry: leave that one.
            if self
                .served
                .get(&key)
                .is_some_and(|(stored, _)| *stored == at)
                && let Some((_, served)) = self.served.remove(&key)
            {
                self.bytes = self.bytes.saturating_sub(entry_size(&served));
            }
        }
    }
}

fn entry_size(served: &Served) -> usize {
    served.response.as_ref().map_or(0, StoredResponse::size) + 256
}

impl MemoryGuard {
    /// An empty guard.
    pub fn new(config: ResponseCacheConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the state consistent between statements that can panic.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn admit_now(
        &self,
        payment: &PaymentId,
        authorization: &[u8; 32],
        purchase: Option<&str>,
        request: &RequestFingerprint,
    ) -> Admission {
        let keys = keys_for(payment, purchase);
        let mut state = self.lock();
        state.expire(self.config.ttl, self.config.max_bytes);
        // The purchase id first: a retry with a newly signed payment is still the same
        // purchase.
        for key in keys.iter().rev() {
            let by_identifier = key.starts_with("purchase:");
            if let Some((_, served)) = state.served.get(key) {
                let same = served.request == *request
                    && (by_identifier || served.authorization == *authorization);
                return if same {
                    Admission::Served {
                        served: Box::new(Served::clone(served)),
                        by_identifier,
                    }
                } else {
                    Admission::Conflict { by_identifier }
                };
            }
        }
        for key in keys.iter().rev() {
            if state.in_use.contains(key) {
                return Admission::InUse {
                    by_identifier: key.starts_with("purchase:"),
                };
            }
        }
        for key in keys {
            state.in_use.insert(key);
        }
        Admission::Granted
    }
}

impl PaymentGuard for MemoryGuard {
    fn admit<'a>(
        &'a self,
        payment: &'a PaymentId,
        authorization: &'a [u8; 32],
        purchase: Option<&'a str>,
        request: &'a RequestFingerprint,
    ) -> BoxFuture<'a, Result<Admission, GuardError>> {
        Box::pin(async move { Ok(self.admit_now(payment, authorization, purchase, request)) })
    }

    fn record<'a>(
        &'a self,
        payment: &'a PaymentId,
        purchase: Option<&'a str>,
        mut served: Served,
    ) -> BoxFuture<'a, Result<(), GuardError>> {
        Box::pin(async move {
            let keys = keys_for(payment, purchase);
            if served
                .response
                .as_ref()
                .is_some_and(|r| r.size() > self.config.max_entry_bytes)
            {
                served.response = None;
            }
            let served = Arc::new(served);
            let now = Instant::now();
            let mut state = self.lock();
            for key in keys {
                state.in_use.remove(&key);
                if let Some((_, old)) = state.served.insert(key.clone(), (now, served.clone())) {
                    state.bytes = state.bytes.saturating_sub(entry_size(&old));
                }
                state.bytes += entry_size(&served);
                state.order.push_back((now, key));
            }
            state.expire(self.config.ttl, self.config.max_bytes);
            Ok(())
        })
    }

    fn release(&self, payment: &PaymentId, purchase: Option<&str>) {
        let mut state = self.lock();
        for key in keys_for(payment, purchase) {
            state.in_use.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x402_proto::Network;

    fn guard(config: ResponseCacheConfig) -> Arc<MemoryGuard> {
        Arc::new(MemoryGuard::new(config))
    }

    /// Admits, expecting a grant; the lease that holds it.
    async fn grant(
        guard: &Arc<MemoryGuard>,
        payment: PaymentId,
        purchase: Option<&str>,
        request: RequestFingerprint,
    ) -> Lease {
        let admission = guard
            .admit(&payment, &AUTH, purchase, &request)
            .await
            .unwrap();
        assert!(matches!(admission, Admission::Granted), "{admission:?}");
        Lease::new(
            guard.clone(),
            payment,
            AUTH,
            purchase.map(str::to_owned),
            request,
        )
    }

    fn receipt() -> SettleResponse {
        SettleResponse::success(Network::BASE, Some("0xpayer".into()), "0xtx")
    }

    fn response(body: &'static str) -> StoredResponse {
        StoredResponse {
            status: 200,
            headers: vec![("content-type".into(), Bytes::from_static(b"text/plain"))],
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    const AUTH: [u8; 32] = [7; 32];

    impl MemoryGuard {
        async fn admit_test(
            &self,
            payment: &PaymentId,
            purchase: Option<&str>,
            request: &RequestFingerprint,
        ) -> Result<Admission, GuardError> {
            self.admit(payment, &AUTH, purchase, request).await
        }
    }

    fn id(n: u8) -> PaymentId {
        PaymentId::from_parts(["exact", "eip155:8453", &n.to_string()])
    }

    #[tokio::test]
    async fn a_payment_in_use_is_refused_and_freed_when_dropped() {
        let guard = guard(ResponseCacheConfig::default());
        let lease = grant(&guard, id(1), None, [1; 32]).await;
        assert!(matches!(
            guard.admit_test(&id(1), None, &[2; 32]).await.unwrap(),
            Admission::InUse {
                by_identifier: false
            }
        ));
        drop(lease);
        assert!(matches!(
            guard.admit_test(&id(1), None, &[2; 32]).await.unwrap(),
            Admission::Granted
        ));
    }

    #[tokio::test]
    async fn a_served_payment_answers_the_same_request_and_refuses_others() {
        let guard = guard(ResponseCacheConfig::default());
        let lease = grant(&guard, id(1), None, [1; 32]).await;
        lease
            .served(receipt(), Some(response("paid")))
            .await
            .unwrap();
        match guard.admit_test(&id(1), None, &[1; 32]).await.unwrap() {
            Admission::Served { served, .. } => {
                assert_eq!(served.response.unwrap().body, "paid");
                assert_eq!(served.receipt.transaction, "0xtx");
            }
            other => panic!("expected the stored answer, got {other:?}"),
        }
        assert!(matches!(
            guard.admit_test(&id(1), None, &[9; 32]).await.unwrap(),
            Admission::Conflict {
                by_identifier: false
            }
        ));
        // Same nonce, same request, another authorization: a forgery of the nonce.
        assert!(matches!(
            guard.admit(&id(1), &[8; 32], None, &[1; 32]).await.unwrap(),
            Admission::Conflict {
                by_identifier: false
            }
        ));
    }

    #[tokio::test]
    async fn a_purchase_id_answers_a_re_signed_retry_and_refuses_another_request() {
        let guard = guard(ResponseCacheConfig::default());
        let lease = grant(&guard, id(1), Some("pay_0123456789abcdef"), [1; 32]).await;
        assert!(matches!(
            guard
                .admit_test(&id(2), Some("pay_0123456789abcdef"), &[1; 32])
                .await
                .unwrap(),
            Admission::InUse {
                by_identifier: true
            }
        ));
        lease
            .served(receipt(), Some(response("paid")))
            .await
            .unwrap();
        assert!(matches!(
            guard
                .admit_test(&id(2), Some("pay_0123456789abcdef"), &[1; 32])
                .await
                .unwrap(),
            Admission::Served { .. }
        ));
        assert!(matches!(
            guard
                .admit_test(&id(3), Some("pay_0123456789abcdef"), &[7; 32])
                .await
                .unwrap(),
            Admission::Conflict {
                by_identifier: true
            }
        ));
    }

    #[tokio::test]
    async fn responses_expire_and_the_cache_keeps_to_its_size() {
        let guard = guard(ResponseCacheConfig {
            ttl: Duration::from_millis(50),
            max_bytes: 2_000,
            max_entry_bytes: 600,
        });
        for n in 0..10u8 {
            let lease = grant(&guard, id(n), None, [n; 32]).await;
            let body: &'static str = Box::leak("x".repeat(500).into_boxed_str());
            lease.served(receipt(), Some(response(body))).await.unwrap();
        }
        assert!(guard.lock().bytes <= 2_000, "{}", guard.lock().bytes);
        // The newest is still there; the oldest was evicted for room.
        assert!(matches!(
            guard.admit_test(&id(9), None, &[9; 32]).await.unwrap(),
            Admission::Served { .. }
        ));
        assert!(matches!(
            guard.admit_test(&id(0), None, &[0; 32]).await.unwrap(),
            Admission::Granted
        ));
        // Too large to keep: recorded as served without the body.
        let lease = grant(&guard, id(20), None, [20; 32]).await;
        let body: &'static str = Box::leak("y".repeat(700).into_boxed_str());
        lease.served(receipt(), Some(response(body))).await.unwrap();
        match guard.admit_test(&id(20), None, &[20; 32]).await.unwrap() {
            Admission::Served { served, .. } => assert!(served.response.is_none()),
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(matches!(
            guard.admit_test(&id(20), None, &[20; 32]).await.unwrap(),
            Admission::Granted
        ));
    }
}
