//! Where the node serves `eth_sendRawTransactionSync` and mines at once, a broadcast comes back
//! with its receipt; on a chain with block times the first sync broadcast that waits turns
//! sync sends off, and later broadcasts do not hold the next nonce back for a block. While
//! another settlement waits for the signer, a broadcast does not wait for mining either.

use std::time::{Duration, Instant};

use x402_evm::{ExactEvmScheme, SYNC_SEND_PATIENCE, Sent, SettleError, VerifiedPayment};
use x402_testkit::{Chain, honest_payment, v2_request};

/// Verifies an honest payment of `amount` by payer `index`.
async fn verified(chain: &Chain, index: usize, amount: u128) -> VerifiedPayment {
    let payer = &chain.devnet.payers()[index];
    let requirements = chain.requirements(amount);
    let payload = honest_payment(&payer.signer, &requirements);
    chain
        .scheme
        .verify(&v2_request(&payload, &requirements))
        .await
        .expect("an honest payment verifies")
}

/// Signs and broadcasts `payment`, timing the broadcast.
async fn broadcast(
    scheme: &ExactEvmScheme,
    payment: &VerifiedPayment,
) -> (
    Result<Sent, x402_evm::BroadcastError>,
    Duration,
    alloy::primitives::B256,
) {
    let slot = scheme.reserve_send().await.unwrap();
    let signed = slot.sign(payment).await.unwrap();
    let started = Instant::now();
    let sent = slot.broadcast(&signed).await;
    (sent, started.elapsed(), signed.tx_hash)
}

#[tokio::test]
async fn on_automine_a_broadcast_answers_with_the_judged_receipt() {
    let chain = Chain::start().await;
    let pay_to = chain.devnet.pay_to().address;
    let before = chain.balance(pay_to).await;
    let sent_before = chain.facilitator_tx_count().await;
    for (index, amount) in [(0, 1_000u128), (1, 2_500)] {
        let payment = verified(&chain, index, amount).await;
        let (sent, _, tx_hash) = broadcast(&chain.scheme, &payment).await;
        let sent = sent.expect("the node takes it");
        assert!(matches!(sent, Sent::Mined(_)), "{sent:?}");
        let settlement = sent
            .outcome(&payment.expectation())
            .expect("mined")
            .expect("the transfer happened");
        assert_eq!(settlement.tx_hash, tx_hash);
        assert_eq!(settlement.payer, payment.payer());
    }
    assert_eq!(
        chain.balance(pay_to).await - before,
        alloy::primitives::U256::from(3_500u64)
    );
    // The settle helper takes the same path and moves the money once.
    let payment = verified(&chain, 2, 700).await;
    let settled = chain.scheme.settle(payment).await.unwrap();
    assert_eq!(chain.facilitator_tx_count().await - sent_before, 3);
    assert!(settled.block_number.is_some());
}

#[tokio::test]
async fn a_receipt_judged_at_broadcast_still_checks_the_transfer() {
    let chain = Chain::start().await;
    let payment = verified(&chain, 0, 1_000).await;
    let (sent, _, _) = broadcast(&chain.scheme, &payment).await;
    let sent = sent.unwrap();
    // Judged against another payee or amount, the same receipt is no settlement.
    let mut wrong = payment.expectation();
    wrong.value += alloy::primitives::U256::from(1u64);
    assert!(matches!(
        sent.outcome(&wrong),
        Some(Err(SettleError::TransferEventMissing { .. }))
    ));
}

#[tokio::test]
async fn with_block_times_sync_sends_stop_after_the_first_wait() {
    let chain = Chain::with_block_time(2).await;
    let sent_before = chain.facilitator_tx_count().await;
    let first = verified(&chain, 0, 1_000).await;
    let (sent, took, first_hash) = broadcast(&chain.scheme, &first).await;
    // Not mined within the patience: the answer is uncertain, and the transaction is in the
    // pool all the same (it is mined with the next block).
    assert!(
        matches!(sent, Err(x402_evm::BroadcastError::Uncertain { .. })),
        "{sent:?}"
    );
    assert!(took >= SYNC_SEND_PATIENCE, "{took:?}");

    let second = verified(&chain, 1, 2_000).await;
    let (sent, took, second_hash) = broadcast(&chain.scheme, &second).await;
    assert_eq!(sent.unwrap(), Sent::Pooled);
    assert!(
        took < SYNC_SEND_PATIENCE,
        "a plain send holds no slot for a block: {took:?}"
    );

    // Both are mined, each once, on consecutive nonces.
    for (hash, payment) in [(first_hash, &first), (second_hash, &second)] {
        let settled = chain
            .scheme
            .wait_for_outcome(hash, &payment.expectation(), Duration::from_secs(10))
            .await
            .expect("mined");
        assert_eq!(settled.tx_hash, hash);
    }
    assert_eq!(chain.facilitator_tx_count().await - sent_before, 2);
}

#[tokio::test]
async fn with_another_settlement_waiting_a_broadcast_does_not_wait_for_mining() {
    let chain = Chain::start().await;
    let (first, second) = (
        verified(&chain, 0, 1_000).await,
        verified(&chain, 1, 2_000).await,
    );
    let slot = chain.scheme.reserve_send().await.unwrap();
    let signed = slot.sign(&first).await.unwrap();
    // A second settlement asks for the signer while the first holds it.
    let scheme = chain.scheme.clone();
    let waiting = tokio::spawn(async move {
        let slot = scheme.reserve_send().await.unwrap();
        let signed = slot.sign(&second).await.unwrap();
        slot.broadcast(&signed)
            .await
            .map(|sent| (sent, second.expectation()))
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(slot.broadcast(&signed).await.unwrap(), Sent::Pooled);
    // Alone again, the second one gets its receipt with the broadcast.
    let (sent, expected) = waiting.await.unwrap().unwrap();
    assert!(
        sent.outcome(&expected).is_some_and(|o| o.is_ok()),
        "{sent:?}"
    );
    let settled = chain
        .scheme
        .wait_for_outcome(signed.tx_hash, &first.expectation(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(settled.tx_hash, signed.tx_hash);
}
