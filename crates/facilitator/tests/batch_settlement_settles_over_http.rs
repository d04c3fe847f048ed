//! Our facilitator serves `batch-settlement` over HTTP on a real chain: a deposit (signed with
//! the core's ERC-3009 deposit and voucher signing) verifies and settles once, however often
//! and however concurrently it is settled, and across a restart; vouchers verify against the escrow and are refused with the official reason
//! codes; one claim of several channels' vouchers and one settle pay the receiver exactly what
//! was claimed; refunds return the rest to the payers.

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};
use x402_evm::batch::{BATCH_SETTLEMENT_ADDRESS, ChannelConfig};
use x402_testkit::{Chain, Stack, request_paying};

const PRICE: u128 = 1_000;
const DEPOSIT: u128 = 10_000;

/// The token balances of the payers, the escrow and the receiver.
async fn balances(stack: &Stack, payers: &[Address]) -> Vec<U256> {
    let chain = &stack.chain;
    let mut owners = payers.to_vec();
    owners.extend([BATCH_SETTLEMENT_ADDRESS, chain.devnet.pay_to().address]);
    let mut held = Vec::new();
    for owner in owners {
        held.push(chain.balance(owner).await);
    }
    held
}

/// A claim row for `payer`'s voucher of `ceiling` on `config`, claiming `claimed` in all.
async fn claim_row(
    chain: &Chain,
    payer: &PrivateKeySigner,
    config: &ChannelConfig,
    ceiling: u128,
    claimed: u128,
) -> Value {
    let voucher = chain.batch_voucher(payer, config, ceiling).await;
    json!({
        "voucher": {"channel": config, "maxClaimableAmount": ceiling.to_string()},
        "signature": voucher["voucher"]["signature"],
        "totalClaimed": claimed.to_string(),
    })
}

fn amount(answer: &Value) -> u128 {
    answer["amount"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn channels_are_funded_paid_claimed_settled_and_refunded_over_http() {
    let authorizer = PrivateKeySigner::random();
    let mut stack = Stack::with_receiver_authorizer(Chain::start().await, &authorizer).await;
    let chain = &stack.chain;

    // /supported names the receiver authorizer servers may delegate to.
    let (status, supported) = stack.get("/supported").await;
    assert_eq!(status, 200);
    let supported: Value = serde_json::from_str(&supported).unwrap();
    let kind = supported["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|kind| kind["scheme"] == "batch-settlement")
        .expect("batch-settlement is served");
    assert_eq!(
        kind["extra"]["receiverAuthorizer"],
        authorizer.address().to_checksum(None)
    );

    let offer = chain.batch_offer(PRICE, authorizer.address());
    let payers = [
        chain.devnet.payers()[0].signer.clone(),
        chain.devnet.payers()[1].signer.clone(),
    ];
    let payer_addresses: Vec<Address> = payers.iter().map(|p| p.address()).collect();
    let (config_a, id_a) = chain.batch_channel(&offer, &payers[0], B256::ZERO);
    let (config_b, _) = chain.batch_channel(&offer, &payers[1], B256::ZERO);

    // A voucher on a channel nobody funded is refused.
    let unfunded = request_paying(
        chain.batch_voucher(&payers[0], &config_a, PRICE).await,
        &offer,
    );
    let (_, answer) = stack.verify(&unfunded).await;
    assert_eq!(
        answer["invalidReason"],
        "invalid_batch_settlement_evm_channel_not_found"
    );

    // The deposit verifies, reporting the channel as it is before it.
    let deposit = chain
        .batch_deposit(&offer, &payers[0], &config_a, DEPOSIT, PRICE)
        .await;
    let deposit = request_paying(deposit, &offer);
    let (status, verified) = stack.verify(&deposit).await;
    assert_eq!(status, 200);
    assert_eq!(verified["isValid"], true, "{verified}");
    assert_eq!(verified["extra"]["channelId"], id_a.to_string());
    assert_eq!(verified["extra"]["balance"], "0");
    assert_eq!(verified["extra"]["withdrawRequestedAt"], 0);

    // It settles once however many ask at once: the payer pays the deposit into the escrow,
    // in one transaction, and every caller is answered for it.
    let before = balances(&stack, &payer_addresses).await;
    let sent = chain.facilitator_tx_count().await;
    let answers = stack.settle_concurrently(&deposit, 3, None).await;
    let (status, settled) = answers[0].clone();
    assert_eq!(status, 200);
    assert_eq!(settled["success"], true, "{settled}");
    for (_, answer) in &answers {
        assert_eq!(answer["transaction"], settled["transaction"], "{answer}");
    }
    assert_eq!(amount(&settled), DEPOSIT);
    assert_eq!(
        settled["extra"]["channelState"]["balance"],
        DEPOSIT.to_string()
    );
    let after = balances(&stack, &payer_addresses).await;
    assert_eq!(after[0], before[0] - U256::from(DEPOSIT));
    assert_eq!(after[2], before[2] + U256::from(DEPOSIT));
    // Settling it again, even after a restart, sends nothing and answers for the same
    // transaction (the send is in the settlement log).
    stack.restart().await;
    let chain = &stack.chain;
    let (_, again) = stack.settle(&deposit).await;
    assert_eq!(again["success"], true, "{again}");
    assert_eq!(again["transaction"], settled["transaction"]);
    assert_eq!(again["extra"], settled["extra"]);
    assert_eq!(chain.facilitator_tx_count().await, sent + 1);
    assert_eq!(balances(&stack, &payer_addresses).await, after);

    // Vouchers on the funded channel: valid up to its balance, refused past it, refused when
    // tampered with, signed by someone else, or for another channel.
    let voucher = chain.batch_voucher(&payers[0], &config_a, 3 * PRICE).await;
    let (_, answer) = stack.verify(&request_paying(voucher.clone(), &offer)).await;
    assert_eq!(answer["isValid"], true, "{answer}");
    assert_eq!(answer["extra"]["balance"], DEPOSIT.to_string());
    let refusals = [
        (
            chain
                .batch_voucher(&payers[0], &config_a, DEPOSIT + 1)
                .await,
            "invalid_batch_settlement_evm_cumulative_exceeds_balance",
        ),
        (
            {
                // A ceiling raised past what the payer signed.
                let mut over = voucher.clone();
                over["voucher"]["maxClaimableAmount"] = json!((4 * PRICE).to_string());
                over
            },
            "invalid_batch_settlement_evm_voucher_signature",
        ),
        (
            {
                let mut forged = chain.batch_voucher(&payers[1], &config_a, 3 * PRICE).await;
                forged["channelConfig"] = json!(config_a);
                forged
            },
            "invalid_batch_settlement_evm_voucher_signature",
        ),
        (
            {
                let mut elsewhere = voucher.clone();
                elsewhere["voucher"]["channelId"] = json!(B256::repeat_byte(9).to_string());
                elsewhere
            },
            "invalid_batch_settlement_evm_channel_id_mismatch",
        ),
    ];
    for (payload, reason) in refusals {
        let (status, answer) = stack.verify(&request_paying(payload, &offer)).await;
        assert_eq!(status, 200);
        assert_eq!(answer["isValid"], false, "{answer}");
        assert_eq!(answer["invalidReason"], reason, "{answer}");
    }

    // A second payer funds a second channel.
    let deposit_b = chain
        .batch_deposit(&offer, &payers[1], &config_b, DEPOSIT, PRICE)
        .await;
    let (_, settled_b) = stack.settle(&request_paying(deposit_b, &offer)).await;
    assert_eq!(settled_b["success"], true, "{settled_b}");

    // One claim of both channels' vouchers (signed by the facilitator as the receiver
    // authorizer) and one settle pay the receiver exactly what was claimed.
    let (claimed_a, claimed_b) = (3 * PRICE, 2 * PRICE);
    let claims = json!({
        "type": "claim",
        "claims": [
            claim_row(chain, &payers[0], &config_a, 3 * PRICE, claimed_a).await,
            claim_row(chain, &payers[1], &config_b, 2 * PRICE, claimed_b).await,
        ],
    });
    let before = balances(&stack, &payer_addresses).await;
    let sent = chain.facilitator_tx_count().await;
    let (_, claimed) = stack.settle(&chain.batch_settle_request(claims)).await;
    assert_eq!(claimed["success"], true, "{claimed}");
    let receiver = chain.devnet.pay_to().address;
    let token = chain.devnet.token().address;
    let settle = json!({"type": "settle", "receiver": receiver, "token": token});
    let (_, paid) = stack
        .settle(&chain.batch_settle_request(settle.clone()))
        .await;
    assert_eq!(paid["success"], true, "{paid}");
    assert_eq!(amount(&paid), claimed_a + claimed_b);
    assert_eq!(chain.facilitator_tx_count().await, sent + 2);
    let after = balances(&stack, &payer_addresses).await;
    assert_eq!(after[3], before[3] + U256::from(claimed_a + claimed_b));
    assert_eq!(after[2], before[2] - U256::from(claimed_a + claimed_b));
    // Settling again with nothing claimed since answers for the settle sent (nothing moves),
    // and a voucher at what was claimed is now below it.
    let (_, again) = stack.settle(&chain.batch_settle_request(settle)).await;
    assert_eq!(
        (&again["success"], &again["transaction"]),
        (&paid["success"], &paid["transaction"]),
        "{again}"
    );
    assert_eq!(chain.facilitator_tx_count().await, sent + 2);
    let stale = chain.batch_voucher(&payers[0], &config_a, claimed_a).await;
    let (_, answer) = stack.verify(&request_paying(stale, &offer)).await;
    assert_eq!(
        answer["invalidReason"],
        "invalid_batch_settlement_evm_cumulative_below_claimed"
    );

    // Refunds: channel A's rest goes back to its payer; channel B claims one more request
    // and refunds the rest in the same transaction (multicall).
    let refund_a = json!({
        "type": "refund",
        "channelConfig": config_a,
        "voucher": chain.batch_voucher(&payers[0], &config_a, claimed_a).await["voucher"],
        "amount": (DEPOSIT - claimed_a).to_string(),
        "refundNonce": "0",
        "claims": [],
    });
    let before = balances(&stack, &payer_addresses).await;
    let (_, refunded) = stack.settle(&chain.batch_settle_request(refund_a)).await;
    assert_eq!(refunded["success"], true, "{refunded}");
    assert_eq!(amount(&refunded), DEPOSIT - claimed_a);
    assert_eq!(
        refunded["extra"]["channelState"]["balance"],
        claimed_a.to_string()
    );
    assert_eq!(refunded["extra"]["channelState"]["refundNonce"], "1");
    let after = balances(&stack, &payer_addresses).await;
    assert_eq!(after[0], before[0] + U256::from(DEPOSIT - claimed_a));

    let last_b = 3 * PRICE;
    let refund_b = json!({
        "type": "refund",
        "channelConfig": config_b,
        "voucher": chain.batch_voucher(&payers[1], &config_b, last_b).await["voucher"],
        "amount": DEPOSIT.to_string(),
        "refundNonce": "0",
        "claims": [claim_row(chain, &payers[1], &config_b, last_b, last_b).await],
    });
    let (_, refunded_b) = stack.settle(&chain.batch_settle_request(refund_b)).await;
    assert_eq!(refunded_b["success"], true, "{refunded_b}");
    assert_eq!(amount(&refunded_b), DEPOSIT - last_b);
    assert_eq!(
        refunded_b["extra"]["channelState"]["totalClaimed"],
        last_b.to_string()
    );
    let end = balances(&stack, &payer_addresses).await;
    assert_eq!(end[1], after[1] + U256::from(DEPOSIT - last_b));
    // The escrow holds exactly what was claimed and not yet settled: channel B's last request.
    assert_eq!(end[2], after[2] - U256::from(DEPOSIT - last_b));
    assert_eq!(end[2], U256::from(last_b - claimed_b));
}
