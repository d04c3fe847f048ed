//! A `batch-settlement` deposit paid through Permit2 (a witness transfer to the Permit2 deposit
//! collector, the channel as witness, signed with the core's `sign_permit2_deposit`) verifies
//! and settles on the devnet through our facilitator over HTTP: the deposit moves from the payer
//! into the escrow in one transaction, the channel's balance on chain is the deposit, and
//! settling it again sends nothing. A payer who never approved Permit2 is refused before
//! anything is sent.

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use x402_evm::batch::{BATCH_SETTLEMENT_ADDRESS, ChannelId};
use x402_testkit::{Chain, Stack, request_paying};

const PRICE: u128 = 1_000;
const DEPOSIT: u128 = 25_000;

alloy::sol! {
    function channels(bytes32 channelId) external view returns (uint128 balance, uint128 totalClaimed);
}

/// The channel's balance in the escrow, read from the chain.
async fn channel_balance(chain: &Chain, channel_id: &ChannelId) -> u128 {
    let call = TransactionRequest::default()
        .to(BATCH_SETTLEMENT_ADDRESS)
        .input(
            channelsCall {
                channelId: *channel_id.as_b256(),
            }
            .abi_encode()
            .into(),
        );
    let out = chain.devnet.provider().call(call).await.unwrap();
    channelsCall::abi_decode_returns(&out).unwrap().balance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit2_deposit_moves_the_deposit_into_the_escrow_once() {
    let authorizer = PrivateKeySigner::random();
    let stack = Stack::with_receiver_authorizer(Chain::start().await, &authorizer).await;
    let chain = &stack.chain;
    let payer = chain.devnet.payers()[0].signer.clone();
    chain.devnet.approve_permit2(&payer).await.unwrap();
    let offer = chain.batch_permit2_offer(PRICE, authorizer.address());
    let (config, channel_id) = chain.batch_channel(&offer, &payer, B256::ZERO);

    let payload = chain
        .batch_permit2_deposit(&offer, &payer, &config, DEPOSIT, PRICE)
        .await;
    assert!(
        payload["deposit"]["authorization"]["permit2Authorization"].is_object(),
        "{payload}"
    );
    let deposit = request_paying(payload, &offer);
    let (status, verified) = stack.verify(&deposit).await;
    assert_eq!(status, 200);
    assert_eq!(verified["isValid"], true, "{verified}");
    assert_eq!(verified["extra"]["balance"], "0", "{verified}");

    let held = |owner: Address| chain.balance(owner);
    let (payer_before, escrow_before) = (
        held(payer.address()).await,
        held(BATCH_SETTLEMENT_ADDRESS).await,
    );
    let sent = chain.facilitator_tx_count().await;
    let (status, settled) = stack.settle(&deposit).await;
    assert_eq!(status, 200);
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["amount"], DEPOSIT.to_string(), "{settled}");
    assert_eq!(
        settled["extra"]["channelState"]["balance"],
        DEPOSIT.to_string(),
        "{settled}"
    );
    assert_eq!(
        held(payer.address()).await,
        payer_before - U256::from(DEPOSIT)
    );
    assert_eq!(
        held(BATCH_SETTLEMENT_ADDRESS).await,
        escrow_before + U256::from(DEPOSIT)
    );
    assert_eq!(channel_balance(chain, &channel_id).await, DEPOSIT);
    assert_eq!(chain.facilitator_tx_count().await, sent + 1);

    // Settled again: the same transaction, nothing sent, nothing moved.
    let (_, again) = stack.settle(&deposit).await;
    assert_eq!(
        (&again["success"], &again["transaction"]),
        (&settled["success"], &settled["transaction"]),
        "{again}"
    );
    assert_eq!(chain.facilitator_tx_count().await, sent + 1);
    assert_eq!(channel_balance(chain, &channel_id).await, DEPOSIT);

    // A voucher on the funded channel now verifies against the deposit.
    let voucher = chain.batch_voucher(&payer, &config, 2 * PRICE).await;
    let (_, answer) = stack.verify(&request_paying(voucher, &offer)).await;
    assert_eq!(answer["isValid"], true, "{answer}");
    assert_eq!(answer["extra"]["balance"], DEPOSIT.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit2_deposit_without_an_allowance_is_refused_and_sends_nothing() {
    let authorizer = PrivateKeySigner::random();
    let stack = Stack::with_receiver_authorizer(Chain::start().await, &authorizer).await;
    let chain = &stack.chain;
    let payer = chain.devnet.payers()[1].signer.clone();
    let offer = chain.batch_permit2_offer(PRICE, authorizer.address());
    let (config, channel_id) = chain.batch_channel(&offer, &payer, B256::ZERO);
    let deposit = request_paying(
        chain
            .batch_permit2_deposit(&offer, &payer, &config, DEPOSIT, PRICE)
            .await,
        &offer,
    );
    let sent = chain.facilitator_tx_count().await;
    let (_, verified) = stack.verify(&deposit).await;
    assert_eq!(
        verified["invalidReason"], "invalid_batch_settlement_evm_permit2_allowance_required",
        "{verified}"
    );
    let (status, settled) = stack.settle(&deposit).await;
    assert_eq!(status, 200);
    assert_eq!(settled["success"], false, "{settled}");
    assert_eq!(
        settled["errorReason"],
        "invalid_batch_settlement_evm_permit2_allowance_required"
    );
    assert_eq!(chain.facilitator_tx_count().await, sent);
    assert_eq!(channel_balance(chain, &channel_id).await, 0);
}
