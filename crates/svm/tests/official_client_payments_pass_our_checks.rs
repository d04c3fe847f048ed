//! Payments made by the official `@x402/svm` 2.27 client on the local chain
//! (`testdata/svm/official-exact.json`, from `tools/interop/svm-golden.mjs`) decode and pass
//! our local checks with the payer it names; our builder makes the same bytes from the same
//! inputs; and each altered payment is refused with the official facilitator's reason code.

use serde_json::{Value, json};
use x402_proto::{PaymentRequest, ReasonCode, v1, v2};
use x402_svm::{
    DecodedPayment, ExactSvmPayload, Keypair, PaymentTerms, PaymentTransaction, Pubkey, Signer,
    TOKEN_PROGRAM, VerifyLimits, build_payment, check_payment,
};

fn golden() -> Value {
    serde_json::from_str(include_str!("../../../testdata/svm/official-exact.json")).unwrap()
}

fn key(text: &Value) -> Keypair {
    Keypair::try_from_base58_string(text.as_str().unwrap()).unwrap()
}

fn address(text: &Value) -> Pubkey {
    text.as_str().unwrap().parse().unwrap()
}

/// A v2 request paying `payload` against `requirements`.
fn v2_request(requirements: &Value, payload: &Value) -> PaymentRequest {
    let requirements: v2::PaymentRequirements =
        serde_json::from_value(requirements.clone()).unwrap();
    let payload: v2::PaymentPayload = serde_json::from_value(json!({
        "x402Version": 2,
        "accepted": requirements,
        "payload": payload,
    }))
    .unwrap();
    PaymentRequest::V2 {
        payload,
        requirements,
    }
}

fn fee_payers(golden: &Value) -> Vec<Pubkey> {
    vec![address(&golden["chain"]["feePayer"])]
}

fn check(golden: &Value, request: &PaymentRequest) -> Result<Pubkey, (ReasonCode, Option<Pubkey>)> {
    check_payment(
        &PaymentTerms::of(request),
        &fee_payers(golden),
        &VerifyLimits::default(),
    )
    .map(|checked| checked.payer)
    .map_err(|(error, payer)| (error.reason(request.version()), payer))
}

fn reason(golden: &Value, request: &PaymentRequest) -> String {
    check(golden, request).unwrap_err().0.as_str().to_owned()
}

#[test]
fn the_official_v2_and_v1_payments_pass_with_their_payer() {
    let golden = golden();
    let payer = address(&golden["chain"]["payer"]);
    for case in ["v2Memo", "v2Random"] {
        let request = v2_request(&golden[case]["requirements"], &golden[case]["payload"]);
        assert_eq!(check(&golden, &request), Ok(payer), "{case}");
    }
    let request = PaymentRequest::V1 {
        payload: serde_json::from_value::<v1::PaymentPayload>(golden["v1"]["payload"].clone())
            .unwrap(),
        requirements: serde_json::from_value(golden["v1"]["requirements"].clone()).unwrap(),
    };
    assert_eq!(check(&golden, &request), Ok(payer));
}

/// The inputs of the official memo payment, for our builder.
fn parts_of(golden: &Value) -> PaymentTransaction {
    let chain = &golden["chain"];
    let decoded = DecodedPayment::decode(&golden["v2Memo"]["payload"]).unwrap();
    PaymentTransaction {
        fee_payer: address(&chain["feePayer"]),
        mint: address(&chain["mint"]),
        token_program: address(&chain["tokenProgram"]),
        decimals: chain["decimals"].as_u64().unwrap() as u8,
        pay_to: address(&chain["payTo"]),
        amount: 1000,
        recent_blockhash: decoded.transaction.message.recent_blockhash().clone(),
        memo: b"order-42".to_vec(),
        compute_unit_limit: x402_svm::DEFAULT_COMPUTE_UNIT_LIMIT,
        compute_unit_price: x402_svm::DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS,
    }
}

fn payload_of(payer: &Keypair, parts: &PaymentTransaction) -> Value {
    serde_json::to_value(ExactSvmPayload::of(&build_payment(payer, parts).unwrap())).unwrap()
}

#[test]
fn our_builder_makes_the_official_clients_bytes() {
    let golden = golden();
    let payer = key(&golden["chain"]["payerKey"]);
    let ours = payload_of(&payer, &parts_of(&golden));
    assert_eq!(ours, golden["v2Memo"]["payload"]);
    assert_eq!(parts_of(&golden).token_program, TOKEN_PROGRAM);
}

#[test]
fn altered_payments_get_the_official_reason_codes() {
    let golden = golden();
    let requirements = &golden["v2Memo"]["requirements"];
    let payload = &golden["v2Memo"]["payload"];
    let with = |field: &str, value: Value| {
        let mut changed = requirements.clone();
        changed[field] = value;
        v2_request(&changed, payload)
    };
    let other = Pubkey::new_unique().to_string();

    assert_eq!(
        reason(&golden, &with("asset", json!(other))),
        "invalid_exact_svm_payload_mint_mismatch"
    );
    assert_eq!(
        reason(&golden, &with("payTo", json!(other))),
        "invalid_exact_svm_payload_recipient_mismatch"
    );
    assert_eq!(
        reason(&golden, &with("payTo", json!("not an address"))),
        "invalid_exact_svm_payload_recipient_mismatch"
    );
    assert_eq!(
        reason(&golden, &with("amount", json!("999"))),
        "invalid_exact_svm_payload_amount_mismatch"
    );
    assert_eq!(
        reason(&golden, &with("scheme", json!("upto"))),
        "invalid_exact_svm_unsupported_scheme"
    );
    let mut extra = requirements["extra"].clone();
    extra["memo"] = json!("order-43");
    assert_eq!(
        reason(&golden, &with("extra", extra.clone())),
        "invalid_exact_svm_payload_memo_mismatch"
    );
    extra["feePayer"] = json!(other);
    assert_eq!(
        reason(&golden, &with("extra", extra)),
        "invalid_exact_svm_fee_payer_not_managed_by_facilitator"
    );
    assert_eq!(
        reason(&golden, &with("extra", json!({}))),
        "invalid_exact_svm_payload_missing_fee_payer"
    );

    // The client's signature, tampered with or left out.
    let mut decoded = DecodedPayment::decode(payload).unwrap();
    decoded.transaction.signatures[1] = Default::default();
    let unsigned = json!({"transaction": decoded.to_base64()});
    assert_eq!(
        reason(&golden, &v2_request(requirements, &unsigned)),
        "invalid_exact_svm_payload_signature_invalid"
    );
    let mut bytes: [u8; 64] = DecodedPayment::decode(payload)
        .unwrap()
        .transaction
        .signatures[1]
        .into();
    bytes[5] ^= 1;
    let mut decoded = DecodedPayment::decode(payload).unwrap();
    decoded.transaction.signatures[1] = bytes.into();
    let tampered = json!({"transaction": decoded.to_base64()});
    assert_eq!(
        reason(&golden, &v2_request(requirements, &tampered)),
        "invalid_exact_svm_payload_signature_invalid"
    );
    assert_eq!(
        reason(
            &golden,
            &v2_request(requirements, &json!({"transaction": "bm90IGEgdHg="}))
        ),
        "invalid_exact_svm_payload_transaction_could_not_be_decoded"
    );
}

#[test]
fn a_fee_payer_as_authority_and_a_costly_compute_price_are_refused() {
    let golden = golden();
    let requirements = &golden["v2Memo"]["requirements"];
    let fee_payer = key(&golden["chain"]["feePayerKey"]);
    let mut parts = parts_of(&golden);
    // The fee payer signs its own transfer: account 0 is both.
    let request = v2_request(requirements, &payload_of(&fee_payer, &parts));
    assert_eq!(
        check(&golden, &request).unwrap_err(),
        (
            ReasonCode::new("invalid_exact_svm_payload_transaction_fee_payer_transferring_funds"),
            Some(fee_payer.pubkey())
        )
    );

    let payer = key(&golden["chain"]["payerKey"]);
    parts.compute_unit_price = x402_svm::MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS + 1;
    let request = v2_request(requirements, &payload_of(&payer, &parts));
    assert_eq!(
        reason(&golden, &request),
        "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction_too_high"
    );
    parts.compute_unit_price = x402_svm::MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS;
    let request = v2_request(requirements, &payload_of(&payer, &parts));
    assert_eq!(check(&golden, &request), Ok(payer.pubkey()));

    // A transaction for another fee payer is refused before its instructions are read.
    parts.fee_payer = Pubkey::new_unique();
    let request = v2_request(requirements, &payload_of(&payer, &parts));
    assert_eq!(
        reason(&golden, &request),
        "invalid_exact_svm_fee_payer_mismatch"
    );
}
