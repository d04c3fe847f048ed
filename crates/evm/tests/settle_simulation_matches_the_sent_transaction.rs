//! A Permit2 settlement is simulated exactly as it will be sent (the facilitator's address,
//! the settle's gas limit, the fees it offers), so a payer's contract cannot pass verification
//! and then make the sent transaction revert: a wallet accepting signatures only with more gas
//! left than a settlement has is refused at verify, and nothing is sent. A payment whose
//! settlement was mined and failed is refused at every later verify, even when it would pass
//! again (the payer refilled its balance): it paid nothing and buys nothing. The `exact`
//! (EIP-3009) path simulates a contract payer's settlement the same way. Real anvil chain,
//! Permit2 and our `upto` proxy.

use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::Signer;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use x402_evm::upto::{UptoEvmClient, UptoEvmFacilitator, UptoPayload};
use x402_evm::{Erc6492Deployment, ExactEvmFacilitator, unix_now};
use x402_proto::{Facilitator, PaymentRequest, ReasonCode, v2};
use x402_testkit::{
    Chain, GAS_SENSITIVE_MIN_GAS_LEFT, SmartWallet, assert_verifies_and_settles, request_paying,
    upto_usage, v2_request,
};

const MAXIMUM: u128 = 20_000;

/// `owner`'s `upto` payment of `offer` for the wallet at `wallet`: the permit names the wallet
/// as its owner and carries `owner`'s signature of its digest, which the wallet checks.
async fn wallet_payment(
    chain: &Chain,
    offer: &v2::PaymentRequirements,
    owner: &PrivateKeySigner,
    wallet: Address,
) -> UptoPayload {
    let mut payload = UptoEvmClient::new(owner.clone())
        .sign_upto(offer, unix_now())
        .await
        .unwrap();
    payload.permit2_authorization.from = wallet;
    let digest = payload
        .permit2_authorization
        .digest(chain.scheme.chain_id());
    payload.signature = owner.sign_hash(&digest).await.unwrap().as_bytes().into();
    payload
}

fn paying(payload: &UptoPayload, offer: &v2::PaymentRequirements) -> PaymentRequest {
    request_paying(serde_json::to_value(payload).unwrap(), offer)
}

#[tokio::test]
async fn a_wallet_that_accepts_only_with_more_gas_than_a_settlement_has_is_refused() {
    let chain = Chain::start().await;
    let offer = chain.upto_offer(MAXIMUM);
    let facilitator = UptoEvmFacilitator::new(chain.scheme.clone());
    let owner = PrivateKeySigner::random();
    let payee = chain.devnet.pay_to().address;

    // The same wallet asking for no gas at all pays: the payment is built right.
    let plain = chain.place_gas_sensitive_wallet(&owner, 0, MAXIMUM).await;
    let sensitive = chain
        .place_gas_sensitive_wallet(&owner, GAS_SENSITIVE_MIN_GAS_LEFT, MAXIMUM)
        .await;
    let payload = wallet_payment(&chain, &offer, &owner, plain).await;
    let verdict = facilitator.verify(&paying(&payload, &offer)).await.unwrap();
    assert!(verdict.is_valid, "{verdict:?}");
    let before = chain.balance(payee).await;
    let receipt = facilitator
        .settle(
            &upto_usage(serde_json::to_value(&payload).unwrap(), &offer, 1_000),
            None,
        )
        .await
        .unwrap();
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(chain.balance(payee).await, before + U256::from(1_000));

    // Asking for more gas than the settlement has: refused before anything is sent.
    let payload = wallet_payment(&chain, &offer, &owner, sensitive).await;
    let verdict = facilitator.verify(&paying(&payload, &offer)).await.unwrap();
    assert!(!verdict.is_valid, "{verdict:?}");
    let sent_before = chain.facilitator_tx_count().await;
    let before = chain.balance(payee).await;
    let usage = upto_usage(serde_json::to_value(&payload).unwrap(), &offer, 1_000);
    let receipt = facilitator.settle(&usage, None).await.unwrap();
    assert!(!receipt.success, "{receipt:?}");
    assert_eq!(receipt.transaction, "", "nothing was sent: {receipt:?}");
    assert_eq!(chain.facilitator_tx_count().await, sent_before);
    assert_eq!(chain.balance(payee).await, before);
    assert_eq!(chain.balance(sensitive).await, U256::from(MAXIMUM));
}

alloy::sol! {
    function transfer(address to, uint256 value) external returns (bool);
}

#[tokio::test]
async fn a_payment_whose_settlement_failed_on_chain_is_refused_at_the_next_verify() {
    let chain = Chain::start().await;
    let devnet = &chain.devnet;
    let payer = &devnet.payers()[0];
    devnet.approve_permit2(&payer.signer).await.unwrap();
    let offer = chain.upto_offer(MAXIMUM);
    let facilitator = UptoEvmFacilitator::new(chain.scheme.clone());
    let payload = UptoEvmClient::new(payer.signer.clone())
        .sign_upto(&offer, unix_now())
        .await
        .unwrap();
    let request = paying(&payload, &offer);
    let verify = || facilitator.verify(&request);
    assert!(verify().await.unwrap().is_valid);

    // Blocks are mined on demand: the settlement waits in the pool while the payer moves its
    // whole balance away with a higher tip, mined first in the same block.
    let provider = devnet.provider();
    let automine =
        |on: bool| provider.raw_request::<_, serde_json::Value>("evm_setAutomine".into(), (on,));
    let balance = chain.balance(payer.address).await;
    automine(false).await.unwrap();
    let pooled_before = chain.facilitator_tx_count().await;
    let usage = upto_usage(serde_json::to_value(&payload).unwrap(), &offer, 5_000);
    let settling = {
        let (facilitator, usage) = (facilitator.clone(), usage.clone());
        tokio::spawn(async move { facilitator.settle(&usage, None).await })
    };
    let facilitator_address = devnet.facilitator().address;
    loop {
        let pending = provider
            .get_transaction_count(facilitator_address)
            .pending()
            .await
            .unwrap();
        if pending > pooled_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let payer_provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(payer.signer.clone()))
        .connect_http(devnet.rpc_url().clone());
    let drain = TransactionRequest::default()
        .with_to(devnet.token().address)
        .with_input(
            transferCall {
                to: Address::repeat_byte(0x77),
                value: balance,
            }
            .abi_encode(),
        )
        .with_gas_limit(100_000)
        .with_max_fee_per_gas(1_000_000_000_000)
        .with_max_priority_fee_per_gas(500_000_000_000);
    let drained = payer_provider.send_transaction(drain).await.unwrap();
    provider
        .raw_request::<_, serde_json::Value>("evm_mine".into(), ())
        .await
        .unwrap();
    automine(true).await.unwrap();
    let drained = drained.get_receipt().await.unwrap();
    assert!(drained.status());
    let mut answer = settling.await.unwrap().unwrap();
    if answer.error_reason == Some(ReasonCode::SETTLEMENT_PENDING) {
        answer = facilitator.settle(&usage, None).await.unwrap();
    }
    assert!(!answer.success, "{answer:?}");
    assert_eq!(
        answer.error_reason,
        Some(ReasonCode::UPTO_EVM_TRANSACTION_FAILED),
        "{answer:?}"
    );

    // The payer refills: the permit would simulate again, but its settlement failed.
    devnet
        .fund(payer.address, balance.to::<u128>())
        .await
        .unwrap();
    let verdict = verify().await.unwrap();
    assert!(!verdict.is_valid, "{verdict:?}");
    assert_eq!(
        verdict.invalid_reason,
        Some(ReasonCode::UPTO_EVM_TRANSACTION_FAILED),
        "{verdict:?}"
    );
    assert!(
        verdict
            .invalid_message
            .as_deref()
            .is_some_and(|m| m.contains("failed on chain")),
        "{verdict:?}"
    );
}

#[tokio::test]
async fn an_eip3009_payment_from_such_a_wallet_is_refused_too() {
    let chain = Chain::start().await;
    let facilitator = ExactEvmFacilitator::new(chain.scheme.clone());
    let owner = PrivateKeySigner::random();
    let requirements = chain.requirements(MAXIMUM);
    let paying_from = |address: Address| {
        let wallet = SmartWallet {
            address,
            signer: owner.clone(),
            deployment: Erc6492Deployment {
                factory: Address::ZERO,
                factory_calldata: Default::default(),
            },
        };
        v2_request(&wallet.payment(&requirements), &requirements)
    };
    let plain = chain.place_gas_sensitive_wallet(&owner, 0, MAXIMUM).await;
    let sensitive = chain
        .place_gas_sensitive_wallet(&owner, GAS_SENSITIVE_MIN_GAS_LEFT, MAXIMUM)
        .await;
    assert_verifies_and_settles(&facilitator, &paying_from(plain), plain).await;

    let request = paying_from(sensitive);
    let verdict = facilitator.verify(&request).await.unwrap();
    assert!(!verdict.is_valid, "{verdict:?}");
    let sent_before = chain.facilitator_tx_count().await;
    let receipt = facilitator.settle(&request, None).await.unwrap();
    assert!(!receipt.success, "{receipt:?}");
    assert_eq!(
        chain.facilitator_tx_count().await,
        sent_before,
        "nothing sent"
    );
    assert_eq!(chain.balance(sensitive).await, U256::from(MAXIMUM));
}
