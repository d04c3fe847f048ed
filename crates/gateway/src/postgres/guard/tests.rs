//! The guard's behaviour, one body per behaviour run against the memory guard and the
//! Postgres one; then what only a shared database does: replicas agree, a dead replica's
//! payments are freed after the lease TTL and a live one's never are.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use x402_paywall::{
    Admission, Lease, MemoryGuard, PaymentGuard, RequestFingerprint, ResponseCacheConfig,
    StoredResponse, StreamAdmission, StreamTicket, UnpaidStream,
};
use x402_proto::{Network, PaymentId, ReasonCode, SettleResponse, U256};
use x402_testkit::TempDatabase;

use super::PostgresGuard;
use crate::postgres::{Database, Leases};

const AUTH: [u8; 32] = [7; 32];

fn id(n: u8) -> PaymentId {
    PaymentId::from_parts(["exact", "eip155:8453", &n.to_string()])
}

fn receipt() -> SettleResponse {
    SettleResponse::success(Network::BASE, Some("0xpayer".into()), "0xtx")
}

fn response(body: &str) -> StoredResponse {
    StoredResponse {
        status: 200,
        headers: vec![
            ("content-type".into(), Bytes::from_static(b"text/plain")),
            ("x-raw".into(), Bytes::from_static(&[0xff, 0x00, 0x7f])),
        ],
        body: Bytes::from(body.to_owned()),
    }
}

async fn admit(
    guard: &Arc<dyn PaymentGuard>,
    payment: &PaymentId,
    purchase: Option<&str>,
    request: RequestFingerprint,
) -> Admission {
    guard
        .admit(payment, &AUTH, purchase, &request)
        .await
        .unwrap()
}

/// Admits, expecting a grant; the lease that holds it.
async fn grant(
    guard: &Arc<dyn PaymentGuard>,
    payment: PaymentId,
    purchase: Option<&str>,
    request: RequestFingerprint,
) -> Lease {
    let admission = admit(guard, &payment, purchase, request).await;
    assert!(matches!(admission, Admission::Granted), "{admission:?}");
    Lease::new(
        guard.clone(),
        payment,
        AUTH,
        purchase.map(str::to_owned),
        request,
    )
}

/// A Postgres guard on a fresh database (kept alive by the returned handle).
async fn postgres(config: ResponseCacheConfig) -> (Arc<dyn PaymentGuard>, TempDatabase) {
    let temp = TempDatabase::create().await;
    let database = Database::connect(&temp.url, Leases::default())
        .await
        .unwrap();
    (Arc::new(PostgresGuard::new(database, config)), temp)
}

/// `$body(guard)` as two tests: on a memory guard and on a Postgres one, both with `$config`.
macro_rules! on_both_guards {
    ($body:ident, $config:expr) => {
        mod $body {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn in_memory() {
                super::$body(Arc::new(MemoryGuard::new($config))).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn in_postgres() {
                let (guard, _database) = postgres($config).await;
                super::$body(guard).await;
            }
        }
    };
}

on_both_guards!(
    a_payment_in_use_is_refused_and_freed_when_dropped,
    ResponseCacheConfig::default()
);
async fn a_payment_in_use_is_refused_and_freed_when_dropped(guard: Arc<dyn PaymentGuard>) {
    let lease = grant(&guard, id(1), None, [1; 32]).await;
    assert!(matches!(
        admit(&guard, &id(1), None, [2; 32]).await,
        Admission::InUse {
            by_identifier: false
        }
    ));
    drop(lease);
    assert!(matches!(
        admit(&guard, &id(1), None, [2; 32]).await,
        Admission::Granted
    ));
}

on_both_guards!(
    a_served_payment_answers_the_same_request_and_refuses_others,
    ResponseCacheConfig::default()
);
async fn a_served_payment_answers_the_same_request_and_refuses_others(
    guard: Arc<dyn PaymentGuard>,
) {
    let lease = grant(&guard, id(1), None, [1; 32]).await;
    lease
        .served(receipt(), Some(response("paid")))
        .await
        .unwrap();
    match admit(&guard, &id(1), None, [1; 32]).await {
        Admission::Served {
            served,
            by_identifier: false,
        } => {
            assert_eq!(served.response, Some(response("paid")), "kept exactly");
            assert_eq!(served.receipt, receipt());
            assert_eq!(served.request, [1; 32]);
        }
        other => panic!("expected the stored answer, got {other:?}"),
    }
    assert!(matches!(
        admit(&guard, &id(1), None, [9; 32]).await,
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

on_both_guards!(
    a_purchase_id_answers_a_re_signed_retry_and_refuses_another_request,
    ResponseCacheConfig::default()
);
async fn a_purchase_id_answers_a_re_signed_retry_and_refuses_another_request(
    guard: Arc<dyn PaymentGuard>,
) {
    let purchase = Some("pay_0123456789abcdef");
    let lease = grant(&guard, id(1), purchase, [1; 32]).await;
    assert!(matches!(
        admit(&guard, &id(2), purchase, [1; 32]).await,
        Admission::InUse {
            by_identifier: true
        }
    ));
    lease
        .served(receipt(), Some(response("paid")))
        .await
        .unwrap();
    assert!(matches!(
        admit(&guard, &id(2), purchase, [1; 32]).await,
        Admission::Served {
            by_identifier: true,
            ..
        }
    ));
    assert!(matches!(
        admit(&guard, &id(3), purchase, [7; 32]).await,
        Admission::Conflict {
            by_identifier: true
        }
    ));
}

on_both_guards!(
    a_payer_gets_streams_up_to_the_limit_and_none_once_it_left_one_unpaid,
    ResponseCacheConfig::default()
);
async fn a_payer_gets_streams_up_to_the_limit_and_none_once_it_left_one_unpaid(
    guard: Arc<dyn PaymentGuard>,
) {
    let admit = |payer: &'static str| {
        let guard = guard.clone();
        async move { guard.admit_stream(payer, 2).await.unwrap() }
    };
    assert!(matches!(admit("0xAbC").await, StreamAdmission::Granted));
    let first = StreamTicket::new(guard.clone(), "0xAbC");
    assert!(matches!(admit("0xabc").await, StreamAdmission::Granted));
    let second = StreamTicket::new(guard.clone(), "0xabc");
    assert!(matches!(
        admit("0xABC").await,
        StreamAdmission::Busy { streams: 2 }
    ));
    // Another payer is not held up.
    assert!(matches!(admit("0xdef").await, StreamAdmission::Granted));
    guard.stream_over("0xdef");
    drop(first);
    assert!(matches!(admit("0xabc").await, StreamAdmission::Granted));
    guard.stream_over("0xabc");

    let unpaid = UnpaidStream {
        payer: "0xABC".into(),
        payment: id(4),
        network: Network::BASE,
        asset: "0xusdc".into(),
        amount: U256::from(1_234),
        reason: Some(ReasonCode::PERMIT2_INSUFFICIENT_BALANCE),
        message: Some("moved away".into()),
        at: 1_760_000_000,
    };
    guard.record_unpaid_stream(unpaid.clone()).await.unwrap();
    drop(second);
    match admit("0xabc").await {
        StreamAdmission::Unpaid(found) => assert_eq!(*found, unpaid),
        other => panic!("{other:?}"),
    }
    // Every stream is over: the other payer gets its limit again.
    for _ in 0..2 {
        assert!(matches!(admit("0xdef").await, StreamAdmission::Granted));
    }
}

const SHORT_CACHE: ResponseCacheConfig = ResponseCacheConfig {
    ttl: Duration::from_millis(300),
    max_bytes: 1 << 20,
    max_entry_bytes: 600,
};

on_both_guards!(
    paid_responses_expire_and_large_ones_are_kept_without_their_body,
    SHORT_CACHE
);
async fn paid_responses_expire_and_large_ones_are_kept_without_their_body(
    guard: Arc<dyn PaymentGuard>,
) {
    let lease = grant(&guard, id(1), None, [1; 32]).await;
    lease
        .served(receipt(), Some(response(&"y".repeat(700))))
        .await
        .unwrap();
    match admit(&guard, &id(1), None, [1; 32]).await {
        Admission::Served { served, .. } => assert!(served.response.is_none()),
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(matches!(
        admit(&guard, &id(1), None, [1; 32]).await,
        Admission::Granted
    ));
}

/// Two guards on two pools, as two replicas: of concurrent admissions of one payment on
/// both, one is granted; the answer one served the other answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_database_grant_a_payment_once() {
    let temp = TempDatabase::create().await;
    let mut replicas: Vec<Arc<dyn PaymentGuard>> = Vec::new();
    for _ in 0..2 {
        let database = Database::connect(&temp.url, Leases::default())
            .await
            .unwrap();
        replicas.push(Arc::new(PostgresGuard::new(
            database,
            ResponseCacheConfig::default(),
        )));
    }
    for n in 0..10u8 {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8 {
            let guard = replicas[i % 2].clone();
            tasks.spawn(async move { (i % 2, admit(&guard, &id(n), None, [n; 32]).await) });
        }
        let answers = tasks.join_all().await;
        let granted: Vec<usize> = answers
            .iter()
            .filter(|(_, a)| matches!(a, Admission::Granted))
            .map(|(replica, _)| *replica)
            .collect();
        assert_eq!(granted.len(), 1, "{answers:?}");
        let winner = &replicas[granted[0]];
        Lease::new(winner.clone(), id(n), AUTH, None, [n; 32])
            .served(receipt(), Some(response("once")))
            .await
            .unwrap();
        let other = &replicas[1 - granted[0]];
        match admit(other, &id(n), None, [n; 32]).await {
            Admission::Served { served, .. } => {
                assert_eq!(served.response, Some(response("once")));
            }
            answer => panic!("{answer:?}"),
        }
    }
}

/// A replica that stops renewing (it died) frees its payments and streams within the lease
/// TTL; a live one keeps them however long its request runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replicas_payments_are_freed_after_the_lease_and_a_live_ones_never() {
    let temp = TempDatabase::create().await;
    let leases = Leases {
        ttl: Duration::from_millis(1_000),
        refresh: Duration::from_millis(200),
    };
    let replica = async || {
        let database = Database::connect(&temp.url, leases).await.unwrap();
        Arc::new(PostgresGuard::new(database, ResponseCacheConfig::default()))
            as Arc<dyn PaymentGuard>
    };
    let (live, dying, survivor) = (replica().await, replica().await, replica().await);
    let _held = grant(&live, id(1), None, [1; 32]).await;
    assert!(matches!(
        admit(&dying, &id(2), None, [2; 32]).await,
        Admission::Granted
    ));
    assert!(matches!(
        dying.admit_stream("0xabc", 1).await.unwrap(),
        StreamAdmission::Granted
    ));
    drop(dying);

    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(
        matches!(
            admit(&survivor, &id(1), None, [1; 32]).await,
            Admission::InUse { .. }
        ),
        "held by a live replica past the TTL"
    );
    assert!(matches!(
        admit(&survivor, &id(2), None, [2; 32]).await,
        Admission::Granted
    ));
    assert!(matches!(
        survivor.admit_stream("0xabc", 1).await.unwrap(),
        StreamAdmission::Granted
    ));
}

/// Paid responses past the cache's size go, oldest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_paid_responses_go_past_the_cache_size() {
    let temp = TempDatabase::create().await;
    let database = Database::connect(&temp.url, Leases::default())
        .await
        .unwrap();
    let postgres = Arc::new(PostgresGuard::new(
        database,
        ResponseCacheConfig {
            max_bytes: 2_000,
            ..SHORT_CACHE
        },
    ));
    let guard: Arc<dyn PaymentGuard> = postgres.clone();
    for n in 0..10u8 {
        let lease = grant(&guard, id(n), None, [n; 32]).await;
        lease
            .served(receipt(), Some(response(&"x".repeat(500))))
            .await
            .unwrap();
    }
    postgres.prune(true).await.unwrap();
    assert!(matches!(
        admit(&guard, &id(9), None, [9; 32]).await,
        Admission::Served { .. }
    ));
    assert!(matches!(
        admit(&guard, &id(0), None, [0; 32]).await,
        Admission::Granted
    ));
}
