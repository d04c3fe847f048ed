//! What a payer who withdraws could leave unpaid is bounded: a `batch-settlement` server with
//! a per-channel limit on what is charged and not yet claimed serves no request that could
//! take a channel past it. The request is answered 503 (retry) with nothing charged and the
//! handler not run; once the channel's vouchers are claimed on chain, the same voucher pays.

mod common;

use common::batch::{PRICE, charged_cumulative, open};
use x402_evm::batch::{BatchClaimer, ClaimPolicy};

#[tokio::test]
async fn a_channel_is_not_charged_past_its_limit_until_its_claim_lands() {
    let shop = open(|server| server.with_max_unclaimed(3 * PRICE)).await;
    let chain = shop.chain();
    let mut payer = shop.payer(0);
    shop.deposit(&mut payer, PRICE).await;
    for _ in 0..2 {
        let payload = payer.voucher(chain, &shop.offer).await;
        let answer = shop.pay(payload, &[]).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        payer.charged = charged_cumulative(&answer);
    }
    assert_eq!(payer.charged, 3 * PRICE);

    // At the limit: refused, retryable, nothing run or charged, the channel not left busy.
    let runs = shop.runs.load(std::sync::atomic::Ordering::SeqCst);
    let next = payer.voucher(chain, &shop.offer).await;
    let refused = shop.pay(next.clone(), &[]).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        refused.body.contains("limit of 3000") && refused.body.contains("retry"),
        "{}",
        refused.body
    );
    assert_eq!(shop.runs.load(std::sync::atomic::Ordering::SeqCst), runs);
    let record = shop.record(&payer.id).await.unwrap();
    assert_eq!((record.charged, record.pending.clone()), (3 * PRICE, None));
    assert_eq!(record.unclaimed(), 3 * PRICE);

    // The claim lands: nothing is owed any more, and the same voucher pays.
    let claimer = BatchClaimer::new(
        shop.store.clone(),
        shop.stack.in_process(),
        chain.devnet.network(),
        ClaimPolicy::default(),
    );
    let run = claimer.flush().await.unwrap();
    assert_eq!((run.claims.len(), run.failures.len()), (1, 0), "{run:?}");
    assert_eq!(shop.record(&payer.id).await.unwrap().unclaimed(), 0);
    let answer = shop.pay(next, &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(charged_cumulative(&answer), 4 * PRICE);
}
