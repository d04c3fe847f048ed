//! A `batch-settlement` refund request (a zero-charge voucher at what was charged) buys no
//! handler run: the server claims what it charged and refunds the rest on chain through the
//! facilitator, answers `{"message":"Refund acknowledged","channelId"}` with the receipt, and
//! forgets the channel once nothing is left in it.

mod common;

use alloy::primitives::U256;
use common::batch::{DEPOSIT, charged_cumulative, open};
use serde_json::Value;
use std::sync::atomic::Ordering;

#[tokio::test]
async fn a_refund_returns_the_rest_and_forgets_the_channel() {
    let shop = open(|server| server).await;
    let chain = shop.chain();
    let mut payer = shop.payer(0);
    shop.deposit(&mut payer, 400).await;
    let voucher = payer.voucher(chain, &shop.offer).await;
    let paid = shop.pay(voucher, &[("x-used", "350")]).await;
    payer.charged = charged_cumulative(&paid);
    assert_eq!(payer.charged, 750);

    let runs = shop.runs.load(Ordering::SeqCst);
    let before = chain.balance(payer.signer.address()).await;
    let refund = payer.refund(chain, None).await;
    let answer = shop.pay(refund, &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["message"], "Refund acknowledged");
    assert_eq!(body["channelId"], payer.id.to_string());
    assert_eq!(shop.runs.load(Ordering::SeqCst), runs, "the handler ran");
    let receipt = answer.receipt.unwrap();
    assert!(receipt.success);
    assert!(receipt.transaction.starts_with("0x"));
    let left = DEPOSIT - 750;
    assert_eq!(receipt.amount.unwrap().0, U256::from(left));
    assert_eq!(
        receipt.extra.unwrap()["channelState"]["chargedCumulativeAmount"],
        "750"
    );
    assert_eq!(
        chain.balance(payer.signer.address()).await,
        before + U256::from(left)
    );
    // The server's record is gone: the claim of 750 went with the refund.
    assert!(shop.record(&payer.id).await.is_none());
}
