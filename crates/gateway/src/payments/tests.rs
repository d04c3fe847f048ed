//! The payment stores' behaviour, the same on SQLite and Postgres.

use std::sync::Arc;

use x402_paywall::{PaymentEntry, PaymentJournal, PaymentState};
use x402_proto::{Network, ReasonCode, Scheme, SettleResponse, TokenAmount, U256};

use super::*;

const USDC: &str = "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913";
const OTHER: &str = "0x1111111111111111111111111111111111111111";
const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;
/// A Tuesday noon, UTC.
const NOON: i64 = 1_764_072_000_000;

pub(crate) fn entry(n: u32, at_ms: i64, state: PaymentState, amount: U256) -> PaymentEntry {
    let network = Network::new("eip155:8453");
    let payer = format!("0xAbC{n:03x}{}", "9".repeat(34));
    let tx = matches!(state, PaymentState::Settled | PaymentState::Pending)
        .then(|| format!("0x{:064x}", 0xfeed_0000 + n));
    let receipt = match state {
        PaymentState::Failed => SettleResponse::failure(
            network.clone(),
            ReasonCode::new("insufficient_funds"),
            "the payer's balance is too low",
            Some(payer.clone()),
            None,
        ),
        PaymentState::Pending => SettleResponse::failure(
            network.clone(),
            ReasonCode::SETTLEMENT_PENDING,
            "no receipt yet",
            Some(payer.clone()),
            None,
        ),
        _ => SettleResponse::success(
            network.clone(),
            Some(payer.clone()),
            tx.clone().unwrap_or_default(),
        ),
    };
    PaymentEntry {
        at_ms,
        payment: format!("eip155:8453:exact:{USDC}:{payer}:{n}"),
        service: if n.is_multiple_of(2) {
            "embed-l4"
        } else {
            "llm-4090"
        }
        .to_owned(),
        resource: "POST /run".to_owned(),
        payer,
        amount: TokenAmount(amount),
        asset: USDC.to_owned(),
        network,
        decimals: 6,
        scheme: if state == PaymentState::Charged {
            Scheme::BATCH_SETTLEMENT
        } else {
            Scheme::EXACT
        },
        state,
        transaction: tx,
        reason: match state {
            PaymentState::Failed => Some("insufficient_funds".to_owned()),
            PaymentState::Pending => Some("settlement_pending".to_owned()),
            _ => None,
        },
        fingerprint: format!("{n:064x}"),
        receipt,
        job: (n == 3).then(|| "job_3".to_owned()),
    }
}

/// What each store must do, given a way to open it afresh on the same data.
async fn behaves(store: Arc<dyn PaymentStore>) {
    let big = U256::from(u128::MAX) * U256::from(3u8);
    let entries = [
        entry(
            1,
            NOON - 2 * DAY,
            PaymentState::Settled,
            U256::from(1_000u64),
        ),
        entry(2, NOON - MINUTE, PaymentState::Settled, big),
        entry(3, NOON - 30_000, PaymentState::Charged, U256::from(250u64)),
        entry(4, NOON - 10_000, PaymentState::Failed, U256::from(7u64)),
        entry(5, NOON - 5_000, PaymentState::Pending, U256::from(9u64)),
    ];
    for e in &entries {
        store.record(e).await.unwrap();
    }
    let mut other = entry(6, NOON - 1_000, PaymentState::Settled, U256::from(5u64));
    other.asset = OTHER.to_owned();
    other.decimals = 18;
    store.record(&other).await.unwrap();

    // A later success replaces a failure; nothing replaces a success.
    let mut retried = entry(4, NOON, PaymentState::Settled, U256::from(7u64));
    retried.transaction = Some("0xABCDEF".to_owned());
    store.record(&retried).await.unwrap();
    let mut late_failure = entry(1, NOON, PaymentState::Failed, U256::from(1u64));
    late_failure.reason = Some("invalid_signature".to_owned());
    store.record(&late_failure).await.unwrap();

    // Newest first, with the total; every field reads back.
    let all = store
        .page(&PageQuery {
            limit: 10,
            ..PageQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.total, 6);
    let order: Vec<&str> = all.records.iter().map(|r| &*r.entry.fingerprint).collect();
    assert_eq!(
        order,
        [4u32, 6, 5, 3, 2, 1]
            .map(|n| format!("{n:064x}"))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    let charged = all.records.iter().find(|r| r.entry.job.is_some()).unwrap();
    let mut expected = entries[2].clone();
    expected.payer = expected.payer.to_lowercase();
    assert_eq!(charged.entry, expected);
    assert_eq!(store.get(charged.id).await.unwrap().unwrap(), *charged);
    assert_eq!(store.get(charged.id + 1000).await.unwrap(), None);
    let replaced = &all.records[0].entry;
    assert_eq!(
        (replaced.state, replaced.transaction.as_deref()),
        (PaymentState::Settled, Some("0xabcdef"))
    );
    let kept = &all.records[5].entry;
    assert_eq!(
        (kept.state, kept.amount.0),
        (PaymentState::Settled, U256::from(1_000u64))
    );

    // Pages.
    let second = store
        .page(&PageQuery {
            offset: 4,
            limit: 4,
            ..PageQuery::default()
        })
        .await
        .unwrap();
    assert_eq!((second.total, second.records.len()), (6, 2));
    assert_eq!(second.records[0].entry.fingerprint, format!("{:064x}", 2));

    // Search: payer (any case, or its start), transaction, service, row id.
    let search = |text: &str| {
        let store = store.clone();
        let text = text.to_owned();
        async move {
            let page = store
                .page(&PageQuery {
                    search: Some(text),
                    limit: 10,
                    ..PageQuery::default()
                })
                .await
                .unwrap();
            let mut found: Vec<String> = page
                .records
                .iter()
                .map(|r| r.entry.fingerprint[62..].to_owned())
                .collect();
            found.sort();
            assert_eq!(page.total as usize, found.len());
            found
        }
    };
    let payer2 = entries[1].payer.clone();
    assert_eq!(
        search(&payer2.to_uppercase().replace("0X", "0x")).await,
        ["02"]
    );
    assert_eq!(search(&payer2[..40]).await, ["02"]);
    assert_eq!(search("0xabc").await.len(), 6);
    assert_eq!(
        search(&format!("0x{:064x}", 0xfeed_0000u32 + 2)).await,
        ["02"]
    );
    assert_eq!(search("0xABCDEF").await, ["04"]);
    assert_eq!(search("llm-4090").await, ["01", "03", "05"]);
    assert_eq!(search(&charged.id.to_string()).await, ["03"]);
    assert_eq!(search("nobody").await, Vec::<String>::new());
    let pending = store
        .page(&PageQuery {
            state: Some(PaymentState::Pending),
            limit: 10,
            ..PageQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.total, 1);
    assert_eq!(
        pending.records[0].entry.reason.as_deref(),
        Some("settlement_pending")
    );

    // Sums: exact past 128 bits, earned only (settled and charged), per asset.
    let earned = store.earned_since(0).await.unwrap();
    let usdc = earned.iter().find(|e| e.asset == USDC).unwrap();
    assert_eq!(usdc.settled, U256::from(1_007u64) + big);
    assert_eq!(usdc.charged, U256::from(250u64));
    assert_eq!(usdc.calls, 4);
    let other_asset = earned.iter().find(|e| e.asset == OTHER).unwrap();
    assert_eq!(
        (other_asset.decimals, other_asset.settled, other_asset.calls),
        (18, U256::from(5u64), 1)
    );
    let today = store.earned_since(NOON - DAY / 2).await.unwrap();
    let usdc = today.iter().find(|e| e.asset == USDC).unwrap();
    assert_eq!((usdc.settled, usdc.calls), (U256::from(7u64) + big, 3));

    let minutes = store.calls_per_minute(NOON - 60 * MINUTE).await.unwrap();
    let total: u64 = minutes.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 4);
    assert!(
        minutes
            .iter()
            .all(|(m, _)| *m >= (NOON - 60 * MINUTE) / MINUTE)
    );

    // Days start at the asked offset: at UTC+13, noon UTC is already the next day.
    let days = store.daily(NOON - 7 * DAY, 0).await.unwrap();
    let usdc_days: Vec<(i64, U256)> = days
        .iter()
        .filter(|d| d.asset == USDC)
        .map(|d| (d.day_ms, d.amount))
        .collect();
    let midnight = NOON - DAY / 2;
    assert_eq!(
        usdc_days,
        [
            (midnight - 2 * DAY, U256::from(1_000u64)),
            (midnight, big + U256::from(257u64))
        ]
    );
    let shifted = store.daily(NOON - 7 * DAY, 13 * 3_600_000).await.unwrap();
    assert!(
        shifted
            .iter()
            .any(|d| d.asset == USDC && d.day_ms == midnight + DAY - 13 * 3_600_000),
        "{shifted:?}"
    );

    // Since a moment off the totals' edges: exact all the same.
    let since = store.earned_since(NOON - 90_000).await.unwrap();
    let usdc = since.iter().find(|e| e.asset == USDC).unwrap();
    assert_eq!(
        (usdc.settled, usdc.charged, usdc.calls),
        (U256::from(7u64) + big, U256::from(250u64), 3)
    );
    let odd = store.daily(NOON - 7 * DAY + 1, 7 * 60_000).await.unwrap();
    let odd_total = odd
        .iter()
        .filter(|d| d.asset == USDC)
        .fold(U256::ZERO, |sum, d| sum + d.amount);
    assert_eq!(odd_total, big + U256::from(1_257u64));

    let services = store.top(false, 10).await.unwrap();
    assert_eq!(services[0].name, "embed-l4", "{services:?}");
    assert_eq!(services[0].amount, big + U256::from(7u64));
    let payers = store.top(true, 2).await.unwrap();
    assert_eq!(payers.len(), 2);
    assert_eq!(payers[0].name, payer2.to_lowercase());

    let failures = store.failures().await.unwrap();
    assert_eq!(failures, []);
    store
        .record(&entry(7, NOON, PaymentState::Failed, U256::from(1u64)))
        .await
        .unwrap();
    store
        .record(&entry(8, NOON + 1, PaymentState::Failed, U256::from(1u64)))
        .await
        .unwrap();
    let failures = store.failures().await.unwrap();
    assert_eq!(
        failures,
        [FailureCount {
            reason: "insufficient_funds".to_owned(),
            count: 2,
            last_ms: NOON + 1
        }]
    );
}

#[tokio::test]
async fn the_sqlite_store_keeps_every_payment_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payments.db");
    behaves(Arc::new(SqlitePaymentStore::open(&path).unwrap())).await;
    // Reopened, it has them all.
    let store = SqlitePaymentStore::open(&path).unwrap();
    let page = store
        .page(&PageQuery {
            limit: 1,
            ..PageQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.total, 8);
}

#[tokio::test]
async fn the_postgres_store_keeps_every_payment_exactly() {
    use crate::postgres::{Database, Leases, PostgresPaymentStore};
    let temp = x402_testkit::TempDatabase::create().await;
    let database = Database::connect(&temp.url, Leases::default())
        .await
        .unwrap();
    behaves(Arc::new(PostgresPaymentStore::new(database))).await;
}

#[tokio::test]
async fn a_later_sqlite_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 9")
        .unwrap();
    let refused = SqlitePaymentStore::open(&path).unwrap_err();
    assert!(refused.0.contains("later version"), "{refused}");
}

#[tokio::test]
async fn concurrent_payments_are_committed_together_and_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqlitePaymentStore::open(&dir.path().join("p.db")).unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..200u32 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .record(&entry(
                    n + 100,
                    NOON + i64::from(n),
                    PaymentState::Settled,
                    U256::from(n),
                ))
                .await
                .unwrap();
        });
    }
    while tasks.join_next().await.is_some() {}
    let earned = store.earned_since(0).await.unwrap();
    assert_eq!(earned[0].calls, 200);
    assert_eq!(earned[0].settled, U256::from((0..200u32).sum::<u32>()));
}

#[test]
fn hex_is_kept_lowercased_and_base58_as_it_is() {
    assert_eq!(stored_case("0xAbC9"), "0xabc9");
    let solana = "23pM7Npwz3e2y2vYssSzXhPBNowyKWgSXWt1TgBxvX7i";
    assert_eq!(stored_case(solana), solana);
    assert_eq!(normalized(&format!(" {solana} ")).1, solana);
}
