//! A `batch-settlement` voucher is charged only for an answer that is served: a handler that
//! fails (status ≥ 400) charges nothing and lets the channel go, so the same voucher then pays;
//! a handler reporting more than the payer signed for (above the request's price) is refused
//! with `invalid_batch_settlement_evm_charge_exceeds_signed_cumulative`, nothing charged, its
//! answer withheld, and the voucher still good.

mod common;

use common::batch::{PRICE, charged_amount, charged_cumulative, open};

#[tokio::test]
async fn a_failed_or_over_reporting_handler_charges_nothing() {
    let shop = open(|server| server).await;
    let chain = shop.chain();
    let mut payer = shop.payer(0);
    shop.deposit(&mut payer, 100).await;
    let voucher = payer.voucher(chain, &shop.offer).await;

    // The handler fails: its answer goes out, nothing is charged.
    let failed = shop
        .pay(voucher.clone(), &[("x-status", "500"), ("x-used", "700")])
        .await;
    assert_eq!(failed.status, 500);
    assert!(failed.receipt.is_none());
    let record = shop.record(&payer.id).await.unwrap();
    assert_eq!((record.charged, record.pending), (100, None));

    // Over-reported: above the signed ceiling, refused; the answer is not served.
    let over = (PRICE + 1).to_string();
    let refused = shop.pay(voucher.clone(), &[("x-used", &over)]).await;
    assert_eq!(refused.status, 402, "{refused:?}");
    assert!(!refused.body.contains("served"), "{}", refused.body);
    let receipt = refused.receipt.expect("the failed receipt");
    assert!(!receipt.success);
    assert_eq!(
        receipt.error_reason.unwrap().as_str(),
        "invalid_batch_settlement_evm_charge_exceeds_signed_cumulative"
    );
    let record = shop.record(&payer.id).await.unwrap();
    assert_eq!((record.charged, record.pending), (100, None));

    // The same voucher then pays for an answer within it.
    let answer = shop.pay(voucher, &[("x-used", "640")]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(charged_amount(&answer), 640);
    assert_eq!(charged_cumulative(&answer), 740);
    assert_eq!(shop.record(&payer.id).await.unwrap().charged, 740);
    // Three handler runs plus the deposit's; the facilitator only saw the deposit.
    assert_eq!(shop.runs.load(std::sync::atomic::Ordering::SeqCst), 4);
    assert_eq!(shop.facilitator.settles(), 1);
}
