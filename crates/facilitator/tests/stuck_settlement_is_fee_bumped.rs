//! A settlement transaction stuck at a too-low fee is replaced on the same nonce with higher
//! fees and confirms: the payee is paid once, the signer's nonce advances by exactly one, and
//! the log holds every transaction sent for the settlement.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alloy::consensus::{Transaction as _, TxEnvelope};
use alloy::eips::eip2718::Decodable2718;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use x402_facilitator::{SettlementKey, SettlementState, SettlementStore, SqliteStore};
use x402_proto::PaymentRequest;

const GWEI: u128 = 1_000_000_000;

/// Mines a block every `every`, each with base fee `base_fee`: a chain whose fees jumped
/// above what a pending transaction offers, and stay there.
fn mine_at_base_fee(
    provider: DynProvider,
    base_fee: u128,
    every: Duration,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let task = tokio::spawn(async move {
        while !stopped.load(Ordering::SeqCst) {
            provider
                .raw_request::<_, ()>(
                    "anvil_setNextBlockBaseFeePerGas".into(),
                    (U256::from(base_fee),),
                )
                .await
                .unwrap();
            provider
                .raw_request::<_, String>("evm_mine".into(), ())
                .await
                .unwrap();
            tokio::time::sleep(every).await;
        }
    });
    (stop, task)
}

fn settlement_key(stack: &x402_testkit::Stack, request: &PaymentRequest) -> SettlementKey {
    let payload = &request.payload()["authorization"];
    SettlementKey {
        chain_id: stack.chain.devnet.chain_id(),
        asset: stack.chain.devnet.token().address,
        payer: payload["from"]
            .as_str()
            .unwrap()
            .parse::<Address>()
            .unwrap(),
        nonce: payload["nonce"].as_str().unwrap().parse::<B256>().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_settlement_is_bumped_on_its_nonce_and_confirms() {
    let stack = x402_testkit::Stack::on_chain(
        x402_testkit::Chain::start().await,
        "[limits]\nsettle_wait_ms = 300",
        "block_time_ms = 500\n[networks.fee_bump]\nstuck_after_ms = 1500\nmax_fee_bumps = 3\nmax_fee_per_gas_cap_gwei = 1000",
    )
    .await;
    let provider = stack.chain.devnet.provider().clone();
    stack.stop_automine().await;

    let before = stack.before().await;
    let request = stack.payment(0, 4_000);
    let (status, pending) = stack.settle(&request).await;
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending["errorReason"], "settlement_pending", "{pending}");
    let first: B256 = pending["transaction"].as_str().unwrap().parse().unwrap();
    let first_tx = provider
        .get_transaction_by_hash(first)
        .await
        .unwrap()
        .expect("the first transaction is in the pool");
    assert_eq!(first_tx.nonce(), before.sent);
    let offered = first_tx.max_fee_per_gas();

    // The base fee jumps above what the transaction offers and stays there.
    let base_fee = offered * 4;
    assert!(base_fee * 2 < 1000 * GWEI, "the test's cap leaves room");
    let (stop, miner) = mine_at_base_fee(provider.clone(), base_fee, Duration::from_millis(250));

    let mined = settle_until_confirmed(&stack, &request).await;
    stop.store(true, Ordering::SeqCst);
    miner.await.unwrap();
    // Blocks keep coming: nothing more may be mined for this payment.
    for _ in 0..3 {
        stack.mine().await;
    }

    assert_ne!(
        mined, first,
        "the first transaction was stuck; a replacement confirmed"
    );
    assert!(
        provider
            .get_transaction_receipt(first)
            .await
            .unwrap()
            .is_none(),
        "the underpriced transaction never mined"
    );
    let receipt = provider
        .get_transaction_receipt(mined)
        .await
        .unwrap()
        .expect("the replacement is mined");
    assert!(receipt.status());
    let mined_tx = provider
        .get_transaction_by_hash(mined)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        mined_tx.nonce(),
        first_tx.nonce(),
        "same nonce as the first attempt"
    );
    assert_eq!(mined_tx.input(), first_tx.input(), "same call");
    assert_eq!(mined_tx.to(), first_tx.to());
    assert!(
        mined_tx.max_fee_per_gas() > base_fee,
        "priced above the base fee"
    );
    assert!(
        mined_tx.max_fee_per_gas() <= 1000 * GWEI,
        "never above the cap"
    );
    assert!(
        mined_tx.max_priority_fee_per_gas().unwrap() * 100
            >= first_tx.max_priority_fee_per_gas().unwrap() * 110
    );
    // The signer's nonce advanced by exactly one; the payee was paid once.
    stack.assert_since(before, 1, 4_000).await;

    // The log holds every transaction sent, all on the one nonce, the first one first.
    let key = settlement_key(&stack, &request);
    let store = SqliteStore::open(&stack.dir.path().join("facilitator.db")).unwrap();
    let record = store.get(&key).await.unwrap().expect("settlement logged");
    assert_eq!(record.state, SettlementState::Confirmed);
    assert!(record.txs.len() > 1, "{:?}", record.txs);
    assert_eq!(record.txs[0].tx_hash, first);
    assert!(record.txs.iter().any(|tx| tx.tx_hash == mined));
    assert!(
        record
            .txs
            .iter()
            .all(|tx| tx.signer_nonce == first_tx.nonce()),
        "{:?}",
        record.txs
    );
}

/// Polls `/settle` until it succeeds (at most 30 s).
async fn settle_until_confirmed(stack: &x402_testkit::Stack, request: &PaymentRequest) -> B256 {
    let started = Instant::now();
    loop {
        let (status, answer) = stack.settle(request).await;
        assert_eq!(status, 200, "{answer}");
        if answer["success"] == true {
            return answer["transaction"].as_str().unwrap().parse().unwrap();
        }
        assert_eq!(answer["errorReason"], "settlement_pending", "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not settled in 30 s: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_fee_cap_a_stuck_settlement_waits_on_its_nonce() {
    let chain = x402_testkit::Chain::start().await;
    let provider = chain.devnet.provider().clone();
    // The facilitator offers twice the gas price; the cap leaves room for one bump only, and
    // the base fee goes beyond it.
    let gas_price = provider.get_gas_price().await.unwrap();
    let cap_gwei = (gas_price * 2 * 2).div_ceil(GWEI) + 1;
    let cap = cap_gwei * GWEI;
    let fee_bump = format!(
        "block_time_ms = 500\n[networks.fee_bump]\nstuck_after_ms = 500\nmax_fee_bumps = 3\nmax_fee_per_gas_cap_gwei = {cap_gwei}"
    );
    let stack =
        x402_testkit::Stack::on_chain(chain, "[limits]\nsettle_wait_ms = 300", &fee_bump).await;
    stack.stop_automine().await;
    let before = stack.before().await;
    let request = stack.payment(1, 6_000);
    let (_, pending) = stack.settle(&request).await;
    assert_eq!(pending["errorReason"], "settlement_pending", "{pending}");
    let first: B256 = pending["transaction"].as_str().unwrap().parse().unwrap();
    let (stop, miner) = mine_at_base_fee(provider.clone(), cap * 3, Duration::from_millis(200));

    // Several stuck_after periods: one bump to the cap, then nothing more to raise.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, still) = stack.settle(&request).await;
    assert_eq!(still["errorReason"], "settlement_pending", "{still}");
    assert_eq!(stack.chain.facilitator_tx_count().await, before.sent);
    let key = settlement_key(&stack, &request);
    let store = SqliteStore::open(&stack.dir.path().join("facilitator.db")).unwrap();
    let record = store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        record.txs.len(),
        2,
        "one bump, then waiting at the cap: {:?}",
        record.txs
    );
    assert_eq!(record.txs[0].tx_hash, first);
    assert!(record.txs.iter().all(|tx| tx.signer_nonce == before.sent));
    let bumped = record.txs[1].tx_hash;
    let offered = |raw: &alloy::primitives::Bytes| {
        TxEnvelope::decode_2718(&mut raw.as_ref())
            .unwrap()
            .max_fee_per_gas()
    };
    assert!(offered(&record.txs[0].raw) < cap);
    assert_eq!(
        offered(&record.txs[1].raw),
        cap,
        "raised to the cap, not past it"
    );

    // Fees come down: the replacement at the cap is mined, once.
    stop.store(true, Ordering::SeqCst);
    miner.await.unwrap();
    let (stop, miner) = mine_at_base_fee(provider.clone(), GWEI, Duration::from_millis(200));
    assert_eq!(settle_until_confirmed(&stack, &request).await, bumped);
    stop.store(true, Ordering::SeqCst);
    miner.await.unwrap();
    stack.assert_since(before, 1, 6_000).await;
}
