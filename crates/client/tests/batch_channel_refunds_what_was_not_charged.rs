//! A cooperative refund of a `batch-settlement` channel with the official server: the payer
//! gets back on chain exactly what was deposited and not charged, the ledger records the
//! refund, and the channel no longer counts against the deposit cap.

mod common;

use alloy::primitives::U256;
use common::batch::{MIN_DEPOSIT, OfficialBatch, USAGE};
use x402_client::PayError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_returns_the_unspent_deposit_and_the_ledger_records_it() {
    let stack = OfficialBatch::start().await;
    let payer = stack.chain.devnet.payers()[2].address;
    let client = stack.client(2);
    let before = stack.balance(payer).await;
    for _ in 0..3 {
        stack.pay(&client).await.unwrap();
    }
    assert_eq!(stack.balance(payer).await, before - U256::from(MIN_DEPOSIT));
    assert_eq!(
        u128::from(client.ledger().locked().unwrap()),
        MIN_DEPOSIT - 3 * USAGE
    );

    let refunded = client
        .refund_channel(&stack.resource(), None)
        .await
        .unwrap();
    let unspent = MIN_DEPOSIT - 3 * USAGE;
    assert_eq!(refunded.amount, Some(unspent.to_string()));
    assert!(!refunded.transaction.is_empty());
    // Only what was charged left the payer.
    assert_eq!(stack.balance(payer).await, before - U256::from(3 * USAGE));
    let funds = client.ledger().channel_funds(None).unwrap();
    let refunds: Vec<_> = funds.iter().filter(|f| f.kind == "refund").collect();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].amount, unspent.to_string());
    assert_eq!(
        refunds[0].transaction.as_deref(),
        Some(refunded.transaction.as_str())
    );
    assert_eq!(client.ledger().locked().unwrap(), 0);
    assert!(client.ledger().channels().unwrap()[0].closed);

    // Nothing is left: a second refund is refused before anything is sent.
    match client.refund_channel(&stack.resource(), None).await {
        Err(PayError::Sign(reason)) => assert!(reason.contains("nothing left"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
