//! Smart-contract payers settle: a deployed ERC-1271 wallet through the token's `bytes`
//! overload, and a counterfactual ERC-6492 wallet of an allowed factory, which settlement
//! deploys in the same transaction.

use alloy::primitives::U256;
use x402_evm::ExactEvmFacilitator;
use x402_proto::Facilitator;
use x402_testkit::{Chain, SmartWallet, assert_verifies_and_settles, v1_request, v2_request};

#[tokio::test]
async fn a_deployed_erc1271_wallet_pays() {
    let chain = Chain::start().await;
    let devnet = &chain.devnet;
    let owner = devnet.payers()[0].signer.clone();
    let wallet = SmartWallet::deployed(devnet, &owner).await;
    devnet.fund(wallet.address, 50_000).await.unwrap();
    let pay_to = devnet.pay_to().address;
    let pay_to_before = chain.balance(pay_to).await;
    let owner_before = chain.balance(owner.address()).await;
    let facilitator = ExactEvmFacilitator::new(chain.scheme.clone());

    // v2, then v1: both wire versions carry the wallet's signature unchanged.
    let requirements = chain.requirements(20_000);
    for request in [
        v2_request(&wallet.payment(&requirements), &requirements),
        v1_request(&wallet.payment(&requirements), &requirements),
    ] {
        assert_verifies_and_settles(&facilitator, &request, wallet.address).await;
    }

    assert_eq!(chain.balance(wallet.address).await, U256::from(10_000));
    assert_eq!(
        chain.balance(pay_to).await,
        pay_to_before + U256::from(40_000)
    );
    // The owner key only signed: its own balance did not move.
    assert_eq!(chain.balance(owner.address()).await, owner_before);
}

#[tokio::test]
async fn an_erc6492_counterfactual_wallet_pays_and_is_deployed_by_settlement() {
    let chain = Chain::start().await;
    let devnet = &chain.devnet;
    let wallet = SmartWallet::counterfactual(devnet, &devnet.payers()[1].signer).await;
    // Money can be sent to the wallet's address before it exists.
    devnet.fund(wallet.address, 8_000).await.unwrap();
    assert!(!devnet.has_code(wallet.address).await.unwrap());
    let pay_to = devnet.pay_to().address;
    let pay_to_before = chain.balance(pay_to).await;
    let facilitator = ExactEvmFacilitator::new(chain.scheme.clone());

    let requirements = chain.requirements(7_000);
    let request = v2_request(&wallet.counterfactual_payment(&requirements), &requirements);
    let verdict = facilitator.verify(&request).await.unwrap();
    assert!(verdict.is_valid, "{verdict:?}");
    // Verifying simulated the deployment; it did not send it.
    assert!(!devnet.has_code(wallet.address).await.unwrap());

    let receipt = facilitator.settle(&request, None).await.unwrap();
    assert!(receipt.success, "{receipt:?}");
    assert!(devnet.has_code(wallet.address).await.unwrap());
    assert_eq!(chain.balance(wallet.address).await, U256::from(1_000));
    assert_eq!(
        chain.balance(pay_to).await,
        pay_to_before + U256::from(7_000)
    );

    // Once deployed, the wallet still pays with ERC-6492 signatures: the wrapper is
    // stripped and its factory call is not needed (nor sent) any more.
    let requirements = chain.requirements(1_000);
    let request = v2_request(&wallet.counterfactual_payment(&requirements), &requirements);
    assert_verifies_and_settles(&facilitator, &request, wallet.address).await;
    assert_eq!(chain.balance(wallet.address).await, U256::ZERO);
    assert_eq!(
        chain.balance(pay_to).await,
        pay_to_before + U256::from(8_000)
    );
}
