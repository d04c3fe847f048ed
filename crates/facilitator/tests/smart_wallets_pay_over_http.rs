//! Smart-contract payers through our facilitator's `/verify` and `/settle` (the settlement
//! log path): an ERC-1271 wallet and an ERC-6492 counterfactual wallet of an allowed factory
//! pay, a wallet that refuses the signature and a factory outside the allow-list do not.

use alloy::primitives::{Address, U256};
use x402_devnet::DevnetConfig;
use x402_testkit::Stack;
use x402_testkit::{Chain, SmartWallet, v2_request};

/// A devnet and our facilitator allowing `factories` for ERC-6492 payers.
async fn stack_allowing(factories: impl Fn(&Chain) -> Vec<Address>) -> Stack {
    let chain = Chain::start_with(DevnetConfig::default()).await;
    let listed: Vec<String> = factories(&chain)
        .iter()
        .map(|f| format!("\"{f}\""))
        .collect();
    let allow_list = format!("eip6492_allowed_factories = [{}]", listed.join(", "));
    Stack::on_chain(chain, "", &allow_list).await
}

#[tokio::test]
async fn erc1271_and_erc6492_wallets_pay_through_the_facilitator() {
    let stack = stack_allowing(|chain| vec![chain.devnet.wallet_factory()]).await;
    let devnet = &stack.chain.devnet;
    let owner = devnet.payers()[0].signer.clone();
    let deployed = SmartWallet::deployed(devnet, &owner).await;
    let unborn = SmartWallet::counterfactual(devnet, &owner).await;
    for wallet in [&deployed, &unborn] {
        devnet.fund(wallet.address, 3_000).await.unwrap();
    }
    let before = stack.pay_to_balance().await;
    let requirements = stack.chain.requirements(3_000);

    let payments = [
        (&deployed, deployed.payment(&requirements)),
        (&unborn, unborn.counterfactual_payment(&requirements)),
    ];
    for (wallet, payload) in payments {
        let request = v2_request(&payload, &requirements);
        let (status, verdict) = stack.verify(&request).await;
        assert_eq!(status, 200);
        assert_eq!(verdict["isValid"], true, "{verdict}");
        let (status, receipt) = stack.settle(&request).await;
        assert_eq!(status, 200);
        assert_eq!(receipt["success"], true, "{receipt}");
        assert_eq!(
            receipt["payer"].as_str().unwrap().to_lowercase(),
            wallet.address.to_string().to_lowercase()
        );
        assert!(devnet.has_code(wallet.address).await.unwrap());
        assert_eq!(stack.chain.balance(wallet.address).await, U256::ZERO);
    }
    assert_eq!(stack.pay_to_balance().await - before, U256::from(6_000));
}

#[tokio::test]
async fn refusing_wallets_and_unlisted_factories_get_the_official_codes() {
    // Nothing allowed: every counterfactual payer is refused.
    let stack = stack_allowing(|_| Vec::new()).await;
    let devnet = &stack.chain.devnet;
    let owner = devnet.payers()[0].signer.clone();
    let intruder = devnet.payers()[1].signer.clone();
    let requirements = stack.chain.requirements(1_000);
    let sent_before = stack.chain.facilitator_tx_count().await;

    let refusing = SmartWallet::deployed(devnet, &owner)
        .await
        .signing_with(&intruder);
    devnet.fund(refusing.address, 1_000).await.unwrap();
    let unlisted = SmartWallet::counterfactual(devnet, &owner).await;
    let cases = [
        (
            v2_request(&refusing.payment(&requirements), &requirements),
            "invalid_exact_evm_signature",
        ),
        (
            v2_request(
                &unlisted.counterfactual_payment(&requirements),
                &requirements,
            ),
            "eip6492_factory_not_allowed",
        ),
    ];
    let sent_before = sent_before + 2; // the deployment and the mint above
    for (request, code) in cases {
        let (status, verdict) = stack.verify(&request).await;
        assert_eq!(status, 200);
        assert_eq!(verdict["isValid"], false);
        assert_eq!(verdict["invalidReason"], code, "{verdict}");
        let (status, receipt) = stack.settle(&request).await;
        assert_eq!(status, 200);
        assert_eq!(receipt["success"], false);
        assert_eq!(receipt["errorReason"], code, "{receipt}");
    }
    assert!(!devnet.has_code(unlisted.address).await.unwrap());
    assert_eq!(stack.chain.facilitator_tx_count().await, sent_before);
}
