//! A `batch-settlement` `settle(receiver, token)` is recorded in the facilitator's log under
//! (receiver, token, what the receiver had claimed when it was sent): a retry of it, even after
//! a restart, is answered for the transaction already sent instead of `nothing_to_settle`;
//! identical settles asked at once send one transaction; a settle asked while a claim this
//! facilitator sent for the receiver is not mined waits for that claim (x402 issue #2471)
//! instead of reading the receiver before it and answering `nothing_to_settle`.

use std::time::Duration;

use alloy::primitives::{B256, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};
use x402_evm::batch::ChannelConfig;
use x402_testkit::{Chain, Stack, request_paying};

const PRICE: u128 = 1_000;
const DEPOSIT: u128 = 20_000;

/// A stack whose facilitator signs as `authorizer`, waits `settle_wait_ms` for receipts, and
/// a channel of the first payer funded with [`DEPOSIT`].
async fn funded(authorizer: &PrivateKeySigner, settle_wait_ms: u64) -> (Stack, ChannelConfig) {
    let mut stack = Stack::with_receiver_authorizer(Chain::start().await, authorizer).await;
    stack.config.limits.settle_wait_ms = settle_wait_ms;
    stack.restart().await;
    let chain = &stack.chain;
    let offer = chain.batch_offer(PRICE, authorizer.address());
    let payer = chain.devnet.payers()[0].signer.clone();
    let (config, _) = chain.batch_channel(&offer, &payer, B256::ZERO);
    let deposit = chain
        .batch_deposit(&offer, &payer, &config, DEPOSIT, PRICE)
        .await;
    let (_, funded) = stack.settle(&request_paying(deposit, &offer)).await;
    assert_eq!(funded["success"], true, "{funded}");
    (stack, config)
}

/// The `/settle` request claiming `claimed` in all on `config` (the facilitator signs it).
async fn claim(stack: &Stack, config: &ChannelConfig, claimed: u128) -> x402_proto::PaymentRequest {
    let chain = &stack.chain;
    let payer = chain.devnet.payers()[0].signer.clone();
    let row = chain
        .batch_claim_row(&payer, config, claimed, claimed)
        .await;
    chain.batch_settle_request(json!({"type": "claim", "claims": [row]}))
}

fn settle_request(stack: &Stack) -> x402_proto::PaymentRequest {
    let chain = &stack.chain;
    let (receiver, token) = (chain.devnet.pay_to().address, chain.devnet.token().address);
    chain.batch_settle_request(json!({"type": "settle", "receiver": receiver, "token": token}))
}

fn amount(answer: &Value) -> u128 {
    answer["amount"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_is_answered_for_its_transaction_after_a_restart_and_sent_once() {
    let authorizer = PrivateKeySigner::random();
    let (mut stack, config) = funded(&authorizer, 3_000).await;
    let receiver = stack.chain.devnet.pay_to().address;

    let (_, claimed) = stack.settle(&claim(&stack, &config, 3 * PRICE).await).await;
    assert_eq!(claimed["success"], true, "{claimed}");
    let paid_before = stack.chain.balance(receiver).await;
    let sent = stack.chain.facilitator_tx_count().await;
    // Three identical settles at once: one transaction, every caller answered for it.
    let answers = stack
        .settle_concurrently(&settle_request(&stack), 3, None)
        .await;
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
        assert_eq!(answer["success"], true, "{answer}");
        assert_eq!(
            answer["transaction"], answers[0].1["transaction"],
            "{answer}"
        );
        assert_eq!(amount(answer), 3 * PRICE, "{answer}");
    }
    assert_eq!(stack.chain.facilitator_tx_count().await, sent + 1);
    assert_eq!(
        stack.chain.balance(receiver).await,
        paid_before + U256::from(3 * PRICE)
    );

    // Asked again after a restart: the same answer, not nothing_to_settle; nothing sent.
    stack.restart().await;
    let (status, again) = stack.settle(&settle_request(&stack)).await;
    assert_eq!(status, 200);
    assert_eq!(again["success"], true, "{again}");
    assert_eq!(again["transaction"], answers[0].1["transaction"]);
    assert_eq!(amount(&again), 3 * PRICE);
    assert_eq!(stack.chain.facilitator_tx_count().await, sent + 1);

    // After another claim, a settle is a new send paying what was claimed since.
    let (_, claimed) = stack.settle(&claim(&stack, &config, 5 * PRICE).await).await;
    assert_eq!(claimed["success"], true, "{claimed}");
    let (_, later) = stack.settle(&settle_request(&stack)).await;
    assert_eq!(later["success"], true, "{later}");
    assert_ne!(later["transaction"], answers[0].1["transaction"]);
    assert_eq!(amount(&later), 2 * PRICE);
    assert_eq!(
        stack.chain.balance(receiver).await,
        paid_before + U256::from(5 * PRICE)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_waits_for_the_claim_sent_before_it() {
    let authorizer = PrivateKeySigner::random();
    let (stack, config) = funded(&authorizer, 8_000).await;
    let receiver = stack.chain.devnet.pay_to().address;
    let paid_before = stack.chain.balance(receiver).await;
    stack.stop_automine().await;

    // The claim is sent and waits for a block; the settle is asked right behind it.
    let claim = claim(&stack, &config, 4 * PRICE).await;
    let (stack, claim_answer, settle_answer) = {
        let stack = std::sync::Arc::new(stack);
        let claiming = {
            let stack = stack.clone();
            tokio::spawn(async move { stack.settle(&claim).await })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let settling = {
            let stack = stack.clone();
            tokio::spawn(async move { stack.settle(&settle_request(&stack)).await })
        };
        // No block for a while: a settle reading the receiver now would find nothing claimed.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert!(!settling.is_finished(), "the settle waits for the claim");
        let miner = {
            let stack = stack.clone();
            tokio::spawn(async move {
                for _ in 0..40 {
                    stack.mine().await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        let (_, claim_answer) = claiming.await.unwrap();
        let (_, settle_answer) = settling.await.unwrap();
        miner.abort();
        let _ = miner.await;
        let stack = std::sync::Arc::try_unwrap(stack).expect("the tasks are done");
        (stack, claim_answer, settle_answer)
    };
    assert_eq!(claim_answer["success"], true, "{claim_answer}");
    assert_eq!(settle_answer["success"], true, "{settle_answer}");
    assert_eq!(amount(&settle_answer), 4 * PRICE, "{settle_answer}");
    stack.mine().await;
    assert_eq!(
        stack.chain.balance(receiver).await,
        paid_before + U256::from(4 * PRICE)
    );
}
