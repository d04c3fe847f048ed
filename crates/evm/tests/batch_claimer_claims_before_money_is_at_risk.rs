//! The claimer running in the background claims as soon as money charged on
//! `batch-settlement` channels is at risk, without waiting for its schedule: when a payer
//! starts a withdrawal on chain (which no request tells the server: the claimer sees it by
//! reading the channel through the facilitator), so the payer's withdrawal, once its delay is
//! over, returns only what was never charged; and when the unclaimed amount of all channels
//! crosses its bound.

use std::sync::Arc;
use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{B256, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use x402_evm::batch::{
    BATCH_SETTLEMENT_ADDRESS, BatchClaimer, ChannelConfig, ChannelId, ChannelRecord, ChannelStore,
    ChannelWrite, ClaimPolicy, MemoryChannelStore,
};
use x402_testkit::{Chain, Stack};

const PRICE: u128 = 1_000;
const DEPOSIT: u128 = 10_000;

alloy::sol! {
    struct Config {
        address payer;
        address payerAuthorizer;
        address receiver;
        address receiverAuthorizer;
        address token;
        uint40 withdrawDelay;
        bytes32 salt;
    }
    function initiateWithdraw(Config config, uint128 amount) external;
    function finalizeWithdraw(Config config) external;
}

fn sol_config(config: &ChannelConfig) -> Config {
    Config {
        payer: config.payer,
        payerAuthorizer: config.payer_authorizer,
        receiver: config.receiver,
        receiverAuthorizer: config.receiver_authorizer,
        token: config.token,
        withdrawDelay: alloy::primitives::aliases::U40::from(config.withdraw_delay),
        salt: config.salt,
    }
}

/// Sends `input` to the escrow as `payer` and waits until it is mined successfully.
async fn send_as(chain: &Chain, payer: &PrivateKeySigner, input: Vec<u8>) {
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(payer.clone()))
        .connect_http(chain.devnet.rpc_url().clone());
    let tx = TransactionRequest::default()
        .with_to(BATCH_SETTLEMENT_ADDRESS)
        .with_input(input);
    let receipt = provider
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status(), "the payer's transaction reverted");
}

/// A policy that never claims by schedule, checks often, and reads the chain every
/// `chain_check`.
fn watchful(chain_check: Duration) -> ClaimPolicy {
    ClaimPolicy {
        interval: Duration::from_secs(3600),
        check_every: Duration::from_millis(100),
        chain_check_every: chain_check,
        max_unclaimed_per_channel: u128::MAX,
        max_unclaimed_total: u128::MAX,
        ..ClaimPolicy::default()
    }
}

async fn put(store: &MemoryChannelStore, record: &ChannelRecord) {
    store
        .update(&record.id, &mut |_| ChannelWrite::Put(record.clone()))
        .await
        .unwrap();
}

/// Waits (at most 30 s) until `id`'s record shows `claimed` claimed.
async fn until_claimed(store: &MemoryChannelStore, id: &ChannelId, claimed: u128) {
    for _ in 0..300 {
        let record = store.get(id).await.unwrap().unwrap();
        if record.onchain.total_claimed >= claimed {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} was not claimed up to {claimed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payer_who_starts_a_withdrawal_is_claimed_against_before_the_delay_ends() {
    let authorizer = PrivateKeySigner::random();
    let stack = Stack::with_receiver_authorizer(Chain::start().await, &authorizer).await;
    let chain = &stack.chain;
    let offer = chain.batch_offer(PRICE, authorizer.address());
    let payer = chain.devnet.payers()[0].signer.clone();
    let charged = 3 * PRICE;
    let record = stack
        .batch_charged_channel(&offer, &payer, B256::ZERO, DEPOSIT, charged)
        .await;
    let store = Arc::new(MemoryChannelStore::new());
    put(&store, &record).await;
    let claimer = Arc::new(BatchClaimer::new(
        store.clone(),
        stack.in_process(),
        chain.devnet.network(),
        watchful(Duration::from_millis(200)),
    ));
    let task = claimer.start();

    // Nothing is at risk yet: the claimer waits for its schedule.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(claimer.stats().claims_sent, 0);

    // The payer asks, on chain, for its whole deposit back.
    let config = sol_config(&record.config);
    let paid_before = chain.balance(payer.address()).await;
    let receiver = chain.devnet.pay_to().address;
    let received_before = chain.balance(receiver).await;
    let initiate = initiateWithdrawCall {
        config: config.clone(),
        amount: DEPOSIT,
    };
    send_as(chain, &payer, initiate.abi_encode()).await;

    // The claimer sees it on its next read of the chain and claims what was charged.
    until_claimed(&store, &record.id, charged).await;
    let seen = store.get(&record.id).await.unwrap().unwrap();
    assert_ne!(seen.onchain.withdraw_requested_at, 0, "{seen:?}");
    assert_eq!(claimer.stats().claims_sent, 1);
    task.stop(false).await;
    assert_eq!(
        chain.balance(receiver).await,
        received_before + U256::from(charged),
        "claimed and settled to the receiver"
    );

    // The delay passes; the payer finalizes and gets back only what was never charged.
    let provider = chain.devnet.provider();
    provider
        .raw_request::<_, i64>(
            "evm_increaseTime".into(),
            (record.config.withdraw_delay + 1,),
        )
        .await
        .unwrap();
    chain.devnet.mine().await.unwrap();
    send_as(chain, &payer, finalizeWithdrawCall { config }.abi_encode()).await;
    assert_eq!(
        chain.balance(payer.address()).await,
        paid_before + U256::from(DEPOSIT - charged)
    );
    assert_eq!(chain.balance(BATCH_SETTLEMENT_ADDRESS).await, U256::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_the_total_bound_claims_without_waiting_for_the_schedule() {
    let authorizer = PrivateKeySigner::random();
    let stack = Stack::with_receiver_authorizer(Chain::start().await, &authorizer).await;
    let chain = &stack.chain;
    let offer = chain.batch_offer(PRICE, authorizer.address());
    let store = Arc::new(MemoryChannelStore::new());
    // The server signs its claims itself (it holds the receiver-authorizer key).
    let claimer = Arc::new(
        BatchClaimer::new(
            store.clone(),
            stack.in_process(),
            chain.devnet.network(),
            ClaimPolicy {
                max_unclaimed_total: 5 * PRICE,
                ..watchful(Duration::from_secs(3600))
            },
        )
        .with_authorizer(Arc::new(authorizer.clone())),
    );
    let payers = chain.devnet.payers();
    let first = stack
        .batch_charged_channel(&offer, &payers[0].signer, B256::ZERO, DEPOSIT, 2 * PRICE)
        .await;
    let second = stack
        .batch_charged_channel(&offer, &payers[1].signer, B256::ZERO, DEPOSIT, 4 * PRICE)
        .await;
    put(&store, &first).await;
    let task = claimer.start();
    let receiver = chain.devnet.pay_to().address;
    let received_before = chain.balance(receiver).await;

    // Below the bound: nothing is claimed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(claimer.stats().claims_sent, 0);
    assert_eq!(chain.balance(receiver).await, received_before);

    // Past it (6 000 of a 5 000 bound): both channels are claimed at once.
    put(&store, &second).await;
    until_claimed(&store, &second.id, 4 * PRICE).await;
    until_claimed(&store, &first.id, 2 * PRICE).await;
    assert_eq!(claimer.stats().claims_sent, 1);
    task.stop(false).await;
    assert_eq!(
        chain.balance(receiver).await,
        received_before + U256::from(6 * PRICE)
    );
}
