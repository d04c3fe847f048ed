//! A `batch-settlement` voucher replayed after it paid gets the answer it bought again, never
//! a second charge; a voucher below the server's count (a client that lost track, or an
//! attacker replaying an old one) gets the corrective 402: the top-level error
//! `invalid_batch_settlement_evm_cumulative_amount_mismatch` and, in the paid offer's `extra`,
//! the server's `channelState` and the `voucherState` it holds, whose signature recovers to
//! the payer's key, so an official client can resync and pay on.

mod common;

use alloy::primitives::Bytes;
use common::batch::{PRICE, charged_cumulative, open};
use x402_evm::batch::recover_strict;

#[tokio::test]
async fn a_replay_gets_the_kept_answer_and_a_stale_voucher_the_corrective_402() {
    let shop = open(|server| server).await;
    let chain = shop.chain();
    let mut payer = shop.payer(0);
    shop.deposit(&mut payer, 200).await;
    let voucher = payer.voucher(chain, &shop.offer).await;
    let first = shop.pay(voucher.clone(), &[("x-used", "250")]).await;
    assert_eq!(first.status, 200);
    assert_eq!(charged_cumulative(&first), 450);
    let runs = shop.runs.load(std::sync::atomic::Ordering::SeqCst);

    // The same voucher again: the kept answer, charged nothing more, the handler not run.
    let replay = shop.pay(voucher.clone(), &[("x-used", "250")]).await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.body, first.body);
    assert_eq!(replay.receipt, first.receipt);
    assert_eq!(shop.record(&payer.id).await.unwrap().charged, 450);
    assert_eq!(shop.runs.load(std::sync::atomic::Ordering::SeqCst), runs);

    // Re-encoded (a new payment to the guard): the ceiling is below the server's count.
    let mut reencoded = voucher.clone();
    reencoded["extraField"] = serde_json::json!(1);
    // And a client that lost track signs from zero.
    let stale = payer.voucher_at(chain, PRICE).await;
    for payload in [reencoded, stale] {
        let answer = shop.pay(payload, &[("x-used", "250")]).await;
        assert_eq!(answer.status, 402, "{answer:?}");
        let challenge = answer.challenge.unwrap();
        assert_eq!(
            challenge.error.as_deref(),
            Some("invalid_batch_settlement_evm_cumulative_amount_mismatch")
        );
        let extra = challenge.accepts[0].extra.as_ref().unwrap();
        let state = &extra["channelState"];
        assert_eq!(state["chargedCumulativeAmount"], "450");
        assert_eq!(state["channelId"], payer.id.to_string());
        let voucher_state = &extra["voucherState"];
        // The voucher held is the one that paid last (ceiling 200 + 1000).
        assert_eq!(voucher_state["signedMaxClaimable"], "1200");
        let signature: Bytes = serde_json::from_value(voucher_state["signature"].clone()).unwrap();
        let digest = chain.batch_domain().voucher_digest(&payer.id, 1_200);
        assert_eq!(
            recover_strict(&signature, &digest),
            Some(payer.signer.address())
        );
    }
    assert_eq!(shop.record(&payer.id).await.unwrap().charged, 450);

    // The client adopts the server's count and pays on.
    payer.charged = 450;
    let next = payer.voucher(chain, &shop.offer).await;
    let answer = shop.pay(next, &[("x-used", "10")]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(charged_cumulative(&answer), 460);
}
