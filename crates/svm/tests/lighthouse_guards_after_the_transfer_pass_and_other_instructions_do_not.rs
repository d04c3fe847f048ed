//! Our verify follows `@x402/svm` 2.27 on wallets that add instructions of their own (x402
//! issue #828): Phantom's Lighthouse guards after the transfer pass the local checks, even
//! when they name the fee payer's account (they only assert on it), up to the official
//! instruction count; any other program after the transfer is refused with the official
//! `…_unknown_<position>_instruction`; a Lighthouse guard *before* the transfer (the layout of
//! x402 PR #3318, not in 2.27) is refused as the official facilitator refuses it. See
//! docs/solana.md.

use serde_json::json;
use x402_proto::PaymentRequest;
use x402_svm::{
    AccountMeta, DEFAULT_COMPUTE_UNIT_LIMIT, DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS,
    ExactSvmPayload, Hash, Instruction, Keypair, LIGHTHOUSE_PROGRAM, PaymentTerms,
    PaymentTransaction, Pubkey, Signer, VerifyLimits, build_payment_with, check_payment,
    random_memo,
};

struct Parties {
    payer: Keypair,
    fee_payer: Pubkey,
    parts: PaymentTransaction,
}

fn parties() -> Parties {
    let payer = Keypair::new();
    let fee_payer = Keypair::new().pubkey();
    let parts = PaymentTransaction {
        fee_payer,
        mint: x402_svm::usdc_mint(x402_svm::SOLANA_DEVNET).unwrap(),
        token_program: x402_svm::TOKEN_PROGRAM,
        decimals: 6,
        pay_to: Pubkey::new_unique(),
        amount: 1000,
        recent_blockhash: Hash::new_from_array([7; 32]),
        memo: random_memo(),
        compute_unit_limit: DEFAULT_COMPUTE_UNIT_LIMIT,
        compute_unit_price: DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS,
    };
    Parties {
        payer,
        fee_payer,
        parts,
    }
}

/// A Lighthouse guard asserting on `account` (its data is opaque to verify).
fn guard(account: Pubkey) -> Instruction {
    Instruction {
        program_id: LIGHTHOUSE_PROGRAM,
        accounts: vec![AccountMeta::new_readonly(account, false)],
        data: vec![4, 0, 1, 2, 3],
    }
}

/// Verify's local checks on the payment with `before` and `after` added: `None` when it
/// passes, else the v2 reason code.
fn verdict(p: &Parties, before: &[Instruction], after: &[Instruction]) -> Option<String> {
    let transaction = build_payment_with(&p.payer, &p.parts, before, after).unwrap();
    let requirements = json!({
        "scheme": "exact", "network": x402_svm::SOLANA_DEVNET, "amount": "1000",
        "asset": p.parts.mint.to_string(), "payTo": p.parts.pay_to.to_string(),
        "maxTimeoutSeconds": 60, "extra": {"feePayer": p.fee_payer.to_string()},
    });
    let request: PaymentRequest = serde_json::from_value(json!({
        "paymentPayload": {"x402Version": 2, "accepted": requirements,
                           "payload": ExactSvmPayload::of(&transaction)},
        "paymentRequirements": requirements,
    }))
    .unwrap();
    match check_payment(
        &PaymentTerms::of(&request),
        &[p.fee_payer],
        &VerifyLimits::default(),
    ) {
        Ok(checked) => {
            assert_eq!(checked.payer, p.payer.pubkey());
            None
        }
        Err((error, _)) => Some(error.reason(2).as_str().to_owned()),
    }
}

#[test]
fn trailing_lighthouse_guards_pass_even_on_the_fee_payer() {
    let p = parties();
    assert_eq!(verdict(&p, &[], &[]), None);
    assert_eq!(verdict(&p, &[], &[guard(p.fee_payer)]), None);
    let three = [
        guard(p.fee_payer),
        guard(p.payer.pubkey()),
        guard(p.fee_payer),
    ];
    assert_eq!(
        verdict(&p, &[], &three),
        None,
        "memo + 3 guards: 7 instructions"
    );
    let four = [three.as_slice(), &[guard(p.fee_payer)]].concat();
    assert_eq!(
        verdict(&p, &[], &four).as_deref(),
        Some("invalid_exact_svm_payload_transaction_instructions_length"),
        "8 instructions are more than the official 7"
    );
}

#[test]
fn any_other_instruction_after_the_transfer_is_refused() {
    let p = parties();
    // A System transfer of the fee payer's lamports, riding behind the payment.
    let drain = Instruction {
        program_id: Pubkey::default(),
        accounts: vec![
            AccountMeta::new(p.fee_payer, true),
            AccountMeta::new(Pubkey::new_unique(), false),
        ],
        data: vec![2, 0, 0, 0, 0, 202, 154, 59, 0, 0, 0, 0],
    };
    assert_eq!(
        verdict(&p, &[], std::slice::from_ref(&drain)).as_deref(),
        Some("invalid_exact_svm_payload_unknown_fifth_instruction")
    );
    assert_eq!(
        verdict(&p, &[], &[guard(p.fee_payer), drain]).as_deref(),
        Some("invalid_exact_svm_payload_unknown_sixth_instruction")
    );
}

#[test]
fn a_lighthouse_guard_before_the_transfer_is_refused_as_in_2_27() {
    let p = parties();
    // Phantom's newer layout: guards, the transfer, the memo, a guard.
    let before = [guard(p.fee_payer), guard(p.payer.pubkey())];
    assert_eq!(
        verdict(&p, &before, &[guard(p.fee_payer)]).as_deref(),
        Some("invalid_exact_svm_payload_no_transfer_instruction")
    );
}
