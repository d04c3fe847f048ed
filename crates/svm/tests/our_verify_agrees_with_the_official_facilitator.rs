//! For valid and refused payments on the local Solana chain, our verify gives the same
//! validity and reason code as the official facilitator library (`@x402/svm` 2.27, run by
//! `tools/interop/official-verify.mjs`) on the same chain: wrong mint, wrong destination,
//! amount mismatch, the fee payer as the transfer's authority, a too-high compute-unit price,
//! a missing signature, an expired blockhash, and a v1 payment.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use serde_json::{Value, json};
use x402_devnet::{SolanaChain, SolanaChainConfig, SolanaChainState};
use x402_proto::PaymentRequest;
use x402_svm::{
    DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS, DecodedPayment, ExactSvmPayload, ExactSvmScheme,
    FeePayers, Keypair, MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS, Pubkey, SolanaRpc, VerifyLimits,
    build_payment,
};

fn requirements(state: &SolanaChainState, amount: u64) -> Value {
    json!({
        "scheme": "exact", "network": state.network, "amount": amount.to_string(),
        "asset": state.mint, "payTo": state.pay_to, "maxTimeoutSeconds": 60,
        "extra": {"feePayer": state.fee_payer},
    })
}

/// A payment of `amount` signed by `payer` (a base58 secret key) with our builder, at
/// `price` µlamports per compute unit.
async fn payload(
    state: &SolanaChainState,
    rpc: &SolanaRpc,
    payer: &str,
    amount: u64,
    price: u64,
) -> Value {
    let payer = Keypair::try_from_base58_string(payer).unwrap();
    let parts = common::transfer(state, rpc, amount, price).await;
    serde_json::to_value(ExactSvmPayload::of(&build_payment(&payer, &parts).unwrap())).unwrap()
}

/// A `/verify` body for x402 v2.
fn v2(requirements: &Value, payload: &Value) -> Value {
    json!({
        "paymentPayload": {"x402Version": 2, "accepted": requirements, "payload": payload},
        "paymentRequirements": requirements,
    })
}

/// What the official facilitator answers each body.
fn official(state: &SolanaChainState, bodies: &[Value]) -> Vec<Value> {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/interop/official-verify.mjs");
    let mut child = Command::new(std::env::var("X402_NODE").unwrap_or_else(|_| "node".into()))
        .arg(script)
        .env("RPC_URL", &state.rpc_url)
        .env("NETWORK", &state.network)
        .env("FACILITATOR_PRIVATE_KEY", &state.fee_payer_key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(bodies).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "official-verify.mjs failed");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// What ours answers each body, as (isValid, invalidReason).
async fn ours(scheme: &ExactSvmScheme, bodies: &[Value]) -> Vec<(bool, Option<String>)> {
    let mut answers = Vec::new();
    for body in bodies {
        let request: PaymentRequest = serde_json::from_value(body.clone()).unwrap();
        let answer = scheme.verify_response(&request).await.unwrap();
        answers.push((
            answer.is_valid,
            answer.invalid_reason.map(|r| r.as_str().to_owned()),
        ));
    }
    answers
}

fn verdicts(official: &[Value]) -> Vec<(bool, Option<String>)> {
    official
        .iter()
        .map(|answer| {
            assert!(
                answer.get("error").is_none(),
                "the official library threw: {answer}"
            );
            (
                answer["isValid"].as_bool().unwrap(),
                answer["invalidReason"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test]
async fn our_verify_gives_the_official_verdicts() {
    let chain = SolanaChain::start(&SolanaChainConfig {
        payers: 2,
        payer_funds: 1_000_000,
        seed: None,
    })
    .await
    .expect("the local Solana chain starts (npm install in tools/)");
    let state = chain.state();
    let fee_payer = Keypair::try_from_base58_string(&state.fee_payer_key).unwrap();
    let scheme = ExactSvmScheme::new(
        SolanaRpc::new(&state.rpc_url, Duration::from_secs(10)),
        FeePayers::new(vec![fee_payer]),
        VerifyLimits::default(),
    );
    let rpc = scheme.rpc();
    let price = DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS;
    let accepted = requirements(state, 1000);
    let valid = payload(state, rpc, &state.payer_keys[0], 1000, price).await;
    let with = |field: &str, value: Value| {
        let mut changed = accepted.clone();
        changed[field] = value;
        v2(&changed, &valid)
    };
    let stranger = Pubkey::new_unique().to_string();
    let mut unsigned = DecodedPayment::decode(&valid).unwrap();
    unsigned.transaction.signatures[1] = Default::default();
    let v1_requirements = json!({
        "scheme": "exact", "network": state.v1_network, "maxAmountRequired": "1000",
        "resource": "http://127.0.0.1/run", "description": "test", "mimeType": "application/json",
        "payTo": state.pay_to, "maxTimeoutSeconds": 60, "asset": state.mint,
        "extra": {"feePayer": state.fee_payer},
    });
    let v1_payload = payload(state, rpc, &state.payer_keys[1], 1000, price).await;
    let bodies = vec![
        v2(&accepted, &valid),
        with("asset", json!(stranger)),
        with("payTo", json!(stranger)),
        with("amount", json!("999")),
        v2(
            &accepted,
            &payload(state, rpc, &state.fee_payer_key, 1000, price).await,
        ),
        v2(
            &accepted,
            &payload(
                state,
                rpc,
                &state.payer_keys[0],
                1000,
                MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS + 1,
            )
            .await,
        ),
        v2(&accepted, &json!({"transaction": unsigned.to_base64()})),
        // More than the payer holds: only the chain can tell.
        v2(
            &requirements(state, 2_000_000),
            &payload(state, rpc, &state.payer_keys[1], 2_000_000, price).await,
        ),
        json!({
            "paymentPayload": {"x402Version": 1, "scheme": "exact", "network": state.v1_network, "payload": v1_payload},
            "paymentRequirements": v1_requirements,
        }),
    ];
    let theirs = verdicts(&official(state, &bodies));
    assert_eq!(ours(&scheme, &bodies).await, theirs);
    let expected: Vec<Option<&str>> = vec![
        None,
        Some("invalid_exact_svm_payload_mint_mismatch"),
        Some("invalid_exact_svm_payload_recipient_mismatch"),
        Some("invalid_exact_svm_payload_amount_mismatch"),
        Some("invalid_exact_svm_payload_transaction_fee_payer_transferring_funds"),
        Some(
            "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction_too_high",
        ),
        Some("invalid_exact_svm_payload_signature_invalid"),
        Some("invalid_exact_svm_transaction_simulation_failed"),
        None,
    ];
    assert_eq!(
        theirs.iter().map(|v| v.1.as_deref()).collect::<Vec<_>>(),
        expected
    );

    // The blockhash moves on: the payment that was valid is now refused by both alike.
    rpc.call("litesvm_expireBlockhash", json!([]))
        .await
        .unwrap();
    let stale = vec![v2(&accepted, &valid)];
    let theirs = verdicts(&official(state, &stale));
    assert_eq!(
        theirs,
        vec![(
            false,
            Some("invalid_exact_svm_transaction_simulation_failed".to_owned())
        )]
    );
    assert_eq!(ours(&scheme, &stale).await, theirs);
}
