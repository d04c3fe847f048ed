//! The devnet deploys Uniswap's Permit2 where every chain has it, by CREATE2 with the canonical
//! salt: its code answers there, and its EIP-712 domain names that address and the chain, as
//! official clients sign against. The x402 Permit2 proxies answer at their canonical addresses
//! and name that Permit2.

use alloy::primitives::{Bytes, U256, keccak256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolValue;
use x402_devnet::{
    Devnet, DevnetConfig, EXACT_PERMIT2_PROXY_ADDRESS, PERMIT2_ADDRESS, UPTO_PERMIT2_PROXY_ADDRESS,
};

#[tokio::test]
async fn permit2_answers_at_its_address_with_its_domain() {
    for chain_id in [8453u64, 84532] {
        let devnet = Devnet::start(DevnetConfig {
            chain_id,
            ..DevnetConfig::default()
        })
        .await
        .unwrap();
        assert!(devnet.has_code(PERMIT2_ADDRESS).await.unwrap());
        let call = TransactionRequest::default()
            .to(PERMIT2_ADDRESS)
            .input(Bytes::from(keccak256("DOMAIN_SEPARATOR()")[..4].to_vec()).into());
        let answer = devnet.provider().call(call).await.unwrap();
        let expected = keccak256(
            (
                keccak256("EIP712Domain(string name,uint256 chainId,address verifyingContract)"),
                keccak256("Permit2"),
                U256::from(chain_id),
                PERMIT2_ADDRESS,
            )
                .abi_encode(),
        );
        assert_eq!(answer.as_ref(), expected.as_slice(), "chain {chain_id}");
        for proxy in [EXACT_PERMIT2_PROXY_ADDRESS, UPTO_PERMIT2_PROXY_ADDRESS] {
            let call = TransactionRequest::default()
                .to(proxy)
                .input(Bytes::from(keccak256("PERMIT2()")[..4].to_vec()).into());
            let answer = devnet.provider().call(call).await.unwrap();
            assert_eq!(
                answer,
                PERMIT2_ADDRESS.abi_encode(),
                "{proxy} names Permit2"
            );
        }
        // Deploying again finds it there and changes nothing.
        devnet.deploy_permit2().await.unwrap();
    }
}

#[tokio::test]
async fn a_devnet_without_permit2_has_no_code_there() {
    let devnet = Devnet::start(DevnetConfig {
        permit2: false,
        ..DevnetConfig::default()
    })
    .await
    .unwrap();
    assert!(!devnet.has_code(PERMIT2_ADDRESS).await.unwrap());
}
