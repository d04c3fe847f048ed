//! A `batch-settlement` server verifies vouchers itself while its mirror of the channel's
//! on-chain state is fresh (a third of the withdraw delay, 5 minutes at 900 s), asking the
//! facilitator nothing; once the mirror is older, the next voucher is verified by the
//! facilitator, whose answer refreshes the mirror.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::batch::open;

#[tokio::test]
async fn a_stale_mirror_sends_the_voucher_to_the_facilitator() {
    let offset = Arc::new(AtomicU64::new(0));
    let clock = offset.clone();
    let shop = open(move |server| {
        server.with_clock(move || x402_evm::unix_now() + clock.load(Ordering::SeqCst))
    })
    .await;
    let mut payer = shop.payer(0);
    shop.deposit(&mut payer, 100).await;
    let verifies = shop.facilitator.verifies();

    pay(&shop, &mut payer).await;
    assert_eq!(
        shop.facilitator.verifies(),
        verifies,
        "fresh: verified here"
    );

    // Five minutes and a second later the mirror is stale: the facilitator verifies.
    offset.store(301, Ordering::SeqCst);
    pay(&shop, &mut payer).await;
    assert_eq!(shop.facilitator.verifies(), verifies + 1);
    // Its answer refreshed the mirror.
    pay(&shop, &mut payer).await;
    assert_eq!(shop.facilitator.verifies(), verifies + 1);
    assert_eq!(payer.charged, 400);
    assert_eq!(shop.facilitator.settles(), 1);
}

/// Pays one request of 100 with the next voucher; advances the payer's count.
async fn pay(shop: &common::batch::BatchShop, payer: &mut x402_testkit::BatchPayer) {
    let voucher = payer.voucher(shop.chain(), &shop.offer).await;
    let answer = shop.pay(voucher, &[("x-used", "100")]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    payer.charged = common::batch::charged_cumulative(&answer);
}
