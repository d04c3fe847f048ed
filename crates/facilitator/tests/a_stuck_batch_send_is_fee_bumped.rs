//! A `batch-settlement` send (here a claim) stuck at a too-low fee is replaced on its nonce
//! with higher fees, as `exact` settlements are: the retry is answered for the replacement,
//! the first transaction never mines, the signer's nonce advances by one, and the log holds
//! both transactions of the send.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alloy::consensus::Transaction as _;
use alloy::primitives::{B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};
use x402_evm::batch::{BatchSendLog, VoucherClaim};
use x402_facilitator::SqliteStore;
use x402_testkit::{Chain, Stack, config_with_network, request_paying};

const PRICE: u128 = 1_000;
const DEPOSIT: u128 = 20_000;

/// Mines a block every `every` at base fee `base_fee` until stopped.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_claim_is_bumped_on_its_nonce_and_confirms() {
    let authorizer = PrivateKeySigner::random();
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("receiver-authorizer.key");
    std::fs::write(&key_file, authorizer.to_bytes().to_string()).unwrap();
    let extra = format!(
        "[limits]\nsettle_wait_ms = 300\n[batch_settlement]\nreceiver_authorizer_key_file = {:?}\n",
        key_file.display().to_string()
    );
    let network = "block_time_ms = 500\n[networks.fee_bump]\nstuck_after_ms = 1500\nmax_fee_bumps = 3\nmax_fee_per_gas_cap_gwei = 1000";
    let rpc_url = chain.devnet.rpc_url().to_string();
    let config = config_with_network(&rpc_url, dir.path(), &extra, network);
    let stack = Stack::serve(chain, dir, config).await;
    let chain = &stack.chain;
    let provider = chain.devnet.provider().clone();

    let offer = chain.batch_offer(PRICE, authorizer.address());
    let payer = chain.devnet.payers()[0].signer.clone();
    let (config, _) = chain.batch_channel(&offer, &payer, B256::ZERO);
    let deposit = chain
        .batch_deposit(&offer, &payer, &config, DEPOSIT, PRICE)
        .await;
    let (_, funded) = stack.settle(&request_paying(deposit, &offer)).await;
    assert_eq!(funded["success"], true, "{funded}");

    let row = chain
        .batch_claim_row(&payer, &config, 3 * PRICE, 3 * PRICE)
        .await;
    let claim = chain.batch_settle_request(json!({"type": "claim", "claims": [row.clone()]}));
    let sent = chain.facilitator_tx_count().await;
    stack.stop_automine().await;
    let (status, pending) = stack.settle(&claim).await;
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending["errorReason"], "settlement_pending", "{pending}");
    let first: B256 = pending["transaction"].as_str().unwrap().parse().unwrap();
    let first_tx = provider
        .get_transaction_by_hash(first)
        .await
        .unwrap()
        .expect("the claim is in the pool");

    // The base fee jumps above what the claim offers and stays there.
    let base_fee = first_tx.max_fee_per_gas() * 4;
    let (stop, miner) = mine_at_base_fee(provider.clone(), base_fee, Duration::from_millis(250));
    let started = Instant::now();
    let mined: B256 = loop {
        let (status, answer) = stack.settle(&claim).await;
        assert_eq!(status, 200, "{answer}");
        if answer["success"] == true {
            break answer["transaction"].as_str().unwrap().parse().unwrap();
        }
        assert_eq!(answer["errorReason"], "settlement_pending", "{answer}");
        assert!(started.elapsed() < Duration::from_secs(30), "{answer}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.store(true, Ordering::SeqCst);
    miner.await.unwrap();
    stack.mine().await;

    assert_ne!(mined, first, "a replacement confirmed");
    assert!(
        provider
            .get_transaction_receipt(first)
            .await
            .unwrap()
            .is_none(),
        "the underpriced claim never mined"
    );
    let mined_tx = provider
        .get_transaction_by_hash(mined)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mined_tx.nonce(), first_tx.nonce(), "same nonce");
    assert_eq!(mined_tx.input(), first_tx.input(), "same call");
    assert!(mined_tx.max_fee_per_gas() > base_fee);
    assert_eq!(chain.facilitator_tx_count().await, sent + 1);

    // The log holds the send's transactions, the first one first.
    let rows: Vec<VoucherClaim> = serde_json::from_value(Value::Array(vec![row])).unwrap();
    let digest = chain.batch_domain().claim_batch_digest(&rows);
    let key = x402_evm::batch::BatchSendKey::new(
        chain.devnet.chain_id(),
        &["claim", &digest.to_string()],
    );
    let log = SqliteStore::open(&stack.dir.path().join("facilitator.db")).unwrap();
    let send = log.find(&key).await.unwrap().expect("the claim is logged");
    assert!(send.txs.len() > 1, "{:?}", send.txs);
    assert_eq!(send.txs[0].tx_hash, first);
    assert!(send.txs.iter().any(|tx| tx.tx_hash == mined));
    assert!(send.answer.unwrap().success);
}
