//! For valid and refused Solana payments, our `/verify` over HTTP gives the same validity and
//! reason code as the official facilitator library (`@x402/svm` 2.27) on the same chain: wrong
//! mint, wrong destination, amount mismatch, the fee payer as the transfer's authority, a
//! too-high compute-unit price, a missing signature, a program other than Memo or Lighthouse
//! after the transfer, a Lighthouse guard before it, a v1 payment, and an expired blockhash.

use serde_json::{Value, json};
use x402_svm::{
    AccountMeta, DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS, DecodedPayment, Instruction,
    LIGHTHOUSE_PROGRAM, MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS, Pubkey,
};
use x402_testkit::{SolanaStack, official_svm_verify, solana_payload_with, solana_requirements};

fn v2(requirements: &Value, payload: &Value) -> Value {
    json!({
        "x402Version": 2,
        "paymentPayload": {"x402Version": 2, "accepted": requirements, "payload": payload},
        "paymentRequirements": requirements,
    })
}

async fn ours(stack: &SolanaStack, bodies: &[Value]) -> Vec<(bool, Option<String>)> {
    let mut verdicts = Vec::new();
    for body in bodies {
        let (status, answer) = stack.post("/verify", body).await;
        assert_eq!(status, 200, "{answer}");
        verdicts.push(x402_testkit::svm_verdict(&answer));
    }
    verdicts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_http_verify_gives_the_official_verdicts() {
    // A second mint is accepted, so that a wrong mint reaches the transfer check.
    let stranger_mint = Pubkey::new_unique().to_string();
    let stack = SolanaStack::start(
        2,
        &format!(
            "mints = [{:?}, {stranger_mint:?}]",
            x402_svm::usdc_mint(x402_svm::SOLANA_DEVNET)
                .unwrap()
                .to_string()
        ),
    )
    .await;
    let state = stack.state().clone();
    let rpc = &stack.rpc;
    let price = DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS;
    let payer = state.payer_keys[0].clone();
    let pay = |key: String,
               amount: u64,
               price: u64,
               before: Vec<Instruction>,
               after: Vec<Instruction>| {
        let state = state.clone();
        async move { solana_payload_with(&state, rpc, &key, amount, price, &before, &after).await }
    };
    let accepted = solana_requirements(&state, 1000);
    let valid = pay(payer.clone(), 1000, price, vec![], vec![]).await;
    let with = |field: &str, value: Value| {
        let mut changed = accepted.clone();
        changed[field] = value;
        v2(&changed, &valid)
    };
    let mut unsigned = DecodedPayment::decode(&valid).unwrap();
    unsigned.transaction.signatures[1] = Default::default();
    let fee_payer = x402_testkit::solana_address(&state.fee_payer);
    let guard = Instruction {
        program_id: LIGHTHOUSE_PROGRAM,
        accounts: vec![AccountMeta::new_readonly(fee_payer, false)],
        data: vec![4, 0, 1],
    };
    let drain = Instruction {
        program_id: Pubkey::default(),
        accounts: vec![
            AccountMeta::new(fee_payer, true),
            AccountMeta::new(Pubkey::new_unique(), false),
        ],
        data: vec![2, 0, 0, 0, 0, 202, 154, 59, 0, 0, 0, 0],
    };
    let v1_requirements = json!({
        "scheme": "exact", "network": state.v1_network, "maxAmountRequired": "1000",
        "resource": "http://127.0.0.1/run", "description": "test", "mimeType": "application/json",
        "payTo": state.pay_to, "maxTimeoutSeconds": 60, "asset": state.mint,
        "extra": {"feePayer": state.fee_payer},
    });
    let v1_payload = pay(state.payer_keys[1].clone(), 1000, price, vec![], vec![]).await;
    let bodies = vec![
        v2(&accepted, &valid),
        with("asset", json!(stranger_mint)),
        with("payTo", json!(Pubkey::new_unique().to_string())),
        with("amount", json!("999")),
        v2(
            &accepted,
            &pay(state.fee_payer_key.clone(), 1000, price, vec![], vec![]).await,
        ),
        v2(
            &accepted,
            &pay(
                payer.clone(),
                1000,
                MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS + 1,
                vec![],
                vec![],
            )
            .await,
        ),
        v2(&accepted, &json!({"transaction": unsigned.to_base64()})),
        v2(
            &accepted,
            &pay(payer.clone(), 1000, price, vec![], vec![drain]).await,
        ),
        v2(
            &accepted,
            &pay(payer.clone(), 1000, price, vec![guard.clone()], vec![guard]).await,
        ),
        json!({
            "x402Version": 1,
            "paymentPayload": {"x402Version": 1, "scheme": "exact", "network": state.v1_network, "payload": v1_payload},
            "paymentRequirements": v1_requirements,
        }),
    ];
    let theirs: Vec<_> = official_svm_verify(&state, &bodies)
        .await
        .iter()
        .map(x402_testkit::svm_verdict)
        .collect();
    assert_eq!(ours(&stack, &bodies).await, theirs);
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
        Some("invalid_exact_svm_payload_unknown_fifth_instruction"),
        Some("invalid_exact_svm_payload_no_transfer_instruction"),
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
    let theirs: Vec<_> = official_svm_verify(&state, &stale)
        .await
        .iter()
        .map(x402_testkit::svm_verdict)
        .collect();
    assert_eq!(
        theirs,
        vec![(
            false,
            Some("invalid_exact_svm_transaction_simulation_failed".to_owned())
        )]
    );
    assert_eq!(ours(&stack, &stale).await, theirs);
}
