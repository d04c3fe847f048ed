//! The server's claimer turns what it charged on `batch-settlement` channels into money: one
//! flush claims every channel's held voucher in one transaction and settles it in another,
//! the receiver is paid exactly what was charged, the records mirror the claims, and a
//! second flush sends nothing.

use std::sync::Arc;

use alloy::primitives::{B256, U256};
use alloy::signers::local::PrivateKeySigner;
use x402_evm::batch::{
    BATCH_SETTLEMENT_ADDRESS, BatchClaimer, ChannelStore, ChannelWrite, ClaimPolicy,
    MemoryChannelStore,
};
use x402_testkit::{Chain, Stack};

const PRICE: u128 = 1_000;
const DEPOSIT: u128 = 20_000;

#[tokio::test]
async fn one_flush_claims_and_settles_every_channel_for_exactly_what_was_charged() {
    let authorizer = PrivateKeySigner::random();
    let stack = Stack::with_receiver_authorizer(Chain::start().await, &authorizer).await;
    let chain = &stack.chain;
    let offer = chain.batch_offer(PRICE, authorizer.address());
    let store = Arc::new(MemoryChannelStore::new());

    // Five channels of three payers (two lanes each for two of them), each charged a
    // different number of requests.
    let mut charged_in_all = 0;
    let mut ids = Vec::new();
    for i in 0..5u8 {
        let payer = &chain.devnet.payers()[usize::from(i % 3)].signer;
        let charged = PRICE * u128::from(i + 1);
        let record = stack
            .batch_charged_channel(&offer, payer, B256::with_last_byte(i), DEPOSIT, charged)
            .await;
        charged_in_all += charged;
        ids.push(record.id);
        store
            .update(&record.id, &mut |_| ChannelWrite::Put(record.clone()))
            .await
            .unwrap();
    }
    let claimer = BatchClaimer::new(
        store.clone(),
        stack.in_process(),
        chain.devnet.network(),
        ClaimPolicy::default(),
    );
    let exposure = claimer.exposure().await.unwrap();
    let token = chain.devnet.token().address;
    assert_eq!(exposure.assets[&token].unclaimed, charged_in_all);
    assert_eq!(exposure.assets[&token].channels, 5);
    assert_eq!(exposure.channels.len(), 5);

    let receiver = chain.devnet.pay_to().address;
    let (paid_before, escrow_before) = (
        chain.balance(receiver).await,
        chain.balance(BATCH_SETTLEMENT_ADDRESS).await,
    );
    let sent_before = chain.facilitator_tx_count().await;
    let run = claimer.flush().await.unwrap();
    assert_eq!(run.failures, [], "{run:?}");
    assert_eq!(run.claims.len(), 1, "one claim of all five: {run:?}");
    assert_eq!(run.claims[0].channels.len(), 5);
    assert_eq!(run.claims[0].amount, charged_in_all);
    assert_eq!(run.settles.len(), 1);
    assert_eq!(run.settles[0].amount, charged_in_all);
    assert_eq!(run.transactions().len(), 2);
    let sent = chain.facilitator_tx_count().await - sent_before;
    assert!(sent <= 3, "{sent} transactions");
    assert_eq!(
        chain.balance(receiver).await,
        paid_before + U256::from(charged_in_all)
    );
    assert_eq!(
        chain.balance(BATCH_SETTLEMENT_ADDRESS).await,
        escrow_before - U256::from(charged_in_all)
    );
    for id in &ids {
        let record = store.get(id).await.unwrap().unwrap();
        assert_eq!(record.onchain.total_claimed, record.charged);
        assert_eq!(record.unclaimed(), 0);
    }
    assert_eq!(
        claimer.exposure().await.unwrap().assets[&token].unclaimed,
        0
    );
    let stats = claimer.stats();
    assert_eq!((stats.claims_sent, stats.settles_sent), (1, 1));
    assert!(stats.last_claim_at.is_some());

    // Nothing is left: a second flush sends nothing.
    let sent_before = chain.facilitator_tx_count().await;
    let again = claimer.flush().await.unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(chain.facilitator_tx_count().await, sent_before);

    // A charge made after the claim is claimed by the next flush, and only it.
    let id = ids[0];
    let mut record = store.get(&id).await.unwrap().unwrap();
    let payer = &chain.devnet.payers()[0].signer;
    let ceiling = record.charged + PRICE;
    let voucher = chain.batch_voucher(payer, &record.config, ceiling).await;
    record.charged = ceiling;
    record.voucher = Some(x402_evm::batch::HeldVoucher {
        max_claimable: ceiling,
        signature: voucher["voucher"]["signature"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
    });
    store
        .update(&id, &mut |_| ChannelWrite::Put(record.clone()))
        .await
        .unwrap();
    let paid_before = chain.balance(receiver).await;
    let run = claimer.flush().await.unwrap();
    assert_eq!(run.claims.len(), 1, "{run:?}");
    assert_eq!(run.claims[0].amount, PRICE);
    assert_eq!(
        chain.balance(receiver).await,
        paid_before + U256::from(PRICE)
    );
}
