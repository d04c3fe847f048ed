//! Gateway replicas on one Postgres database each run a `batch-settlement` claimer over the
//! same channels. Their claim runs take turns under the database's claim lock: two claimers,
//! each on its own connection to the database as two replicas are, flushing the same charged
//! channels at once send one claim transaction between them, and the payee is paid exactly
//! what was charged, once. Real anvil chain, our facilitator, the machine's Postgres.

use std::collections::BTreeSet;
use std::sync::Arc;

use alloy::primitives::{B256, U256};
use alloy::signers::local::PrivateKeySigner;
use x402_evm::batch::{BatchClaimer, ChannelStore, ChannelWrite, ClaimPolicy};
use x402_gateway::postgres::{Database, Leases, PostgresChannelStore, PostgresClaimLock};
use x402_testkit::{Chain, Stack, TempDatabase};

const PRICE: u128 = 1_000;

/// A replica's claimer: its own connection pool to `url`, its store and claim lock there.
async fn replica_claimer(url: &str, stack: &Stack) -> BatchClaimer {
    let database = Database::connect(url, Leases::default()).await.unwrap();
    BatchClaimer::new(
        Arc::new(PostgresChannelStore::new(database.clone())),
        stack.in_process(),
        stack.chain.devnet.network(),
        ClaimPolicy::default(),
    )
    .with_lock(Arc::new(PostgresClaimLock::new(database)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_flushing_at_once_send_one_claim() {
    let authorizer = PrivateKeySigner::random();
    let stack = Stack::with_receiver_authorizer(Chain::start().await, &authorizer).await;
    let chain = &stack.chain;
    let offer = chain.batch_offer(PRICE, authorizer.address());
    let db = TempDatabase::create().await;

    // Three channels charged, as the replicas' paywalls would have recorded them.
    let (a, b) = (
        replica_claimer(&db.url, &stack).await,
        replica_claimer(&db.url, &stack).await,
    );
    let store =
        PostgresChannelStore::new(Database::connect(&db.url, Leases::default()).await.unwrap());
    let mut charged = 0;
    for i in 0..3u8 {
        let payer = &chain.devnet.payers()[usize::from(i)].signer;
        let record = stack
            .batch_charged_channel(
                &offer,
                payer,
                B256::ZERO,
                10 * PRICE,
                PRICE * u128::from(i + 2),
            )
            .await;
        charged += record.charged;
        store
            .update(&record.id, &mut |_| ChannelWrite::Put(record.clone()))
            .await
            .unwrap();
    }

    let receiver = chain.devnet.pay_to().address;
    let (received, sent) = (
        chain.balance(receiver).await,
        chain.facilitator_tx_count().await,
    );
    let (run_a, run_b) = tokio::join!(a.flush(), b.flush());
    let (run_a, run_b) = (run_a.unwrap(), run_b.unwrap());
    assert_eq!(run_a.failures, [], "{run_a:?}");
    assert_eq!(run_b.failures, [], "{run_b:?}");
    assert_eq!(
        run_a.claims.len() + run_b.claims.len(),
        1,
        "one run claims, the other finds it claimed: {run_a:?} {run_b:?}"
    );
    let claimed = run_a.claims.iter().chain(&run_b.claims).next().unwrap();
    assert_eq!((claimed.channels.len(), claimed.amount), (3, charged));
    let settles: BTreeSet<&str> = run_a
        .settles
        .iter()
        .chain(&run_b.settles)
        .map(|s| s.transaction.as_str())
        .collect();
    assert_eq!(
        settles.len(),
        1,
        "one settle transaction: {run_a:?} {run_b:?}"
    );
    assert_eq!(
        chain.facilitator_tx_count().await,
        sent + 2,
        "one claim and one settle on chain"
    );
    assert_eq!(
        chain.balance(receiver).await,
        received + U256::from(charged),
        "the payee is paid what was charged, once"
    );
    for record in store.all().await.unwrap() {
        assert_eq!(record.onchain.total_claimed, record.charged);
    }

    // Neither finds anything left; the lock was let go of by both.
    let (again_a, again_b) = tokio::join!(a.flush(), b.flush());
    assert_eq!(again_a.unwrap().claims, []);
    assert_eq!(again_b.unwrap().claims, []);
    assert_eq!(chain.facilitator_tx_count().await, sent + 2);
}
