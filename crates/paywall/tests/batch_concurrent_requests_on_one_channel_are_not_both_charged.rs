//! Two requests at once on one `batch-settlement` channel, each carrying a voucher for the
//! same ceiling (the second one's payload re-encoded, so the paywall's one-payment guard does
//! not see one payment): the channel is reserved by one, the other is refused
//! `invalid_batch_settlement_evm_channel_busy`, and the channel is never charged past the
//! signed ceiling.

mod common;

use common::batch::{PRICE, open};
use serde_json::json;

#[tokio::test]
async fn one_of_two_concurrent_vouchers_is_refused_busy() {
    let shop = open(|server| server).await;
    let chain = shop.chain();
    let mut payer = shop.payer(0);
    shop.deposit(&mut payer, PRICE).await;
    let voucher = payer.voucher(chain, &shop.offer).await;
    let mut again = voucher.clone();
    again["note"] = json!("the same voucher, another encoding");

    let used = PRICE.to_string();
    let slow = [("x-used", used.as_str()), ("x-sleep-ms", "400")];
    let (a, b) = tokio::join!(shop.pay(voucher, &slow), shop.pay(again, &slow));
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 402], "{a:?} {b:?}");
    let refused = if a.status == 402 { &a } else { &b };
    assert_eq!(
        refused.challenge.as_ref().unwrap().error.as_deref(),
        Some("invalid_batch_settlement_evm_channel_busy")
    );
    let record = shop.record(&payer.id).await.unwrap();
    assert_eq!(record.charged, 2 * PRICE);
    assert_eq!(record.pending, None);
}
