//! A `batch-settlement` send (here a deposit) that a stopped facilitator left unmined is
//! reconciled at the next start from the log, which keeps its signed transaction: mined while
//! the facilitator was down, its answer is written down (`confirmed`); lost by the node (as
//! if never broadcast), it is rebroadcast and followed (`tracking`) and a retry gets the
//! success of that one transaction; its nonce taken by another transaction, it is forgotten
//! (`abandoned`) and a retry sends the deposit anew. The deposit moves once.

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{B256, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use serde_json::Value;
use x402_evm::batch::BATCH_SETTLEMENT_ADDRESS;
use x402_proto::PaymentRequest;
use x402_testkit::{Chain, Stack, request_paying};

const PRICE: u128 = 1_000;
const DEPOSIT: u128 = 15_000;

/// A stack waiting half a second for receipts, automine off, and a first payer's deposit
/// settled into `settlement_pending`: the stack, the deposit's request, its transaction, and
/// the escrow's balance and the signer's transaction count before it.
async fn pending_deposit() -> (Stack, PaymentRequest, B256, U256, u64) {
    let authorizer = PrivateKeySigner::random();
    let mut stack = Stack::with_receiver_authorizer(Chain::start().await, &authorizer).await;
    stack.config.limits.settle_wait_ms = 500;
    stack.restart().await;
    let chain = &stack.chain;
    let offer = chain.batch_offer(PRICE, authorizer.address());
    let payer = chain.devnet.payers()[0].signer.clone();
    let (config, _) = chain.batch_channel(&offer, &payer, B256::ZERO);
    let deposit = request_paying(
        chain
            .batch_deposit(&offer, &payer, &config, DEPOSIT, PRICE)
            .await,
        &offer,
    );
    let escrow = chain.balance(BATCH_SETTLEMENT_ADDRESS).await;
    let sent = chain.facilitator_tx_count().await;
    stack.stop_automine().await;
    let (status, pending) = stack.settle(&deposit).await;
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending["errorReason"], "settlement_pending", "{pending}");
    let tx: B256 = pending["transaction"].as_str().unwrap().parse().unwrap();
    (stack, deposit, tx, escrow, sent)
}

/// Stops the facilitator (its send stays recorded and unmined).
async fn stop(stack: &mut Stack) {
    stack.facilitator.take().unwrap().shutdown().await;
}

async fn settle(stack: &Stack, request: &PaymentRequest) -> Value {
    let (status, answer) = stack.settle(request).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_mined_while_the_facilitator_was_down_is_answered_at_start() {
    let (mut stack, deposit, tx, escrow, sent) = pending_deposit().await;
    stop(&mut stack).await;
    stack.mine().await;
    stack.restart().await;
    let reconciled = stack.facilitator.as_ref().unwrap().reconciled();
    assert_eq!(
        (reconciled.confirmed, reconciled.tracking),
        (1, 0),
        "{reconciled:?}"
    );
    let settled = settle(&stack, &deposit).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["transaction"], tx.to_string());
    assert_eq!(settled["amount"], DEPOSIT.to_string());
    assert_eq!(stack.chain.facilitator_tx_count().await, sent + 1);
    assert_eq!(
        stack.chain.balance(BATCH_SETTLEMENT_ADDRESS).await,
        escrow + U256::from(DEPOSIT)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_the_node_lost_is_rebroadcast_at_start_and_mined_once() {
    let (mut stack, deposit, tx, escrow, sent) = pending_deposit().await;
    stop(&mut stack).await;
    // The node forgets the transaction: as if the facilitator had stopped between recording
    // it and broadcasting it.
    let provider = stack.chain.devnet.provider().clone();
    provider
        .raw_request::<_, Value>("anvil_dropTransaction".into(), (tx,))
        .await
        .unwrap();
    assert!(
        provider
            .get_transaction_by_hash(tx)
            .await
            .unwrap()
            .is_none()
    );

    stack.restart().await;
    let reconciled = stack.facilitator.as_ref().unwrap().reconciled();
    assert_eq!(reconciled.tracking, 1, "{reconciled:?}");
    assert!(
        provider
            .get_transaction_by_hash(tx)
            .await
            .unwrap()
            .is_some(),
        "rebroadcast at start"
    );
    stack.mine().await;
    let settled = settle(&stack, &deposit).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["transaction"], tx.to_string());
    let again = settle(&stack, &deposit).await;
    assert_eq!(again["transaction"], tx.to_string(), "{again}");
    stack.mine().await;
    assert_eq!(stack.chain.facilitator_tx_count().await, sent + 1);
    assert_eq!(
        stack.chain.balance(BATCH_SETTLEMENT_ADDRESS).await,
        escrow + U256::from(DEPOSIT)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_whose_nonce_went_elsewhere_is_forgotten_and_sent_anew() {
    let (mut stack, deposit, tx, escrow, sent) = pending_deposit().await;
    stop(&mut stack).await;
    let provider = stack.chain.devnet.provider().clone();
    provider
        .raw_request::<_, Value>("anvil_dropTransaction".into(), (tx,))
        .await
        .unwrap();
    // The signer's nonce goes to another transaction while the facilitator is down.
    let signer = stack.chain.devnet.facilitator().signer.clone();
    let wallet = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer.clone()))
        .connect_http(stack.chain.devnet.rpc_url().clone());
    let other = TransactionRequest::default()
        .with_to(signer.address())
        .with_value(U256::from(1))
        .with_nonce(sent);
    let other = wallet.send_transaction(other).await.unwrap();
    stack.mine().await;
    other.get_receipt().await.unwrap();

    stack.restart().await;
    let reconciled = stack.facilitator.as_ref().unwrap().reconciled();
    assert_eq!(
        (reconciled.abandoned, reconciled.tracking),
        (1, 0),
        "{reconciled:?}"
    );
    // Nothing moved: the retry sends the deposit anew, and it is mined.
    stack.stop_automine().await;
    let retry = {
        let stack = &stack;
        let mining = async {
            for _ in 0..20 {
                tokio::time::sleep(std::time::Duration::from_millis(150)).await;
                stack.mine().await;
            }
        };
        let (answer, ()) = tokio::join!(settle(stack, &deposit), mining);
        answer
    };
    assert_eq!(retry["success"], true, "{retry}");
    assert_ne!(retry["transaction"], tx.to_string());
    assert_eq!(stack.chain.facilitator_tx_count().await, sent + 2);
    assert_eq!(
        stack.chain.balance(BATCH_SETTLEMENT_ADDRESS).await,
        escrow + U256::from(DEPOSIT)
    );
}
