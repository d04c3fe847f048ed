//! Smart-contract payers that must not pay are refused with the official reason codes, and
//! nothing is sent: a wallet whose `isValidSignature` refuses, a counterfactual wallet whose
//! factory is not allowed, and a wallet neither deployed nor ERC-6492 wrapped.

use x402_evm::ExactEvmFacilitator;
use x402_proto::ReasonCode;
use x402_testkit::{
    Chain, SmartWallet, assert_verifies_and_settles, assert_verify_and_settle_refuse, v2_request,
    verify_reason,
};

#[tokio::test]
async fn a_wallet_whose_is_valid_signature_refuses_is_rejected() {
    let chain = Chain::start().await;
    let devnet = &chain.devnet;
    let owner = devnet.payers()[0].signer.clone();
    let intruder = devnet.payers()[1].signer.clone();
    let facilitator = ExactEvmFacilitator::new(chain.scheme.clone());
    let requirements = chain.requirements(1_000);

    // Deployed: another key signs for the wallet, and the wallet says no.
    let wallet = SmartWallet::deployed(devnet, &owner).await;
    devnet.fund(wallet.address, 5_000).await.unwrap();
    let forged = wallet.signing_with(&intruder);
    let sent_before = chain.facilitator_tx_count().await;
    let request = v2_request(&forged.payment(&requirements), &requirements);
    let verdict =
        assert_verify_and_settle_refuse(&facilitator, &request, ReasonCode::EXACT_EVM_SIGNATURE)
            .await;
    assert!(
        verdict
            .invalid_message
            .as_deref()
            .is_some_and(|m| m.contains("ERC-1271")),
        "{verdict:?}"
    );

    // Counterfactual: the same, judged after the simulated deployment.
    let unborn = SmartWallet::counterfactual(devnet, &owner)
        .await
        .signing_with(&intruder);
    let request = v2_request(&unborn.counterfactual_payment(&requirements), &requirements);
    assert_eq!(
        verify_reason(&facilitator, &request).await,
        Some(ReasonCode::EXACT_EVM_SIGNATURE)
    );
    assert!(!devnet.has_code(unborn.address).await.unwrap());

    assert_eq!(chain.facilitator_tx_count().await, sent_before);
}

#[tokio::test]
async fn a_factory_outside_the_allow_list_is_refused() {
    let chain = Chain::start().await;
    let devnet = &chain.devnet;
    // A second copy of the very same factory: only its address differs from the allowed one.
    let other_factory = "0x0000000000000000000000000000000000c0ffee"
        .parse()
        .unwrap();
    let factory_code = x402_devnet::Artifact::parse(x402_devnet::WALLET_FACTORY_ARTIFACT)
        .unwrap()
        .deployed_bytecode;
    devnet.set_code(other_factory, factory_code).await.unwrap();
    assert!(
        !chain
            .scheme
            .eip6492_allowed_factories()
            .contains(&other_factory)
    );

    let owner = &devnet.payers()[0].signer;
    let wallet = SmartWallet::counterfactual_from(devnet, other_factory, owner).await;
    devnet.fund(wallet.address, 1_000).await.unwrap();
    let facilitator = ExactEvmFacilitator::new(chain.scheme.clone());
    let requirements = chain.requirements(1_000);
    let sent_before = chain.facilitator_tx_count().await;
    let request = v2_request(&wallet.counterfactual_payment(&requirements), &requirements);

    let refusal = ReasonCode::EIP6492_FACTORY_NOT_ALLOWED;
    assert_eq!(refusal.as_str(), "eip6492_factory_not_allowed");
    assert_verify_and_settle_refuse(&facilitator, &request, refusal).await;
    assert!(!devnet.has_code(wallet.address).await.unwrap());
    assert_eq!(chain.facilitator_tx_count().await, sent_before);

    // The same wallet, once someone deployed it, pays: the allow-list guards deployment only.
    wallet.deploy(devnet).await;
    let request = v2_request(&wallet.counterfactual_payment(&requirements), &requirements);
    assert_verifies_and_settles(&facilitator, &request, wallet.address).await;
}

#[tokio::test]
async fn an_undeployed_wallet_without_erc6492_data_is_rejected() {
    let chain = Chain::start().await;
    let devnet = &chain.devnet;
    let wallet = SmartWallet::counterfactual(devnet, &devnet.payers()[0].signer).await;
    let facilitator = ExactEvmFacilitator::new(chain.scheme.clone());
    let requirements = chain.requirements(1_000);

    // A 65-byte owner signature for a codeless wallet address: ECDSA decides, and fails.
    let request = v2_request(&wallet.payment(&requirements), &requirements);
    assert_eq!(
        verify_reason(&facilitator, &request).await,
        Some(ReasonCode::EXACT_EVM_SIGNATURE)
    );

    // A smart-wallet (non-ECDSA) signature with nothing to deploy the wallet from.
    let mut payload = wallet.payment(&requirements);
    let mut long = payload.signature.to_vec();
    long.extend_from_slice(&[0u8; 32]);
    payload.signature = long.into();
    assert_eq!(
        verify_reason(&facilitator, &v2_request(&payload, &requirements)).await,
        Some(ReasonCode::EXACT_EVM_UNDEPLOYED_SMART_WALLET)
    );
}
