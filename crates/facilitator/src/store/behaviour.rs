//! What every settlement log does, one body per behaviour, run on each backend: SQLite in a
//! temporary folder and Postgres in a database of its own on the machine's server
//! ([`x402_testkit::TempDatabase`]: a server that cannot be reached fails the test). "Another
//! instance" is the log opened again on the same data, as another process would.

use std::sync::Arc;

use alloy::primitives::{Address, B256, Bytes, U256};
use x402_evm::batch::{BatchSendKey, BatchSendLog, BatchTx};
use x402_proto::{Network, ReasonCode, SettleResponse};

use super::{
    Backlog, Claim, FailureTally, NewSettlement, Party, Search, SettlementFilter, SettlementKey,
    SettlementState, SettlementStore, StoreError, Tally, TxRecord,
};
use crate::postgres::{PostgresOptions, PostgresStore};
use crate::sqlite::SqliteStore;

/// Where a log is kept. Each opening is a new instance on the same data.
trait Backend {
    /// The log, which is also the `batch-settlement` sends' seam.
    type Store: SettlementStore + BatchSendLog + 'static;

    async fn open_log(&self) -> Self::Store;

    /// The settlement log.
    async fn open(&self) -> Arc<dyn SettlementStore> {
        Arc::new(self.open_log().await)
    }

    /// The same log as the batch sends' seam.
    async fn open_sends(&self) -> Arc<dyn BatchSendLog> {
        Arc::new(self.open_log().await)
    }

    /// `n` instances of the settlement log on the same data.
    async fn instances(&self, n: usize) -> Vec<Arc<dyn SettlementStore>> {
        let mut stores = Vec::with_capacity(n);
        for _ in 0..n {
            stores.push(self.open().await);
        }
        stores
    }
}

/// A SQLite file in a temporary folder (kept while this lives).
struct Sqlite(tempfile::TempDir);

impl Sqlite {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }
}

impl Backend for Sqlite {
    type Store = SqliteStore;

    async fn open_log(&self) -> SqliteStore {
        SqliteStore::open(&self.0.path().join("log.db")).unwrap()
    }
}

/// A Postgres database created for the test (dropped with this).
struct Postgres(x402_testkit::TempDatabase);

impl Postgres {
    async fn new() -> Self {
        Self(x402_testkit::TempDatabase::create().await)
    }
}

impl Backend for Postgres {
    type Store = PostgresStore;

    async fn open_log(&self) -> PostgresStore {
        // One instance, reopened under its configured name: its rows are its own.
        PostgresStore::connect_as(&self.0.url, &PostgresOptions::default(), "behaviour")
            .await
            .unwrap()
    }
}

/// Runs each behaviour on SQLite (`store::behaviour::sqlite::…`) and on Postgres
/// (`store::behaviour::postgres::…`).
macro_rules! on_every_backend {
    ($($behaviour:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    super::$behaviour(super::Sqlite::new()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    super::$behaviour(super::Postgres::new().await).await;
                }
            )*
        }
    };
}

on_every_backend!(
    one_claim_wins_and_the_record_survives_reopening,
    concurrent_claims_from_several_instances_have_one_winner,
    a_claim_with_its_first_transaction_is_one_write_and_one_winner,
    an_abandoned_settlement_is_taken_over_by_one_claimant,
    an_answer_is_handed_to_one_holder_and_kept_across_reopening,
    a_transaction_needs_a_claim,
    amounts_keep_every_digit_of_a_uint256,
    a_send_is_recorded_once_with_its_transactions_and_kept_across_opens,
    totals_series_and_top_lists_add_up_confirmed_settlements_exactly,
    pages_of_settlements_are_searched_filtered_and_newest_first,
    health_counts_what_is_pending_what_failed_and_who_signed,
);

fn settlement(n: u8) -> NewSettlement {
    NewSettlement {
        key: SettlementKey {
            chain_id: 8453,
            asset: Address::repeat_byte(1),
            payer: Address::repeat_byte(2),
            nonce: B256::repeat_byte(n),
        },
        fingerprint: B256::repeat_byte(9),
        token: Address::repeat_byte(1),
        pay_to: Address::repeat_byte(3),
        amount: U256::from(10_000),
        valid_before: 1_900_000_000,
        wire_network: Network::BASE,
        request: "{}".into(),
    }
}

fn tx(n: u8) -> TxRecord {
    TxRecord {
        tx_hash: B256::repeat_byte(n),
        raw: Bytes::from(vec![n; 10]),
        signer: Address::repeat_byte(4),
        signer_nonce: u64::from(n),
    }
}

/// A settlement answer that failed for `reason`.
fn failure(reason: ReasonCode) -> SettleResponse {
    SettleResponse::failure(Network::BASE, reason, "x", None, None)
}

/// Claims `settlement(n)` and finishes it in `state` with `response`, handed to
/// `answered_to` when given.
async fn claim_and_finish(
    store: &dyn SettlementStore,
    n: u8,
    state: SettlementState,
    response: &SettleResponse,
    answered_to: Option<&str>,
) -> NewSettlement {
    let new = settlement(n);
    store.claim(&new).await.unwrap();
    store
        .finish(&new.key, state, response, answered_to)
        .await
        .unwrap();
    new
}

/// `calls` concurrent calls of `call`, spread over `stores` in turn; their results.
async fn concurrently<S, T, F>(stores: &[S], calls: usize, call: F) -> Vec<T>
where
    S: Clone,
    T: Send + 'static,
    F: Fn(S, usize) -> x402_proto::BoxFuture<'static, T>,
{
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..calls {
        tasks.spawn(call(stores[n % stores.len()].clone(), n));
    }
    tasks.join_all().await
}

async fn one_claim_wins_and_the_record_survives_reopening(backend: impl Backend) {
    let store = backend.open().await;
    let new = settlement(7);
    assert_eq!(store.claim(&new).await.unwrap(), Claim::Fresh);
    let Claim::Existing(existing) = store.claim(&new).await.unwrap() else {
        panic!("second claim must see the first");
    };
    assert_eq!(existing.state, SettlementState::Claimed);
    store.add_transaction(&new.key, &tx(1)).await.unwrap();
    store.add_transaction(&new.key, &tx(2)).await.unwrap();
    let later = settlement(8);
    store.claim(&later).await.unwrap();
    drop(store);

    let store = backend.open().await;
    let unfinished = store.unfinished().await.unwrap();
    assert_eq!(unfinished.len(), 2, "{unfinished:?}");
    assert_eq!(unfinished[0].state, SettlementState::Submitted);
    assert_eq!(unfinished[0].txs, vec![tx(1), tx(2)]);
    assert_eq!(unfinished[0].settlement, new);
    assert_eq!(
        (unfinished[1].state, unfinished[1].txs.len()),
        (SettlementState::Claimed, 0),
        "oldest first"
    );

    let response = failure(ReasonCode::SETTLEMENT_PENDING);
    for key in [new.key, later.key] {
        store
            .finish(&key, SettlementState::Confirmed, &response, None)
            .await
            .unwrap();
    }
    assert!(store.unfinished().await.unwrap().is_empty());
    let stored = store.get(&new.key).await.unwrap().unwrap();
    assert_eq!(stored.response, Some(response));
    assert_eq!(stored.txs, vec![tx(1), tx(2)], "kept once final");
    assert!(store.get(&settlement(99).key).await.unwrap().is_none());
}

async fn concurrent_claims_from_several_instances_have_one_winner(backend: impl Backend) {
    let stores = backend.instances(3).await;
    let claims = concurrently(&stores, 20, |store, _| {
        Box::pin(async move { store.claim(&settlement(3)).await.unwrap() })
    })
    .await;
    assert_eq!(claims.iter().filter(|c| **c == Claim::Fresh).count(), 1);
    for claim in claims.iter().filter(|c| **c != Claim::Fresh) {
        let Claim::Existing(record) = claim else {
            unreachable!()
        };
        assert_eq!(
            record.settlement,
            settlement(3),
            "the losers see the record"
        );
    }
}

async fn a_claim_with_its_first_transaction_is_one_write_and_one_winner(backend: impl Backend) {
    let stores = backend.instances(3).await;
    let claims = concurrently(&stores, 10, |store, n| {
        Box::pin(async move {
            let n = u8::try_from(n).unwrap();
            let (new, tx, holder) = (settlement(8), tx(n + 1), format!("call:{n}"));
            let claim = store.claim_with_transaction(&new, &tx, Some(&holder));
            claim.await.unwrap()
        })
    })
    .await;
    assert_eq!(claims.iter().filter(|c| **c == Claim::Fresh).count(), 1);
    drop(stores);
    let store = backend.open().await;
    let stored = store.get(&settlement(8).key).await.unwrap().unwrap();
    assert_eq!(stored.state, SettlementState::Submitted);
    assert_eq!(
        stored.txs.len(),
        1,
        "only the winner's transaction is recorded"
    );
    let winner = stored.txs[0].signer_nonce - 1;
    assert_eq!(
        stored.answered_to,
        Some(format!("call:{winner}")),
        "promised to the winner's caller in the same write"
    );
    let unfinished = store.unfinished().await.unwrap();
    assert_eq!(
        unfinished.len(),
        1,
        "a submitted settlement is reconciled at start"
    );
}

async fn an_abandoned_settlement_is_taken_over_by_one_claimant(backend: impl Backend) {
    let store = backend.open().await;
    let response = failure(ReasonCode::CHAIN_UNAVAILABLE);
    let new = claim_and_finish(&*store, 1, SettlementState::Abandoned, &response, None).await;
    assert_eq!(store.claim(&new).await.unwrap(), Claim::Fresh);
    let taken = store.get(&new.key).await.unwrap().unwrap();
    assert_eq!(
        (taken.state, taken.response),
        (SettlementState::Claimed, None)
    );
    store
        .finish(&new.key, SettlementState::Confirmed, &response, None)
        .await
        .unwrap();
    assert!(matches!(
        store.claim(&new).await.unwrap(),
        Claim::Existing(_)
    ));

    // Abandoned again, then claimed by several instances at once: one takes it over.
    let other = claim_and_finish(&*store, 2, SettlementState::Abandoned, &response, None).await;
    let stores = backend.instances(3).await;
    let claims = concurrently(&stores, 12, |store, n| {
        Box::pin(async move {
            let (new, tx) = (settlement(2), tx(u8::try_from(n).unwrap() + 10));
            store.claim_with_transaction(&new, &tx, None).await.unwrap()
        })
    })
    .await;
    assert_eq!(claims.iter().filter(|c| **c == Claim::Fresh).count(), 1);
    let stored = store.get(&other.key).await.unwrap().unwrap();
    assert_eq!(
        (stored.state, stored.txs.len()),
        (SettlementState::Submitted, 1)
    );
}

async fn an_answer_is_handed_to_one_holder_and_kept_across_reopening(backend: impl Backend) {
    let store = backend.open().await;
    let response = failure(ReasonCode::SETTLEMENT_PENDING);
    let new = claim_and_finish(
        &*store,
        5,
        SettlementState::Confirmed,
        &response,
        Some("key:a"),
    )
    .await;
    assert!(store.hand_out(&new.key, "key:a").await.unwrap());
    assert!(!store.hand_out(&new.key, "call:b").await.unwrap());
    drop(store);
    let store = backend.open().await;
    let stored = store.get(&new.key).await.unwrap().unwrap();
    assert_eq!(stored.answered_to.as_deref(), Some("key:a"));
    assert!(!store.hand_out(&new.key, "key:c").await.unwrap());

    // Unmarked at the end: the first to ask, on any instance, takes it, once.
    let other = claim_and_finish(&*store, 6, SettlementState::Confirmed, &response, None).await;
    let stores = backend.instances(3).await;
    let key = other.key;
    let won = concurrently(&stores, 20, move |store, n| {
        Box::pin(async move { store.hand_out(&key, &format!("call:{n}")).await.unwrap() })
    })
    .await;
    assert_eq!(won.into_iter().filter(|w| *w).count(), 1);
}

async fn a_transaction_needs_a_claim(backend: impl Backend) {
    let store = backend.open().await;
    let error: StoreError = store
        .add_transaction(&settlement(5).key, &tx(5))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not claimed"), "{error}");
    let response = failure(ReasonCode::CHAIN_UNAVAILABLE);
    let ended = claim_and_finish(&*store, 6, SettlementState::Failed, &response, None).await;
    let error = store.add_transaction(&ended.key, &tx(6)).await.unwrap_err();
    assert!(error.to_string().contains("not claimed"), "{error}");
    assert!(store.get(&ended.key).await.unwrap().unwrap().txs.is_empty());
}

async fn amounts_keep_every_digit_of_a_uint256(backend: impl Backend) {
    let store = backend.open().await;
    for (n, amount) in [
        (1, U256::MAX),
        (2, U256::ZERO),
        (3, U256::MAX - U256::from(1)),
    ] {
        let mut new = settlement(n);
        new.amount = amount;
        store.claim(&new).await.unwrap();
        let stored = store.get(&new.key).await.unwrap().unwrap();
        assert_eq!(stored.settlement.amount, amount);
    }
}

fn batch_tx(byte: u8, signer_nonce: u64) -> BatchTx {
    BatchTx {
        tx_hash: B256::repeat_byte(byte),
        raw: Bytes::from(vec![byte; 3]),
        signer_nonce,
    }
}

async fn a_send_is_recorded_once_with_its_transactions_and_kept_across_opens(
    backend: impl Backend,
) {
    let key = BatchSendKey::stored("eip155:8453:claim:0x01");
    let other = BatchSendKey::stored("eip155:8453:claim:0x02");
    {
        let log = backend.open_sends().await;
        assert!(log.find(&key).await.unwrap().is_none());
        assert!(
            log.record(&key, &batch_tx(5, 7), "{\"a\":1}")
                .await
                .unwrap()
        );
        assert!(!log.record(&key, &batch_tx(6, 8), "{}").await.unwrap());
        log.add_transaction(&key, &batch_tx(9, 7)).await.unwrap();
        assert!(log.record(&other, &batch_tx(10, 8), "{}").await.unwrap());
        let sent = log.find(&key).await.unwrap().unwrap();
        assert_eq!(sent.txs, vec![batch_tx(5, 7), batch_tx(9, 7)]);
        assert_eq!((sent.request.as_str(), sent.answer), ("{\"a\":1}", None));
        let answer = SettleResponse::success(Network::eip155(8453), None, "0x05");
        log.finish(&other, &answer).await.unwrap();
    }
    let log = backend.open_sends().await;
    let open = log.unfinished().await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!((&open[0].0, open[0].1.txs.len()), (&key, 2));
    let ended = log.find(&other).await.unwrap().unwrap();
    assert_eq!(ended.answer.unwrap().transaction, "0x05");
    log.forget(&key).await.unwrap();
    assert!(log.find(&key).await.unwrap().is_none());
    // Its transactions went with it: recording the key again starts afresh.
    assert!(log.record(&key, &batch_tx(11, 9), "{}").await.unwrap());
    assert_eq!(
        log.find(&key).await.unwrap().unwrap().txs,
        vec![batch_tx(11, 9)]
    );

    // Of concurrent records of one key on several instances, one is written.
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(backend.open_sends().await);
    }
    let fresh = BatchSendKey::stored("eip155:8453:settle:0x03");
    let recorded = concurrently(&stores, 12, move |log, n| {
        let key = fresh.clone();
        Box::pin(async move {
            let tx = batch_tx(u8::try_from(n + 20).unwrap(), 3);
            log.record(&key, &tx, "{}").await.unwrap()
        })
    })
    .await;
    assert_eq!(recorded.into_iter().filter(|r| *r).count(), 1);
}

/// `settlement(n)` paid by `payer` to `pay_to` (address bytes), of `amount`.
fn payment(n: u8, payer: u8, pay_to: u8, amount: U256) -> NewSettlement {
    let mut new = settlement(n);
    new.key.payer = Address::repeat_byte(payer);
    new.pay_to = Address::repeat_byte(pay_to);
    new.amount = amount;
    new
}

/// Records `new` with its first transaction `tx(n)` and ends it in `state`: a success naming
/// that transaction when confirmed, a failure for `reason` otherwise.
async fn settle(
    store: &dyn SettlementStore,
    new: &NewSettlement,
    n: u8,
    state: SettlementState,
    reason: &ReasonCode,
) {
    let claim = store
        .claim_with_transaction(new, &tx(n), None)
        .await
        .unwrap();
    assert_eq!(claim, Claim::Fresh);
    let answer = match state {
        SettlementState::Confirmed => {
            SettleResponse::success(Network::BASE, None, tx(n).tx_hash.to_string())
        }
        _ => failure(reason.clone()),
    };
    store.finish(&new.key, state, &answer, None).await.unwrap();
}

fn filter(search: Option<Search>, states: &[SettlementState]) -> SettlementFilter {
    SettlementFilter {
        search,
        states: states.to_vec(),
        oldest_first: false,
        offset: 0,
        limit: 50,
    }
}

async fn totals_series_and_top_lists_add_up_confirmed_settlements_exactly(backend: impl Backend) {
    let store = backend.open().await;
    let big = U256::MAX / U256::from(4);
    let confirmed = SettlementState::Confirmed;
    let none = ReasonCode::SETTLEMENT_PENDING;
    settle(
        &*store,
        &payment(1, 0x11, 0x21, U256::from(100)),
        1,
        confirmed,
        &none,
    )
    .await;
    settle(
        &*store,
        &payment(2, 0x11, 0x22, U256::from(250)),
        2,
        confirmed,
        &none,
    )
    .await;
    settle(&*store, &payment(3, 0x12, 0x21, big), 3, confirmed, &none).await;
    // A failure and a pending one move nothing.
    let failed = SettlementState::Failed;
    settle(
        &*store,
        &payment(4, 0x12, 0x21, U256::from(7)),
        4,
        failed,
        &ReasonCode::EXACT_EVM_SIGNATURE,
    )
    .await;
    store
        .claim(&payment(5, 0x13, 0x21, U256::from(9)))
        .await
        .unwrap();
    // Another token (a Permit2 payment names Permit2 as its key's asset).
    let mut other = payment(6, 0x11, 0x21, U256::from(5));
    other.key.asset = Address::repeat_byte(0x0f);
    other.token = Address::repeat_byte(0x0e);
    settle(&*store, &other, 6, confirmed, &none).await;

    let usdc = Address::repeat_byte(1);
    let tally = |settlements: u64, amount: U256| Tally {
        settlements,
        amount,
    };
    let days = store.settled_days(0).await.unwrap();
    let summed: Vec<(u64, Address, Tally)> = days
        .iter()
        .map(|t| (t.chain_id, t.token, t.tally))
        .collect();
    assert_eq!(
        summed,
        [
            (8453, usdc, tally(3, big + U256::from(350))),
            (8453, other.token, tally(1, U256::from(5))),
        ],
        "every digit of the sum, per token"
    );
    let today = x402_evm::unix_now();
    assert_eq!(
        days[0].start,
        today - today % 86_400,
        "today, on its boundary"
    );
    let later = today + 86_400;
    assert!(
        store.settled_days(later).await.unwrap().is_empty(),
        "nothing recorded tomorrow"
    );

    // The same sums from the rows.
    let series = store.settled_series(0, 86_400).await.unwrap();
    assert_eq!(series, days);
    let minutes = store.settled_series(0, 60).await.unwrap();
    let counted: u64 = minutes.iter().map(|p| p.tally.settlements).sum();
    assert_eq!(counted, 4);

    let payers = store.top_parties(Party::Payer, 10).await.unwrap();
    let ranked: Vec<(Address, Address, Tally)> = payers
        .iter()
        .map(|p| (p.address, p.token, p.tally))
        .collect();
    assert_eq!(
        ranked,
        [
            (Address::repeat_byte(0x12), usdc, tally(1, big)),
            (Address::repeat_byte(0x11), usdc, tally(2, U256::from(350))),
            (
                Address::repeat_byte(0x11),
                other.token,
                tally(1, U256::from(5))
            ),
        ],
        "most first, by the exact amount"
    );
    let payees = store.top_parties(Party::Payee, 1).await.unwrap();
    assert_eq!(payees.len(), 1);
    assert_eq!(
        (payees[0].address, payees[0].tally),
        (Address::repeat_byte(0x21), tally(2, big + U256::from(100)))
    );

    // Confirmed twice counts once; leaving `confirmed` takes it back out; the sums are kept
    // across opens.
    let answer = SettleResponse::success(Network::BASE, None, tx(1).tx_hash.to_string());
    let first = payment(1, 0x11, 0x21, U256::from(100));
    store
        .finish(&first.key, confirmed, &answer, None)
        .await
        .unwrap();
    let second = payment(2, 0x11, 0x22, U256::from(250));
    let reverted = failure(ReasonCode::EXACT_EVM_SIGNATURE);
    store
        .finish(&second.key, failed, &reverted, None)
        .await
        .unwrap();
    drop(store);
    let store = backend.open().await;
    let days = store.settled_days(0).await.unwrap();
    assert_eq!(days[0].tally, tally(2, big + U256::from(100)));
    let payers = store.top_parties(Party::Payer, 10).await.unwrap();
    let p11: Vec<Tally> = payers
        .iter()
        .filter(|p| p.address == Address::repeat_byte(0x11) && p.token == usdc)
        .map(|p| p.tally)
        .collect();
    assert_eq!(p11, [tally(1, U256::from(100))]);
    let payees = store.top_parties(Party::Payee, 10).await.unwrap();
    assert!(
        payees
            .iter()
            .all(|p| p.address != Address::repeat_byte(0x22)),
        "a payee with nothing settled is not listed: {payees:?}"
    );
}

async fn pages_of_settlements_are_searched_filtered_and_newest_first(backend: impl Backend) {
    let store = backend.open().await;
    let confirmed = SettlementState::Confirmed;
    let none = ReasonCode::SETTLEMENT_PENDING;
    for n in 1..=5u8 {
        let new = payment(n, 0x10 + n % 2, 0x20 + n, U256::from(u64::from(n) * 10));
        settle(&*store, &new, n, confirmed, &none).await;
    }
    let failed = payment(6, 0x11, 0x26, U256::from(60));
    settle(
        &*store,
        &failed,
        6,
        SettlementState::Failed,
        &ReasonCode::EXACT_EVM_SIGNATURE,
    )
    .await;
    let pending = payment(7, 0x11, 0x27, U256::from(70));
    store
        .claim_with_transaction(&pending, &tx(7), None)
        .await
        .unwrap();
    store.add_transaction(&pending.key, &tx(8)).await.unwrap();

    let page = store.settlements(&filter(None, &[])).await.unwrap();
    assert_eq!(page.total, 7);
    let order: Vec<B256> = page.rows.iter().map(|r| r.key.nonce).collect();
    let expected: Vec<B256> = (1..=7u8).rev().map(B256::repeat_byte).collect();
    assert_eq!(order, expected, "newest first");
    let newest = &page.rows[0];
    assert_eq!(newest.state, SettlementState::Submitted);
    assert_eq!(
        newest.tx_hash,
        Some(tx(8).tx_hash),
        "the last transaction sent"
    );
    let failure = &page.rows[1];
    assert_eq!(
        failure.error_reason.as_deref(),
        Some("invalid_exact_evm_signature")
    );
    let first = &page.rows[6];
    assert_eq!(
        (first.pay_to, first.amount, first.token, first.tx_hash),
        (
            Address::repeat_byte(0x21),
            U256::from(10),
            Address::repeat_byte(1),
            Some(tx(1).tx_hash)
        )
    );
    assert!(first.created_at > 0 && first.updated_at >= first.created_at);
    assert_eq!(
        store.summary(&first.key).await.unwrap().as_ref(),
        Some(first)
    );
    assert_eq!(store.summary(&settlement(99).key).await.unwrap(), None);

    let mut second = filter(None, &[]);
    (second.offset, second.limit) = (2, 2);
    let page = store.settlements(&second).await.unwrap();
    assert_eq!(page.total, 7, "the total of every match, not of the page");
    let nonces: Vec<B256> = page.rows.iter().map(|r| r.key.nonce).collect();
    assert_eq!(nonces, [B256::repeat_byte(5), B256::repeat_byte(4)]);
    second.oldest_first = true;
    let page = store.settlements(&second).await.unwrap();
    assert_eq!(page.rows[0].key.nonce, B256::repeat_byte(3));

    let found = |search: Search, states: &'static [SettlementState]| {
        let store = store.clone();
        async move {
            let page = store
                .settlements(&filter(Some(search), states))
                .await
                .unwrap();
            let mut nonces: Vec<u8> = page.rows.iter().map(|r| r.key.nonce[0]).collect();
            nonces.sort_unstable();
            assert_eq!(page.total, nonces.len() as u64);
            nonces
        }
    };
    // Payer 0x10 paid 2 and 4; 0x23 was paid by 3; a transaction names its settlement.
    assert_eq!(
        found(Search::Address(Address::repeat_byte(0x10)), &[]).await,
        [2, 4]
    );
    assert_eq!(
        found(Search::Address(Address::repeat_byte(0x23)), &[]).await,
        [3]
    );
    assert_eq!(found(Search::Transaction(tx(8).tx_hash), &[]).await, [7]);
    assert_eq!(
        found(Search::Transaction(tx(7).tx_hash), &[]).await,
        [7],
        "any of its transactions"
    );
    assert_eq!(
        found(Search::Transaction(B256::repeat_byte(0x99)), &[]).await,
        Vec::<u8>::new()
    );
    assert_eq!(
        found(Search::Prefix("0x2525".into()), &[]).await,
        [5],
        "a payee's start"
    );
    assert_eq!(
        found(Search::Prefix("0x0606".into()), &[]).await,
        [6],
        "a transaction's start"
    );
    assert_eq!(
        found(Search::Prefix("0x1111".into()), &[]).await,
        [1, 3, 5, 6, 7]
    );
    let pending_states = &[SettlementState::Claimed, SettlementState::Submitted];
    assert_eq!(
        found(Search::Prefix("0x11".into()), pending_states).await,
        [7]
    );
    let only_failed = &[SettlementState::Failed];
    assert_eq!(
        found(Search::Address(Address::repeat_byte(0x11)), only_failed).await,
        [6]
    );
}

async fn health_counts_what_is_pending_what_failed_and_who_signed(backend: impl Backend) {
    let store = backend.open().await;
    let empty = store.log_health().await.unwrap();
    assert_eq!(
        (empty.claimed, empty.submitted),
        (Backlog::default(), Backlog::default())
    );
    assert!(empty.failures.is_empty() && empty.signers.is_empty());

    let before = x402_evm::unix_now();
    store.claim(&settlement(1)).await.unwrap();
    store
        .claim_with_transaction(&settlement(2), &tx(2), None)
        .await
        .unwrap();
    let failed = SettlementState::Failed;
    settle(
        &*store,
        &settlement(3),
        3,
        failed,
        &ReasonCode::EXACT_EVM_SIGNATURE,
    )
    .await;
    settle(
        &*store,
        &settlement(4),
        4,
        failed,
        &ReasonCode::EXACT_EVM_SIGNATURE,
    )
    .await;
    let abandoned = SettlementState::Abandoned;
    settle(
        &*store,
        &settlement(5),
        5,
        abandoned,
        &ReasonCode::CHAIN_UNAVAILABLE,
    )
    .await;
    let mut other_signer = tx(6);
    other_signer.signer = Address::repeat_byte(0x44);
    store
        .claim_with_transaction(&settlement(6), &other_signer, None)
        .await
        .unwrap();
    let sends = backend.open_sends().await;
    let key = BatchSendKey::stored("eip155:8453:claim:0x07");
    assert!(sends.record(&key, &batch_tx(7, 1), "{}").await.unwrap());

    let health = store.log_health().await.unwrap();
    assert_eq!(health.claimed.count, 1);
    assert_eq!(health.submitted.count, 2);
    let oldest = health.claimed.oldest_at.unwrap();
    assert!(
        (before..=x402_evm::unix_now()).contains(&oldest),
        "{oldest}"
    );
    let failures: Vec<(SettlementState, &str, u64)> = health
        .failures
        .iter()
        .map(|f: &FailureTally| (f.state, f.reason.as_str(), f.count))
        .collect();
    assert_eq!(
        failures,
        [
            (failed, "invalid_exact_evm_signature", 2),
            (abandoned, "chain_unavailable", 1),
        ],
        "by reason, most first"
    );
    assert!(health.failures.iter().all(|f| f.last_at >= before));
    assert_eq!(health.batch_sends.count, 1);
    assert_eq!(
        health.signers,
        [
            (8453, Address::repeat_byte(4)),
            (8453, Address::repeat_byte(0x44))
        ]
    );
}
