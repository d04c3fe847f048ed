//! For smart-wallet payers our `/verify` gives the same `isValid` and reason code as the
//! official facilitator library (2.27.0, `tools/interop/official-verify.mjs`) on the same
//! chain with the same ERC-6492 allow-list: a deployed ERC-1271 wallet, one that refuses the
//! signature, a counterfactual wallet of the allowed factory, and one of another factory.

use alloy::primitives::Address;
use serde_json::Value;
use x402_devnet::{Artifact, DevnetConfig, WALLET_FACTORY_ARTIFACT};
use x402_proto::PaymentRequest;
use x402_testkit::Stack;
use x402_testkit::{Chain, SmartWallet, v2_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_wallet_verdicts_match_the_official_facilitator() {
    let chain = Chain::start_with(DevnetConfig::default()).await;
    let allowed = chain.devnet.wallet_factory();
    let allow_list = format!("eip6492_allowed_factories = [\"{allowed}\"]");
    let stack = Stack::on_chain(chain, "", &allow_list).await;
    let devnet = &stack.chain.devnet;
    let other: Address = "0x0000000000000000000000000000000000c0ffee"
        .parse()
        .unwrap();
    let factory_code = Artifact::parse(WALLET_FACTORY_ARTIFACT)
        .unwrap()
        .deployed_bytecode;
    devnet.set_code(other, factory_code).await.unwrap();

    let owner = devnet.payers()[0].signer.clone();
    let intruder = devnet.payers()[1].signer.clone();
    let deployed = SmartWallet::deployed(devnet, &owner).await;
    let unborn = SmartWallet::counterfactual(devnet, &owner).await;
    let unlisted = SmartWallet::counterfactual_from(devnet, other, &owner).await;
    for wallet in [&deployed, &unborn, &unlisted] {
        devnet.fund(wallet.address, 5_000).await.unwrap();
    }
    let requirements = stack.chain.requirements(1_000);
    let cases: Vec<(&str, PaymentRequest)> = vec![
        (
            "deployed ERC-1271 wallet",
            v2_request(&deployed.payment(&requirements), &requirements),
        ),
        (
            "wallet refusing the signature",
            v2_request(
                &deployed.signing_with(&intruder).payment(&requirements),
                &requirements,
            ),
        ),
        (
            "counterfactual wallet of the allowed factory",
            v2_request(&unborn.counterfactual_payment(&requirements), &requirements),
        ),
        (
            "counterfactual wallet of another factory",
            v2_request(
                &unlisted.counterfactual_payment(&requirements),
                &requirements,
            ),
        ),
    ];

    let requests: Vec<&PaymentRequest> = cases.iter().map(|(_, request)| request).collect();
    let official = x402_testkit::official_verify(
        devnet,
        &requests,
        &[("EIP6492_ALLOWED_FACTORIES", allowed.to_checksum(None))],
    )
    .await;

    let expected = [
        (true, Value::Null),
        (false, "invalid_exact_evm_signature".into()),
        (true, Value::Null),
        (false, "eip6492_factory_not_allowed".into()),
    ];
    for (((name, request), theirs), (valid, reason)) in cases.iter().zip(&official).zip(expected) {
        let (status, ours) = stack.verify(request).await;
        assert_eq!(status, 200, "{name}: {ours}");
        assert_eq!(ours["isValid"], valid, "{name}: ours {ours}");
        assert_eq!(ours["invalidReason"], reason, "{name}: ours {ours}");
        x402_testkit::assert_same_verdict(name, &ours, theirs);
    }
}
