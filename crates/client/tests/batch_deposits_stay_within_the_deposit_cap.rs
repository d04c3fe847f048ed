//! Budgets with `batch-settlement`: a deposit the deposit cap cannot hold is refused before
//! anything is signed or sent, a cap below the server's asked deposit trims it, and the
//! charges (not the deposit, nor the price) count against the spending budget.

mod common;

use alloy::primitives::U256;
use common::batch::{OfficialBatch, PRICE, USAGE};
use x402_client::{Budget, PayError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposits_stay_under_the_cap_and_charges_count_against_the_budget() {
    let stack = OfficialBatch::start().await;

    // A cap below even one request's price: refused, nothing signed, nothing moved.
    let payer = stack.chain.devnet.payers()[3].address;
    let before = stack.balance(payer).await;
    let capped = stack.client(3);
    capped
        .ledger()
        .set_budget(&Budget {
            deposit_cap: Some(u64::try_from(PRICE / 2).unwrap()),
            ..Budget::default()
        })
        .unwrap();
    match stack.pay(&capped).await {
        Err(PayError::Sign(reason)) => assert!(reason.contains("deposit_cap"), "{reason}"),
        other => panic!("expected the cap to refuse, got {other:?}"),
    }
    assert_eq!(stack.balance(payer).await, before);
    assert!(capped.ledger().channel_funds(None).unwrap().is_empty());
    assert_eq!(capped.ledger().spent(0).unwrap(), 0);
    assert_eq!(capped.ledger().outstanding(0).unwrap(), 0);

    // A cap of ten requests: the deposit is trimmed to it (the server asked for more), and a
    // spending budget of 2.5 prices holds three charges of 0.6 price, not a fourth.
    let payer = stack.chain.devnet.payers()[4].address;
    let before = stack.balance(payer).await;
    let client = stack.client(4);
    let cap = 10 * PRICE;
    client
        .ledger()
        .set_budget(&Budget {
            deposit_cap: Some(u64::try_from(cap).unwrap()),
            total: Some(u64::try_from(5 * PRICE / 2).unwrap()),
            ..Budget::default()
        })
        .unwrap();
    for _ in 0..3 {
        stack.pay(&client).await.unwrap();
    }
    match stack.pay(&client).await {
        Err(PayError::Budget(error)) => assert!(error.to_string().contains("total"), "{error}"),
        other => panic!("expected the budget to refuse, got {other:?}"),
    }
    assert_eq!(u128::from(client.ledger().spent(0).unwrap()), 3 * USAGE);
    assert_eq!(stack.balance(payer).await, before - U256::from(cap));
    assert_eq!(
        u128::from(client.ledger().locked().unwrap()),
        cap - 3 * USAGE
    );
}
