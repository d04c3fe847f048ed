//! Every way a payment can be wrong is refused with its reason code, by verify and by settle,
//! on a real chain, and no money moves and no transaction is sent.

use alloy::primitives::{Address, Bytes, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::json;
use x402_evm::{ExactEvmFacilitator, ExactEvmPayload, unix_now};
use x402_proto::{Facilitator, Network, PaymentRequest, ReasonCode, Scheme, v2};
use x402_testkit::{
    Chain, authorization_for, honest_payment, sign_for, sign_with_domain, v1_request, v2_request,
};

/// Asserts that verify and settle both refuse `request` with `expected`, with a message, and
/// that neither balances nor the facilitator's nonce change.
async fn assert_refused(chain: &Chain, request: &PaymentRequest, expected: ReasonCode) {
    let watched: Vec<Address> = chain.devnet.accounts().iter().map(|a| a.address).collect();
    let mut before = Vec::new();
    for account in &watched {
        before.push(chain.balance(*account).await);
    }
    let txs_before = chain.facilitator_tx_count().await;
    let facilitator = ExactEvmFacilitator::new(chain.scheme.clone());

    let verdict = facilitator.verify(request).await.unwrap();
    assert!(!verdict.is_valid, "verify accepted: {verdict:?}");
    assert_eq!(
        verdict.invalid_reason.as_ref(),
        Some(&expected),
        "{verdict:?}"
    );
    assert!(!verdict.invalid_message.unwrap_or_default().is_empty());

    let receipt = facilitator.settle(request, None).await.unwrap();
    assert!(!receipt.success, "settle succeeded: {receipt:?}");
    assert_eq!(
        receipt.error_reason.as_ref(),
        Some(&expected),
        "{receipt:?}"
    );
    assert_eq!(
        receipt.transaction, "",
        "a transaction was sent: {receipt:?}"
    );

    for (account, balance) in watched.iter().zip(before) {
        assert_eq!(
            chain.balance(*account).await,
            balance,
            "balance of {account} moved"
        );
    }
    assert_eq!(
        chain.facilitator_tx_count().await,
        txs_before,
        "a transaction was sent"
    );
}

fn payer(chain: &Chain) -> &PrivateKeySigner {
    &chain.devnet.payers()[0].signer
}

#[tokio::test]
async fn replayed_nonce_is_refused_after_one_transfer() {
    let chain = Chain::start().await;
    let requirements = chain.requirements(5_000);
    let request = v2_request(&honest_payment(payer(&chain), &requirements), &requirements);
    let facilitator = ExactEvmFacilitator::new(chain.scheme.clone());
    let first = facilitator.settle(&request, None).await.unwrap();
    assert!(first.success, "{first:?}");
    assert_refused(&chain, &request, ReasonCode::EXACT_EVM_NONCE_ALREADY_USED).await;
}

#[tokio::test]
async fn insufficient_balance_is_refused() {
    let chain = Chain::start().await;
    let pauper = PrivateKeySigner::random();
    let requirements = chain.requirements(5_000);
    let request = v2_request(&honest_payment(&pauper, &requirements), &requirements);
    assert_refused(&chain, &request, ReasonCode::EXACT_EVM_INSUFFICIENT_BALANCE).await;
}

#[tokio::test]
async fn expired_and_nearly_expired_authorizations_are_refused() {
    let chain = Chain::start().await;
    let requirements = chain.requirements(5_000);
    for valid_before in [unix_now() - 1, unix_now() + 3] {
        let mut authorization = authorization_for(payer(&chain).address(), &requirements);
        authorization.valid_before = U256::from(valid_before);
        let payload = ExactEvmPayload {
            signature: sign_for(payer(&chain), &authorization, &requirements),
            authorization,
        };
        let request = v2_request(&payload, &requirements);
        assert_refused(&chain, &request, ReasonCode::EXACT_EVM_VALID_BEFORE).await;
    }
}

#[tokio::test]
async fn not_yet_valid_authorization_is_refused() {
    let chain = Chain::start().await;
    let requirements = chain.requirements(5_000);
    let mut authorization = authorization_for(payer(&chain).address(), &requirements);
    authorization.valid_after = U256::from(unix_now() + 120);
    let payload = ExactEvmPayload {
        signature: sign_for(payer(&chain), &authorization, &requirements),
        authorization,
    };
    assert_refused(
        &chain,
        &v2_request(&payload, &requirements),
        ReasonCode::EXACT_EVM_VALID_AFTER,
    )
    .await;
}

#[tokio::test]
async fn wrong_recipient_is_refused() {
    let chain = Chain::start().await;
    let requirements = chain.requirements(5_000);
    let mut authorization = authorization_for(payer(&chain).address(), &requirements);
    authorization.to = chain.devnet.payers()[3].address;
    let payload = ExactEvmPayload {
        signature: sign_for(payer(&chain), &authorization, &requirements),
        authorization,
    };
    assert_refused(
        &chain,
        &v2_request(&payload, &requirements),
        ReasonCode::EXACT_EVM_RECIPIENT_MISMATCH,
    )
    .await;
}

#[tokio::test]
async fn wrong_amount_is_refused_with_each_versions_code() {
    let chain = Chain::start().await;
    let requirements = chain.requirements(5_000);
    for value in [4_999u64, 5_001] {
        let mut authorization = authorization_for(payer(&chain).address(), &requirements);
        authorization.value = U256::from(value);
        let payload = ExactEvmPayload {
            signature: sign_for(payer(&chain), &authorization, &requirements),
            authorization,
        };
        assert_refused(
            &chain,
            &v2_request(&payload, &requirements),
            ReasonCode::EXACT_EVM_VALUE_MISMATCH,
        )
        .await;
        assert_refused(
            &chain,
            &v1_request(&payload, &requirements),
            ReasonCode::EXACT_EVM_VALUE_MISMATCH_V1,
        )
        .await;
    }
}

#[tokio::test]
async fn signature_over_another_domain_name_or_version_is_refused() {
    let chain = Chain::start().await;
    let requirements = chain.requirements(5_000);
    let token = chain.devnet.token().address;
    for (name, version) in [("USDC", "2"), ("USD Coin", "1")] {
        let authorization = authorization_for(payer(&chain).address(), &requirements);
        let payload = ExactEvmPayload {
            signature: sign_with_domain(payer(&chain), &authorization, name, version, 8453, token),
            authorization,
        };
        assert_refused(
            &chain,
            &v2_request(&payload, &requirements),
            ReasonCode::EXACT_EVM_SIGNATURE,
        )
        .await;
    }
}

#[tokio::test]
async fn requirements_naming_the_wrong_token_domain_are_diagnosed() {
    let chain = Chain::start().await;
    let cases = [
        (
            json!({"name": "USDC", "version": "2"}),
            ReasonCode::EXACT_EVM_TOKEN_NAME_MISMATCH,
        ),
        (
            json!({"name": "USD Coin", "version": "1"}),
            ReasonCode::EXACT_EVM_TOKEN_VERSION_MISMATCH,
        ),
    ];
    for (extra, expected) in cases {
        let mut requirements = chain.requirements(5_000);
        requirements.extra = Some(extra);
        // Signed consistently with the (wrong) requirements: only the chain can tell.
        let request = v2_request(&honest_payment(payer(&chain), &requirements), &requirements);
        assert_refused(&chain, &request, expected).await;
    }
}

#[tokio::test]
async fn wrong_chain_is_refused() {
    let chain = Chain::start().await;
    let requirements = chain.requirements(5_000);
    let token = chain.devnet.token().address;

    // Signed for Base Sepolia's chain id, presented for Base.
    let authorization = authorization_for(payer(&chain).address(), &requirements);
    let payload = ExactEvmPayload {
        signature: sign_with_domain(payer(&chain), &authorization, "USD Coin", "2", 84532, token),
        authorization,
    };
    assert_refused(
        &chain,
        &v2_request(&payload, &requirements),
        ReasonCode::EXACT_EVM_SIGNATURE,
    )
    .await;

    // Requirements for a chain this facilitator does not settle on.
    let mut sepolia = requirements.clone();
    sepolia.network = Network::BASE_SEPOLIA;
    let request = v2_request(&honest_payment(payer(&chain), &sepolia), &sepolia);
    assert_refused(&chain, &request, ReasonCode::INVALID_NETWORK).await;

    // The payment says it chose another network than the requirements name.
    let mut request = v2_request(&honest_payment(payer(&chain), &requirements), &requirements);
    if let PaymentRequest::V2 { payload, .. } = &mut request {
        payload.accepted.network = Network::BASE_SEPOLIA;
    }
    assert_refused(&chain, &request, ReasonCode::EXACT_EVM_NETWORK_MISMATCH).await;
}

#[tokio::test]
async fn malformed_and_foreign_signatures_are_refused() {
    let chain = Chain::start().await;
    let requirements = chain.requirements(5_000);
    let honest = honest_payment(payer(&chain), &requirements);
    let mut garbage = honest.signature.to_vec();
    garbage[10] ^= 0xff;
    let mut high_s_v = honest.signature.to_vec();
    high_s_v[64] = 5;
    let foreign = sign_for(
        &chain.devnet.payers()[4].signer,
        &honest.authorization,
        &requirements,
    );
    let signatures: [Bytes; 5] = [
        garbage.into(),
        high_s_v.into(),
        Bytes::from(vec![0u8; 65]),
        Bytes::from(vec![1u8; 10]),
        foreign,
    ];
    for signature in signatures {
        let payload = ExactEvmPayload {
            signature,
            authorization: honest.authorization.clone(),
        };
        assert_refused(
            &chain,
            &v2_request(&payload, &requirements),
            ReasonCode::EXACT_EVM_SIGNATURE,
        )
        .await;
    }
}

#[tokio::test]
async fn malformed_requests_are_refused_with_what_is_wrong() {
    let chain = Chain::start().await;
    let requirements = chain.requirements(5_000);
    let honest = honest_payment(payer(&chain), &requirements);

    let mut no_signature = v2_request(&honest, &requirements);
    if let PaymentRequest::V2 { payload, .. } = &mut no_signature {
        payload.payload = json!({"authorization": payload.payload["authorization"].clone()});
    }
    assert_refused(&chain, &no_signature, ReasonCode::INVALID_PAYLOAD).await;

    let mut no_domain = requirements.clone();
    no_domain.extra = None;
    assert_refused(
        &chain,
        &v2_request(&honest, &no_domain),
        ReasonCode::EXACT_EVM_MISSING_EIP712_DOMAIN,
    )
    .await;

    let mut upto: v2::PaymentRequirements = requirements.clone();
    upto.scheme = Scheme::UPTO;
    assert_refused(
        &chain,
        &v2_request(&honest, &upto),
        ReasonCode::EXACT_EVM_SCHEME,
    )
    .await;
}

#[tokio::test]
async fn asset_that_is_not_a_contract_is_refused() {
    let chain = Chain::start().await;
    let mut requirements = chain.requirements(5_000);
    requirements.asset = Address::repeat_byte(0x42).to_checksum(None);
    let request = v2_request(&honest_payment(payer(&chain), &requirements), &requirements);
    assert_refused(&chain, &request, ReasonCode::ASSET_NOT_DEPLOYED_CONTRACT).await;
}

#[tokio::test]
async fn malleable_high_s_twin_of_a_valid_signature_is_refused() {
    let chain = Chain::start().await;
    let requirements = chain.requirements(5_000);
    let honest = honest_payment(payer(&chain), &requirements);
    let order: U256 = "0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141"
        .parse()
        .unwrap();
    let sig = alloy::primitives::Signature::from_raw(&honest.signature).unwrap();
    // (r, n - s, !v) recovers to the same key: valid ECDSA, but tokens refuse it.
    let twin = alloy::primitives::Signature::new(sig.r(), order - sig.s(), !sig.v());
    let payload = ExactEvmPayload {
        signature: twin.as_bytes().to_vec().into(),
        authorization: honest.authorization.clone(),
    };
    assert_refused(
        &chain,
        &v2_request(&payload, &requirements),
        ReasonCode::EXACT_EVM_SIGNATURE,
    )
    .await;
}

#[tokio::test]
async fn with_several_faults_the_reference_order_decides_the_reason() {
    let chain = Chain::start().await;
    let requirements = chain.requirements(5_000);

    // Foreign signature and expired: the signature is checked first.
    let mut authorization = authorization_for(payer(&chain).address(), &requirements);
    authorization.valid_before = U256::from(unix_now() - 10);
    let payload = ExactEvmPayload {
        signature: sign_for(
            &chain.devnet.payers()[5].signer,
            &authorization,
            &requirements,
        ),
        authorization,
    };
    assert_refused(
        &chain,
        &v2_request(&payload, &requirements),
        ReasonCode::EXACT_EVM_SIGNATURE,
    )
    .await;

    // Wrong recipient, expired and wrong amount: the recipient is checked first.
    let mut authorization = authorization_for(payer(&chain).address(), &requirements);
    authorization.to = chain.devnet.payers()[3].address;
    authorization.valid_before = U256::from(unix_now() - 10);
    authorization.value = U256::from(1);
    let payload = ExactEvmPayload {
        signature: sign_for(payer(&chain), &authorization, &requirements),
        authorization,
    };
    assert_refused(
        &chain,
        &v2_request(&payload, &requirements),
        ReasonCode::EXACT_EVM_RECIPIENT_MISMATCH,
    )
    .await;

    // Not yet valid and wrong amount: time before amount.
    let mut authorization = authorization_for(payer(&chain).address(), &requirements);
    authorization.valid_after = U256::from(unix_now() + 100);
    authorization.value = U256::from(1);
    let payload = ExactEvmPayload {
        signature: sign_for(payer(&chain), &authorization, &requirements),
        authorization,
    };
    assert_refused(
        &chain,
        &v2_request(&payload, &requirements),
        ReasonCode::EXACT_EVM_VALID_AFTER,
    )
    .await;

    // Replayed nonce of a pauper: the nonce is diagnosed before the balance.
    let pauper = PrivateKeySigner::random();
    chain
        .devnet
        .mint(
            chain.devnet.token().address,
            pauper.address(),
            x402_proto::TokenAmount::from_atomic(5_000),
        )
        .await
        .unwrap();
    let request = v2_request(&honest_payment(&pauper, &requirements), &requirements);
    let facilitator = ExactEvmFacilitator::new(chain.scheme.clone());
    assert!(facilitator.settle(&request, None).await.unwrap().success);
    assert_refused(&chain, &request, ReasonCode::EXACT_EVM_NONCE_ALREADY_USED).await;
}
