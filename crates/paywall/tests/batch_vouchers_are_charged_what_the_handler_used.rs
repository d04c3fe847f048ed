//! `batch-settlement` on a paid route, as the official 2.27 server runs it: one deposit opens
//! the channel on chain (settled by the facilitator), then every request pays with a voucher
//! the server verifies and charges itself, each charged exactly what its handler reported it
//! used; the receipts carry `chargedAmount` and `channelState.chargedCumulativeAmount` as
//! official clients read them, with no transaction and nothing sent to the facilitator.

mod common;

use common::batch::{DEPOSIT, PRICE, charged_amount, charged_cumulative, open};
use x402_evm::batch::BATCH_SETTLEMENT_ADDRESS;

#[tokio::test]
async fn a_deposit_then_vouchers_are_each_charged_their_usage() {
    let shop = open(|server| server).await;
    let chain = shop.chain();
    let mut payer = shop.payer(0);
    let escrow_before = chain.balance(BATCH_SETTLEMENT_ADDRESS).await;

    // The offer names the facilitator's receiver authorizer and the official defaults.
    let extra = shop.offer.extra.as_ref().unwrap();
    assert!(
        extra["receiverAuthorizer"]
            .as_str()
            .unwrap()
            .starts_with("0x")
    );
    assert_eq!(extra["withdrawDelay"], 900);
    assert_eq!(extra["minDeposit"], (10 * PRICE).to_string());

    // The deposit's request used 300: the deposit lands in the escrow, 300 is charged.
    let deposit = shop.deposit(&mut payer, 300).await;
    let receipt = deposit.receipt.as_ref().unwrap();
    assert!(receipt.transaction.starts_with("0x"), "{receipt:?}");
    assert_eq!(
        receipt.amount.unwrap().0,
        alloy::primitives::U256::from(DEPOSIT)
    );
    assert_eq!(charged_amount(&deposit), 300);
    assert_eq!(charged_cumulative(&deposit), 300);
    let state = &receipt.extra.as_ref().unwrap()["channelState"];
    assert_eq!(state["balance"], DEPOSIT.to_string());
    assert_eq!(state["channelId"], payer.id.to_string());
    assert_eq!(
        chain.balance(BATCH_SETTLEMENT_ADDRESS).await,
        escrow_before + alloy::primitives::U256::from(DEPOSIT)
    );
    let (verifies, settles) = (shop.facilitator.verifies(), shop.facilitator.settles());
    assert_eq!((verifies, settles), (1, 1));

    // Vouchers: each charged what its handler used, the price when it reported nothing.
    let mut expected_total = 300;
    for used in [Some(1_000), Some(1), Some(0), Some(999), None] {
        let payload = payer.voucher(chain, &shop.offer).await;
        let headers: Vec<(&str, String)> = used.iter().map(|u| ("x-used", u.to_string())).collect();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let answer = shop.pay(payload, &headers).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let charge = used.unwrap_or(PRICE);
        expected_total += charge;
        assert_eq!(charged_amount(&answer), charge);
        assert_eq!(charged_cumulative(&answer), expected_total);
        let receipt = answer.receipt.as_ref().unwrap();
        assert!(receipt.success);
        assert_eq!(receipt.transaction, "");
        assert_eq!(receipt.amount, None);
        // The payer as official servers write it here: lower case.
        assert_eq!(
            receipt.payer.as_deref(),
            Some(format!("{:#x}", payer.signer.address()).as_str())
        );
        payer.charged = charged_cumulative(&answer);
    }

    // The server holds the last voucher to claim with; the facilitator was not asked again.
    let record = shop.record(&payer.id).await.unwrap();
    assert_eq!(record.charged, expected_total);
    assert_eq!(record.voucher.unwrap().max_claimable, expected_total);
    assert_eq!(record.pending, None);
    assert_eq!(shop.facilitator.verifies(), verifies);
    assert_eq!(shop.facilitator.settles(), settles);
    // Nothing left the escrow: vouchers are claimed later.
    assert_eq!(
        chain.balance(BATCH_SETTLEMENT_ADDRESS).await,
        escrow_before + alloy::primitives::U256::from(DEPOSIT)
    );
}
