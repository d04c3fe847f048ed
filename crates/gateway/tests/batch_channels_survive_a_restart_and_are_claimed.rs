//! The vouchers a gateway holds on `batch-settlement` channels are money not yet on chain:
//! written by one `SqliteChannelStore`, they are read back exactly by a new store over the
//! same file (a restarted gateway) and claimed from it by a new claimer.

use std::sync::Arc;

use alloy::primitives::{B256, U256};
use alloy::signers::local::PrivateKeySigner;
use x402_evm::batch::{BatchClaimer, ChannelStore, ChannelWrite, ClaimPolicy};
use x402_gateway::channels::SqliteChannelStore;
use x402_testkit::{Chain, Stack};

const PRICE: u128 = 1_000;

#[tokio::test]
async fn records_written_before_a_restart_are_claimed_after_it() {
    let authorizer = PrivateKeySigner::random();
    let stack = Stack::with_receiver_authorizer(Chain::start().await, &authorizer).await;
    let chain = &stack.chain;
    let offer = chain.batch_offer(PRICE, authorizer.address());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway-channels.db");

    let mut records = Vec::new();
    {
        let store = SqliteChannelStore::open(&path).unwrap();
        for i in 0..3u8 {
            let payer = &chain.devnet.payers()[usize::from(i)].signer;
            let charged = PRICE * u128::from(i + 2);
            let record = stack
                .batch_charged_channel(&offer, payer, B256::ZERO, 10 * PRICE, charged)
                .await;
            store
                .update(&record.id, &mut |_| ChannelWrite::Put(record.clone()))
                .await
                .unwrap();
            records.push(record);
        }
    }

    // The gateway restarts: a new store over the same file, a new claimer.
    let store = Arc::new(SqliteChannelStore::open(&path).unwrap());
    let mut read = store.all().await.unwrap();
    read.sort_by_key(|r| r.id);
    records.sort_by_key(|r| r.id);
    assert_eq!(read, records, "read back exactly");
    let claimer = BatchClaimer::new(
        store.clone(),
        stack.in_process(),
        chain.devnet.network(),
        ClaimPolicy::default(),
    );
    let receiver = chain.devnet.pay_to().address;
    let before = chain.balance(receiver).await;
    let run = claimer.flush().await.unwrap();
    assert_eq!(run.failures, [], "{run:?}");
    assert_eq!((run.claims.len(), run.settles.len()), (1, 1), "{run:?}");
    let charged: u128 = records.iter().map(|r| r.charged).sum();
    assert_eq!(chain.balance(receiver).await, before + U256::from(charged));

    // The claims are recorded in the file: a third store sees nothing left to claim.
    drop((claimer, store));
    let reopened = SqliteChannelStore::open(&path).unwrap();
    for record in reopened.all().await.unwrap() {
        assert_eq!(record.onchain.total_claimed, record.charged);
    }
}
