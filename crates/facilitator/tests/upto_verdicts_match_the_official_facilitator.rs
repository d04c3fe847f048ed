//! For `upto` payments our `/verify` gives the same `isValid` and reason code as the official
//! facilitator library (2.27.0, `tools/interop/official-verify.mjs`, which registers `upto`) on
//! the same chain, witnessing the same facilitator address: a valid payment and one broken in
//! each way a payer or a middleman could break it, every one signed by the payer unless the
//! signature is the defect. One deliberate deviation: a permit whose nonce is spent (settled
//! already) is `permit2_invalid_nonce` for us, so a server can ask for the earlier receipt, where
//! the official library only says `permit2_simulation_failed`.

use alloy::primitives::{Address, address};
use serde_json::{Value, json};
use x402_evm::unix_now;
use x402_evm::upto::UptoEvmClient;
use x402_proto::{PaymentRequest, Scheme, TokenAmount, V2, v2};
use x402_testkit::{Stack, assert_same_verdict, official_verify};

/// The most the offer asks for, in atomic units.
const MAX: u128 = 1_000;
/// The `exact` Permit2 proxy: a real Permit2 spender, but not the `upto` one.
const EXACT_PERMIT2_PROXY: Address = address!("402085c248EeA27D92E8b30b2C58ed07f9E20001");

/// The `upto` offer of up to [`MAX`] on the stack's chain, naming its facilitator.
fn offer(stack: &Stack) -> v2::PaymentRequirements {
    let mut requirements = stack.chain.requirements(MAX);
    requirements.scheme = Scheme::UPTO;
    requirements.max_timeout_seconds = 300;
    let extra = requirements.extra.get_or_insert_with(|| json!({}));
    extra["assetTransferMethod"] = json!("permit2");
    extra["facilitatorAddress"] = json!(stack.chain.devnet.facilitator().address.to_checksum(None));
    requirements
}

/// Payer `payer`'s signed payload (as JSON) for `signed`, then edited by `edit`.
async fn payload(
    stack: &Stack,
    payer: usize,
    signed: &v2::PaymentRequirements,
    edit: impl FnOnce(&mut Value),
) -> Value {
    let signer = stack.chain.devnet.payers()[payer].signer.clone();
    let payment = UptoEvmClient::new(signer)
        .sign_upto(signed, unix_now())
        .await
        .unwrap();
    let mut value = serde_json::to_value(payment).unwrap();
    edit(&mut value);
    value
}

/// The verify request carrying `payload` against `requirements`.
fn request(payload: Value, requirements: &v2::PaymentRequirements) -> PaymentRequest {
    PaymentRequest::V2 {
        payload: v2::PaymentPayload {
            x402_version: V2::default(),
            resource: None,
            accepted: requirements.clone(),
            payload,
            extensions: None,
        },
        requirements: requirements.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upto_verdicts_match_the_official_facilitator() {
    let stack = Stack::start().await;
    let devnet = &stack.chain.devnet;
    // Payers 0 and 2 approved Permit2; payer 1 never did.
    for payer in [0, 2] {
        devnet
            .approve_permit2(&devnet.payers()[payer].signer)
            .await
            .unwrap();
    }
    let offer = offer(&stack);
    let with = |edit: fn(&mut v2::PaymentRequirements)| {
        let mut signed = offer.clone();
        edit(&mut signed);
        signed
    };
    // Another contract than the asset: the token Permit2 would move is not the one asked for.
    let other_token = devnet.wallet_factory().to_checksum(None);
    let payer_0 = devnet.payers()[0].address.to_checksum(None);

    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        ("valid", payload(&stack, 0, &offer, |_| {}).await, None),
        (
            "the exact proxy as spender",
            payload(&stack, 0, &offer, |p| {
                p["permit2Authorization"]["spender"] = json!(EXACT_PERMIT2_PROXY);
            })
            .await,
            Some("invalid_permit2_spender"),
        ),
        (
            "another payee in the witness",
            payload(
                &stack,
                0,
                &with(|r| r.pay_to = Address::repeat_byte(0x77).to_checksum(None)),
                |_| {},
            )
            .await,
            Some("invalid_permit2_recipient_mismatch"),
        ),
        (
            "another facilitator in the witness",
            payload(
                &stack,
                0,
                &with(|r| {
                    r.extra.as_mut().unwrap()["facilitatorAddress"] =
                        json!(Address::repeat_byte(0x77));
                }),
                |_| {},
            )
            .await,
            Some("upto_facilitator_mismatch"),
        ),
        (
            "a deadline closer than six seconds",
            payload(&stack, 0, &with(|r| r.max_timeout_seconds = 3), |_| {}).await,
            Some("permit2_deadline_expired"),
        ),
        (
            "valid only from tomorrow",
            payload(&stack, 0, &offer, |p| {
                p["permit2Authorization"]["witness"]["validAfter"] =
                    json!((unix_now() + 86_400).to_string());
            })
            .await,
            Some("permit2_not_yet_valid"),
        ),
        (
            "more than the maximum",
            payload(
                &stack,
                0,
                &with(|r| r.amount = TokenAmount::from_atomic(MAX + 1)),
                |_| {},
            )
            .await,
            Some("permit2_amount_mismatch"),
        ),
        (
            "another token",
            payload(&stack, 0, &offer, |p| {
                p["permit2Authorization"]["permitted"]["token"] = json!(other_token);
            })
            .await,
            Some("permit2_token_mismatch"),
        ),
        (
            "signed by someone else",
            payload(&stack, 2, &offer, |p| {
                p["permit2Authorization"]["from"] = json!(payer_0);
            })
            .await,
            Some("invalid_permit2_signature"),
        ),
        (
            "no Permit2 allowance",
            payload(&stack, 1, &offer, |_| {}).await,
            Some("permit2_allowance_required"),
        ),
    ];

    let requests: Vec<PaymentRequest> = cases
        .iter()
        .map(|(_, payload, _)| request(payload.clone(), &offer))
        .collect();
    let official = official_verify(devnet, &requests.iter().collect::<Vec<_>>(), &[]).await;
    for (((name, _, reason), request), theirs) in cases.iter().zip(&requests).zip(&official) {
        let (status, ours) = stack.verify(request).await;
        assert_eq!(status, 200, "{name}: {ours}");
        assert_eq!(ours["isValid"], reason.is_none(), "{name}: ours {ours}");
        assert_eq!(ours["invalidReason"], json!(reason), "{name}: ours {ours}");
        assert_same_verdict(name, &ours, theirs);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_nonce_is_named_where_the_official_library_says_the_simulation_failed() {
    let stack = Stack::start().await;
    let devnet = &stack.chain.devnet;
    devnet
        .approve_permit2(&devnet.payers()[0].signer)
        .await
        .unwrap();
    let offer = offer(&stack);
    let spent = request(payload(&stack, 0, &offer, |_| {}).await, &offer);
    let (_, settled) = stack.settle(&spent).await;
    assert_eq!(settled["success"], true, "{settled}");

    let official = official_verify(devnet, &[&spent], &[]).await;
    let (_, ours) = stack.verify(&spent).await;
    assert_eq!(
        (&ours["isValid"], &ours["invalidReason"]),
        (&json!(false), &json!("permit2_invalid_nonce")),
        "{ours}"
    );
    assert_eq!(
        (&official[0]["isValid"], &official[0]["invalidReason"]),
        (&json!(false), &json!("permit2_simulation_failed")),
        "{}",
        official[0]
    );
}
