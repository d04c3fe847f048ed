//! One payment buys one response: the guard that keeps a payment to the one request it paid
//! for, and the paid responses kept so that a client who lost its answer gets it again.
//!
//! Keys are the payment's identity ([`PaymentId`], the same for every encoding of one
//! authorization) and, when the client sent one, its `payment-identifier` id. The guard is a
//! store behind [`PaymentGuard`]: [`MemoryGuard`] for one process; a shared database lets
//! several replicas agree.
//!
//! The guard also keeps the payers of metered streams, whose content goes out before their
//! payment settles: how many of a payer's streams are unsettled right now, and the payers who
//! left one unpaid (its settlement failed for a reason of theirs). Such a payer is served no
//! more streams ([`PaymentGuard::admit_stream`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use x402_proto::{BoxFuture, Network, PaymentId, ReasonCode, SettleResponse, U256};

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

    /// Decides whether `payer` may start a metered stream (content sent before its payment
    /// settles): not when it left a stream unpaid, nor when `limit` of its streams are
    /// unsettled right now. Atomic, as [`PaymentGuard::admit`]. A granted stream is held
    /// until [`PaymentGuard::stream_over`]; hold it with a [`StreamTicket`].
    fn admit_stream<'a>(
        &'a self,
        payer: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<StreamAdmission, GuardError>>;

    /// Records that a payer's stream went out and its settlement failed for a reason of the
    /// payer's: it is served no more streams.
    fn record_unpaid_stream(&self, unpaid: UnpaidStream) -> BoxFuture<'_, Result<(), GuardError>>;

    /// A stream granted to `payer` is over (settled, left unpaid and recorded, or never sent).
    fn stream_over(&self, payer: &str);
}

/// A metered stream that was sent and never paid: its settlement failed for a reason of the
/// payer's (funds or allowance moved away, nonce spent, deadline passed, signature).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnpaidStream {
    /// The payer.
    pub payer: String,
    /// The payment whose settlement failed.
    pub payment: PaymentId,
    /// Its network.
    pub network: Network,
    /// The asset owed.
    pub asset: String,
    /// The amount owed, in atomic units (the usage metered when the stream was over).
    pub amount: U256,
    /// The facilitator's reason code.
    pub reason: Option<ReasonCode>,
    /// The facilitator's message.
    pub message: Option<String>,
    /// When the settlement failed, in Unix seconds.
    pub at: u64,
}

impl std::fmt::Display for UnpaidStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the settlement of payment {} for a streamed answer ({} atomic units of {} on {}) \
             failed at {}",
            self.payment, self.amount, self.asset, self.network, self.at
        )?;
        match (&self.reason, &self.message) {
            (Some(reason), Some(message)) => write!(f, ": {reason}: {message}"),
            (Some(reason), None) => write!(f, ": {reason}"),
            (None, Some(message)) => write!(f, ": {message}"),
            (None, None) => Ok(()),
        }
    }
}

/// The guard's answer for a payer asking for a metered stream.
#[derive(Debug)]
pub enum StreamAdmission {
    /// The stream may go out: hold it with a [`StreamTicket`].
    Granted,
    /// The payer left a stream unpaid.
    Unpaid(Box<UnpaidStream>),
    /// The payer has this many streams unsettled right now (the limit).
    Busy {
        /// How many.
        streams: usize,
    },
}

/// A metered stream granted to a payer. Dropping it tells the guard the stream is over.
#[derive(Debug)]
pub struct StreamTicket {
    guard: Arc<dyn PaymentGuard>,
    payer: String,
}

impl StreamTicket {
    /// Holds a stream that `guard` granted to `payer`.
    pub fn new(guard: Arc<dyn PaymentGuard>, payer: impl Into<String>) -> Self {
        Self {
            guard,
            payer: payer.into(),
        }
    }
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        self.guard.stream_over(&self.payer);
    }
}

/// One payer's key: an EVM address in lower case, another as it is written.
fn payer_key(payer: &str) -> String {
    if payer.starts_with("0x") || payer.starts_with("0X") {
        payer.to_ascii_lowercase()
    } else {
        payer.to_owned()
    }
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
    /// The largest single response kept; larger ones are re-run on a retry (or, when their
    /// payment was charged for what it used, refused with 409 and the receipt).
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
    /// Unsettled metered streams, by payer.
    streams: HashMap<String, usize>,
    /// Payers who left a metered stream unpaid (kept for the life of the process).
    unpaid: HashMap<String, UnpaidStream>,
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

    fn admit_stream<'a>(
        &'a self,
        payer: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<StreamAdmission, GuardError>> {
        Box::pin(async move {
            let key = payer_key(payer);
            let mut state = self.lock();
            if let Some(unpaid) = state.unpaid.get(&key) {
                return Ok(StreamAdmission::Unpaid(Box::new(unpaid.clone())));
            }
            let streams = state.streams.entry(key).or_default();
            if *streams >= limit {
                return Ok(StreamAdmission::Busy { streams: *streams });
            }
            *streams += 1;
            Ok(StreamAdmission::Granted)
        })
    }

    fn record_unpaid_stream(&self, unpaid: UnpaidStream) -> BoxFuture<'_, Result<(), GuardError>> {
        Box::pin(async move {
            let key = payer_key(&unpaid.payer);
            self.lock().unpaid.entry(key).or_insert(unpaid);
            Ok(())
        })
    }

    fn stream_over(&self, payer: &str) {
        let key = payer_key(payer);
        let mut state = self.lock();
        if let Some(streams) = state.streams.get_mut(&key) {
            *streams = streams.saturating_sub(1);
            if *streams == 0 {
                state.streams.remove(&key);
            }
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
    async fn a_payer_gets_streams_up_to_the_limit_and_none_once_it_left_one_unpaid() {
        let guard = guard(ResponseCacheConfig::default());
        let shared: Arc<dyn PaymentGuard> = guard.clone();
        let admit = |payer: &'static str| {
            let guard = guard.clone();
            async move { guard.admit_stream(payer, 2).await.unwrap() }
        };
        assert!(matches!(admit("0xAbC").await, StreamAdmission::Granted));
        let first = StreamTicket::new(shared.clone(), "0xAbC");
        assert!(matches!(admit("0xabc").await, StreamAdmission::Granted));
        let second = StreamTicket::new(shared.clone(), "0xabc");
        assert!(matches!(
            admit("0xABC").await,
            StreamAdmission::Busy { streams: 2 }
        ));
        // Another payer is not held up.
        assert!(matches!(admit("0xdef").await, StreamAdmission::Granted));
        shared.stream_over("0xdef");
        drop(first);
        assert!(matches!(admit("0xabc").await, StreamAdmission::Granted));
        shared.stream_over("0xabc");

        let unpaid = UnpaidStream {
            payer: "0xABC".into(),
            payment: id(4),
            network: Network::BASE,
            asset: "0xusdc".into(),
            amount: U256::from(1_234),
            reason: Some(ReasonCode::PERMIT2_INSUFFICIENT_BALANCE),
            message: None,
            at: 1_760_000_000,
        };
        guard.record_unpaid_stream(unpaid.clone()).await.unwrap();
        drop(second);
        match admit("0xabc").await {
            StreamAdmission::Unpaid(found) => assert_eq!(*found, unpaid),
            other => panic!("{other:?}"),
        }
        assert!(unpaid.to_string().contains("permit2_insufficient_balance"));
        assert!(guard.lock().streams.is_empty(), "every stream is over");
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
