//! On the local Solana chain (started by port 0, killed on drop): a payment our builder makes
//! passes verify (local checks and simulation), and settles once co-signed by the fee payer,
//! moving exactly the amount; one built on an expired blockhash or spending more than the
//! payer holds is refused with the simulation's reason code.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use x402_devnet::{SolanaChain, SolanaChainConfig, SolanaChainState};
use x402_proto::{PaymentRequest, v2};
use x402_svm::{
    DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS, ExactSvmPayload, ExactSvmScheme, FeePayers, Keypair,
    Landing, SolanaRpc, VerifyLimits, build_payment,
};

async fn chain() -> SolanaChain {
    SolanaChain::start(&SolanaChainConfig {
        payers: 2,
        payer_funds: 1_000_000,
        seed: None,
    })
    .await
    .expect("the local Solana chain starts (npm install in tools/)")
}

fn scheme(state: &SolanaChainState) -> ExactSvmScheme {
    let key = Keypair::try_from_base58_string(&state.fee_payer_key).unwrap();
    ExactSvmScheme::new(
        SolanaRpc::new(&state.rpc_url, Duration::from_secs(10)),
        FeePayers::new(vec![key]),
        VerifyLimits::default(),
    )
}

/// Payer `i` pays `amount` through our builder, as a v2 request.
async fn payment(
    state: &SolanaChainState,
    rpc: &SolanaRpc,
    i: usize,
    amount: u64,
) -> PaymentRequest {
    let requirements: v2::PaymentRequirements = serde_json::from_value(json!({
        "scheme": "exact", "network": state.network, "amount": amount.to_string(),
        "asset": state.mint, "payTo": state.pay_to, "maxTimeoutSeconds": 60,
        "extra": {"feePayer": state.fee_payer},
    }))
    .unwrap();
    let payer = Keypair::try_from_base58_string(&state.payer_keys[i]).unwrap();
    let parts =
        common::transfer(state, rpc, amount, DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS).await;
    let payload =
        serde_json::to_value(ExactSvmPayload::of(&build_payment(&payer, &parts).unwrap())).unwrap();
    let payload: v2::PaymentPayload = serde_json::from_value(json!({
        "x402Version": 2, "accepted": requirements, "payload": payload,
    }))
    .unwrap();
    PaymentRequest::V2 {
        payload,
        requirements,
    }
}

fn reason(response: &x402_proto::VerifyResponse) -> Option<&str> {
    response.invalid_reason.as_ref().map(|r| r.as_str())
}

#[tokio::test]
async fn a_built_payment_verifies_and_settles_once_cosigned() {
    let chain = chain().await;
    let state = chain.state();
    let scheme = scheme(state);
    let rpc = scheme.rpc();
    let request = payment(state, rpc, 0, 1234).await;

    let verdict = scheme.verify_response(&request).await.unwrap();
    assert!(verdict.is_valid, "{verdict:?}");
    assert_eq!(verdict.payer.as_deref(), Some(state.payers[0].as_str()));

    let pay_to_account = common::address(&state.pay_to_token_account);
    let before = rpc.token_balance(&pay_to_account).await.unwrap();
    let verified = scheme.verify(&request).await.unwrap();
    let signed = scheme.cosign(&verified).unwrap();
    let landing = scheme
        .send_and_confirm(&signed, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(matches!(landing, Landing::Confirmed { .. }), "{landing:?}");
    assert_eq!(
        rpc.token_balance(&pay_to_account).await.unwrap(),
        before + 1234
    );
}

#[tokio::test]
async fn an_expired_blockhash_and_an_overdraft_fail_simulation() {
    let chain = chain().await;
    let state = chain.state();
    let scheme = scheme(state);
    let rpc = scheme.rpc();

    let overdraft = payment(state, rpc, 1, 1_000_001).await;
    let verdict = scheme.verify_response(&overdraft).await.unwrap();
    assert_eq!(
        reason(&verdict),
        Some("invalid_exact_svm_transaction_simulation_failed")
    );
    assert_eq!(verdict.payer.as_deref(), Some(state.payers[1].as_str()));

    let stale = payment(state, rpc, 0, 10).await;
    assert!(scheme.verify_response(&stale).await.unwrap().is_valid);
    rpc.call("litesvm_expireBlockhash", Value::Array(vec![]))
        .await
        .unwrap();
    let verdict = scheme.verify_response(&stale).await.unwrap();
    assert_eq!(
        reason(&verdict),
        Some("invalid_exact_svm_transaction_simulation_failed")
    );
    assert!(
        verdict
            .invalid_message
            .as_deref()
            .unwrap_or_default()
            .contains("BlockhashNotFound"),
        "{verdict:?}"
    );
}
