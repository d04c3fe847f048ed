//! The official `@x402/evm` 2.27 batch-settlement client pays a route behind our paywall (our
//! facilitator holding the receiver-authorizer key): it deposits once, pays each further
//! request with a voucher, reads every receipt's `chargedAmount` and
//! `channelState.chargedCumulativeAmount` (it refuses the update when they disagree with its
//! own count), and gets the rest of its deposit back with a cooperative refund.

mod common;

use alloy::primitives::U256;
use common::batch::open;
use serde_json::Value;
use x402_testkit::official_batch_fetch;

#[tokio::test]
async fn the_official_client_deposits_pays_vouchers_and_is_refunded() {
    let shop = open(|server| server).await;
    let url = format!("{}/units?used=600", shop.serve().await);
    let payer = shop.chain().devnet.payers()[2].signer.clone();
    let before = shop.chain().balance(payer.address()).await;

    let out = official_batch_fetch(vec![
        ("URL", url),
        ("PRIVATE_KEY", payer.to_bytes().to_string()),
        ("COUNT", "3".into()),
        ("REFUND", "1".into()),
    ])
    .await;
    let requests = out["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 3, "{out}");
    let text = |value: &Value| value.as_str().unwrap().parse::<u128>().unwrap();
    for (i, request) in requests.iter().enumerate() {
        assert_eq!(request["status"], 200, "{out}");
        let receipt = &request["paymentResponse"];
        assert_eq!(receipt["success"], true, "{receipt}");
        assert_eq!(text(&receipt["extra"]["chargedAmount"]), 600);
        assert_eq!(
            text(&receipt["extra"]["channelState"]["chargedCumulativeAmount"]),
            600 * (i as u128 + 1)
        );
    }
    // The first paid with a deposit, on chain; the others with vouchers, charged here.
    let deposit = text(&requests[0]["paymentResponse"]["amount"]);
    assert!(
        requests[0]["paymentResponse"]["transaction"]
            .as_str()
            .unwrap()
            .starts_with("0x")
    );
    for request in &requests[1..] {
        assert_eq!(request["paymentResponse"]["transaction"], "");
    }
    assert_eq!(shop.facilitator.verifies(), 2, "the deposit and the refund");

    // The refund: what was not charged goes back, the server forgets the channel.
    let refund = &out["refund"];
    assert_eq!(refund["success"], true, "{out}");
    assert_eq!(text(&refund["amount"]), deposit - 1_800);
    assert_eq!(
        shop.chain().balance(payer.address()).await,
        before - U256::from(1_800u64)
    );
    let offer = &shop.offer;
    let config = x402_evm::batch::channel_config_for(
        offer,
        payer.address(),
        payer.address(),
        alloy::primitives::B256::ZERO,
    )
    .unwrap();
    let id = shop.chain().batch_domain().channel_id(&config);
    assert!(shop.record(&id).await.is_none());
}
