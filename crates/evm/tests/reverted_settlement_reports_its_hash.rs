//! A settlement whose transaction is mined but reverts is reported as a failure carrying the
//! transaction hash, and moves no money.
//!
//! Two payments by one payer whose sum exceeds the balance both verify against the same block;
//! with 1-second blocks both transactions land in one block and the second reverts on chain.

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use x402_evm::ExactEvmFacilitator;
use x402_proto::{Facilitator, ReasonCode, TokenAmount};
use x402_testkit::{Chain, honest_payment, v2_request};

#[tokio::test]
async fn mined_revert_is_a_failure_with_the_transaction_hash() {
    let chain = Chain::with_block_time(1).await;
    let payer = PrivateKeySigner::random();
    let token = chain.devnet.token().address;
    chain
        .devnet
        .mint(token, payer.address(), TokenAmount::from_atomic(15_000))
        .await
        .unwrap();
    let pay_to = chain.devnet.pay_to().address;
    let before = chain.balance(pay_to).await;

    let requirements = chain.requirements(10_000);
    let first = v2_request(&honest_payment(&payer, &requirements), &requirements);
    let second = v2_request(&honest_payment(&payer, &requirements), &requirements);
    let facilitator = ExactEvmFacilitator::new(chain.scheme.clone());
    let (a, b) = tokio::join!(
        facilitator.settle(&first, None),
        facilitator.settle(&second, None)
    );
    let (a, b) = (a.unwrap(), b.unwrap());

    let (ok, failed) = if a.success { (a, b) } else { (b, a) };
    assert!(ok.success, "{ok:?}");
    assert!(!failed.success, "both settled: {failed:?}");
    assert_eq!(
        failed.error_reason,
        Some(ReasonCode::EXACT_EVM_TRANSACTION_FAILED),
        "{failed:?}"
    );
    assert_eq!(failed.transaction.len(), 66, "no hash reported: {failed:?}");
    assert_ne!(failed.transaction, ok.transaction);

    assert_eq!(chain.balance(pay_to).await, before + U256::from(10_000));
    assert_eq!(chain.balance(payer.address()).await, U256::from(5_000));
}
