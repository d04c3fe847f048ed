//! A Solana payment (its identity is its transaction message) buys one response: paid once,
//! the same request presented again gets the same answer and receipt (charged once); for
//! another request, or twice at once, it is refused. The receipt names the transaction,
//! which is on chain.

mod common;

use common::svm::SolanaShop;
use x402_testkit::{Wire, challenge_of, receipt_of};

const PRICE_ATOMIC: u64 = common::PRICE_ATOMIC;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_solana_payment_is_answered_again_for_its_request_and_refused_for_others() {
    let shop = SolanaShop::start().await;
    let url = format!("{}/weather", shop.url);
    let payment = shop.payment_for(&url, Wire::V2).await;

    let paid = shop.get_paid(&url, &payment).await;
    assert_eq!(paid.status(), 200);
    let receipt = receipt_of(paid.headers()).unwrap();
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(receipt.network.as_str(), shop.solana.state().network);
    assert_eq!(
        receipt.payer.as_deref(),
        Some(shop.solana.state().payers[0].as_str())
    );
    shop.solana.assert_landed(&receipt.transaction).await;
    let body = paid.text().await.unwrap();
    assert!(body.contains(&shop.solana.state().payers[0]), "{body}");

    // Lost answer: the same request with the same payment is answered again, not charged.
    let replay = shop.get_paid(&url, &payment).await;
    assert_eq!(replay.status(), 200, "the same request is answered again");
    assert_eq!(receipt_of(replay.headers()).unwrap(), receipt);
    assert_eq!(replay.text().await.unwrap(), body);

    // The same payment for another request of the same price.
    let other = shop.get_paid(&format!("{url}?city=paris"), &payment).await;
    assert_eq!(other.status(), 402);
    let error = challenge_of(other.headers()).error.unwrap();
    assert!(error.contains("payment_already_used"), "{error}");
    assert!(!other.text().await.unwrap().contains("sunny"));
    shop.assert_paid(PRICE_ATOMIC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_solana_payment_sent_twice_at_once_buys_one_response() {
    let shop = SolanaShop::start().await;
    let url = format!("{}/slow", shop.url);
    let payment = shop.payment_for(&url, Wire::V1).await;
    assert_eq!(payment.0, "X-PAYMENT");

    let (a, b) = tokio::join!(shop.get_paid(&url, &payment), shop.get_paid(&url, &payment));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 402]);
    shop.assert_paid(PRICE_ATOMIC).await;
}
