//! With a block time the devnet mines blocks on its own, like Base; by default it mines a
//! block per transaction.

use std::time::Duration;

use alloy::providers::Provider;
use x402_devnet::{Devnet, DevnetConfig};

#[tokio::test]
async fn block_time_produces_blocks_without_transactions() {
    let devnet = Devnet::start(DevnetConfig {
        block_time: Some(1),
        ..DevnetConfig::default()
    })
    .await
    .unwrap();
    let start = devnet.provider().get_block_number().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let end = devnet.provider().get_block_number().await.unwrap();
    assert!(end >= start + 2, "blocks {start} -> {end}");
}

#[tokio::test]
async fn automine_mines_nothing_while_idle_and_funds_every_payer() {
    let devnet = Devnet::start(DevnetConfig::default()).await.unwrap();
    let start = devnet.provider().get_block_number().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(devnet.provider().get_block_number().await.unwrap(), start);
    for payer in devnet.payers() {
        let balance = devnet
            .balance_of(devnet.token().address, payer.address)
            .await
            .unwrap();
        assert_eq!(balance, alloy::primitives::U256::from(1_000_000_000u64));
    }
    assert_eq!(devnet.payers().len(), 8);
}
