//! A valid payment verifies, settles on a real chain and moves exactly its amount, v2 and v1.

use alloy::primitives::U256;
use x402_evm::{ExactEvmFacilitator, sign_payment, unix_now};
use x402_proto::{Facilitator, PaymentRequest};
use x402_testkit::{Chain, assert_verifies_and_settles, honest_payment, v1_request};

#[tokio::test]
async fn v2_payment_signed_by_our_client_settles_and_moves_exactly_the_amount() {
    let chain = Chain::start().await;
    let payer = &chain.devnet.payers()[0];
    let pay_to = chain.devnet.pay_to().address;
    let requirements = chain.requirements(12_345);
    let payment = sign_payment(&payer.signer, &requirements, None, unix_now())
        .await
        .unwrap();
    let request = PaymentRequest::V2 {
        payload: payment,
        requirements: requirements.clone(),
    };
    let (payer_before, pay_to_before) = (
        chain.balance(payer.address).await,
        chain.balance(pay_to).await,
    );

    let facilitator = ExactEvmFacilitator::new(chain.scheme.clone());
    let receipt = assert_verifies_and_settles(&facilitator, &request, payer.address).await;
    assert_eq!(receipt.network, chain.devnet.network());
    assert_eq!(receipt.transaction.len(), 66, "{receipt:?}");

    assert_eq!(
        chain.balance(payer.address).await,
        payer_before - U256::from(12_345)
    );
    assert_eq!(
        chain.balance(pay_to).await,
        pay_to_before + U256::from(12_345)
    );
    let nonce = request.payload()["authorization"]["nonce"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        chain
            .devnet
            .authorization_used(chain.devnet.token().address, payer.address, nonce)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn v1_payment_settles_and_echoes_the_v1_network_name() {
    let chain = Chain::start().await;
    let pay_to = chain.devnet.pay_to().address;
    let before = chain.balance(pay_to).await;
    let payer = &chain.devnet.payers()[1];
    let requirements = chain.requirements(1_000);
    let request = v1_request(&honest_payment(&payer.signer, &requirements), &requirements);

    let facilitator = ExactEvmFacilitator::new(chain.scheme.clone());
    let receipt = assert_verifies_and_settles(&facilitator, &request, payer.address).await;
    assert_eq!(receipt.network.as_str(), "base");
    assert_eq!(chain.balance(pay_to).await, before + U256::from(1_000));
}

#[tokio::test]
async fn supported_lists_v1_and_v2_kinds_and_the_signer() {
    let chain = Chain::start().await;
    let facilitator = ExactEvmFacilitator::new(chain.scheme.clone());
    let supported = facilitator.supported().await.unwrap();
    let kinds: Vec<(u8, &str)> = supported
        .kinds
        .iter()
        .map(|k| (k.x402_version, k.network.as_str()))
        .collect();
    assert_eq!(kinds, vec![(2, "eip155:8453"), (1, "base")]);
    assert_eq!(
        supported.signers["eip155:*"],
        vec![chain.devnet.facilitator().address.to_checksum(None)]
    );
}
