//! For `batch-settlement` payments our `/verify` gives the same `isValid` and reason code as the
//! official facilitator library (2.27.0, `tools/interop/official-verify.mjs`, which registers
//! `batch-settlement` with the same receiver authorizer) on the same chain: a valid voucher and
//! the broken ones issue 13 names (a ceiling raised past what the payer signed, a wrong channel
//! id, a ceiling above the balance, another signer), a refund's zero-charge voucher, and a valid
//! deposit, on a channel funded through our facilitator; and Permit2 deposits (valid, another
//! spender, a witness naming another channel, an expired deadline, no allowance of Permit2).

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};
use x402_testkit::{Chain, Stack, assert_same_verdict, official_verify, request_paying};

const PRICE: u128 = 1_000;
const DEPOSIT: u128 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_verdicts_match_the_official_facilitator() {
    let authorizer = PrivateKeySigner::random();
    let stack = Stack::with_receiver_authorizer(Chain::start().await, &authorizer).await;
    let chain = &stack.chain;
    let offer = chain.batch_offer(PRICE, authorizer.address());
    let payer = chain.devnet.payers()[0].signer.clone();
    let other = chain.devnet.payers()[1].signer.clone();
    let (config, _) = chain.batch_channel(&offer, &payer, B256::ZERO);
    let (other_config, _) = chain.batch_channel(&offer, &other, B256::ZERO);

    // Fund the payer's channel through our facilitator.
    let funding = chain
        .batch_deposit(&offer, &payer, &config, DEPOSIT, PRICE)
        .await;
    let (_, funded) = stack.settle(&request_paying(funding, &offer)).await;
    assert_eq!(funded["success"], true, "{funded}");

    let valid = chain.batch_voucher(&payer, &config, 2 * PRICE).await;
    let edited = |edit: &dyn Fn(&mut Value)| {
        let mut payload = valid.clone();
        edit(&mut payload);
        payload
    };
    let mut forged = chain.batch_voucher(&other, &config, 2 * PRICE).await;
    forged["channelConfig"] = json!(config);
    let mut refund = chain.batch_voucher(&payer, &config, PRICE).await;
    refund["type"] = json!("refund");
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        ("a valid voucher", valid.clone(), None),
        (
            "a ceiling raised past what the payer signed",
            edited(&|p| p["voucher"]["maxClaimableAmount"] = json!((3 * PRICE).to_string())),
            Some("invalid_batch_settlement_evm_voucher_signature"),
        ),
        (
            "a wrong channel id",
            edited(&|p| p["voucher"]["channelId"] = json!(B256::repeat_byte(7).to_string())),
            Some("invalid_batch_settlement_evm_channel_id_mismatch"),
        ),
        (
            "a ceiling above the balance",
            chain.batch_voucher(&payer, &config, DEPOSIT + 1).await,
            Some("invalid_batch_settlement_evm_cumulative_exceeds_balance"),
        ),
        (
            "another signer",
            forged,
            Some("invalid_batch_settlement_evm_voucher_signature"),
        ),
        (
            "a voucher on a channel nobody funded",
            chain.batch_voucher(&other, &other_config, PRICE).await,
            Some("invalid_batch_settlement_evm_channel_not_found"),
        ),
        ("a refund's zero-charge voucher", refund, None),
        (
            "a valid deposit",
            chain
                .batch_deposit(&offer, &other, &other_config, DEPOSIT, PRICE)
                .await,
            None,
        ),
    ];
    let requests: Vec<_> = cases
        .iter()
        .map(|(_, payload, _)| request_paying(payload.clone(), &offer))
        .collect();
    let env = [(
        "RECEIVER_AUTHORIZER_PRIVATE_KEY",
        authorizer.to_bytes().to_string(),
    )];
    let theirs = official_verify(&chain.devnet, &requests.iter().collect::<Vec<_>>(), &env).await;
    for (((name, _, expected), request), theirs) in cases.iter().zip(&requests).zip(&theirs) {
        let (status, ours) = stack.verify(request).await;
        assert_eq!(status, 200, "{name}: {ours}");
        assert_same_verdict(name, &ours, theirs);
        match expected {
            None => assert_eq!(ours["isValid"], true, "{name}: {ours}"),
            Some(reason) => assert_eq!(ours["invalidReason"], *reason, "{name}: {ours}"),
        }
        if ours["isValid"] == true {
            // The channel's state on chain, as the official library reports it.
            assert_eq!(ours["extra"], theirs["extra"], "{name}");
        }
    }
}

/// Permit2 deposits: our verdicts and the official library's for a valid one and the broken
/// ones issue 14 names (another spender, a witness naming another channel, an expired
/// deadline, a payer who never approved Permit2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permit2_deposit_verdicts_match_the_official_facilitator() {
    let authorizer = PrivateKeySigner::random();
    let stack = Stack::with_receiver_authorizer(Chain::start().await, &authorizer).await;
    let chain = &stack.chain;
    let offer = chain.batch_permit2_offer(PRICE, authorizer.address());
    let approved = chain.devnet.payers()[0].signer.clone();
    let unapproved = chain.devnet.payers()[1].signer.clone();
    chain.devnet.approve_permit2(&approved).await.unwrap();
    let (config, _) = chain.batch_channel(&offer, &approved, B256::ZERO);
    let (unapproved_config, _) = chain.batch_channel(&offer, &unapproved, B256::ZERO);

    let valid = chain
        .batch_permit2_deposit(&offer, &approved, &config, DEPOSIT, PRICE)
        .await;
    let edited = |edit: &dyn Fn(&mut Value)| {
        let mut payload = valid.clone();
        edit(&mut payload["deposit"]["authorization"]["permit2Authorization"]);
        payload
    };
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        ("a valid Permit2 deposit", valid.clone(), None),
        (
            "another spender",
            edited(&|permit| permit["spender"] = json!(Address::repeat_byte(0x44))),
            Some("invalid_batch_settlement_evm_permit2_invalid_spender"),
        ),
        (
            "a witness naming another channel",
            edited(&|permit| {
                permit["witness"]["channelId"] = json!(B256::repeat_byte(7).to_string())
            }),
            Some("invalid_batch_settlement_evm_channel_id_mismatch"),
        ),
        (
            "an expired deadline",
            edited(&|permit| permit["deadline"] = json!((x402_evm::unix_now() - 60).to_string())),
            Some("invalid_batch_settlement_evm_permit2_deadline_expired"),
        ),
        (
            "a payer who never approved Permit2",
            chain
                .batch_permit2_deposit(&offer, &unapproved, &unapproved_config, DEPOSIT, PRICE)
                .await,
            Some("invalid_batch_settlement_evm_permit2_allowance_required"),
        ),
        (
            "a permit signed for another amount",
            edited(&|permit| permit["permitted"]["amount"] = json!((DEPOSIT + 1).to_string())),
            Some("invalid_batch_settlement_evm_permit2_amount_mismatch"),
        ),
        (
            "a tampered nonce",
            edited(&|permit| permit["nonce"] = json!("12345")),
            Some("invalid_batch_settlement_evm_permit2_invalid_signature"),
        ),
    ];
    let requests: Vec<_> = cases
        .iter()
        .map(|(_, payload, _)| request_paying(payload.clone(), &offer))
        .collect();
    let env = [(
        "RECEIVER_AUTHORIZER_PRIVATE_KEY",
        authorizer.to_bytes().to_string(),
    )];
    let theirs = official_verify(&chain.devnet, &requests.iter().collect::<Vec<_>>(), &env).await;
    for (((name, _, expected), request), theirs) in cases.iter().zip(&requests).zip(&theirs) {
        let (status, ours) = stack.verify(request).await;
        assert_eq!(status, 200, "{name}: {ours}");
        assert_same_verdict(name, &ours, theirs);
        match expected {
            None => assert_eq!(ours["isValid"], true, "{name}: {ours}"),
            Some(reason) => assert_eq!(ours["invalidReason"], *reason, "{name}: {ours}"),
        }
        if ours["isValid"] == true {
            assert_eq!(ours["extra"], theirs["extra"], "{name}");
        }
    }
}
